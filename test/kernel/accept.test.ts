/**
 * Kernel tests (root): `lowport run --accept`, a per-connection server as
 * tcpserver runs one. lowport binds port 79 (or 7) in a private network
 * namespace; real clients (Python sockets) talk to a shell script and a
 * Python one-liner started per connection as uid 65534. Checked: each
 * UCSPI-TCP variable over IPv4 and IPv6, the programs' identity and fds, the
 * limits (the connection over each is closed at once and logged), reaping, a
 * program's exit closing its client's connection, and the SIGTERM drain.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { kernelSkipReason, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', ps: 'procps', ss: 'iproute2' });

/**
 * A client: connects to HOST PORT (from SRC when given), prints its own
 * address and port, sends SEND (a line; '-' sends nothing), then reads to
 * the end and prints what came and how: `END=eof SECONDS` or `END=timeout`.
 */
const CLIENT = `import socket, sys, time
host, port, send = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = sys.argv[4] if len(sys.argv) > 4 else None
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if src: s.bind((src, 0))
s.settimeout(10)
s.connect((host, port))
a = s.getsockname()
print("CLIENT=%s %d" % (a[0], a[1]), flush=True)
if send != "-": s.sendall((send + "\\n").encode())
t = time.monotonic(); got = b""
try:
    while True:
        d = s.recv(4096)
        if not d: break
        got += d
    end = "eof %.1f" % (time.monotonic() - t)
except socket.timeout:
    end = "timeout"
sys.stdout.write(got.decode(errors="replace"))
print("END=" + end)
`;

/**
 * The limits: holds connections open (each program answers "hi" and waits
 * for a line) and tries one more of each kind, printing what each got:
 * `NAME=hi` (served) or `NAME=closed` (closed at once, no byte).
 */
const LIMITS = `import socket, sys, time
port = int(sys.argv[1])
held = {}
def open_(name, src):
    s = socket.socket(); s.bind((src, 0)); s.settimeout(10); s.connect(("127.0.0.1", port))
    d = s.recv(100)
    print("%s=%s" % (name, "hi" if d.startswith(b"hi") else "closed" if d == b"" else repr(d)), flush=True)
    held[name] = s
open_("A1", "127.0.0.1"); open_("A2", "127.0.0.1")
open_("A3", "127.0.0.1")   # a third from 127.0.0.1: over --max-per-ip 2
open_("B1", "127.0.0.2")   # another address still gets in: 3 running
open_("C1", "127.0.0.3")   # over --max-conns 3
held["A1"].sendall(b"bye\\n"); held["A1"].recv(100); time.sleep(0.5)
open_("C2", "127.0.0.3")   # a slot is free again
for s in held.values(): s.close()
`;

