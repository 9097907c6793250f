/**
 * Kernel tests (root): what lowport starts as another user inherits nothing
 * of root's (issue 9, findings 2, 4, 5, 6, 7): not the admin's terminal (a pty
 * of its own, hung up when the command ends; what it left is stopped, as
 * systemd stops a service), not root's session keyring, not the fds lowport's caller
 * left open, not root's environment (doctor's probe), and never a wrong uid.
 * The admin's terminal is played by test/kernel/pty-driver.py.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { kernelSkipReason, PackageCopy, rootTempDir, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', pgrep: 'procps' });
// Sleeps this test process alone starts (seconds.pid, which sleep reads as a number): pgrep for them finds no other run's.
const OWN_SLEEP = [`317.${process.pid}`, `318.${process.pid}`];
const DRIVER = fileURLToPath(new URL('../../../test/kernel/pty-driver.py', import.meta.url));

interface Driven {
  output: string;
  status: number | null;
  tty: string;
  termiosRestored: boolean;
  failed: string | null;
}

describe('lowport run, forward and doctor start programs with nothing of root’s', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  /** A directory every user may write: where the commands, as nobody, leave their findings. */
  let shared: string;
  before(() => {
    box = new Sandbox('run-iso');
    pkg = new PackageCopy();
    shared = mkdtempSync(join(tmpdir(), 'lowport-run-iso-'));
    chmodSync(shared, 0o777);
  });
  after(async () => {
    // What a failed test left runs in a lowport-run cgroup below the sandbox's, which dispose() kills:
    // never a kill by name across the machine, which would reach other people's processes.
    await box?.dispose();
    pkg?.dispose();
    if (shared !== undefined) rmSync(shared, { recursive: true, force: true });
  });

  /** Runs a bash script as root in a fresh network namespace; $LOWPORT is the CLI, $G the sandbox's options, $D the shared directory. */
  function inNetns(script: string, timeout = 300_000): { status: number | null; out: string } {
    const file = join(box.dir, 'script.sh');
    writeFileSync(
      file,
      `set -u\nip link set lo up\nLOWPORT="${process.execPath} ${pkg.cli}"\nG="${box.args.join(' ')}"\nD="${shared}"\n${script}\n`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  /** `lowport run ARGS` on a terminal: the pty driver types and resizes as `steps` say. */
  function onTerminal(args: string[], steps: object[], size: [number, number] = [24, 80]): Driven {
    const spec = { argv: [process.execPath, pkg.cli, 'run', ...box.args, ...args], steps, rows: size[0], cols: size[1], timeout: 240 };
    const r = spawnSync('/usr/bin/python3', [DRIVER, JSON.stringify(spec)], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    assert.equal(r.status, 0, `the pty driver failed: ${r.stdout}${r.stderr}`);
    const driven = JSON.parse(r.stdout) as Driven;
    assert.equal(driven.failed, null, JSON.stringify(driven));
    return driven;
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*?)\\r?$`, 'm').exec(out)?.[1];
  }

  async function waitForFile(path: string, ms: number): Promise<string | undefined> {
    for (let t = 0; t < ms; t += 100) {
      if (existsSync(path)) {
        const text = readFileSync(path, 'utf8');
        if (text.endsWith('\n')) return text.trim();
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  }

  function runCgroups(): string[] {
    return readdirSync(box.cgroup).filter((n) => n.startsWith('lowport-run-'));
  }

  it('runs the command on a pty of its own: another tty, window size and its changes, exit status, the admin’s terminal mode restored, and nothing left behind reads what the admin types next', async () => {
    const left = join(shared, 'left');
    const script = [
      'echo CMDTTY=$(tty)',
      'echo SIZE=$(stty size)',
      // Left behind, deaf to SIGHUP and to the SIGTERM that stops what a command leaves (both ignored before the fork, so from its
      // first instant): it reads the terminal after the command ended, before the stop timeout's SIGKILL.
      "trap '' HUP TERM",
      `(sleep 1; if read -r x; then echo "LEFT=read:$x"; else echo "LEFT=eof"; fi > ${left}) &`,
      'read -r line; echo GOT=$line',
      'echo SIZE2=$(stty size)',
      'exit 3',
    ].join('\n');
    const d = onTerminal(
      ['--caps', '--user', 'nobody', '--', 'sh', '-c', script],
      [
        { wait: '^SIZE=' },
        { resize: [44, 122] },
        { sleep: 0.3 },
        { send: 'hello\r' },
        { wait: '^SIZE2=' },
        { sleep: 0.3 },
        { send: 'secret-typed-later\r' },
        { exit: true },
      ],
      [33, 111],
    );
    const cmdTty = value(d.output, 'CMDTTY');
    assert.match(cmdTty ?? '', /^\/dev\/pts\/\d+$/, d.output);
    assert.notEqual(cmdTty, d.tty, 'the command must not get the admin’s terminal');
    assert.equal(value(d.output, 'SIZE'), '33 111', d.output);
    assert.equal(value(d.output, 'GOT'), 'hello', d.output);
    assert.equal(value(d.output, 'SIZE2'), '44 122', `a window size change must reach the command: ${d.output}`);
    assert.equal(d.status, 3, d.output);
    assert.equal(d.termiosRestored, true, 'lowport must give the terminal its mode back');
    assert.equal(
      await waitForFile(left, 5000),
      'LEFT=eof',
      'a process the command left must not read what the admin typed after the command ended',
    );
    assert.deepEqual(runCgroups(), []);
  });

  it('passes ^C through the pty as SIGINT (exit 130) and restores the terminal', () => {
    const d = onTerminal(
      ['--caps', '--user', 'nobody', '--', 'sh', '-c', 'echo READY; exec sleep 30'],
      [{ wait: '^READY' }, { sleep: 0.3 }, { send: '\u0003' }, { exit: true }],
    );
    assert.equal(d.status, 130, d.output);
    assert.equal(d.termiosRestored, true);
  });

  it('says what the command left running and stops it, as systemd stops a service (--caps, on a terminal)', () => {
    const d = onTerminal(
      ['--caps', '--user', 'nobody', '--', 'sh', '-c', `trap '' HUP; sleep ${OWN_SLEEP[0]} & echo STARTED`],
      [{ wait: 'stopping it' }, { exit: true }],
    );
    assert.match(
      d.output,
      /lowport: the command exited and left 1 process running; stopping it as a service's \(SIGTERM, then SIGKILL after 10 s\)/,
      d.output,
    );
    assert.equal(d.status, 0, `lowport's status is the command's: ${d.output}`);
    assert.equal(spawnSync('pgrep', ['-fx', `sleep ${OWN_SLEEP[0]}`]).status, 1, 'what the command left should have been stopped');
    assert.deepEqual(runCgroups(), []);
  });

  it('tracks --sockets commands in a cgroup too: what the command left gets SIGTERM, and SIGKILL after --stop-timeout', () => {
    const { out } = inNetns(`
      $LOWPORT run --sockets --port 80/tcp --user nobody --stop-timeout 3 $G -- sh -c 'trap "" TERM; (exec sleep ${OWN_SLEEP[1]}) & (exec sleep ${OWN_SLEEP[1]}) & echo STARTED' </dev/null 2>$D/sockets.err &
      lp=$!
      end=$((SECONDS + 120)); until grep -q 'stopping them' $D/sockets.err 2>/dev/null; do [ $SECONDS -lt $end ] || { echo "WAITFOR: no 'stopping them' from lowport within 120 s"; break; }; sleep 0.1; done
      echo "CGROUP=$(cat ${box.cgroup}/lowport-run-*/cgroup.procs | wc -l)"
      wait $lp; echo "STATUS=$?"
      echo "ERR=$(grep -v "^lowport: note: other processes of .* can ptrace" $D/sockets.err | tr '\n' '|')"
      sleep 0.2; echo "LEFT=$(pgrep -fxc 'sleep ${OWN_SLEEP[1]}')"
    `);
    assert.match(
      value(out, 'ERR') ?? '',
      /the command exited and left 2 processes running; stopping them as a service's \(SIGTERM, then SIGKILL after 3 s\)\|lowport: sending SIGKILL to 2 processes of the command still running 3 s after the stop began/,
      out,
    );
    // The sleeps ignore SIGTERM (inherited from the shell's trap): they were still there until SIGKILL.
    assert.equal(value(out, 'CGROUP'), '2', out);
    assert.equal(value(out, 'STATUS'), '0', out);
    assert.equal(value(out, 'LEFT'), '0', out);
    assert.deepEqual(runCgroups(), []);
  });

  it('gives the command a fresh session keyring: a key in root’s session keyring is not the command’s', () => {
    // Python joins a session keyring of the test's own and adds a key to it, then becomes lowport.
    const addKey = `import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
nr = {"x86_64": (250, 248), "aarch64": (219, 217)}[os.uname().machine]
assert libc.syscall(nr[0], 1, None) >= 0, ctypes.get_errno()
assert libc.syscall(nr[1], b"user", b"lowport-test-key", b"root-secret", 11, ctypes.c_long(-3)) >= 0, ctypes.get_errno()
assert b"lowport-test-key" in open("/proc/keys", "rb").read()
os.execvp(sys.argv[1], sys.argv[1:])`;
    writeFileSync(join(box.dir, 'add-key.py'), addKey);
    const { out } = inNetns(`
      /usr/bin/python3 ${box.dir}/add-key.py $LOWPORT run --caps --user nobody $G -- sh -c 'echo "KEYS=$(grep -c lowport-test-key /proc/keys)"' </dev/null
      echo "STATUS=$?"
    `);
    assert.equal(value(out, 'STATUS'), '0', out);
    assert.equal(value(out, 'KEYS'), '0', `the command saw root's key: ${out}`);
  });

  it('says when other processes of the user could ptrace the command and use its grant or sockets (Yama ptrace_scope 0 or absent), and not for --caps', () => {
    const { out } = inNetns(`
      $LOWPORT run --port 80 --user nobody $G -- true </dev/null 2>$D/scope.err; echo "SCOPE=$?"
      $LOWPORT run --sockets --port 80/tcp --user nobody $G -- true </dev/null 2>$D/sockets.err
      $LOWPORT run --caps --user nobody $G -- true </dev/null 2>$D/caps.err
      echo "SCOPE_NOTE=$(grep -c 'can ptrace the command' $D/scope.err)"
      echo "SOCKETS_NOTE=$(grep -c 'can ptrace the command' $D/sockets.err)"
      echo "CAPS_NOTE=$(grep -c 'can ptrace the command' $D/caps.err)"
      rm -f $D/scope.err $D/sockets.err $D/caps.err
    `);
    let scope: string | undefined;
    try {
      scope = readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim();
    } catch {
      scope = undefined;
    }
    const expected = scope === undefined || scope === '0' ? '1' : '0';
    assert.equal(value(out, 'SCOPE'), '0', out);
    assert.equal(value(out, 'SCOPE_NOTE'), expected, out);
    assert.equal(value(out, 'SOCKETS_NOTE'), expected, out);
    assert.equal(value(out, 'CAPS_NOTE'), '0', out);
  });

  it('passes no fd lowport’s caller left open (fd 40 on a root-only file) to the command, in every mode', () => {
    const secret = join(box.dir, 'root-only');
    writeFileSync(secret, 'root-only\n', { mode: 0o600 });
    const check = `sh -c 'if [ -e /proc/self/fd/40 ]; then echo "FD40=$(cat /proc/self/fd/40)"; else echo FD40=none; fi'`;
    const { out } = inNetns(`
      exec 40<${secret}
      echo "CAPS_$($LOWPORT run --caps --user nobody $G -- ${check} </dev/null)"
      echo "SOCKETS_$($LOWPORT run --sockets --port 80/tcp --user nobody $G -- ${check} </dev/null)"
      echo "SCOPE_$($LOWPORT run --port 80 --user nobody $G -- ${check} </dev/null)"
    `);
    for (const mode of ['CAPS', 'SOCKETS', 'SCOPE']) assert.equal(value(out, `${mode}_FD40`), 'none', `${mode}: ${out}`);
  });

  it('starts the command in the caller’s directory only when the user can enter it, else in / (a note, no path); never root’s cwd', () => {
    const top = rootTempDir('lowport-cwd');
    try {
      // As root in top/x/pub, x 0700: nobody cannot reach pub, and must not start there (`cat secret` would read it).
      const { out } = inNetns(`
        mkdir -p ${top}/x/pub ${top}/open; chmod 700 ${top}/x; chmod 755 ${top}/x/pub ${top}/open
        echo root-only > ${top}/x/pub/secret; chmod 644 ${top}/x/pub/secret
        cd ${top}/x/pub && $LOWPORT run --caps --user nobody $G -- sh -c 'echo "HIDDEN_PWD=$(pwd)"; echo "HIDDEN_SECRET=$(cat secret 2>/dev/null || echo none)"' </dev/null 2>$D/cwd.err
        echo "HIDDEN_STATUS=$?"
        cd ${top}/open && $LOWPORT run --caps --user nobody $G -- sh -c 'echo "OPEN_PWD=$(pwd)"' </dev/null 2>>$D/cwd-open.err
      `);
      assert.equal(value(out, 'HIDDEN_STATUS'), '0', out);
      assert.equal(value(out, 'HIDDEN_SECRET'), 'none', `the command read a file in root's directory: ${out}`);
      assert.equal(value(out, 'HIDDEN_PWD'), '/', out);
      const note = readFileSync(join(shared, 'cwd.err'), 'utf8');
      assert.equal(note.match(/cannot enter the current directory; the command starts in \//g)?.length, 1, note);
      assert.ok(!note.includes(top), `the note printed the path: ${note}`);
      assert.equal(value(out, 'OPEN_PWD'), join(top, 'open'), out);
      assert.doesNotMatch(readFileSync(join(shared, 'cwd-open.err'), 'utf8'), /cannot enter/);
    } finally {
      rmSync(top, { recursive: true, force: true });
    }
  });

  it('refuses uids and gids that are not one real non-root id, for run and for the forwarder, before anything starts', () => {
    const { out } = inNetns(`
      for u in 4294967295 4294967296 00 +1 ' 0' -1 1e3; do
        $LOWPORT run --caps --user="$u" $G -- id -u </dev/null 2>>$D/run-ids.err; echo "RUN[$u]=$?"
        $LOWPORT forward serve 95/tcp 7000 --user="$u" </dev/null 2>>$D/ids.err; echo "FWD[$u]=$?"
      done
      echo "ERRS=$(grep -c 'is not a valid uid' $D/ids.err)"
    `);
    for (const u of ['4294967295', '4294967296', '00', '+1', ' 0', '-1', '1e3']) {
      assert.equal(value(out, `RUN\\[${u.replace('+', '\\+')}\\]`), '2', `run --user '${u}': ${out}`);
      assert.equal(value(out, `FWD\\[${u.replace('+', '\\+')}\\]`), '2', `forward --user '${u}': ${out}`);
    }
    assert.equal(value(out, 'ERRS'), '7', readFileSync(join(shared, 'ids.err'), 'utf8'));
  });

  it('refuses to start the command when the privilege drop did not give exactly the ids asked for (a setpriv that drops nothing)', () => {
    const fake = join(box.dir, 'fake-bin');
    spawnSync('mkdir', ['-p', fake]);
    writeFileSync(join(fake, 'setpriv'), '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n', { mode: 0o755 });
    const launchJs = join(pkg.dir, 'dist', 'src', 'os', 'launch.js');
    const script = `import { launch } from ${JSON.stringify(launchJs)};
const c = launch(['sh', '-c', 'echo "RAN_AS=$(id -u)"'], { identity: { uid: 65534, gid: 65534 }, env: {}, stdio: ['ignore', 'inherit', 'inherit'] });
c.on('exit', (code) => console.log('EXIT=' + code));`;
    // In a mount namespace of the test's own, the fake is /usr/bin/setpriv (lowport looks in the system's directories only).
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount --bind "$1" /usr/bin/setpriv && exec "$2" --input-type=module -e "$3"',
        'sh',
        join(fake, 'setpriv'),
        process.execPath,
        script,
      ],
      { encoding: 'utf8', env: { ...process.env, PATH: `${fake}:/usr/sbin:/usr/bin:/sbin:/bin` } },
    );
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(value(out, 'RAN_AS'), undefined, `the command ran: ${out}`);
    assert.equal(value(out, 'EXIT'), '125', out);
    assert.match(out, /lowport: refusing to start sh: it would run with uids 0 0 0 0 and gids 0 0 0 0, not 65534 and 65534/);
    // First on the caller's PATH, the same fake is not used: setpriv comes from the system's directories.
    const viaPath = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${fake}:/usr/sbin:/usr/bin:/sbin:/bin` },
    });
    const pathOut = `${viaPath.stdout}${viaPath.stderr}`;
    assert.equal(value(pathOut, 'RAN_AS'), '65534', pathOut);
    assert.equal(value(pathOut, 'EXIT'), '0', pathOut);
  });

  it('forward serve: the forwarder, as nobody, gets no terminal fd even when lowport runs on one; its output still reaches it', () => {
    const script = [
      'ip link set lo up',
      `${process.execPath} ${pkg.cli} forward serve 95/tcp 7000 --workers 1 --log --user nobody & lp=$!`,
      // The driver types a line once lowport says the forwarder serves: from then on the forwarder has its final fds.
      'read -r go',
      'w=$(pgrep -P $lp)',
      'for fd in 0 1 2; do echo "FD$fd=$(readlink /proc/$w/fd/$fd)"; done',
      'echo "CWD=$(readlink /proc/$w/cwd)"',
      // Another process of the forwarder's user takes its fd 2 (pidfd_getfd, as a ptrace-capable peer may) and writes terminal sequences.
      `setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); fd=l.syscall(438, os.pidfd_open($w), 2, 0); os.write(fd, b'INJECT\\x1b]0;pwned\\x07\\x1b[2J<\\n') if fd >= 0 else print('GETFD_FAILED', ctypes.get_errno())"`,
      'sleep 0.5; kill -TERM $lp; wait $lp; echo "STATUS=$?"',
    ].join('\n');
    const spec = {
      argv: ['unshare', '--net', 'bash', '-c', script],
      steps: [{ wait: 'forwarding tcp port 95' }, { send: 'go\r' }, { wait: '^STATUS=' }, { exit: true }],
      timeout: 240,
    };
    const r = spawnSync('/usr/bin/python3', [DRIVER, JSON.stringify(spec)], {
      cwd: box.dir,
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    const d = JSON.parse(r.stdout) as Driven;
    assert.equal(d.failed, null, d.output);
    assert.equal(value(d.output, 'FD0'), '/dev/null', d.output);
    // Started from a directory its user could enter (the sandbox's), the forwarder still runs in /, as a daemon does.
    assert.equal(value(d.output, 'CWD'), '/', d.output);
    // Node's 'pipe' stdio is a socketpair.
    for (const fd of ['FD1', 'FD2']) assert.match(value(d.output, fd) ?? '', /^(pipe|socket):\[\d+\]$/, `${fd}: ${d.output}`);
    assert.match(d.output, /forwarding tcp port 95/);
    assert.match(d.output, /draining \(SIGTERM\)/, `the forwarder's own log should reach the terminal: ${d.output}`);
    // What the forwarder's user wrote reached the terminal escaped, with no raw escape sequence.
    assert.doesNotMatch(d.output, /GETFD_FAILED/, d.output);
    assert.match(d.output, /INJECT\\x1b\]0;pwned\\x07\\x1b\[2J</, d.output);
    // eslint-disable-next-line no-control-regex -- the test is about control characters
    assert.doesNotMatch(d.output, /\x1b\]0;pwned|\x1b\[2J/, d.output);
    assert.equal(value(d.output, 'STATUS'), '0', d.output);
  });

  it('doctor --user: the probe gets the user’s minimal environment, not root’s; and a uid above 2^31 works', () => {
    // Root's NODE_OPTIONS would make the probe (node, as the user) load this file, and root's variables are there to read.
    const spy = join(shared, 'spy.cjs');
    writeFileSync(
      spy,
      `if (process.getuid() !== 0) require('fs').writeFileSync(${JSON.stringify(join(shared, 'spied'))}, 'SPIED=' + (process.env.LOWPORT_TEST_SECRET ?? 'none') + '\\n');\n`,
      { mode: 0o644 },
    );
    const { out } = inNetns(`
      LOWPORT_TEST_SECRET=root-only NODE_OPTIONS="--require ${spy}" $LOWPORT doctor --user nobody --port 80 --json $G >$D/doctor.json 2>&1; echo "NOBODY=$?"
      $LOWPORT doctor --user 3000000000 --port 80 --json $G >$D/big.json 2>&1; echo "BIG=$?"
    `);
    assert.match(value(out, 'NOBODY') ?? '', /^[01]$/, `${out}${readFileSync(join(shared, 'doctor.json'), 'utf8')}`);
    assert.equal(
      existsSync(join(shared, 'spied')),
      false,
      `root's environment reached the probe: ${existsSync(join(shared, 'spied')) ? readFileSync(join(shared, 'spied'), 'utf8') : ''}`,
    );
    const big = readFileSync(join(shared, 'big.json'), 'utf8');
    assert.match(value(out, 'BIG') ?? '', /^[01]$/, big);
    const report = JSON.parse(big) as { user: { uid: number }; ports: { port: number }[] };
    assert.equal(report.user.uid, 3000000000);
    assert.equal(report.ports[0]?.port, 80);
  });
});
