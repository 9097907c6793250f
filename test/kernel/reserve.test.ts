/** Kernel tests (root): reservations refuse everyone else, whatever privilege they bring. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { binds, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const OWNER = 1; // daemon on Debian; any uid other than 0 and 65534 does
const LOWERED = { 'net.ipv4.ip_unprivileged_port_start': '0' };

describe('reservations in the kernel', { skip }, () => {
  let box: Sandbox;
  before(async () => {
    box = new Sandbox('reserve');
    const r = await box.cli('reserve', '90,5432', '--user', String(OWNER));
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => box?.dispose());

  it('lets the owner bind a reserved low port without any capability', () => {
    assert.deepEqual(box.probe({ uid: OWNER, gid: OWNER }, binds(90, ['127.0.0.1', '::1'])), ['ok', 'ok', 'ok', 'ok']);
  });

  it('refuses everyone else with EPERM, even with CAP_NET_BIND_SERVICE', () => {
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1', '::1'], ['tcp'])), ['EPERM', 'EPERM']);
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), ['EPERM']);
    // The same capability does bind an unreserved low port: the refusal is the reservation's.
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(91, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('refuses everyone else even when ip_unprivileged_port_start is lowered in their network namespace', () => {
    assert.deepEqual(box.probe({ sysctls: LOWERED }, [...binds(90, ['127.0.0.1'], ['tcp']), ...binds(91, ['127.0.0.1'], ['tcp'])]), [
      'EPERM',
      'ok',
    ]);
  });

  it('keeps a port above 1024 for its owner too', () => {
    assert.deepEqual(box.probe({}, binds(5432, ['127.0.0.1', '::1'])), ['EPERM', 'EPERM', 'EPERM', 'EPERM']);
    assert.deepEqual(box.probe({ uid: OWNER, gid: OWNER }, binds(5432, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('leaves root its own rules', () => {
    assert.deepEqual(box.probe({ uid: 0, gid: 0, caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('lets a user the policy grants the port to bind it', async () => {
    assert.equal((await box.cli('grant', '90/tcp', '--user', String(NOBODY))).code, 0);
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'])), ['ok', 'EPERM']);
  });

  it('is not opened by a grant to everyone that covers the port', async () => {
    assert.equal((await box.cli('grant', '85-95/udp', '--everyone')).code, 0);
    assert.deepEqual(box.probe({ uid: 4321, gid: 4321 }, [...binds(90, ['127.0.0.1'], ['udp']), ...binds(91, ['127.0.0.1'], ['udp'])]), [
      'EPERM',
      'ok',
    ]);
    assert.equal((await box.cli('revoke', '85-95/udp', '--everyone')).code, 0);
  });

  it('counts refused binds in list', async () => {
    const r = await box.cli('list', '--json');
    const rules = (JSON.parse(r.stdout) as { rules: { action: string; ports: string; refused: number }[] }).rules;
    const reservation = rules.find((x) => x.action === 'reserve');
    assert.ok(reservation !== undefined, r.stdout);
    // 2 + 1 + 1 (port 90) + 4 (port 5432) + 1 (udp after the tcp grant) + 1 (everyone's udp) refusals above.
    assert.equal(reservation.refused, 10);
  });

  it('frees the port on unreserve', async () => {
    assert.equal((await box.cli('unreserve', '90,5432')).code, 0);
    assert.deepEqual(box.probe({ sysctls: LOWERED }, [...binds(90, ['127.0.0.1'], ['udp']), ...binds(5432, ['127.0.0.1'], ['tcp'])]), [
      'ok',
      'ok',
    ]);
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['udp'])), ['EACCES']);
  });
});
