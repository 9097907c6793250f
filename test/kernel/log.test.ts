/**
 * Kernel tests (root): the audit trail. N binds give exactly N events, each
 * with the binding process's pid, name, uid and port and the verdict;
 * `lowport log` peeks without taking, `--follow` takes; the ring survives a
 * swap; without `log` the program has no logging instructions.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { progLengths } from '../../src/bpf/syscall.js';
import { LinkHandle, MapHandle, ProgramHandle, withHandle } from '../../src/bpf/handles.js';
import { openPinDir } from '../../src/bpf/bpffs.js';
import { buildBindProgram, bindProgramName } from '../../src/grants/program.js';
import { bindProgramVariant, liveLogging, programOptions } from '../../src/grants/live.js';
import { EADDRINUSE, EPERM } from '../../src/os/errno.js';
import { probeRingbuf, probeTaskBtf, turnOffTaskBtfForTests } from '../../src/bpf/probes.js';
import { probeText } from '../../src/grants/target.js';
import { CLI, kernelSkipReason, NOBODY, reservedErrno, Sandbox } from './sandbox.js';

const PYTHON = '/usr/bin/python3';
/** The machine's reason to skip, or this kernel's: a bind hook without the ring buffer and its helpers (Linux 5.8) refuses `log`. */
function skipReason(): string | undefined {
  const reason = kernelSkipReason({ [PYTHON]: 'python3' });
  if (reason !== undefined) return reason;
  const ring = probeRingbuf();
  return ring.ok ? undefined : `this kernel refuses the audit trail's program: ${probeText(ring)}`;
}
const skip = skipReason();
const OWNER = 1;
/** A process name to find the client's events by; the escape and the quote show it is escaped in the human output. */
const COMM = "lp-aud\x1b[1m'x";

/**
 * A Python client: sets its name (prctl PR_SET_NAME), tries each bind in turn
 * (a new socket each), prints its pid and each result.
 */
const CLIENT = `
import ctypes, json, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode('latin1'), 0, 0, 0)
out = []
for proto, addr, port in json.loads(sys.argv[2]):
    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
    try:
        s.bind((addr, port)); out.append('ok')
    except OSError as e:
        out.append(e.errno)
    s.close()
print(json.dumps({'pid': __import__('os').getpid(), 'results': out}))
`;

/** A burst: N binds of 127.0.0.1:80/tcp as fast as Python goes (a spurious EADDRINUSE, a kernel quirk, is tried again); prints its pid. */
const BURST = `
import ctypes, os, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode('latin1'), 0, 0, 0)
n = 0
while n < int(sys.argv[2]):
    s = socket.socket()
    try:
        s.bind(('127.0.0.1', 80)); n += 1
    except OSError as e:
        if e.errno != 98: raise
    s.close()
print(os.getpid())
`;

interface JsonEvent {
  verdict: string;
  protocol: string;
  family: number;
  address: string;
  port: number;
  pid: number;
  comm: string;
  uid: number;
  gid: number;
  cgroupId: string;
  line: number;
  file?: string;
}

/** The cgroup v2 id of a cgroup directory: its inode number (kernfs gives the node's id as the inode). */
function cgroupIdOf(dir: string): string {
  return String(statSync(dir, { bigint: true }).ino);
}