describe('lowport run --accept', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('accept');
    pkg = new PackageCopy();
    writeFileSync(join(box.dir, 'client.py'), CLIENT, { mode: 0o644 });
    writeFileSync(join(box.dir, 'limits.py'), LIMITS, { mode: 0o644 });
    // The shell script of the tests: its identity, its fds and the UCSPI-TCP variables, then an echo of the client's first line.
    writeFileSync(
      join(box.dir, 'env.sh'),
      `#!/bin/sh
for k in PROTO TCPLOCALIP TCPLOCALPORT TCPREMOTEIP TCPREMOTEPORT TCP6REMOTEIP TCPREMOTEHOST TCPREMOTEINFO TCPLOCALHOST; do
  eval "v=\\\${$k-unset}"; printf '%s=%s\\r\\n' "$k" "$v"
done
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapAmb|CapBnd|NoNewPrivs):' /proc/$$/status | sed 's/:[[:space:]]*/=/; s/[[:space:]]\\+/ /g; s/ *$/\\r/'
for f in /proc/$$/fd/*; do printf 'FD%s=%s\\r\\n' "\${f##*/}" "$(readlink $f)"; done
printf 'HOME=%s\\r\\nUSER=%s\\r\\nSECRET=%s\\r\\n' "$HOME" "$USER" "\${LOWPORT_TEST_SECRET-}"
read -r line; printf 'ECHO=%s\\r\\n' "$line"
`,
      { mode: 0o755 },
    );
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /**
   * Runs a bash script as root in a fresh network namespace, as run.test.ts
   * does: $LOWPORT is the CLI, $G the sandbox's options, $D the sandbox's
   * directory (client.py, env.sh). `waitfor SECONDS WHAT COMMAND...` polls;
   * `accepting LOG` is true once lowport's stderr in LOG says it accepts, and
   * sets $loop to the accept loop's pid.
   */
  function inNetns(script: string, timeout = 240_000): string {
    const file = join(box.dir, 'script.sh');
    const helpers = `waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: no $what within $limit s"; cat $D/*.log; return 1; }
    sleep 0.1
  done
}
loop=
accepting() { loop=$(sed -n 's/.*accepting on .*(pid \\([0-9]*\\)).*/\\1/p' $1) && [ -n "$loop" ]; }
client() { /usr/bin/python3 $D/client.py "$@"; }`;
    writeFileSync(
      file,
      `set -u\nip link set lo up\nLOWPORT="${process.execPath} ${pkg.cli}"\nG="${box.args.join(' ')}"\nD=${box.dir}\nrm -f $D/*.log\n${helpers}\n${script}\n`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LOWPORT_TEST_SECRET: 'root-only' },
    });
    return `${r.stdout}${r.stderr}`.replace(/\r/g, '');
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1];
  }

  /** The values of one client's exchange: the lines after its `--- NAME` marker up to the next marker. */
  function section(out: string, name: string): string {
    const start = out.indexOf(`--- ${name}\n`);
    assert.ok(start >= 0, `no section ${name} in:\n${out}`);
    const rest = out.slice(start + name.length + 5);
    const next = rest.indexOf('\n--- ');
    return next < 0 ? rest : rest.slice(0, next + 1);
  }

  function trackingCgroups(): string[] {
    return readdirSync(box.cgroup).filter((n) => n.startsWith('lowport-run-'));
  }

  it('starts a shell script per connection as nobody, with the UCSPI-TCP environment over IPv4 and IPv6, and no privilege or fd of lowport’s', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 79 --user nobody $G -- $D/env.sh 2>$D/lowport.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/lowport.log
      echo "LISTENERS=$(ss -Hltnp 'sport = :79' | grep -o 'pid=[0-9]*' | sort -u | tr '\\n' ' ')"
      echo "LOWPORT=pid=$lp LOOP=pid=$loop"
      echo "LOOPIDS=$(grep -E '^Uid:' /proc/$loop/status | sed 's/^Uid:[[:space:]]*//; s/[[:space:]]\\+/ /g')"
      echo '--- v4'; client 127.0.0.1 79 alice
      echo '--- v6'; client ::1 79 bob
      echo '--- end'
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
      cat $D/lowport.log
    `);
    const v4 = section(out, 'v4');
    const [clientIp, clientPort] = (value(v4, 'CLIENT') ?? '').split(' ');
    assert.equal(clientIp, '127.0.0.1', out);
    assert.equal(value(v4, 'PROTO'), 'TCP', out);
    assert.equal(value(v4, 'TCPLOCALIP'), '127.0.0.1');
    assert.equal(value(v4, 'TCPLOCALPORT'), '79');
    assert.equal(value(v4, 'TCPREMOTEIP'), '127.0.0.1', 'an IPv4 client of the dual-stack socket is shown as IPv4');
    assert.equal(value(v4, 'TCPREMOTEPORT'), clientPort);
    assert.equal(value(v4, 'TCP6REMOTEIP'), 'unset');
    for (const k of ['TCPREMOTEHOST', 'TCPREMOTEINFO', 'TCPLOCALHOST']) assert.equal(value(v4, k), 'unset', k);
    assert.equal(value(v4, 'ECHO'), 'alice');
    assert.match(value(v4, 'END') ?? '', /^eof /, 'the connection ends when the script exits');

    const v6 = section(out, 'v6');
    const [client6Ip, client6Port] = (value(v6, 'CLIENT') ?? '').split(' ');
    assert.equal(client6Ip, '::1', out);
    assert.equal(value(v6, 'PROTO'), 'TCP6');
    assert.equal(value(v6, 'TCPLOCALIP'), '::1');
    assert.equal(value(v6, 'TCPLOCALPORT'), '79');
    assert.equal(value(v6, 'TCPREMOTEIP'), '::1');
    assert.equal(value(v6, 'TCP6REMOTEIP'), '::1');
    assert.equal(value(v6, 'TCPREMOTEPORT'), client6Port);
    assert.equal(value(v6, 'ECHO'), 'bob');

    // Identity: the script's, as `run` gives it.
    assert.equal(value(v4, 'Uid'), '65534 65534 65534 65534');
    assert.equal(value(v4, 'Gid'), '65534 65534 65534 65534');
    assert.equal(value(v4, 'Groups')?.trim(), '65534');
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb', 'CapBnd']) assert.equal(value(v4, set), '0000000000000000', set);
    assert.equal(value(v4, 'NoNewPrivs'), '1');
    assert.equal(value(v4, 'HOME'), '/nonexistent');
    assert.equal(value(v4, 'USER'), 'nobody');
    assert.equal(value(v4, 'SECRET'), '', "root's environment leaked into the program");
    // fds: the connection as 0 and 1, lowport's stderr (the log file) as 2, and no other socket (the listening one above all).
    const fd0 = value(v4, 'FD0') ?? '';
    assert.match(fd0, /^socket:\[\d+\]$/);
    assert.equal(value(v4, 'FD1'), fd0);
    assert.equal(value(v4, 'FD2'), join(box.dir, 'lowport.log'));
    const sockets = [...v4.matchAll(/^FD(\d+)=socket:/gm)].map((m) => m[1]);
    assert.deepEqual(sockets, ['0', '1'], v4);

    // Only the loop holds the listening socket, and it runs as nobody; root's lowport holds none.
    const loop = /LOOP=(pid=\d+)/.exec(out)?.[1];
    const lowport = /LOWPORT=(pid=\d+)/.exec(out)?.[1];
    assert.equal(value(out, 'LISTENERS')?.trim(), loop, out);
    assert.notEqual(loop, lowport);
    assert.equal(value(out, 'LOOPIDS'), '65534 65534 65534 65534');
    assert.equal(value(out, 'STATUS'), '0', 'a drain with nothing running ends with status 0');
    assert.match(out, /accepting on tcp \[::\]:79 as nobody/);
    assert.deepEqual(trackingCgroups(), []);
  });

  it('serves a finger-style Python one-liner, on IPv4 and IPv6 both (--addr), and an echo service through cat', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 79/tcp --addr 127.0.0.1 --addr ::1 --user nobody $G -- /usr/bin/python3 -c 'import os, sys
u = sys.stdin.readline().strip()
sys.stdout.write("Login: %s\\r\\nFrom: %s (%s) port %s to %s\\r\\n" % (u or "nobody", os.environ["TCPREMOTEIP"], os.environ["PROTO"], os.environ["TCPREMOTEPORT"], os.environ["TCPLOCALIP"]))' 2>$D/finger.log &
      fp=$!
      $LOWPORT run --accept --port 7 --user nobody $G -- cat 2>$D/echo.log &
      ep=$!
      waitfor 120 'finger loop' accepting $D/finger.log
      waitfor 120 'echo loop' accepting $D/echo.log
      echo '--- f4'; client 127.0.0.1 79 carol
      echo '--- f6'; client ::1 79 dave
      echo '--- echo'; /usr/bin/python3 -c 'import socket
s = socket.create_connection(("127.0.0.1", 7)); s.sendall(b"ping\\n"); print("ECHO=" + s.recv(100).decode().strip())
s.sendall(b"pong\\n"); print("ECHO2=" + s.recv(100).decode().strip()); s.shutdown(socket.SHUT_WR); print("EOF=%r" % s.recv(100))'
      echo '--- end'
      kill -TERM $fp $ep; wait $fp; echo "FSTATUS=$?"; wait $ep; echo "ESTATUS=$?"
      cat $D/finger.log
    `);
    const f4 = section(out, 'f4');
    const port4 = (value(f4, 'CLIENT') ?? '').split(' ')[1];
    assert.equal(/^Login: (.*)$/m.exec(f4)?.[1], 'carol', out);
    assert.equal(/^From: (.*)$/m.exec(f4)?.[1], `127.0.0.1 (TCP) port ${port4} to 127.0.0.1`);
    const f6 = section(out, 'f6');
    const port6 = (value(f6, 'CLIENT') ?? '').split(' ')[1];
    assert.equal(/^Login: (.*)$/m.exec(f6)?.[1], 'dave');
    assert.equal(/^From: (.*)$/m.exec(f6)?.[1], `::1 (TCP6) port ${port6} to ::1`);
    assert.match(out, /accepting on tcp 127\.0\.0\.1:79, tcp \[::1\]:79 as nobody/);
    const echo = section(out, 'echo');
    assert.equal(value(echo, 'ECHO'), 'ping');
    assert.equal(value(echo, 'ECHO2'), 'pong');
    assert.equal(value(echo, 'EOF'), "b''", 'cat ends at the client’s EOF, and so does the connection');
    assert.equal(value(out, 'FSTATUS'), '0');
    assert.equal(value(out, 'ESTATUS'), '0');
  });

  it('closes the connection over --max-per-ip and over --max-conns at once, logs each with the client’s address, and serves again once a slot is free', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 7 --max-conns 3 --max-per-ip 2 --user nobody $G -- sh -c 'echo hi; read x' 2>$D/limits.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/limits.log
      /usr/bin/python3 $D/limits.py 7
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
      cat $D/limits.log
    `);
    assert.equal(value(out, 'A1'), 'hi', out);
    assert.equal(value(out, 'A2'), 'hi');
    assert.equal(value(out, 'A3'), 'closed', 'the third connection from one address should be closed at once');
    assert.equal(value(out, 'B1'), 'hi', 'another address should still get in');
    assert.equal(value(out, 'C1'), 'closed', 'the fourth connection in all should be closed at once');
    assert.equal(value(out, 'C2'), 'hi', 'a freed slot should serve again');
    assert.match(out, /lowport: refused 127\.0\.0\.1:\d+ to 127\.0\.0\.1:7: 2 connections from 127\.0\.0\.1 at once \(--max-per-ip 2\)/);
    assert.match(out, /lowport: refused 127\.0\.0\.3:\d+ to 127\.0\.0\.1:7: 3 connections at once \(--max-conns 3\)/);
    assert.equal(value(out, 'STATUS'), '0');
  });

  it('reaps every program: after many connections no zombie is left and the count is back to zero', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 7 --log --max-conns 5 --user nobody $G -- sh -c 'echo bye' 2>$D/reap.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/reap.log
      for i in $(seq 1 30); do client 127.0.0.1 7 - >/dev/null & done; wait $(jobs -p | grep -v "^$lp$") 2>/dev/null
      ended() { [ "$(grep -c ' ended, status 0 ' $D/reap.log)" -ge 30 ]; }
      waitfor 60 '30 programs ended' ended
      echo "CHILDREN=$(ps -o stat= --ppid $loop | tr -d ' \\n')"
      echo "REFUSED=$(grep -c refused $D/reap.log)"
      tail -1 $D/reap.log
      kill -TERM $lp; wait $lp; echo "STATUS=$?"
    `);
    assert.equal(value(out, 'CHILDREN'), '', `the accept loop should have no child left, zombie or not: ${out}`);
    assert.match(out, /ended, status 0 \(0\/5\)\n/);
    assert.equal(value(out, 'STATUS'), '0');
  });

  it('closes the client’s connection when the program exits, though the client sends nothing', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 7 --user nobody $G -- sh -c 'echo bye' 2>$D/close.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/close.log
      echo '--- quiet'; client 127.0.0.1 7 -
      echo '--- end'
      kill -TERM $lp; wait $lp
    `);
    const quiet = section(out, 'quiet');
    assert.match(quiet, /^bye$/m, out);
    const end = value(quiet, 'END') ?? '';
    assert.match(end, /^eof /, 'the connection should end with the program, not stay open');
    assert.ok(Number(end.split(' ')[1]) < 5, end);
  });

  it('drains on SIGTERM: no new connection, the running program finishes and lowport exits 0; a second SIGTERM ends the programs', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 7 --user nobody $G -- sh -c 'echo hi; read x; echo "done $x"' 2>$D/drain.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/drain.log
      LP=$lp /usr/bin/python3 -c 'import socket, os, signal, time
s = socket.create_connection(("127.0.0.1", 7)); print("HELD=" + s.recv(100).decode().strip(), flush=True)
os.kill(int(os.environ["LP"]), signal.SIGTERM)
for _ in range(100):
    if "draining" in open("${box.dir}/drain.log").read(): break
    time.sleep(0.1)
try:
    socket.create_connection(("127.0.0.1", 7), timeout=5); print("NEW=accepted")
except OSError as e: print("NEW=" + type(e).__name__)
time.sleep(0.5)
print("ALIVE=" + ("yes" if os.path.exists("/proc/" + os.environ["LP"]) else "no"), flush=True)
s.sendall(b"x\\n"); print("LAST=" + s.recv(100).decode().strip())' 
      wait $lp; echo "STATUS=$?"
      echo '--- second'
      $LOWPORT run --accept --port 7 --user nobody $G -- sh -c 'echo hi; read x' 2>$D/drain2.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/drain2.log
      LP=$lp /usr/bin/python3 -c 'import socket, os, signal, time
s = socket.create_connection(("127.0.0.1", 7)); s.settimeout(20); print("HELD2=" + s.recv(100).decode().strip(), flush=True)
os.kill(int(os.environ["LP"]), signal.SIGTERM); time.sleep(1.5); os.kill(int(os.environ["LP"]), signal.SIGTERM)
t = time.monotonic(); print("CLOSED2=%r after %.1f" % (s.recv(100), time.monotonic() - t))'
      wait $lp; echo "STATUS2=$?"
      cat $D/drain.log $D/drain2.log
    `);
    assert.equal(value(out, 'HELD'), 'hi', out);
    assert.equal(value(out, 'NEW'), 'ConnectionRefusedError', 'a draining server should take no new connection');
    assert.equal(value(out, 'ALIVE'), 'yes', 'lowport should wait for the running program');
    assert.equal(value(out, 'LAST'), 'done x', 'the running program should finish its work');
    assert.equal(value(out, 'STATUS'), '0');
    assert.match(out, /draining \(SIGTERM\): no new connections; 1 running/);
    const second = section(out, 'second');
    assert.equal(value(second, 'HELD2'), 'hi', out);
    assert.match(value(second, 'CLOSED2') ?? '', /^b'' after \d/, 'the second SIGTERM should end the program and its connection');
    assert.equal(value(second, 'STATUS2'), '0');
    assert.match(second, /ending 1 program\(s\) still running/);
    assert.deepEqual(trackingCgroups(), []);
  });

  it('ends the running programs after --drain-timeout, and refuses a command nobody may run before it binds for good', () => {
    const out = inNetns(`
      $LOWPORT run --accept --port 7 --drain-timeout 1 --user nobody $G -- sh -c 'echo hi; exec sleep 60' 2>$D/timeout.log &
      lp=$!
      waitfor 120 'accept loop' accepting $D/timeout.log
      LP=$lp /usr/bin/python3 -c 'import socket, os, signal, time
s = socket.create_connection(("127.0.0.1", 7)); s.settimeout(20); s.recv(100)
os.kill(int(os.environ["LP"]), signal.SIGTERM); t = time.monotonic()
print("CLOSED=%r after %.1f" % (s.recv(100), time.monotonic() - t))'
      wait $lp; echo "STATUS=$?"
      $LOWPORT run --accept --port 7 --user nobody $G -- /root/no-such-program; echo "MISSING=$?"
      echo "FREE=$(ss -Hltn 'sport = :7' | wc -l)"
    `);
    const m = /^CLOSED=b'' after (\d+\.\d)$/m.exec(out);
    assert.ok(m !== null, out);
    assert.ok(Number(m[1]) >= 0.8 && Number(m[1]) < 8, `the program should end about 1 s after SIGTERM: ${m[1]}`);
    assert.equal(value(out, 'STATUS'), '0');
    assert.equal(value(out, 'MISSING'), '1', out);
    assert.match(out, /the accept loop \(as nobody\) exited with status 127 before it started/);
    assert.match(out, /Give COMMAND as a program nobody may run/);
    assert.equal(value(out, 'FREE'), '0', 'nothing may stay bound after a failed start');
    assert.deepEqual(trackingCgroups(), []);
  });
});
