/**
 * Kernel tests (root): `lowport run --sockets` where something sits between
 * lowport and the server (issue 14, part 2). A wrapper that starts the server
 * as its child gets LISTEN_PID, and the server sees another pid there, so
 * sd_listen_fds(3) would refuse the sockets; `--no-pid` leaves LISTEN_PID out.
 * npm, a Node.js program, passes no fd 3 at all. `--restart` starts the
 * command again with the sockets lowport kept open: a client that connects
 * between two runs waits in the backlog instead of being refused. lowport runs
 * as root in a private network namespace, the servers as nobody.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { kernelSkipReason, missingTools, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3' });
const DRIVER = fileURLToPath(new URL('../../../test/kernel/pty-driver.py', import.meta.url));

/**
 * What the servers below report on stdout, one line: their pid and parent,
 * the variables, and what two readers of them decide: libsystemd's
 * sd_listen_fds (the fds are this process's only when LISTEN_PID is its own
 * pid) and Rust's listenfd, systemfd's partner (no LISTEN_PID at all is
 * accepted too). The server takes the fds as listenfd would, then unsets the
 * variables, as sd_listen_fds(1) does, so that nothing it starts sees them.
 */
const REPORT = `const e = process.env;
const own = e.LISTEN_PID === String(process.pid);
const sd = own ? Number(e.LISTEN_FDS) : 0;
const listenfd = own || e.LISTEN_PID === undefined ? Number(e.LISTEN_FDS) : 0;
console.log('SERVER pid=' + process.pid + ' ppid=' + process.ppid + ' LISTEN_PID=' + (e.LISTEN_PID ?? '-') + ' LISTEN_FDS=' + e.LISTEN_FDS +
  ' LISTEN_FDNAMES=' + e.LISTEN_FDNAMES + ' sd_listen_fds=' + sd + ' listenfd=' + listenfd);
delete e.LISTEN_PID; delete e.LISTEN_FDS; delete e.LISTEN_FDNAMES;
if (listenfd < 1) process.exit(3);
`;