function bindAs(box: Sandbox, uid: number, binds: [string, string, number][]): { pid: number; results: (string | number)[] } {
  const { command, args, env } = box.clientCommand({ uid, gid: uid }, [PYTHON, '-c', CLIENT, COMM, JSON.stringify(binds)]);
  const r = spawnSync(command, args, { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { pid: number; results: (string | number)[] };
}

async function peek(box: Sandbox): Promise<{ events: JsonEvent[]; stderr: string }> {
  const r = await box.cli('log', '--json');
  assert.equal(r.code, 0, r.stderr);
  return {
    events: r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as JsonEvent),
    stderr: r.stderr,
  };
}

function repeat<T>(n: number, x: T): T[] {
  return Array.from({ length: n }, () => x);
}

/** The xlated length of the program on the pin directory's bind4 link. */
function liveXlated(box: Sandbox): { insns: number; name: string } {
  const pins = openPinDir(box.pinDir, { create: false });
  assert.ok(pins !== undefined);
  try {
    const live = pins.dir.openDir('live');
    try {
      const link = LinkHandle.openPinned(live, 'bind4');
      assert.ok(link !== undefined);
      const prog = withHandle(link, (l) => ProgramHandle.fromId(l.info().progId));
      assert.ok(prog !== undefined);
      return withHandle(prog, (p) => ({ insns: progLengths(p.fd).xlatedInsns, name: p.info().name }));
    } finally {
      live.close();
    }
  } finally {
    pins.close();
  }
}

function ringId(box: Sandbox): number {
  const pins = openPinDir(box.pinDir, { create: false });
  assert.ok(pins !== undefined);
  try {
    const live = pins.dir.openDir('live');
    try {
      const ring = MapHandle.openPinned(live, 'events');
      assert.ok(ring !== undefined);
      return withHandle(ring, (r) => r.info().id);
    } finally {
      live.close();
    }
  } finally {
    pins.close();
  }
}

const POLICY = `grant 80 user ${NOBODY}\nreserve 90 user ${OWNER}\n`;

describe('the audit trail in the kernel', { skip }, () => {
  let box: Sandbox;
  let offInsns: number;
  before(async () => {
    box = new Sandbox('log');
    box.writePolicy(POLICY);
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    offInsns = liveXlated(box).insns;
  });
  after(() => box?.dispose());

  it('runs a program without logging instructions while the policy has no log statement', () => {
    const live = liveXlated(box);
    assert.equal(live.name, bindProgramName(4, bindProgramVariant()));
    assert.equal(
      buildBindProgram(4, 0, 0)
        .listing()
        .split('\n')
        .filter((l) => /ringbuf|get_current_comm/.test(l)).length,
      0,
    );
    assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: false });
  });

  it('gives exactly one event per granted or refused bind, with the pid, name, uid, port and verdict', async () => {
    box.writePolicy(`${POLICY}log all\n`);
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(liveXlated(box).insns > offInsns);
    const N = 7;
    const M = 4;
    const granted = repeat<[string, string, number]>(N, ['tcp', '127.0.0.1', 80]);
    // 81 has no rule and 90 refused: only the 90s are events; UDP and IPv6 too.
    const refused: [string, string, number][] = [
      ...repeat<[string, string, number]>(M - 2, ['tcp', '127.0.0.1', 90]),
      ['udp', '::1', 90],
      ['tcp', '::', 90],
    ];
    const client = bindAs(box, NOBODY, [...granted, ['tcp', '127.0.0.1', 81], ...refused, ['udp', '::1', 80]]);
    // A reservation refuses with EADDRINUSE where a bind hook may set its errno (Linux 6.1), else EPERM.
    const refusedErrno = reservedErrno() === 'EADDRINUSE' ? EADDRINUSE : EPERM;
    assert.deepEqual(client.results, [...repeat(N, 'ok'), 13, ...repeat(M, refusedErrno), 'ok']);
    const { events } = await peek(box);
    const mine = events.filter((e) => e.pid === client.pid);
    assert.equal(mine.length, N + 1 + M, JSON.stringify(events));
    assert.equal(events.length, mine.length, 'no event of another process');
    for (const e of mine) {
      assert.equal(e.comm, COMM);
      assert.equal(e.uid, NOBODY);
      assert.equal(e.gid, NOBODY);
      assert.equal(e.cgroupId, cgroupIdOf(box.cgroup));
    }
    assert.deepEqual(
      mine.map((e) => `${e.verdict} ${e.protocol} ${e.address} ${e.port} line ${e.line}`),
      [
        ...repeat(N, 'granted tcp 127.0.0.1 80 line 1'),
        ...repeat(M - 2, 'refused tcp 127.0.0.1 90 line 2'),
        'refused udp ::1 90 line 2',
        'refused tcp :: 90 line 2',
        'granted udp ::1 80 line 1',
      ],
    );
  });

  it("reads the task's pid, name and cgroup in place where the kernel lets a bind hook, through the helpers where not: the same events", async (t) => {
    const LOG_ALL = { grants: true, refusals: true, ringFd: 0 };
    const helperCalls = (options: ReturnType<typeof programOptions>): string[] =>
      buildBindProgram(4, 0, 0, options)
        .listing()
        .split('\n')
        // get_current_cgroup_id is there once for the rules scoped to a cgroup; the event's fields are the rest.
        .flatMap((l) => /call (get_current_\w+)/.exec(l)?.[1] ?? [])
        .sort();
    const inPlace = probeTaskBtf().result.ok;
    // Which way this kernel goes, in the test's output (the VM's kernel may differ from the host's).
    t.diagnostic(probeText(probeTaskBtf().result));
    assert.equal(liveXlated(box).name, bindProgramName(4, programOptions(LOG_ALL)));
    assert.deepEqual(
      helperCalls(programOptions(LOG_ALL)),
      inPlace
        ? ['get_current_cgroup_id', 'get_current_task_btf', 'get_current_uid_gid']
        : ['get_current_cgroup_id', 'get_current_cgroup_id', 'get_current_comm', 'get_current_pid_tgid', 'get_current_uid_gid'],
      probeText(probeTaskBtf().result),
    );
    const events = async (): Promise<string[]> => {
      const client = bindAs(box, NOBODY, [
        ['tcp', '127.0.0.1', 80],
        ['udp', '::1', 90],
      ]);
      const mine = (await peek(box)).events.filter((e) => e.pid === client.pid);
      return mine.map((e) => `${e.verdict} ${e.port} ${e.comm} ${e.uid}/${e.gid} cgroup ${e.cgroupId === cgroupIdOf(box.cgroup)}`);
    };
    const expected = [`granted 80 ${COMM} ${NOBODY}/${NOBODY} cgroup true`, `refused 90 ${COMM} ${NOBODY}/${NOBODY} cgroup true`];
    assert.deepEqual(await events(), expected);
    turnOffTaskBtfForTests(true);
    try {
      assert.equal((await box.cli('apply')).code, 0);
      assert.equal(liveXlated(box).name, bindProgramName(4, programOptions(LOG_ALL)));
      assert.deepEqual(helperCalls(programOptions(LOG_ALL)), [
        'get_current_cgroup_id',
        'get_current_cgroup_id',
        'get_current_comm',
        'get_current_pid_tgid',
        'get_current_uid_gid',
      ]);
      assert.deepEqual(liveLogging(box.pinDir), { grants: true, refusals: true });
      assert.deepEqual(await events(), expected);
    } finally {
      turnOffTaskBtfForTests(false);
    }
    assert.equal((await box.cli('apply')).code, 0);
    assert.equal(liveXlated(box).name, bindProgramName(4, programOptions(LOG_ALL)));
    assert.deepEqual(liveLogging(box.pinDir), { grants: true, refusals: true });
  });

  it('shows the process name escaped, and the user by name, in the human output', async () => {
    const r = await box.cli('log');
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.includes(' refused udp '));
    assert.ok(line !== undefined, r.stdout);
    assert.ok(!r.stdout.includes('\x1b'), 'no raw escape reaches the terminal');
    assert.match(
      line,
      /^\S+Z refused udp \[::1\]:90 pid \d+ 'lp-aud\\x1b\[1m'x' user \S+ \(65534\) group \S+ \(65534\) cgroup \d+ line 2$/,
    );
  });

  it('peeks without taking: a second read shows the same events', async () => {
    const first = await peek(box);
    const second = await peek(box);
    assert.equal(second.events.length, first.events.length);
    assert.ok(first.events.length > 0);
  });

  it('follows as the one reader, takes what it printed, refuses a second reader, and keeps the ring across a swap', async () => {
    const before = (await peek(box)).events.length;
    const id = ringId(box);
    const follower = spawn(process.execPath, [CLI, 'log', '--follow', '--json', ...box.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const lines = (): JsonEvent[] =>
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as JsonEvent);
    const waitFor = async (n: number): Promise<void> => {
      for (let i = 0; i < 100 && lines().length < n; i++) await new Promise((r) => setTimeout(r, 100));
    };
    try {
      await waitFor(before);
      assert.equal(lines().length, before, 'the follower prints what was in the ring');
      const second = await box.cli('log', '--follow');
      assert.equal(second.code, 1);
      assert.match(second.stderr, /another reader consumes the audit trail/);
      // A swap (another grant) keeps the ring and the follower's reading.
      box.writePolicy(`${POLICY}grant 82 user ${NOBODY}\nlog all\n`);
      const r = await box.cli('apply');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(ringId(box), id);
      const client = bindAs(box, NOBODY, [...repeat<[string, string, number]>(5, ['tcp', '127.0.0.1', 82]), ['tcp', '127.0.0.1', 90]]);
      await waitFor(before + 6);
      const mine = lines().filter((e) => e.pid === client.pid);
      assert.deepEqual(
        mine.map((e) => `${e.verdict} ${e.port} ${e.line}`),
        [...repeat(5, 'granted 82 3'), 'refused 90 2'],
      );
    } finally {
      follower.kill('SIGTERM');
      await new Promise((r) => follower.once('exit', r));
    }
    const after = await peek(box);
    assert.equal(after.events.length, 0, 'the follower took every event');
    assert.match(after.stderr, /journalctl -u lowport-log/);
  });

  it('hands on every event of a burst through the follower, once each, and leaves the ring empty', async () => {
    box.writePolicy(`${POLICY}log all\n`);
    assert.equal((await box.cli('apply')).code, 0);
    const follower = spawn(process.execPath, [CLI, 'log', '--follow', '--json', ...box.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    follower.stdout.on('data', (d: Buffer) => (out += d.toString()));
    // Fewer than the ring holds (16,384 IPv4 events), so that none may be lost even if the follower read
    // nothing before the burst ends; far more than one batch (512) and one wake-up.
    const N = 12_000;
    try {
      const { command, args, env } = box.clientCommand({ uid: NOBODY, gid: NOBODY }, [PYTHON, '-c', BURST, COMM, String(N)]);
      const r = spawnSync(command, args, { encoding: 'utf8', env });
      assert.equal(r.status, 0, r.stderr);
      const pid = Number(r.stdout.trim());
      // Whole lines only: the last may still be on its way.
      const mine = (): JsonEvent[] =>
        out
          .slice(0, out.lastIndexOf('\n') + 1)
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as JsonEvent)
          .filter((e) => e.pid === pid);
      for (let i = 0; i < 300 && mine().length < N; i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const events = mine();
      assert.equal(events.length, N);
      assert.deepEqual(
        new Set(events.map((e) => `${e.verdict} ${e.protocol} ${e.address}:${e.port} ${e.line} ${e.comm} ${e.uid}`)),
        new Set([`granted tcp 127.0.0.1:80 1 ${COMM} ${NOBODY}`]),
      );
    } finally {
      follower.kill('SIGTERM');
      await new Promise((resolve) => follower.once('exit', resolve));
    }
    assert.equal((await peek(box)).events.length, 0, 'the follower took every event');
  });

  it('logs only the verdicts asked for', async () => {
    box.writePolicy(`${POLICY}log refusals\n`);
    assert.equal((await box.cli('apply')).code, 0);
    assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: true });
    const client = bindAs(box, NOBODY, [
      ['tcp', '127.0.0.1', 80],
      ['tcp', '127.0.0.1', 90],
    ]);
    const mine = (await peek(box)).events.filter((e) => e.pid === client.pid);
    assert.deepEqual(
      mine.map((e) => e.verdict),
      ['refused'],
    );
  });

  it('goes back to the program without logging instructions when the log statement goes', async () => {
    box.writePolicy(POLICY);
    assert.equal((await box.cli('apply')).code, 0);
    const live = liveXlated(box);
    assert.equal(live.insns, offInsns);
    assert.equal(live.name, bindProgramName(4, bindProgramVariant()));
    const client = bindAs(box, NOBODY, [['tcp', '127.0.0.1', 80]]);
    assert.equal((await peek(box)).events.filter((e) => e.pid === client.pid).length, 0);
  });

  it('names the drop-in of the statement that decided, from the applied policy, in text and JSON', async () => {
    const dir = `${box.policy}.d`;
    const audit = join(dir, 'audit.policy');
    mkdirSync(dir, { mode: 0o755 });
    try {
      // The policy file's 2 statements, then the drop-in: its grant is line 5 through both files, line 3 of its own.
      writeFileSync(audit, `# the audit role\nlog all\ngrant 83 user ${NOBODY}\n`, { mode: 0o644 });
      const r = await box.cli('apply');
      assert.equal(r.code, 0, r.stderr);
      // An edit not applied yet moves no line of what is live: the events still name the applied text's.
      writeFileSync(audit, `# the audit role\n# (edited, not applied)\nlog all\ngrant 83 user ${NOBODY}\n`, { mode: 0o644 });
      const client = bindAs(box, NOBODY, [
        ['tcp', '127.0.0.1', 83],
        ['tcp', '127.0.0.1', 90],
      ]);
      const mine = (await peek(box)).events.filter((e) => e.pid === client.pid);
      assert.deepEqual(
        mine.map((e) => `${e.verdict} ${e.port} ${e.file ?? '(no file)'}:${e.line}`),
        [`granted 83 ${audit}:3`, `refused 90 ${box.policy}:2`],
      );
      const text = await box.cli('log');
      assert.equal(text.code, 0, text.stderr);
      const lines = text.stdout.split('\n').filter((l) => l.includes(` pid ${client.pid} `));
      assert.equal(lines.length, 2, text.stdout);
      assert.match(lines[0] ?? '', / granted tcp 127\.0\.0\.1:83 .* cgroup \d+ policy\.d\/audit\.policy:3$/);
      assert.match(lines[1] ?? '', / refused tcp 127\.0\.0\.1:90 .* cgroup \d+ line 2$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      box.writePolicy(POLICY);
      assert.equal((await box.cli('apply')).code, 0);
    }
  });

  it('turns the trail on and off with `log enable` and `log disable`, and a bad target changes nothing live', async () => {
    box.writePolicy(POLICY);
    assert.equal((await box.cli('apply')).code, 0);
    const on = await box.cli('log', 'enable', 'refusals');
    assert.equal(on.code, 0, on.stderr);
    assert.match(on.stderr, /lowport: policy: added 'log refusals'/);
    assert.match(on.stdout, /: 2 rules, live \(\d+ map entries\)/);
    assert.equal(box.readPolicy(), `${POLICY}log refusals\n`);
    assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: true });
    const logging = liveXlated(box);
    const first = bindAs(box, NOBODY, [
      ['tcp', '127.0.0.1', 80],
      ['tcp', '127.0.0.1', 90],
    ]);
    assert.deepEqual(
      (await peek(box)).events.filter((e) => e.pid === first.pid).map((e) => `${e.verdict} ${e.port} ${e.file ?? ''}:${e.line}`),
      [`refused 90 ${box.policy}:2`],
    );

    const dir = `${box.policy}.d`;
    mkdirSync(dir, { mode: 0o755 });
    try {
      // A drop-in with a syntax error: the edit of it is refused, and nothing live or on disk moves.
      const bad = join(dir, 'bad.policy');
      writeFileSync(bad, `grant 84 usr ${NOBODY}\n`, { mode: 0o644 });
      const refused = await box.cli('log', 'enable', 'all', '--file', 'bad');
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /bad\.policy:1:/);
      assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: true });
      assert.deepEqual(liveXlated(box), logging);
      assert.equal(box.readPolicy(), `${POLICY}log refusals\n`);
      rmSync(bad);
      // The statement is the policy file's: enabling in a drop-in is refused, naming it and the command for it.
      const clash = await box.cli('log', 'enable', '--file', 'audit');
      assert.equal(clash.code, 1, clash.stderr);
      assert.match(clash.stderr, /in another file of the policy: policy:3 \('log refusals'\); nothing was changed/);
      assert.match(clash.stderr, /`lowport log enable all --policy /);
      assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const off = await box.cli('log', 'disable');
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stderr, /lowport: policy: removed line 3: log refusals/);
    assert.equal(box.readPolicy(), POLICY);
    assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: false });
    assert.equal(liveXlated(box).insns, offInsns);
    const second = bindAs(box, NOBODY, [['tcp', '127.0.0.1', 90]]);
    assert.equal((await peek(box)).events.filter((e) => e.pid === second.pid).length, 0, 'no event once disabled');
    const again = await box.cli('log', 'disable');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /the audit trail is already off/);
    assert.equal(again.stdout, '');
  });

  it('disables the statement of a drop-in, saying which file it edited', async () => {
    const dir = `${box.policy}.d`;
    mkdirSync(dir, { mode: 0o755 });
    try {
      const on = await box.cli('log', 'enable', 'grants', '--file', 'audit');
      assert.equal(on.code, 0, on.stderr);
      assert.match(on.stdout, /policy\.d\/audit\.policy: 2 rules in the policy and its drop-ins, live/);
      assert.deepEqual(liveLogging(box.pinDir), { grants: true, refusals: false });
      const off = await box.cli('log', 'disable');
      assert.equal(off.code, 0, off.stderr);
      assert.match(off.stderr, /lowport: policy\.d\/audit\.policy: removed line \d+: log grants/);
      assert.deepEqual(liveLogging(box.pinDir), { grants: false, refusals: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
      box.writePolicy(POLICY);
      assert.equal((await box.cli('apply')).code, 0);
    }
  });
});
