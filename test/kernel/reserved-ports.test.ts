/**
 * Kernel tests (root): a reserved port inside net.ipv4.ip_local_port_range is
 * not handed out by the kernel's own choice of port (issue 9, finding 12).
 * Since Linux 6.3 any user narrows bind(port 0) to one port with
 * IP_LOCAL_PORT_RANGE, which the bind hook never sees; lowport lists the port
 * in net.ipv4.ip_local_reserved_ports and takes it out again when the
 * reservation goes, leaving the admin's entries. Everything runs in a private
 * network namespace, whose sysctls are its own.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CLI, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ python3: 'python3', sysctl: 'procps' });
const PORT = 40000; // inside the default range, 32768-60999, of a new network namespace

/** Binds port 0 again and again, narrowed to PORT with IP_LOCAL_PORT_RANGE (51, Linux 6.3+); prints the ports or errors it got. */
const CLIENT = `
import errno, socket, struct, sys
P = ${PORT}
got = set()
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    for _ in range(20):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.setsockopt(socket.IPPROTO_IP, 51, struct.pack('=I', P | (P << 16)))
        except OSError as e:
            print("SKIP " + errno.errorcode.get(e.errno, str(e.errno)))
            sys.exit(0)
        try:
            s.bind(("127.0.0.1", 0))
            got.add(str(s.getsockname()[1]))
        except OSError as e:
            got.add(errno.errorcode.get(e.errno, str(e.errno)))
        s.close()
print("GOT " + ",".join(sorted(got)))
`;

describe("reserved ports and the kernel's own choice of port", { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('reserved-ports');
  });
  after(() => box?.dispose());

  it("keeps a reserved port inside ip_local_port_range from bind(0) with IP_LOCAL_PORT_RANGE, and gives the admin's sysctl back on unreserve and off", (t) => {
    const lowport = `${process.execPath} ${CLI} ${box.args.map((a) => `'${a}'`).join(' ')}`;
    const client = `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs /usr/bin/python3 -c "$CLIENT"`;
    const reserved = 'cat /proc/sys/net/ipv4/ip_local_reserved_ports';
    const script = `
      set -u
      ip link set lo up
      echo ${PORT + 1},50000 > /proc/sys/net/ipv4/ip_local_reserved_ports   # the admin's
      echo "BEFORE=$(${client})"
      ${lowport} reserve ${PORT}-${PORT + 1} --user daemon >/dev/null; echo "RESERVE=$?"
      echo "RESERVED=$(${reserved})"
      echo "AFTER=$(${client})"
      ${lowport} apply >/dev/null; echo "APPLY=$?"
      echo "REAPPLIED=$(${reserved})"
      ${lowport} unreserve ${PORT}-${PORT + 1} >/dev/null; echo "UNRESERVE=$?"
      echo "UNRESERVED=$(${reserved})"
      ${lowport} reserve ${PORT} --user daemon >/dev/null
      echo "AGAIN=$(${reserved})"
      ${lowport} off >/dev/null; echo "OFF=$?"
      echo "OFFED=$(${reserved})"
    `;
    const r = spawnSync('unshare', ['--net', '--', 'sh', '-c', script], {
      encoding: 'utf8',
      env: { ...process.env, CLIENT },
      timeout: 120_000,
    });
    const out = r.stdout;
    const value = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1];
    assert.equal(r.status, 0, `${out}\n${r.stderr}`);
    if (value('BEFORE')?.startsWith('SKIP') === true) {
      t.skip(`this kernel has no IP_LOCAL_PORT_RANGE (${value('BEFORE')}): Linux 6.3 or later`);
      return;
    }
    // Without the reservation, the narrowed port 0 lands on PORT every time.
    assert.equal(value('BEFORE'), `GOT ${PORT}`, out);
    assert.equal(value('RESERVE'), '0', r.stderr);
    assert.equal(value('RESERVED'), `${PORT}-${PORT + 1},50000`, out);
    assert.equal(value('AFTER'), 'GOT EADDRINUSE', out);
    assert.equal(value('APPLY'), '0', r.stderr);
    assert.equal(value('REAPPLIED'), `${PORT}-${PORT + 1},50000`, out);
    assert.equal(value('UNRESERVE'), '0', r.stderr);
    // PORT+1 was the admin's before lowport reserved it too: it stays.
    assert.equal(value('UNRESERVED'), `${PORT + 1},50000`, out);
    assert.equal(value('AGAIN'), `${PORT}-${PORT + 1},50000`, out);
    assert.equal(value('OFF'), '0', r.stderr);
    assert.equal(value('OFFED'), `${PORT + 1},50000`, out);
  });
});
