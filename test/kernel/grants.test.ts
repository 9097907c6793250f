/**
 * Kernel tests (root): real binds by uid 65534 with no capabilities, inside a
 * dedicated cgroup, in a private network namespace.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { binds, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

describe('grants in the kernel', { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('grants');
  });
  after(() => box?.dispose());

  it('refuses port 80 to an unprivileged user while nothing is granted', () => {
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1', '::1'])), ['EACCES', 'EACCES', 'EACCES', 'EACCES']);
  });

  it('lets the granted user bind TCP and UDP on IPv4 and IPv6, on any address', async () => {
    const r = await box.cli('grant', '80,443', '--user', String(NOBODY));
    assert.equal(r.code, 0, r.stderr);
    const addrs = ['127.0.0.1', '::1', '0.0.0.0', '::', '127.0.0.2'];
    assert.deepEqual(box.probe({}, binds(80, addrs)), Array(10).fill('ok'));
    assert.deepEqual(box.probe({}, binds(443, addrs)), Array(10).fill('ok'));
  });

  it('still refuses ports that were not granted', () => {
    assert.deepEqual(box.probe({}, [...binds(81, ['127.0.0.1', '::1']), ...binds(442, ['127.0.0.1'])]), Array(6).fill('EACCES'));
  });

  it('refuses the granted port to another user', () => {
    assert.deepEqual(box.probe({ uid: 1, gid: 1 }, binds(80, ['127.0.0.1', '::1'])), Array(4).fill('EACCES'));
  });

  it('does not reach processes outside the cgroup the hook is attached to', () => {
    assert.deepEqual(box.probe({ outside: true }, binds(80, ['127.0.0.1'])), ['EACCES', 'EACCES']);
  });

  it('tells a taken port (EADDRINUSE) from a refused one', () => {
    const r = box.probe({}, [
      { proto: 'tcp', addr: '127.0.0.1', port: 80, hold: true },
      { proto: 'tcp', addr: '127.0.0.1', port: 80 },
      { proto: 'tcp', addr: '127.0.0.1', port: 81 },
    ]);
    assert.deepEqual(r, ['ok', 'EADDRINUSE', 'EACCES']);
  });

  it('grants only the protocol asked for', async () => {
    assert.equal((await box.cli('grant', '53/udp', '--user', String(NOBODY))).code, 0);
    assert.deepEqual(box.probe({}, binds(53, ['127.0.0.1', '::1'])), ['EACCES', 'EACCES', 'ok', 'ok']);
  });

  it('limits an address grant to that exact address', async () => {
    assert.equal((await box.cli('grant', '8', '--user', String(NOBODY), '--addr', '127.0.0.2', '--addr', '::1')).code, 0);
    assert.deepEqual(box.probe({}, binds(8, ['127.0.0.2', '::1', '127.0.0.1', '0.0.0.0', '::'], ['tcp'])), [
      'ok',
      'ok',
      'EACCES',
      'EACCES',
      'EACCES',
    ]);
  });

  it('matches an IPv4-mapped IPv6 bind (what a JVM does) against an IPv4 address rule', () => {
    assert.deepEqual(box.probe({}, binds(8, ['::ffff:127.0.0.2', '::ffff:127.0.0.1'], ['tcp'])), ['ok', 'EACCES']);
  });

  it('grants a group to members by primary and by supplementary group, and to no one else', async () => {
    // Group 65533 is nogroup on Debian-like systems; use its number, members none: primary gid only.
    const r = await box.cli('grant', '70', '--group', 'nogroup');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(box.probe({ uid: 1234, gid: 65534 }, binds(70, ['127.0.0.1'], ['tcp'])), ['ok']);
    assert.deepEqual(box.probe({ uid: 1234, gid: 1234, groups: [65534] }, binds(70, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    assert.deepEqual(box.probe({ uid: 1234, gid: 1234 }, binds(70, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('grants everyone when asked', async () => {
    assert.equal((await box.cli('grant', '71/tcp', '--everyone')).code, 0);
    assert.deepEqual(box.probe({ uid: 4321, gid: 4321 }, binds(71, ['127.0.0.1', '::1'], ['tcp'])), ['ok', 'ok']);
  });

  it('counts the binds each rule granted in list', async () => {
    const r = await box.cli('list', '--json');
    assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(r.stdout) as { live: boolean; file: string; rules: { ports: string; hits: number; action: string }[] };
    assert.equal(listed.live, true);
    assert.equal(listed.file, 'in-sync');
    const rule80 = listed.rules.find((x) => x.ports === '53/udp,80,443'); // the 53/udp grant joined the same line
    assert.ok(rule80 !== undefined, r.stdout);
    // 10 binds on 80 and 10 on 443 in the second test, 2 + 2 more on 80 since.
    assert.ok(rule80.hits >= 24, `hits ${rule80.hits}`);
    assert.equal(listed.rules.find((x) => x.ports === '71/tcp')?.hits, 2);
  });

  it('says which lines still give a revoked port by another way', async () => {
    assert.equal((await box.cli('grant', '72/tcp', '--user', 'nobody')).code, 0);
    assert.equal((await box.cli('grant', '72/tcp', '--group', 'nogroup')).code, 0);
    const r = await box.cli('revoke', '72/tcp', '--user', 'nobody');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^lowport: note: line \d+ still gives 72\/tcp to user nobody: grant 70,72\/tcp group nogroup/m);
    assert.deepEqual(box.probe({}, binds(72, ['127.0.0.1'], ['tcp'])), ['ok']);
    assert.equal((await box.cli('revoke', '72/tcp', '--group', 'nogroup')).code, 0);
    assert.deepEqual(box.probe({}, binds(72, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('ends a grant at once on revoke, keeping the others', async () => {
    assert.equal((await box.cli('revoke', '443', '--user', String(NOBODY))).code, 0);
    assert.deepEqual(box.probe({}, [...binds(443, ['127.0.0.1']), ...binds(80, ['127.0.0.1'])]), ['EACCES', 'EACCES', 'ok', 'ok']);
    assert.match(box.readPolicy(), /^grant 53\/udp,80 user 65534$/m);
  });
});
