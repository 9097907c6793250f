/**
 * Kernel tests (root): `lowport doctor` run as uid 65534 (no capabilities) in
 * the sandbox's cgroup and a private network namespace, on real states of the
 * machine, asserting what it finds and what it recommends.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, lchownSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport } from '../../src/doctor/doctor.js';
import { kernelSkipReason, missingTools, NOBODY, PackageCopy, Sandbox, type ClientOptions } from './sandbox.js';

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

  /** Runs doctor --json as the client; `before` is shell run first in the same namespace (e.g. a server holding a port). */
  function doctor(args: string[], client: ClientOptions = {}, before = ''): { code: number | null; report: DoctorReport; stderr: string } {
    const script = `${before}\n"$@"; code=$?; [ -n "$holder" ] && kill $holder; exit $code`;
    const {
      command,
      args: argv,
      env,
    } = box.clientCommand(client, ['sh', '-c', script, 'sh', process.execPath, pkg.cli, 'doctor', '--json', ...box.args, ...args]);
    const r = spawnSync(command, argv, { encoding: 'utf8', env, timeout: 30_000 });
    assert.ok(r.stdout.startsWith('{'), `doctor printed no report: ${r.stdout}${r.stderr}`);
    return { code: r.status, report: JSON.parse(r.stdout) as DoctorReport, stderr: r.stderr };
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

  it('with the port reserved for someone else: EPERM, names the reservation, recommends unreserve', async () => {
    assert.equal((await box.cli('reserve', '90', '--user', 'daemon')).code, 0);
    const { code, report } = doctor(['--port', '90']);
    assert.equal(code, 1);
    assert.equal(report.ports[0]?.error.tcp4, 'EPERM');
    const check = report.checks.find((c) => c.id === 'policy-90');
    assert.equal(check?.status, 'fail');
    assert.match(check?.detail ?? '', /reserved for user daemon/);
    assert.equal(report.recommendation.method, 'unreserve');
    assert.match(report.recommendation.command, /unreserve 90/);
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
});
