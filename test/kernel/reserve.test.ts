/**
 * Kernel tests (root): reservations refuse everyone else, whatever privilege
 * they bring: with EADDRINUSE where a bind hook may set its errno
 * (bpf_set_retval, Linux 6.1), else with EPERM (reservedErrno: the probe's answer).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { overrideSetRetvalForTests, probeSetRetval } from '../../src/bpf/probes.js';
import { attachedPrograms, readLivePolicy } from '../../src/grants/live.js';
import { bindProgramName } from '../../src/grants/program.js';
import { kernelVersion } from '../../src/os/system.js';
import { binds, kernelSkipReason, NOBODY, reservedErrno, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const OWNER = 1; // daemon on Debian; any uid other than 0 and 65534 does
const LOWERED = { 'net.ipv4.ip_unprivileged_port_start': '0' };
/** What others get from a reserved port here (set once the tests run as root). */
let refused = 'EPERM';

describe('reservations in the kernel', { skip }, () => {
  let box: Sandbox;
  before(async () => {
    refused = reservedErrno();
    box = new Sandbox('reserve');
    const r = await box.cli('reserve', '90,5432', '--user', String(OWNER));
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => box?.dispose());

  it('lets the owner bind a reserved low port without any capability', () => {
    assert.deepEqual(box.probe({ uid: OWNER, gid: OWNER }, binds(90, ['127.0.0.1', '::1'])), ['ok', 'ok', 'ok', 'ok']);
  });

  it('refuses everyone else (EADDRINUSE, or EPERM before Linux 6.1), even with CAP_NET_BIND_SERVICE', () => {
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1', '::1'], ['tcp'])), [refused, refused]);
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), [refused]);
    // The same capability does bind an unreserved low port: the refusal is the reservation's.
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(91, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('refuses everyone else even when ip_unprivileged_port_start is lowered in their network namespace', () => {
    assert.deepEqual(box.probe({ sysctls: LOWERED }, [...binds(90, ['127.0.0.1'], ['tcp']), ...binds(91, ['127.0.0.1'], ['tcp'])]), [
      refused,
      'ok',
    ]);
  });

  it('keeps a port above 1024 for its owner too', () => {
    assert.deepEqual(box.probe({}, binds(5432, ['127.0.0.1', '::1'])), [refused, refused, refused, refused]);
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
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), [refused]);
  });

  it('lets a user the policy grants the port to bind it', async () => {
    assert.equal((await box.cli('grant', '90/tcp', '--user', String(NOBODY))).code, 0);
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'])), ['ok', refused]);
  });

  it('is not opened by a grant to everyone that covers the port', async () => {
    assert.equal((await box.cli('grant', '85-95/udp', '--everyone')).code, 0);
    assert.deepEqual(box.probe({ uid: 4321, gid: 4321 }, [...binds(90, ['127.0.0.1'], ['udp']), ...binds(91, ['127.0.0.1'], ['udp'])]), [
      refused,
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

/**
 * A program that probes ports (a dev server, bindresvport(3)) as Python's
 * socket docs suggest: EADDRINUSE means taken, try the next; anything else is
 * an error. 5433 is really in use (a listener the script opens first).
 */
const PROBING = `import errno, socket
held = socket.socket()
held.bind(('127.0.0.1', 5433))
held.listen()
for port in range(5431, 5440):
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', port))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        print(f'{port}: {errno.errorcode[e.errno]}, trying the next')
        continue
    print(f'bound {port}')
    break
`;

describe('the errno of a reservation', { skip: skip ?? kernelSkipReason({ python3: 'python3' }) }, () => {
  let box: Sandbox;
  let script: string;
  before(async () => {
    box = new Sandbox('reserve-errno');
    script = join(box.dir, 'probing.py');
    writeFileSync(script, PROBING, { mode: 0o644 });
    const r = await box.cli('reserve', '90,5431,5432', '--user', String(OWNER));
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    overrideSetRetvalForTests(undefined);
    await box?.dispose();
  });

  const names = (): string[] =>
    attachedPrograms({ cgroup: box.cgroup, pinDir: box.pinDir })
      .filter((p) => p.ours)
      .map((p) => p.name)
      .sort();
  const probing = (): { code: number | null; out: string } => {
    const { command, args, env } = box.clientCommand({}, ['/usr/bin/python3', script]);
    const r = spawnSync(command, args, { encoding: 'utf8', env, timeout: 20_000 });
    return { code: r.status, out: r.stdout + r.stderr };
  };

  it('is EADDRINUSE on this kernel when it is Linux 6.1 or later, as the probe says, on TCP and UDP, IPv4 and IPv6', () => {
    const [major, minor] = kernelVersion();
    if (major > 6 || (major === 6 && minor >= 1)) assert.equal(probeSetRetval().ok, true, JSON.stringify(probeSetRetval()));
    const expected = probeSetRetval().ok ? 'EADDRINUSE' : 'EPERM';
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1', '::1'])), [expected, expected, expected, expected]);
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(90, ['0.0.0.0', '::'], ['tcp'])), [expected, expected]);
    assert.deepEqual(names(), [
      bindProgramName(4, { addrInUse: probeSetRetval().ok }),
      bindProgramName(6, { addrInUse: probeSetRetval().ok }),
    ]);
    // The owner and root are not refused.
    assert.deepEqual(box.probe({ uid: OWNER, gid: OWNER }, binds(90, ['127.0.0.1', '::1'])), ['ok', 'ok', 'ok', 'ok']);
    assert.deepEqual(box.probe({ uid: 0, gid: 0, caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('lets a port-probing program step over reserved ports and a port in use alike', (t) => {
    if (!probeSetRetval().ok) return t.skip('this kernel refuses with EPERM');
    const r = probing();
    assert.equal(r.code, 0, r.out);
    assert.equal(
      r.out,
      '5431: EADDRINUSE, trying the next\n5432: EADDRINUSE, trying the next\n5433: EADDRINUSE, trying the next\nbound 5434\n',
    );
  });

  it('is EPERM where the probe says no (turned off here), which stops that program; apply swaps the variant in place both ways', async () => {
    overrideSetRetvalForTests(false);
    try {
      assert.equal((await box.cli('apply')).code, 0);
      assert.deepEqual(names(), [bindProgramName(4), bindProgramName(6)]);
      assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1', '::1'])), ['EPERM', 'EPERM', 'EPERM', 'EPERM']);
      assert.deepEqual(box.probe({ uid: OWNER, gid: OWNER }, binds(90, ['127.0.0.1'], ['tcp'])), ['ok']);
      const r = probing();
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /PermissionError: \[Errno 1\] Operation not permitted/);
      assert.doesNotMatch(r.out, /bound/);
    } finally {
      overrideSetRetvalForTests(undefined);
    }
    assert.equal((await box.cli('apply')).code, 0);
    assert.deepEqual(names(), [
      bindProgramName(4, { addrInUse: probeSetRetval().ok }),
      bindProgramName(6, { addrInUse: probeSetRetval().ok }),
    ]);
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), [reservedErrno()]);
    // Either variant counts its refusals on the reservation's line, and the swaps carry them over:
    // 4 + 2 above, python's 5431 and 5432 (not 5433: that one is really in use), 4 + python's 5431 with EPERM, 1 now.
    const listed = JSON.parse((await box.cli('list', '--json')).stdout) as { rules: { action: string; refused: number }[] };
    const reservation = listed.rules.find((x) => x.action === 'reserve');
    assert.equal(reservation?.refused, 6 + (probeSetRetval().ok ? 2 : 0) + 5 + 1, JSON.stringify(listed.rules));
  });
});
