/**
 * Kernel tests (root): `lowport doctor` run as uid 65534 (no capabilities) in
 * the sandbox's cgroup and a private network namespace, on real states of the
 * machine, asserting what it finds and what it recommends.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, lchownSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { probeCoarseTime, probeRingbuf, probeTaskBtf } from '../../src/bpf/probes.js';
import type { DoctorReport } from '../../src/doctor/doctor.js';
import { binds, kernelSkipReason, missingTools, NOBODY, PackageCopy, reservedErrno, Sandbox, type ClientOptions } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', sysctl: 'procps' });

describe('lowport doctor on real states', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('doctor');
    pkg = new PackageCopy();
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /**
   * Runs doctor --json as the client; `before` is shell run first in the same namespace (e.g. a server holding a port);
   * `group`: a group file bound over /etc/group (in a private mount namespace) for doctor to read.
   */
  function doctor(
    args: string[],
    client: ClientOptions = {},
    before = '',
    group?: string,
  ): { code: number | null; report: DoctorReport; stderr: string } {
    const script = `${before}\n"$@"; code=$?; [ -n "$holder" ] && kill $holder; exit $code`;
    const {
      command,
      args: argv,
      env,
    } = box.clientCommand(client, ['sh', '-c', script, 'sh', process.execPath, pkg.cli, 'doctor', '--json', ...box.args, ...args]);
    const [cmd, cmdArgs] = group === undefined ? [command, argv] : withGroupFile(group, [command, ...argv]);
    const r = spawnSync(cmd, cmdArgs, { encoding: 'utf8', env, timeout: 30_000 });
    assert.ok(r.stdout.startsWith('{'), `doctor printed no report: ${r.stdout}${r.stderr}`);
    return { code: r.status, report: JSON.parse(r.stdout) as DoctorReport, stderr: r.stderr };
  }

  /** argv that runs `argv` with `group` bound over /etc/group, in a private mount namespace: groups that exist only there. */
  function withGroupFile(group: string, argv: string[]): [string, string[]] {
    return ['unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /etc/group && exec "$@"', group, ...argv]];
  }

  it('with no grant: finds EACCES on every protocol and family, exits 1, and recommends a lowport grant', () => {
    const { code, report } = doctor(['--port', '80', '--port', '443']);
    assert.equal(code, 1);
    assert.equal(report.user.uid, NOBODY);
    for (const p of report.ports) {
      assert.deepEqual(p.canBind, { tcp4: false, tcp6: false, udp4: false, udp6: false });
      assert.deepEqual(p.error, { tcp4: 'EACCES', tcp6: 'EACCES', udp4: 'EACCES', udp6: 'EACCES' });
    }
    assert.equal(report.recommendation.method, 'lowport-grant');
    assert.match(report.recommendation.command, /^sudo .*grant 80,443 --user nobody$/);
    assert.ok(report.alternatives.some((a) => a.method === 'sysctl'));
    assert.equal(report.checks.find((c) => c.id === 'kernel')?.status, 'ok');
  });

  it('with a grant: every bind works, exit 0, nothing to do, and the policy line is named', async () => {
    assert.equal((await box.cli('grant', '80', '--user', 'nobody')).code, 0);
    const { code, report } = doctor(['--port', '80']);
    assert.equal(code, 0);
    assert.deepEqual(report.ports[0]?.canBind, { tcp4: true, tcp6: true, udp4: true, udp6: true });
    assert.equal(report.recommendation.method, 'none');
    assert.match(report.checks.find((c) => c.id === 'policy-80')?.detail ?? '', /gives port 80 to nobody \(line \d+\)/);
  });

  it('with the port reserved for someone else and no socket on it: the reservation, not a port in use, whatever its errno', async () => {
    assert.equal((await box.cli('reserve', '90', '--user', 'daemon')).code, 0);
    const { code, report } = doctor(['--port', '90']);
    assert.equal(code, 1);
    // EADDRINUSE where the hook sets its errno (Linux 6.1), else EPERM; the same on every protocol and family.
    const errno = reservedErrno();
    assert.deepEqual(report.ports[0]?.error, { tcp4: errno, tcp6: errno, udp4: errno, udp6: errno });
    assert.deepEqual(report.ports[0]?.heldBy, []);
    const check = report.checks.find((c) => c.id === 'policy-90');
    assert.equal(check?.status, 'fail');
    assert.match(check?.detail ?? '', /reserved for user daemon \(line \d+ of .*\): nobody gets /);
    if (errno === 'EADDRINUSE')
      assert.match(check?.detail ?? '', /gets EADDRINUSE: the reservation's refusal.*; no socket holds port 90 here$/);
    else assert.match(check?.detail ?? '', /gets EPERM$/);
    assert.equal(report.recommendation.method, 'unreserve');
    assert.match(report.recommendation.command, /unreserve 90/);
    assert.match(report.recommendation.why, new RegExp(`reserved for user daemon .*everyone else gets ${errno}`));
    assert.ok(![report.recommendation, ...report.alternatives].some((a) => a.method === 'free-port'), JSON.stringify(report.alternatives));
    // As root, doctor names the errno this kernel gives, from the probe (its bind test runs outside the sandbox's cgroup).
    const asRoot = JSON.parse((await box.cli('doctor', '--json', '--port', '90', '--user', 'nobody')).stdout) as DoctorReport;
    const probe = asRoot.checks.find((c) => c.id === 'probe:set-retval');
    assert.equal(probe?.status, errno === 'EADDRINUSE' ? 'ok' : 'info');
    assert.match(probe?.detail ?? '', new RegExp(`bpf_set_retval: .*a reserved port refuses others with ${errno}`));
  });

  it('shows the ring-buffer probe (the audit trail, for `log` statements) as root, and the version’s verdict without root', async () => {
    // As root: the kernel is asked, and doctor shows its answer as the probe module gives it.
    const asRoot = JSON.parse((await box.cli('doctor', '--json', '--port', '80', '--user', 'nobody')).stdout) as DoctorReport;
    const probe = asRoot.checks.find((c) => c.id === 'probe:ringbuf');
    const works = probeRingbuf().ok;
    assert.equal(probe?.status, works ? 'ok' : 'info', JSON.stringify(asRoot.checks));
    assert.match(probe?.detail ?? '', /^create a BPF_MAP_TYPE_RINGBUF and load a bind4 program .*: (works|E[A-Z]+)/);
    if (works)
      assert.match(
        probe?.detail ?? '',
        /: works: a 'log grants', 'log refusals' or 'log all' statement in the policy can record .*\(the audit trail, `lowport log`\)$/,
      );
    else
      assert.match(
        probe?.detail ?? '',
        /no audit trail: .*remove the 'log' statement, or use a kernel with BPF ring buffers \(Linux 5\.8 or later\)$/,
      );
    // Where the ring works, the clock its events read: the probe module's answer.
    const clock = asRoot.checks.find((c) => c.id === 'probe:coarse-time');
    if (works) {
      assert.equal(clock?.status, probeCoarseTime().ok ? 'ok' : 'info', JSON.stringify(asRoot.checks));
      assert.match(
        clock?.detail ?? '',
        /^load a bind4 program that calls bpf_ktime_get_coarse_ns: (works|E[A-Z]+): the audit trail's events /,
      );
    } else assert.equal(clock, undefined, 'the clock is not shown without the ring');
    // And how the events read the task's pid, comm and cgroup id: in place (BTF) or through the helpers.
    const task = asRoot.checks.find((c) => c.id === 'probe:task-btf');
    if (works) {
      const inPlace = probeTaskBtf().result.ok;
      assert.equal(task?.status, inPlace ? 'ok' : 'info', JSON.stringify(asRoot.checks));
      assert.match(
        task?.detail ?? '',
        inPlace
          ? /^read the task's pid, comm and cgroup id through bpf_get_current_task_btf, .*: works: the audit trail's events read .* in place/
          : /^read the task's pid, comm and cgroup id through bpf_get_current_task_btf, .*: (E[A-Z]+|not tried, .*): the audit trail's events call a helper/,
      );
    } else assert.equal(task, undefined, 'the task probe is not shown without the ring');
    // The text output has it on a line of its own, as the other probes.
    const text = (await box.cli('doctor', '--port', '80', '--user', 'nobody')).stdout;
    assert.match(text, /^[✓–] create a BPF_MAP_TYPE_RINGBUF .*(audit trail|'log')/m);
    // Without root: the kernel version stands in, said as such.
    const { report } = doctor(['--port', '80']);
    const trail = report.checks.find((c) => c.id === 'audit-trail');
    assert.equal(trail?.status, 'info');
    assert.equal(
      report.checks.find((c) => c.id === 'probe:ringbuf'),
      undefined,
      'without root the probe cannot run',
    );
    const [major = 0, minor = 0] = release().split('.').map(Number);
    assert.match(
      trail?.detail ?? '',
      major > 5 || (major === 5 && minor >= 8)
        ? /^a 'log grants', .* can record .*\(5\.8\+; by version alone/
        : /^no audit trail: .*\(5\.8\+; by version alone/,
    );
  });

  it('with a reservation doctor cannot read (a 0600 file): an EADDRINUSE no socket explains is put down to a bind hook', (t) => {
    if (reservedErrno() !== 'EADDRINUSE') return t.skip('this kernel refuses reserved ports with EPERM');
    const text = box.readPolicy();
    assert.match(text, /^reserve 90 user daemon$/m);
    chmodSync(box.policy, 0o600);
    try {
      const { code, report } = doctor(['--port', '90']);
      assert.equal(code, 1);
      assert.equal(report.ports[0]?.error.tcp4, 'EADDRINUSE');
      assert.equal(report.checks.find((c) => c.id === 'policy')?.status, 'fail');
      const unheld = report.checks.find((c) => c.id === 'unheld-90');
      assert.equal(unheld?.status, 'fail', JSON.stringify(report.checks));
      assert.match(
        unheld?.detail ?? '',
        /^port 90: EADDRINUSE on TCP 0\.0\.0\.0, .*but no socket in this network namespace holds it: a bind hook refused it \(a reservation/,
      );
    } finally {
      chmodSync(box.policy, 0o644);
    }
  });

  it('with the port in use: tells EADDRINUSE from EACCES and names the process that holds it', () => {
    const holder = `${process.execPath} -e "require('net').createServer().listen(80, '0.0.0.0'); setTimeout(() => {}, 20000)" & holder=$!; sleep 0.7`;
    const { code, report } = doctor(['--port', '80'], {}, holder);
    assert.equal(code, 1);
    const port = report.ports[0];
    assert.equal(port?.error.tcp4, 'EADDRINUSE');
    assert.equal(port?.canBind.udp4, true);
    const held = port?.heldBy.find((h) => h.protocol === 'tcp');
    assert.equal(held?.uid, NOBODY);
    assert.equal(held?.command, 'node');
    assert.equal(report.recommendation.method, 'free-port');
    assert.match(report.recommendation.command, new RegExp(`^kill ${held?.pid ?? 'x'}`));
    // A socket, not a reservation: nothing says reserved (port 90 is, in this sandbox; 80 is not).
    assert.ok(
      !report.checks.some((c) => (c.id === 'policy-80' && /reserved/.test(c.detail)) || c.id === 'unheld-80'),
      JSON.stringify(report.checks),
    );
  });

  it('with ip_unprivileged_port_start lowered in its network namespace: binds work, and the sysctl is reported', () => {
    const { code, report } = doctor(['--port', '85'], { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '80' } });
    assert.equal(code, 0);
    assert.match(report.checks.find((c) => c.id === 'sysctl')?.detail ?? '', /ip_unprivileged_port_start = 80 .*network namespace/);
    // The same port is refused in a namespace with the default.
    assert.equal(doctor(['--port', '85']).code, 1);
  });

  it(
    'with setcap on a script: says it does nothing there and what it would do on the interpreter',
    { skip: missingTools({ setcap: 'libcap2-bin' }) },
    () => {
      const script = join(box.dir, 'server.py');
      writeFileSync(script, '#!/usr/bin/env python3\nimport http.server\n', { mode: 0o755 });
      const set = spawnSync('setcap', ['cap_net_bind_service=+ep', script], { encoding: 'utf8' });
      assert.equal(set.status, 0, set.stderr);
      const { code, report } = doctor(['--port', '81', '--program', script]);
      assert.equal(code, 1);
      assert.match(report.checks.find((c) => c.id === 'program')?.detail ?? '', /has file capability cap_net_bind_service\+ep/);
      const onScript = report.checks.find((c) => c.id === 'program-script');
      assert.equal(onScript?.status, 'fail');
      assert.match(onScript?.detail ?? '', /script run by \/usr\/bin\/python3.*setcap on it does nothing.*every python3 script/);
      // The script's capability did not help: the bind is still refused.
      assert.equal(report.ports[0]?.error.tcp4, 'EACCES');
      assert.ok(!report.alternatives.some((a) => a.method === 'setcap') && report.recommendation.method !== 'setcap');
    },
  );

  it('shows a hostile process name escaped, and keeps it out of the recommended command (human and JSON)', async () => {
    assert.equal((await box.cli('grant', '86', '--user', 'nobody')).code, 0);
    // The holder names itself (prctl PR_SET_NAME, as any process may) with a screen clear and a line that looks like a command.
    const comm = '\x1b[2J\nsudo id';
    const script = join(box.dir, 'holder.py');
    writeFileSync(
      script,
      'import ctypes, socket, time\n' +
        'ctypes.CDLL(None).prctl(15, b"\\x1b[2J\\nsudo id", 0, 0, 0)\n' +
        's = socket.socket()\ns.bind(("0.0.0.0", 86))\ns.listen()\ntime.sleep(20)\n',
      { mode: 0o644 },
    );
    const holder = `python3 ${script} & holder=$!; sleep 0.7`;
    const run = (json: boolean) => {
      const sh = `${holder}\n"$@"; code=$?; kill $holder; exit $code`;
      const { command, args, env } = box.clientCommand({}, [
        'sh',
        '-c',
        sh,
        'sh',
        process.execPath,
        pkg.cli,
        'doctor',
        '--port',
        '86',
        ...(json ? ['--json'] : []),
        ...box.args,
      ]);
      return spawnSync(command, args, { encoding: 'utf8', env, timeout: 30_000 });
    };
    const j = run(true);
    const report = JSON.parse(j.stdout) as DoctorReport;
    const held = report.ports[0]?.heldBy.find((h) => h.protocol === 'tcp');
    assert.equal(held?.command, comm);
    const pid = held?.pid ?? -1;
    assert.equal(report.recommendation.method, 'free-port');
    assert.equal(report.recommendation.command, `kill ${pid}   # or stop the service that runs pid ${pid}`);
    // eslint-disable-next-line no-control-regex -- the test is about control characters
    assert.doesNotMatch(j.stdout, /\x1b/);

    const h = run(false);
    assert.equal(h.status, 1, h.stderr);
    // eslint-disable-next-line no-control-regex -- the test is about control characters
    assert.doesNotMatch(h.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    // Another run, another holder: its own pid.
    const shown = /by \\x1b\[2J\\nsudo id \(pid (\d+), uid 65534\)/.exec(h.stdout);
    assert.ok(shown !== null, h.stdout);
    assert.match(h.stdout, new RegExp(`\n {4}kill ${shown[1] ?? 'x'} {3}# or stop the service that runs pid ${shown[1] ?? 'x'}\n`));
    assert.doesNotMatch(h.stdout, /^sudo id/m);
  });

  it('prints a human report with marks and the recommended command', () => {
    const { command, args, env } = box.clientCommand({}, [process.execPath, pkg.cli, 'doctor', '--port', '82', ...box.args]);
    const r = spawnSync(command, args, { encoding: 'utf8', env });
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^Can nobody \(uid 65534\) bind 82\?/);
    assert.match(r.stdout, /✗ port 82: TCP\/IPv4 EACCES/);
    assert.match(r.stdout, /Recommended \(lowport-grant\)/);
    assert.match(r.stdout, /\n {4}sudo .* grant 82 --user nobody\n/);
  });

  it("run by root, never opens what a user's --program symlink points at when it is not a regular file (a FIFO, a device)", async () => {
    // A FIFO with a writer blocked in open(2): any open for reading, even O_NONBLOCK, would let the writer through.
    const fifo = join(box.dir, 'program-fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    chownSync(fifo, NOBODY, NOBODY);
    const toFifo = join(box.dir, 'program-link');
    symlinkSync(fifo, toFifo);
    lchownSync(toFifo, NOBODY, NOBODY);
    const toDevice = join(box.dir, 'device-link');
    symlinkSync('/dev/ptmx', toDevice);
    lchownSync(toDevice, NOBODY, NOBODY);
    const writer = spawn('sh', ['-c', 'exec 3>"$1"; echo opened', 'sh', fifo], { stdio: ['ignore', 'pipe', 'ignore'] });
    let wrote = '';
    writer.stdout.on('data', (d: Buffer) => (wrote += d.toString()));
    try {
      for (const [link, kind] of [
        [toFifo, /is a FIFO/],
        [toDevice, /is a device/],
      ] as const) {
        const r = await box.cli('doctor', '--json', '--port', '87', '--program', link);
        const program = (JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.id === 'program');
        assert.equal(program?.status, 'fail', r.stdout);
        assert.match(program?.detail ?? '', kind);
        assert.match(program?.detail ?? '', /not a regular file: not a program; doctor does not open it/);
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(wrote, '', 'doctor opened the FIFO (its writer got through open)');
    } finally {
      writer.kill('SIGKILL');
    }
  });

  it('a user who joined a group after apply: says the kernel refuses what the file grants, and recommends apply, saying why', () => {
    const before = join(box.dir, 'group-before');
    const after = join(box.dir, 'group-after');
    const machine = readFileSync('/etc/group', 'utf8');
    assert.notEqual(spawnSync('getent', ['group', '39993']).status, 0, 'gid 39993 exists here');
    writeFileSync(before, `${machine}lpjoined:x:39993:\n`, { mode: 0o644 });
    writeFileSync(after, `${machine}lpjoined:x:39993:nobody\n`, { mode: 0o644 });
    box.writePolicy('grant 93 group lpjoined\n');
    const [cmd, args] = withGroupFile(before, [process.execPath, pkg.cli, 'apply', ...box.args]);
    const applied = spawnSync(cmd, args, { encoding: 'utf8' });
    assert.equal(applied.status, 0, applied.stderr);

    // nobody joins lpjoined; doctor run by nobody (who cannot read the live rules).
    const { code, report } = doctor(['--port', '93'], {}, '', after);
    assert.equal(code, 1);
    assert.deepEqual(report.ports[0]?.error, { tcp4: 'EACCES', tcp6: 'EACCES', udp4: 'EACCES', udp6: 'EACCES' });
    const check = report.checks.find((c) => c.id === 'policy-93');
    assert.equal(check?.status, 'fail', check?.detail);
    assert.match(
      check?.detail ?? '',
      /gives port 93 to nobody \(line 1, group lpjoined: nobody is a listed member\), but the kernel refuses it \(EACCES on every protocol and address\): group membership is expanded when the policy is applied, so the kernel has the members of group lpjoined as of the last `lowport apply`/,
    );
    assert.equal(report.recommendation.method, 'lowport-apply');
    assert.match(report.recommendation.command, /^sudo \S+( \S+)? apply$/);
    assert.match(report.recommendation.why, /group membership is expanded when the policy is applied/);
    assert.ok(!report.alternatives.some((a) => a.method === 'lowport-apply'));

    // Root sees the live rules: nobody became a member after the last apply.
    const [rcmd, rargs] = withGroupFile(after, [
      process.execPath,
      pkg.cli,
      'doctor',
      '--json',
      '--port',
      '93',
      '--user',
      'nobody',
      ...box.args,
    ]);
    const asRoot = JSON.parse(spawnSync(rcmd, rargs, { encoding: 'utf8' }).stdout) as DoctorReport;
    assert.match(asRoot.checks.find((c) => c.id === 'policy-93')?.detail ?? '', /nobody became a member after the last apply/);
    assert.equal(asRoot.recommendation.method, 'lowport-apply');

    // The advice works: after apply, nobody binds 93.
    const [acmd, aargs] = withGroupFile(after, [process.execPath, pkg.cli, 'apply', ...box.args]);
    assert.equal(spawnSync(acmd, aargs, { encoding: 'utf8' }).status, 0);
    assert.equal(doctor(['--port', '93'], {}, '', after).code, 0);
  });

  it('a grant for loopback addresses only: shows which addresses bind and which are refused', () => {
    box.writePolicy('grant 94 user nobody addr 127.0.0.1,::1\n');
    const [cmd, args] = [process.execPath, [pkg.cli, 'apply', ...box.args]] as const;
    assert.equal(spawnSync(cmd, args, { encoding: 'utf8' }).status, 0);
    const { command, args: argv, env } = box.clientCommand({}, [process.execPath, pkg.cli, 'doctor', '--port', '94', ...box.args]);
    const r = spawnSync(command, argv, { encoding: 'utf8', env });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stdout, /\n✗ port 94: binds on 127\.0\.0\.1, ::1 \(TCP, UDP\); EACCES on 0\.0\.0\.0, :: \(TCP, UDP\)\n/);
    assert.match(r.stdout, /✓ .* gives port 94 to nobody \(line 1: on 127\.0\.0\.1, ::1 only\)/);
    assert.match(
      r.stdout,
      /Recommended \(lowport-grant\): .*Port 94 already binds on 127\.0\.0\.1, ::1 \(the grant there is for those addresses only\)/,
    );
    const { report } = doctor(['--port', '94']);
    assert.deepEqual(
      report.ports[0]?.attempts.map((a) => `${a.protocol} ${a.address} ${a.error ?? 'ok'}`),
      [
        'tcp 0.0.0.0 EACCES',
        'tcp 127.0.0.1 ok',
        'tcp :: EACCES',
        'tcp ::1 ok',
        'udp 0.0.0.0 EACCES',
        'udp 127.0.0.1 ok',
        'udp :: EACCES',
        'udp ::1 ok',
      ],
    );
    // The file grants none of the refused binds: not a case for apply.
    assert.notEqual(report.recommendation.method, 'lowport-apply');
  });

  it('--program podman (or rootlesskit): no setcap on it; recommends the user’s grant, which covers rootless containers’ published ports', () => {
    for (const name of ['podman', 'rootlesskit']) {
      const tool = join(box.dir, name);
      copyFileSync('/bin/true', tool);
      chmodSync(tool, 0o755);
      const { code, report } = doctor(['--port', '95', '--program', tool]);
      assert.equal(code, 1);
      assert.ok(![report.recommendation, ...report.alternatives].some((a) => a.method === 'setcap'), JSON.stringify(report.alternatives));
      assert.equal(report.recommendation.method, 'lowport-grant');
      assert.match(report.recommendation.command, /grant 95 --user nobody$/);
      assert.match(
        report.recommendation.why,
        new RegExp(`works for rootless containers' published ports too \\(${name} run -p 95:8080\\)`),
      );
      assert.match(
        report.checks.find((c) => c.id === 'program-container')?.detail ?? '',
        new RegExp(`bound by a helper running as nobody .* not by ${name} itself, so setcap on ${name} cannot help`),
      );
    }
  });

  it('a JVM under a grant of 0.0.0.0 only: explains that it binds ::, and recommends granting :: (a real JVM shows the advice works)', async () => {
    box.writePolicy('grant 96/tcp user nobody addr 0.0.0.0\n');
    assert.equal((await box.cli('apply')).code, 0);
    // A file named java: what CI's VM has; the real one where installed.
    const fake = join(box.dir, 'java');
    copyFileSync('/bin/true', fake);
    chmodSync(fake, 0o755);
    const { report } = doctor(['--port', '96', '--program', fake]);
    const jvm = report.checks.find((c) => c.id === 'program-jvm-96');
    assert.equal(jvm?.status, 'fail');
    assert.match(
      jvm?.detail ?? '',
      /is a JVM: told to listen on 0\.0\.0\.0 it binds `::` .*line 1 of .* grants port 96 on 0\.0\.0\.0 and not on `::`.*-Djava\.net\.preferIPv4Stack=true/,
    );
    assert.equal(report.recommendation.method, 'lowport-grant');
    assert.match(report.recommendation.command, /grant 96\/tcp --user nobody --addr ::$/);
    // Not a JVM: no such advice.
    const plain = join(box.dir, 'server');
    copyFileSync('/bin/true', plain);
    chmodSync(plain, 0o755);
    assert.ok(!doctor(['--port', '96', '--program', plain]).report.checks.some((c) => c.id.startsWith('program-jvm')));

    const java = spawnSync('sh', ['-c', 'command -v java'], { encoding: 'utf8' }).stdout.trim();
    if (java === '') return;
    assert.ok(doctor(['--port', '96', '--program', java]).report.checks.some((c) => c.id === 'program-jvm-96'));
    const source = join(box.dir, 'Bind.java');
    writeFileSync(
      source,
      'public class Bind { public static void main(String[] a) throws Exception {\n' +
        '  try (var s = new java.net.ServerSocket()) { s.bind(new java.net.InetSocketAddress("0.0.0.0", 96)); System.out.println("bound " + s.getLocalSocketAddress()); }\n' +
        '  catch (java.net.BindException e) { System.out.println("refused " + e.getMessage()); } } }\n',
      { mode: 0o644 },
    );
    const runJava = () => {
      const { command, args, env } = box.clientCommand({}, [java, '-Xshare:off', source]);
      return spawnSync(command, args, { encoding: 'utf8', env: { ...env, HOME: box.dir }, timeout: 120_000 }).stdout.trim();
    };
    assert.match(runJava(), /^refused /);
    assert.equal((await box.cli('grant', '96/tcp', '--user', 'nobody', '--addr', '::')).code, 0);
    assert.match(runJava(), /^bound /);
    assert.ok(!doctor(['--port', '96', '--program', java]).report.checks.some((c) => c.id === 'program-jvm-96'));
  });

  it('a group added only at run time (a supplementary group the user database does not give): explains that the hook cannot see it', () => {
    assert.notEqual(spawnSync('getent', ['group', '39994']).status, 0, 'gid 39994 exists here');
    box.writePolicy('grant 97 group 39994\n');
    const [cmd, args] = [process.execPath, [pkg.cli, 'apply', ...box.args]] as const;
    assert.equal(spawnSync(cmd, args, { encoding: 'utf8' }).status, 0);
    // As systemd's SupplementaryGroups= or setgroups(2) would: 39994 among the groups, not the real gid.
    assert.deepEqual(box.probe({ groups: [39994] }, binds(97, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    const { code, report } = doctor(['--port', '97'], { groups: [39994] });
    assert.equal(code, 1);
    const check = report.checks.find((c) => c.id === 'runtime-groups-97');
    assert.equal(check?.status, 'fail');
    assert.match(
      check?.detail ?? '',
      /this process has group 39994 \(gid 39994\) as a supplementary group, but the user database does not make nobody a member .*the bind hook sees only the uid and the real gid, so a group added at run time \(setgroups, systemd SupplementaryGroups=\) does not count for line 1/,
    );
    // Without the supplementary group, nothing to explain.
    assert.ok(!doctor(['--port', '97']).report.checks.some((c) => c.id.startsWith('runtime-groups')));
    // With it as the real gid, the hook sees it: the bind works.
    assert.deepEqual(box.probe({ gid: 39994 }, binds(97, ['127.0.0.1'], ['tcp'])), ['ok']);
  });
});