describe('lowport run --sockets through wrappers, and across restarts', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  let app: string;
  before(() => {
    box = new Sandbox('run-sockets');
    pkg = new PackageCopy();
    app = join(box.dir, 'app');
    mkdirSync(app, { mode: 0o755 });
    writeFileSync(
      join(app, 'server.js'),
      `${REPORT}require('node:net').createServer((c) => c.end('pid ' + process.pid + '\\n')).listen({ fd: 3 });\n`,
    );
    // Serves one connection, then exits (a server that a code change or a crash ends).
    writeFileSync(
      join(app, 'once.js'),
      `${REPORT}const s = require('node:net').createServer((c) => c.end('pid ' + process.pid + '\\n', () => process.exit(0)));
s.listen({ fd: 3 });\n`,
    );
    // A wrapper as dev scripts are: it does something after the server too, so the server is its child (sh cannot exec it).
    writeFileSync(join(app, 'start.sh'), `echo "WRAPPER=$$"\n${process.execPath} server.js\necho "wrapper: the server exited with $?"\n`);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, scripts: { start: 'node server.js' } }));
  });
  after(async () => {
    // What a failed test left runs in a lowport-run cgroup below the sandbox's, which dispose() kills.
    await box?.dispose();
    pkg?.dispose();
  });

  /**
   * Runs a bash script as root in a fresh network namespace: $LOWPORT is the
   * CLI, $G the sandbox's options, $APP the server's directory; `waitfor
   * SECONDS WHAT COMMAND...` polls COMMAND until it succeeds; `ask` connects
   * to port 80 once and sets $answer (empty when the connection failed).
   */
  function inNetns(script: string): { status: number | null; out: string } {
    const file = join(box.dir, 'script.sh');
    writeFileSync(
      file,
      `set -u\nip link set lo up\nLOWPORT="${process.execPath} ${pkg.cli}"\nG="${box.args.join(' ')}"\nAPP=${app}\ncd $APP
waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: no $what within $limit s"; return 1; }
    sleep 0.1
  done
}
answer=
ask() { answer=$(timeout 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/80 && cat <&3' 2>&1) && [ -n "$answer" ]; }
${script}\n`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*?)\\r?$`, 'm').exec(out)?.[1];
  }

  function server(out: string): Record<string, string> {
    const line = /^SERVER (.*?)\r?$/m.exec(out)?.[1];
    assert.ok(line !== undefined, `the server reported nothing:\n${out}`);
    return Object.fromEntries(line.split(' ').map((kv) => kv.split('=') as [string, string]));
  }

  it('through a shell wrapper, --no-pid leaves LISTEN_PID out and the server, its grandchild, takes fd 3 and answers', () => {
    const { out } = inNetns(`
      $LOWPORT run --sockets --no-pid --port 80/tcp --user nobody $G -- /bin/sh start.sh 2> err &
      lp=$!
      waitfor 120 'answer on port 80' ask
      echo "ANSWER=$answer"
      # SIGTERM reaches every process of the command: the wrapper and the server, its child, alike.
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
      echo "SERVER_LEFT=$(ps -o stat= -p "\${answer#pid }" | grep -vc '^Z')"
      cat err`);
    const s = server(out);
    assert.equal(s.LISTEN_PID, '-', 'LISTEN_PID must not be set with --no-pid');
    assert.equal(s.LISTEN_FDS, '1');
    assert.equal(s.LISTEN_FDNAMES, 'tcp-80');
    assert.equal(s.ppid, value(out, 'WRAPPER'), 'the server runs as the wrapper’s child');
    assert.equal(s.listenfd, '1');
    assert.equal(value(out, 'ANSWER'), `pid ${s.pid}`, out);
    assert.equal(value(out, 'STATUS'), '143', out);
    assert.equal(value(out, 'SERVER_LEFT'), '0', `one SIGTERM to lowport should have ended the server too: ${out}`);
    assert.doesNotMatch(out, /left 1 process running|SIGKILL/, 'the server got the SIGTERM itself, not as a leftover');
  });

  it('without --no-pid, the same wrapper gives the server LISTEN_PID of the wrapper, and sd_listen_fds refuses', () => {
    const { out } = inNetns(`$LOWPORT run --sockets --port 80/tcp --user nobody $G -- /bin/sh start.sh; echo "STATUS=$?"`);
    const s = server(out);
    assert.equal(s.LISTEN_PID, value(out, 'WRAPPER'), 'LISTEN_PID is the pid of lowport’s child, the wrapper');
    assert.notEqual(s.LISTEN_PID, s.pid);
    assert.equal(s.sd_listen_fds, '0', 'sd_listen_fds(3) gives no fd to a process whose pid is not LISTEN_PID');
    assert.equal(s.listenfd, '0');
    assert.match(out, /^wrapper: the server exited with 3$/m);
    assert.equal(value(out, 'STATUS'), '0', 'lowport exits with the wrapper’s status');
  });

  it(
    'npm run start: says that npm, a Node.js program, passes no socket on, and it does not',
    { skip: missingTools({ npm: 'npm' }) },
    () => {
      const { out } = inNetns(`
      $LOWPORT run --sockets --no-pid --port 80/tcp --user nobody $G -- npm run start; echo "STATUS=$?"
      # What node does with an fd 3 it inherits, as it starts: marks it close-on-exec (libuv's uv_disable_stdio_inheritance).
      echo "FLAGS=$(${process.execPath} -e 'console.log(require("fs").readFileSync("/proc/self/fdinfo/3", "utf8").match(/flags:\\s*(\\d+)/)[1])' 3<>/dev/null)"`);
      assert.match(out, /note: npm is a Node\.js program, and Node closes fds 3 and up for every program it starts/, out);
      const s = server(out);
      assert.equal(s.LISTEN_FDS, '1', 'the variables pass through npm');
      assert.equal(s.LISTEN_PID, '-');
      // The server found no listening socket at fd 3: npm's node closed it at exec.
      assert.match(out, /listen E(INVAL|BADF|NOTSOCK)/, out);
      assert.notEqual(value(out, 'STATUS'), '0', out);
      assert.ok((parseInt(value(out, 'FLAGS') ?? '0', 8) & 0o2000000) !== 0, `node marks an inherited fd 3 close-on-exec: ${out}`);
    },
  );

  it('with --restart, serves connection after connection through new processes, and a client in the gap waits instead of being refused', () => {
    const { out } = inNetns(`
      $LOWPORT run --sockets --restart --port 80/tcp --user nobody $G -- ${process.execPath} once.js 2> err &
      lp=$!
      waitfor 120 'first answer' ask
      echo "FIRST=$answer"
      # The first server is gone and lowport has not started the next one yet (it waits 0.25 s, and node takes longer to start).
      waitfor 60 'restart note' grep -q 'starts it again' err
      ask; echo "SECOND=$answer"
      waitfor 60 'second restart note' sh -c "[ \\$(grep -c 'starts it again' err) -ge 2 ]"
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
      sed 's/^/ERR: /' err`);
    const first = /^FIRST=pid (\d+)$/m.exec(out)?.[1];
    const second = /^SECOND=pid (\d+)$/m.exec(out)?.[1];
    assert.ok(first !== undefined && second !== undefined, `both connections are served:\n${out}`);
    assert.notEqual(first, second, 'by two processes');
    assert.match(out, /^ERR: lowport: \/.*\/node exited with status 0; --restart starts it again in 0\.25 s, with the same sockets/m, out);
    assert.equal(value(out, 'STATUS'), '143', 'SIGTERM ends lowport, and it does not restart the command');
  });

  it('with --restart, a command that exits at once is started again ever more slowly, and SIGTERM in the pause ends lowport', () => {
    const { out } = inNetns(`
      $LOWPORT run --sockets --restart --port 80/tcp --user nobody $G -- /bin/sh -c 'exit 7' 2> err &
      lp=$!
      waitfor 60 'the third restart' grep -q 'again in 1 s' err
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
      sed 's/^/ERR: /' err`);
    const delays = [...out.matchAll(/^ERR: lowport: \/bin\/sh exited with status 7; --restart starts it again in ([\d.]+) s/gm)].map(
      (m) => m[1],
    );
    assert.deepEqual(delays.slice(0, 3), ['0.25', '0.5', '1'], out);
    assert.equal(value(out, 'STATUS'), '143', 'lowport ends with 128+SIGTERM when no command runs');
  });

  it('with --restart on a terminal, ^C ends the loop even when the command exits 0 on SIGINT', () => {
    const spec = {
      argv: [
        'unshare',
        '--net',
        process.execPath,
        pkg.cli,
        'run',
        ...box.args,
        '--sockets',
        '--restart',
        '--port',
        '80/tcp',
        '--user',
        'nobody',
      ].concat(['--', '/bin/sh', '-c', 'trap "echo BYE; exit 0" INT; echo READY; while :; do sleep 0.1; done']),
      steps: [{ wait: '^READY' }, { send: '\u0003' }, { exit: true }],
      timeout: 60,
    };
    const r = spawnSync('/usr/bin/python3', [DRIVER, JSON.stringify(spec)], {
      encoding: 'utf8',
      timeout: 180_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    assert.equal(r.status, 0, `the pty driver failed: ${r.stdout}${r.stderr}`);
    const driven = JSON.parse(r.stdout) as { output: string; status: number | null; failed: string | null; termiosRestored: boolean };
    assert.equal(driven.failed, null, JSON.stringify(driven));
    assert.match(driven.output, /BYE/, 'the command got the SIGINT of ^C');
    assert.doesNotMatch(driven.output, /starts it again/, `^C must not restart the command: ${driven.output}`);
    assert.equal(driven.status, 0, 'lowport exits with the command’s status');
    assert.equal(driven.termiosRestored, true);
  });
});
