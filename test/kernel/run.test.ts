/**
 * Kernel tests (root): `lowport run` starts real commands as uid 65534 with
 * every privilege dropped; a scoped grant covers the command's process tree
 * and nothing else and goes away with it; socket passing and ambient
 * capabilities work without any BPF. lowport itself runs as root in a private
 * network namespace (port 80 there is the test's alone).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { readLivePolicy } from '../../src/grants/live.js';
import { Kind } from '../../src/grants/map-format.js';
import { scopeDir } from '../../src/grants/scopes.js';
import { kernelSkipReason, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', curl: 'curl', ps: 'procps' });

describe('lowport run', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('run');
    pkg = new PackageCopy();
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /**
   * Runs a bash script as root in a fresh network namespace; $LOWPORT is the
   * CLI, $G the sandbox's options. The script waits for conditions, never for
   * a fixed time (a slow or emulated machine can take seconds to start node):
   * `waitfor SECONDS WHAT COMMAND...` polls COMMAND until it succeeds, or says
   * which WHAT never came; `scope PID` is true once the command of the run
   * with lowport pid PID is in its scope cgroup, and sets $cg to that cgroup;
   * `killed CGROUP` kills what is in CGROUP and is true once it is empty.
   */
  function inNetns(script: string, timeout = 300_000): { status: number | null; out: string } {
    const file = join(box.dir, 'script.sh');
    const helpers = `waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: no $what within $limit s"; return 1; }
    sleep 0.1
  done
}
cg=
scope() { cg=$(ls -d ${box.cgroup}/lowport-run-$1-* 2>/dev/null | head -1) && [ -n "$cg" ] && [ -n "$(cat $cg/cgroup.procs 2>/dev/null)" ]; }
killed() { kill -KILL $(cat $1/cgroup.procs) 2>/dev/null; grep -q '^populated 0' $1/cgroup.events; }`;
    writeFileSync(
      file,
      `set -u\nip link set lo up\nLOWPORT="${process.execPath} ${pkg.cli}"\nG="${box.args.join(' ')}"\n${helpers}\n${script}\n`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1];
  }

  function scopeEntries(): number {
    const t = readLivePolicy(box.pinDir)?.table;
    return t === undefined ? 0 : Array.from({ length: t.count }, (_, i) => t.kind(i)).filter((k) => k === Kind.CGROUP).length;
  }

  function scopeCgroups(): string[] {
    return readdirSync(box.cgroup).filter((n) => n.startsWith('lowport-run-'));
  }

  it('starts a server as nobody that serves on its granted port, with no privilege left, while another nobody process is refused', () => {
    const { status, out } = inNetns(`
      export LOWPORT_TEST_SECRET=root-only LANG=C.UTF-8
      $LOWPORT run --port 80 --user nobody $G -- /usr/bin/python3 -m http.server 80 --bind 127.0.0.1 --directory ${box.dir} &
      lp=$!
      code=
      serving() { code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/) && [ "$code" = 200 ]; }
      waitfor 120 'answer from the server on port 80' serving
      echo "HTTP=$code"
      py=$(cat ${box.cgroup}/lowport-run-*/cgroup.procs | head -1)
      grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb|CapBnd|NoNewPrivs):' /proc/$py/status | sed 's/:\\s*/=/; s/\\s\\+/ /g'
      echo "HOME=$(tr '\\0' '\\n' < /proc/$py/environ | sed -n 's/^HOME=//p')"
      echo "USER=$(tr '\\0' '\\n' < /proc/$py/environ | sed -n 's/^USER=//p')"
      echo "SECRET=$(tr '\\0' '\\n' < /proc/$py/environ | sed -n 's/^LOWPORT_TEST_SECRET=//p')"
      echo "LANG=$(tr '\\0' '\\n' < /proc/$py/environ | sed -n 's/^LANG=//p')"
      echo "SID=$(ps -o sid= -p $py | tr -d ' ') PID=$py"
      echo "CGROUP=$(grep "^0::" /proc/$py/cgroup)"
      echo "OTHER=$(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all /usr/bin/python3 -c 'import socket
try:
    socket.socket().bind(("127.0.0.1", 81 - 1)); print("ok")
except OSError as e: print(e.errno)')"
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
    `);
    assert.equal(value(out, 'HTTP'), '200', out);
    assert.equal(value(out, 'Uid'), '65534 65534 65534 65534');
    assert.equal(value(out, 'Gid'), '65534 65534 65534 65534');
    assert.equal(value(out, 'Groups')?.trim(), '65534');
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb', 'CapBnd']) assert.equal(value(out, set), '0000000000000000', set);
    assert.equal(value(out, 'NoNewPrivs'), '1');
    assert.equal(value(out, 'HOME'), '/nonexistent');
    assert.equal(value(out, 'USER'), 'nobody');
    assert.equal(value(out, 'SECRET'), '', "root's environment leaked into the command");
    assert.equal(value(out, 'LANG'), 'C.UTF-8', 'the locale should pass');
    assert.match(out, /^SID=(\d+) PID=\1$/m, 'the command should lead a session of its own (no controlling terminal)');
    assert.match(value(out, 'CGROUP') ?? '', /\/lowport-run-\d+-[0-9a-f]{8}$/);
    assert.equal(value(out, 'OTHER'), '13', 'another nobody process got port 80 too');
    assert.equal(value(out, 'STATUS'), '143', 'lowport should exit 128+SIGTERM when the server dies of the forwarded SIGTERM');
    assert.equal(status, 0, out);
    assert.deepEqual(scopeCgroups(), []);
    assert.equal(scopeEntries(), 0);
    assert.equal(existsSync(scopeDir(box.options)), false);
  });

  it('refuses to run a command as root', () => {
    const { out } = inNetns(`$LOWPORT run --port 80 --user root $G -- true; echo "STATUS=$?"`);
    assert.equal(value(out, 'STATUS'), '2', out);
    assert.match(out, /as a user other than root/);
  });

  it('covers every process the command starts, and exits with the command status', () => {
    const { out } = inNetns(`
      $LOWPORT run --port 80/tcp --user nobody $G -- sh -c '/usr/bin/python3 -c "import socket; socket.socket(socket.AF_INET6).bind((\\"::1\\", 80)); print(\\"CHILD=ok\\")"; exit 7'
      echo "STATUS=$?"
    `);
    assert.equal(value(out, 'CHILD'), 'ok', out);
    assert.equal(value(out, 'STATUS'), '7');
  });

  it('forwards SIGHUP and reports death by signal as 128+N', () => {
    const { out } = inNetns(`
      $LOWPORT run --port 80 --user nobody $G -- sleep 30 &
      lp=$!
      # The signal must reach lowport while its command runs, or it would test nothing.
      waitfor 120 "command in the run's scope" scope $lp
      kill -HUP $lp; wait $lp; echo "HUP=$?"
      $LOWPORT run --port 80 --user nobody $G -- sh -c 'kill -KILL $$'; echo "KILL=$?"
    `);
    assert.equal(value(out, 'HUP'), '129', out);
    assert.equal(value(out, 'KILL'), '137', out);
  });

  it('leaves nothing once a SIGKILLed run’s command ends: the next lowport command removes the scope', () => {
    const { out } = inNetns(`
      $LOWPORT run --port 80 --user nobody $G -- sleep 300 &
      lp=$!
      waitfor 120 "command in the run's scope" scope $lp
      kill -KILL $lp; wait $lp 2>/dev/null
      echo "LEFT=$(ls ${box.cgroup} | grep -c lowport-run-)"
      # The command ends: only what is in the run's own cgroup is killed, nothing else of the machine.
      waitfor 60 'end of the command' killed $cg
      $LOWPORT list $G >/dev/null; echo "LIST=$?"
    `);
    assert.equal(value(out, 'LEFT'), '1', `the killed run's scope should still be there until its command ends: ${out}`);
    assert.equal(value(out, 'LIST'), '0', out);
    assert.deepEqual(scopeCgroups(), []);
    assert.equal(scopeEntries(), 0);
    assert.equal(existsSync(scopeDir(box.options)), false);
  });

  it('adds its grant to what is live: never an edit of the file not yet applied, and after off only its own', async () => {
    const probe = `/usr/bin/python3 -c 'import socket
for p in (80, 81, 82):
    try:
        socket.socket().bind(("127.0.0.1", p)); print("P%d=ok" % p)
    except OSError as e: print("P%d=%d" % (p, e.errno))'`;
    box.writePolicy('grant 81 user nobody\n');
    assert.equal((await box.cli('apply')).code, 0);
    box.writePolicy('grant 81,82 user nobody\n');
    const live = inNetns(`$LOWPORT run --port 80 --user nobody $G -- ${probe}`);
    assert.deepEqual([value(live.out, 'P80'), value(live.out, 'P81'), value(live.out, 'P82')], ['ok', 'ok', '13'], live.out);
    assert.equal((JSON.parse((await box.cli('list', '--json')).stdout) as { file: string }).file, 'differs');
    assert.equal((await box.cli('off')).code, 0);
    const off = inNetns(`$LOWPORT run --port 80 --user nobody $G -- ${probe}`);
    assert.deepEqual([value(off.out, 'P80'), value(off.out, 'P81'), value(off.out, 'P82')], ['ok', '13', '13'], off.out);
    assert.equal(existsSync(box.pinDir), false, 'lowport was off before the run and should be off after it');
  });

  it('after off, a running run stays without its grant when another run starts, cleans up normally, and off names it', () => {
    const probe = join(box.dir, 'bind-probe.py');
    writeFileSync(
      probe,
      `import socket, sys\ntry:\n    socket.socket().bind(("127.0.0.1", int(sys.argv[1]))); print("ok")\nexcept OSError as e: print(e.errno)\n`,
    );
    const { status, out } = inNetns(`
      W=$(mktemp -d)
      # Run A, whose command line carries an escape sequence and a newline.
      $LOWPORT run --port 80 --user nobody $G -- sh -c 'exec sleep 300' "$(printf 'x\\033[2Jy\\nz')" 2>$W/a.err &
      a=$!; echo "APID=$a"
      waitfor 120 "run A's command in its scope" scope $a; acg=$cg
      # A bind from inside A's cgroup, as nobody.
      probeA() { sh -c 'echo $$ > "$1/cgroup.procs" && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all /usr/bin/python3 ${probe} 80' sh "$acg"; }
      echo "BEFORE=$(probeA)"
      $LOWPORT off $G >$W/off.out; echo "OFF=$?"
      sed 's/^/OFFOUT: /' $W/off.out
      echo "AFTEROFF=$(probeA)"
      # Run B lasts until the probe from A is done (the file $W/b.done), however slow the machine.
      chmod 755 $W
      $LOWPORT run --port 81 --user nobody $G -- sh -c '/usr/bin/python3 ${probe} 81; for i in $(seq 1200); do [ -e "$1/b.done" ] && exit 0; sleep 0.1; done; exit 1' sh $W >$W/b.out &
      b=$!
      waitfor 120 "run B's probe" test -s $W/b.out
      echo "B81=$(cat $W/b.out)"
      echo "DURINGB=$(probeA)"
      touch $W/b.done
      wait $b; echo "BSTATUS=$?"
      kill -TERM $a; wait $a; echo "ASTATUS=$?"
      echo "AERR=$(grep -v "^lowport: note: other processes of .* can ptrace" $W/a.err)"
      rm -r $W
    `);
    assert.equal(value(out, 'BEFORE'), 'ok', out);
    assert.equal(value(out, 'OFF'), '0', out);
    assert.match(out, /^OFFOUT: ended the grant of 1 running `lowport run`/m, out);
    assert.match(
      out,
      new RegExp(`^OFFOUT: {3}pid ${value(out, 'APID')} \\(nobody\\): sh -c exec sleep 300 x\\\\x1b\\[2Jy\\\\nz$`, 'm'),
      'the run, its user and its command, control characters escaped',
    );
    assert.ok(!out.includes(String.fromCharCode(27)), 'no raw escape reaches the terminal');
    assert.equal(value(out, 'AFTEROFF'), '13', 'off ended the grant of the running run');
    assert.equal(value(out, 'B81'), 'ok', 'a new run gets its own grant');
    assert.equal(value(out, 'DURINGB'), '13', 'and does not bring back the grant off ended');
    assert.equal(value(out, 'BSTATUS'), '0', out);
    assert.equal(value(out, 'ASTATUS'), '143', 'the ended run ends normally, with its command’s status');
    assert.equal(value(out, 'AERR'), '', 'and without an error');
    assert.equal(status, 0, out);
    assert.deepEqual(scopeCgroups(), [], 'both runs removed their cgroups');
    assert.equal(existsSync(box.pinDir), false, 'lowport is off again once the runs are over');
    assert.equal(existsSync(scopeDir(box.options)), false);
  });

  it('passes sockets as fds 3, 4, ... with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES, without any BPF', async () => {
    const other = new Sandbox('run-sockets');
    try {
      const server = join(box.dir, 'server.cjs');
      writeFileSync(
        server,
        `const ok = process.env.LISTEN_PID === String(process.pid) && process.env.LISTEN_FDS === '2' && process.env.LISTEN_FDNAMES === 'tcp-80:udp-53';
         if (!ok) { console.log('ENV=' + JSON.stringify([process.env.LISTEN_PID, process.pid, process.env.LISTEN_FDS, process.env.LISTEN_FDNAMES])); process.exit(2); }
         require('http').createServer((q, s) => s.end('uid ' + process.getuid())).listen({ fd: 3 });
         const u = require('dgram').createSocket('udp6'); u.bind({ fd: 4 }, () => console.log('UDP=' + u.address().port));`,
      );
      const { out } = inNetns(
        `$LOWPORT run --sockets --port 80/tcp,53/udp --user nobody ${other.args.join(' ')} -- ${process.execPath} ${server} &
         lp=$!
         body=
         serving() { body=$(curl -s http://127.0.0.1:80/) && [ -n "$body" ]; }
         waitfor 120 'answer from the server on port 80' serving
         echo "BODY=$body"; echo "BODY6=$(curl -s -g 'http://[::1]:80/')"
         kill -TERM $lp; wait $lp`,
      );
      assert.equal(value(out, 'BODY'), 'uid 65534', out);
      assert.equal(value(out, 'BODY6'), 'uid 65534', out);
      assert.equal(value(out, 'UDP'), '53', out);
      assert.equal(existsSync(other.pinDir), false, 'socket passing must not load lowport into the kernel');
    } finally {
      await other.dispose();
    }
  });

  it('hands sockets to a Python program through socket.fromfd', () => {
    const { out } = inNetns(
      `$LOWPORT run --sockets --port 80/tcp --addr 127.0.0.1 --user nobody $G -- /usr/bin/python3 -c 'import os, socket
s = socket.fromfd(3, socket.AF_INET, socket.SOCK_STREAM)
print("PY=" + str(s.getsockname()) + " " + os.environ["LISTEN_PID"] + " " + str(os.getpid()) + " " + os.environ["LISTEN_FDNAMES"])'`,
    );
    const m = /^PY=\('127\.0\.0\.1', 80\) (\d+) (\d+) tcp-80$/m.exec(out);
    assert.ok(m !== null, out);
    assert.equal(m[1], m[2], 'LISTEN_PID must be the program’s own pid');
  });

  it('with --caps: only CAP_NET_BIND_SERVICE, ambient and effective, and any low port binds', () => {
    const { out } = inNetns(`
      $LOWPORT run --caps --user nobody $G -- sh -c 'grep -E "^(Cap(Inh|Prm|Eff|Amb|Bnd)|NoNewPrivs):" /proc/self/status | sed "s/:\\s*/=/"; /usr/bin/python3 -c "import socket; socket.socket().bind((\\"127.0.0.1\\", 99)); print(\\"BIND=ok\\")"'
    `);
    for (const set of ['CapPrm', 'CapEff', 'CapAmb', 'CapInh', 'CapBnd'])
      assert.equal(value(out, set), '0000000000000400', `${set}: ${out}`);
    assert.equal(value(out, 'NoNewPrivs'), '1');
    assert.equal(value(out, 'BIND'), 'ok');
    assert.match(out, /every port below 1024/);
  });
});
