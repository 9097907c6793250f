/** Kernel tests (root): reservations refuse everyone else, whatever privilege they bring. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readLivePolicy } from '../../src/grants/live.js';
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

  it('refuses a second owner of a reserved port, in an edit and in apply, and nothing live changes', async () => {
    const live = (): string[] => {
      const t = readLivePolicy(box.pinDir)?.table;
      return Array.from({ length: t?.count ?? 0 }, (_, i) => `${t?.keyString(i)}:${t?.rule(i)}:${t?.flags(i)}`).sort();
    };
    const text = box.readPolicy();
    const before = live();
    assert.ok(before.length > 0);
    // A range over the reserved 90, for another user: the edit stops at the line of the file that has it.
    const edit = await box.cli('reserve', '85-95', '--user', String(NOBODY));
    assert.equal(edit.code, 1, edit.stderr);
    assert.match(
      edit.stderr,
      /policy:\d+:9-15: error: 90 is reserved for user 1 on line \d+, so reserving it for user 65534 too would let both bind it/,
    );
    assert.match(edit.stderr, /^reserve 90,5432 user 1$/m);
    assert.match(edit.stderr, /Nothing was changed\. `lowport unreserve 90`/);
    assert.equal(box.readPolicy(), text);
    assert.deepEqual(live(), before);
    // The same by hand in the file: apply refuses the whole file, naming both lines.
    box.writePolicy(`${text}reserve 90/tcp user ${NOBODY}\n`);
    try {
      const apply = await box.cli('apply');
      assert.equal(apply.code, 1, apply.stderr);
      assert.match(apply.stderr, /error: 90\/tcp is already reserved for user 1 on line \d+, so user 65534 and user 1 would both bind it/);
      assert.match(apply.stderr, /note: first reserved here/);
      assert.deepEqual(live(), before);
      const check = await box.cli('apply', '--check');
      assert.equal(check.code, 1, check.stderr);
    } finally {
      box.writePolicy(text);
    }
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), ['EPERM']);
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
    // Refusals above: 2 + 1 + 1 (port 90), 4 (port 5432), 1 (after the refused second owner),
    // 1 (udp after the tcp grant), 1 (everyone's udp).
    assert.equal(reservation.refused, 11);
  });

  it('shows in list a grant that a reservation of its port shadows, and by which line', async () => {
    // The owner's own grant of a reserved port, and a grant to everyone over it: neither does anything there.
    assert.equal((await box.cli('grant', '5432,5433', '--user', String(OWNER))).code, 0);
    assert.equal((await box.cli('grant', '5430-5439/tcp', '--everyone')).code, 0);
    try {
      const lines = box.readPolicy().split('\n');
      const lineOf = (text: string): number => lines.indexOf(text) + 1;
      const reservation = lineOf(`reserve 90,5432 user ${OWNER}`);
      const own = lineOf(`grant 5432-5433 user ${OWNER}`);
      const everyone = lineOf('grant 5430-5439/tcp everyone');
      assert.ok(reservation > 0 && own > 0 && everyone > 0, lines.join('\n'));
      const r = await box.cli('list', '--json');
      const listed = JSON.parse(r.stdout) as {
        rules: { line: number; ports: string }[];
        shadowed: { line: number; action: string; ports: string; who: string[]; shadowedBy: number }[];
      };
      // 5433 stays live on the owner's grant line; 5432 is the reservation's.
      assert.deepEqual(
        listed.rules.filter((x) => x.line === own).map((x) => x.ports),
        ['5433'],
      );
      assert.deepEqual(
        listed.shadowed.map((x) => [x.line, x.action, x.ports, x.who.length, x.shadowedBy]),
        [
          [own, 'grant', '5432', 1, reservation],
          [everyone, 'grant', '5432/tcp', 1, reservation],
        ],
      );
      assert.match(listed.shadowed[1]?.who[0] ?? '', /^everyone$/);
      const human = await box.cli('list');
      assert.match(human.stdout, new RegExp(`^ *${own}  grant 5432 \\S+ .*\\(uid ${OWNER}\\) +shadowed by line ${reservation}$`, 'm'));
      assert.match(human.stdout, new RegExp(`^ *${everyone}  grant 5432/tcp everyone +shadowed by line ${reservation}$`, 'm'));
      assert.match(human.stdout, /A shadowed grant does nothing where a reservation of the same port holds/);
    } finally {
      assert.equal((await box.cli('revoke', '5432,5433', '--user', String(OWNER))).code, 0);
      assert.equal((await box.cli('revoke', '5430-5439/tcp', '--everyone')).code, 0);
    }
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
