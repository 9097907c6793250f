/**
 * Kernel tests (root): `lowport run` stops a command as systemd stops a
 * service with KillMode=control-group (src/run/stop.ts). The command is a
 * shell wrapper that starts a real server (python3 -m http.server on port 80)
 * as its child without exec, as `npm run start`, nodemon or a dev script do;
 * it runs as nobody (uid 65534), with lowport as root in a private network
 * namespace (port 80 there is the test's alone). SIGTERM to lowport stops the
 * server too (its pid gone, its port free); a process that ignores SIGTERM is
 * killed after --stop-timeout; what the command leaves when it exits by itself
 * is stopped; no cgroup of the run remains.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kernelSkipReason, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', curl: 'curl' });

/** The server the wrappers start: on 127.0.0.1:80 of the test's network namespace. */
const SERVER = 'python3 -m http.server 80 --bind 127.0.0.1 >/dev/null 2>&1 &';

describe('lowport run stops the whole command, as systemd stops a service', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  /** The wrapper scripts, readable by nobody. */
  let scripts: string;
  before(() => {
    box = new Sandbox('run-stop');
    pkg = new PackageCopy();
    scripts = mkdtempSync(join(tmpdir(), 'lowport-run-stop-'));
    chmodSync(scripts, 0o755);
    // The server as the wrapper's child, and the wrapper waiting for it (npm run start, sh -c '... & wait').
    writeFileSync(join(scripts, 'wrapper.sh'), `${SERVER}\necho "SERVER=$!"\nwait\n`, { mode: 0o755 });
    // The same, and beside the server a child that ignores SIGTERM.
    writeFileSync(
      join(scripts, 'ignorer.sh'),
      `${SERVER}\necho "SERVER=$!"\nsh -c "trap '' TERM; while :; do sleep 0.1; done" &\necho "IGNORER=$!"\nwait\n`,
      { mode: 0o755 },
    );
    // A wrapper that exits once the server it started answers, leaving it running (a daemonizing start script).
    writeFileSync(
      join(scripts, 'leaves.sh'),
      `${SERVER}\necho "SERVER=$!"\nuntil python3 -c 'import socket; socket.create_connection(("127.0.0.1", 80)).close()' 2>/dev/null; do sleep 0.1; done\necho started\n`,
      { mode: 0o755 },
    );
  });
  after(async () => {
    // What a failed test left runs in a lowport-run cgroup below the sandbox's, which dispose() kills.
    await box?.dispose();
    pkg?.dispose();
    if (scripts !== undefined) rmSync(scripts, { recursive: true, force: true });
  });

  /**
   * Runs `lowport run ARGS -- /bin/sh SCRIPT` in the background, as root in a
   * fresh network namespace, with its stdout in `out` and stderr in `err`;
   * then `then` (bash), where $lp is lowport's pid and $srv the server's;
   * then reports on what is left: ALIVE (the server's pid), FREE (port 80
   * can be bound again), CGROUPS (the run's cgroups left), ERR (lowport's stderr).
   */
  function scenario(args: string, script: string, then: string): { out: string } {
    const file = join(box.dir, 'script.sh');
    writeFileSync(
      file,
      `set -u
ip link set lo up
cd ${box.dir}
waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: no $what within $limit s"; return 1; }
    sleep 0.1
  done
}
# Whether a process runs: a zombie (ended, waiting for a reaper that may be slow, in this test's namespace) does not.
running() { local st; st=$(ps -o stat= -p $1 2>/dev/null); [ -n "$st" ] && [ "\${st#Z}" = "$st" ]; }
state() { running $1 && echo alive || echo gone; }
${process.execPath} ${pkg.cli} run ${box.args.join(' ')} --user nobody ${args} -- /bin/sh ${join(scripts, script)} </dev/null >out 2>err &
lp=$!
waitfor 120 'server pid' grep -q '^SERVER=' out
srv=$(sed -n 's/^SERVER=//p' out)
echo "SERVER=$srv"
echo "SERVER_PARENT_IS_LOWPORT=$([ "$(ps -o ppid= -p $srv | tr -d ' ')" = $lp ] && echo yes || echo no)"
echo "SERVER_UID=$(ps -o uid= -p $srv | tr -d ' ')"
${then}
echo "ALIVE=$(running $srv && echo yes || echo no)"
echo "FREE=$(python3 -c 'import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 80)); s.listen(); print("yes")' 2>&1 | tail -1)"
echo "CGROUPS=$(ls -d ${box.cgroup}/lowport-run-* 2>/dev/null | wc -l)"
echo "ERR=$(grep -v 'can ptrace' err | tr '\\n' '|')"
`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { out: `${r.stdout}${r.stderr}` };
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*?)\\r?$`, 'm').exec(out)?.[1];
  }

  function runCgroups(): string[] {
    return readdirSync(box.cgroup).filter((n) => n.startsWith('lowport-run-'));
  }

  it('SIGTERM to lowport stops the server a wrapper started as its child: its pid gone, its port free, no cgroup left', () => {
    const { out } = scenario(
      '--port 80',
      'wrapper.sh',
      `waitfor 120 'an answer on port 80' curl -sf -o /dev/null http://127.0.0.1/
echo "ANSWERED=$?"
kill -TERM $lp; wait $lp; echo "STATUS=$?"`,
    );
    assert.equal(value(out, 'ANSWERED'), '0', out);
    assert.equal(value(out, 'SERVER_PARENT_IS_LOWPORT'), 'no', `the server must be the wrapper's child, not lowport's: ${out}`);
    assert.equal(value(out, 'SERVER_UID'), '65534', out);
    // The wrapper died of the SIGTERM lowport passed on: lowport's status is its.
    assert.equal(value(out, 'STATUS'), '143', out);
    assert.equal(value(out, 'ALIVE'), 'no', `the server outlived lowport: ${out}`);
    assert.equal(value(out, 'FREE'), 'yes', `port 80 is still held: ${out}`);
    assert.equal(value(out, 'CGROUPS'), '0', out);
    assert.doesNotMatch(value(out, 'ERR') ?? '', /SIGKILL|left/, out);
    assert.deepEqual(runCgroups(), []);
  });

  it('kills a child that ignores SIGTERM once --stop-timeout has passed, and not before', () => {
    const { out } = scenario(
      '--port 80 --stop-timeout 2',
      'ignorer.sh',
      `waitfor 120 'an answer on port 80' curl -sf -o /dev/null http://127.0.0.1/
waitfor 60 'the ignorer' grep -q '^IGNORER=' out
ign=$(sed -n 's/^IGNORER=//p' out)
kill -TERM $lp
sleep 1
echo "IGNORER_AT_1S=$(state $ign)"
echo "SERVER_AT_1S=$(state $srv)"
start=$(date +%s%N); wait $lp; echo "STATUS=$?"
echo "WAITED_MS=$(( ($(date +%s%N) - start) / 1000000 ))"
echo "IGNORER_AFTER=$(state $ign)"`,
    );
    assert.equal(value(out, 'SERVER_AT_1S'), 'gone', `the server should have ended on SIGTERM: ${out}`);
    assert.equal(value(out, 'IGNORER_AT_1S'), 'alive', `SIGKILL came before --stop-timeout: ${out}`);
    assert.equal(value(out, 'IGNORER_AFTER'), 'gone', out);
    // lowport waited for the rest of the 2 s (1 s already slept), and not much longer.
    const waited = Number(value(out, 'WAITED_MS'));
    assert.ok(waited >= 500 && waited < 6000, `lowport exited ${waited} ms after the first second: ${out}`);
    assert.match(value(out, 'ERR') ?? '', /sending SIGKILL to \d+ process(es)? of the command still running 2 s after the stop began/, out);
    assert.equal(value(out, 'STATUS'), '143', out);
    assert.equal(value(out, 'ALIVE'), 'no', out);
    assert.equal(value(out, 'FREE'), 'yes', out);
    assert.equal(value(out, 'CGROUPS'), '0', out);
    assert.deepEqual(runCgroups(), []);
  });

  it('stops what the command left running when it exits by itself, and says so (--caps)', () => {
    const { out } = scenario('--caps', 'leaves.sh', `wait $lp; echo "STATUS=$?"`);
    assert.match(
      value(out, 'ERR') ?? '',
      /the command exited and left 1 process running; stopping it as a service's \(SIGTERM, then SIGKILL after 10 s\)/,
      out,
    );
    assert.equal(value(out, 'STATUS'), '0', `lowport's status is the command's: ${out}`);
    assert.equal(value(out, 'ALIVE'), 'no', out);
    assert.equal(value(out, 'FREE'), 'yes', out);
    assert.equal(value(out, 'CGROUPS'), '0', out);
    assert.deepEqual(runCgroups(), []);
  });
});
