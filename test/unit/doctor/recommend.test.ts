/** doctor's choice of fix, on made-up machines. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recommend, type PortVerdict, type Situation } from '../../../src/doctor/recommend.js';

const refused = (port: number, error = 'EACCES'): PortVerdict => ({ port, canBind: false, errors: [error], heldBy: [], grantedBy: [] });

function situation(over: Partial<Situation> = {}): Situation {
  return {
    user: 'alice',
    ports: [refused(80), refused(443)],
    policyFile: '/etc/lowport/policy',
    bpfGrantPossible: true,
    bpfMissing: [],
    policyNotApplied: false,
    systemd: true,
    nft: true,
    sysctlStart: 1024,
    lowport: 'lowport',
    ...over,
  };
}

describe('recommend', () => {
  it('says there is nothing to do when every port binds', () => {
    const r = recommend(situation({ ports: [{ port: 80, canBind: true, errors: [], heldBy: [], grantedBy: [3] }] }));
    assert.equal(r.recommendation.method, 'none');
    assert.equal(r.alternatives.length, 0);
  });

  it('recommends a lowport grant for exactly the refused ports where the BPF path works, with the others as alternatives', () => {
    const r = recommend(situation());
    assert.equal(r.recommendation.method, 'lowport-grant');
    assert.equal(r.recommendation.command, 'sudo lowport grant 80,443 --user alice');
    assert.deepEqual(
      r.alternatives.map((a) => a.method),
      ['lowport-run', 'systemd-ambient', 'nft-redirect', 'userspace-forward', 'sysctl'],
    );
    assert.equal(r.alternatives[0]?.command, 'sudo lowport run --port 80,443 --user alice -- YOUR-SERVER');
  });

  it('falls back to systemd ambient capabilities, narrowed with SocketBindAllow, where BPF cannot grant', () => {
    const r = recommend(situation({ bpfGrantPossible: false, bpfMissing: ['Linux 5.12 or later'] }));
    assert.equal(r.recommendation.method, 'systemd-ambient');
    assert.match(r.recommendation.command, /AmbientCapabilities=CAP_NET_BIND_SERVICE/);
    assert.match(r.recommendation.command, /SocketBindAllow=tcp:80 tcp:443\nSocketBindDeny=any/);
  });

  it('offers the userspace forwarder where nftables is missing too (it needs neither BPF nor nft), and says what the server sees', () => {
    const r = recommend(situation({ bpfGrantPossible: false, systemd: false, nft: false }));
    const methods = r.alternatives.map((a) => a.method);
    assert.ok(!methods.includes('nft-redirect'));
    const forward = r.alternatives.find((a) => a.method === 'userspace-forward');
    assert.equal(forward?.command, 'sudo lowport forward serve 80 8080');
    assert.match(forward?.why ?? '', /127\.0\.0\.1 unless it reads a PROXY protocol header/);
  });

  it('without BPF or systemd: socket passing first, then an nftables redirect that covers local clients, ambient capabilities with their warning, and the sysctl last', () => {
    const r = recommend(situation({ bpfGrantPossible: false, systemd: false }));
    assert.equal(r.recommendation.method, 'lowport-run-sockets');
    assert.equal(r.recommendation.command, 'sudo lowport run --sockets --port 80,443 --user alice -- YOUR-SERVER');
    assert.deepEqual(
      r.alternatives.map((a) => a.method),
      ['nft-redirect', 'userspace-forward', 'lowport-run-caps', 'sysctl'],
    );
    assert.match(r.alternatives[2]?.why ?? '', /EVERY port below 1024/);
    assert.equal(r.alternatives[1]?.command, 'sudo lowport forward serve 80 8080');
    const nft = r.alternatives[0];
    assert.ok(nft !== undefined);
    assert.equal(nft.command, 'sudo lowport forward add 80 8080');
    assert.equal(r.alternatives.at(-1)?.method, 'sysctl');
    assert.equal(r.alternatives.at(-1)?.command, 'sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80');
  });

  it('offers setcap only for a binary, and warns when the binary runs scripts', () => {
    const bare = recommend(
      situation({
        bpfGrantPossible: false,
        systemd: false,
        nft: false,
        program: { path: '/usr/bin/caddy', isScript: false, runsScripts: false },
      }),
    );
    const setcap = bare.alternatives.find((a) => a.method === 'setcap');
    assert.equal(setcap?.command, 'sudo setcap cap_net_bind_service=+ep /usr/bin/caddy');
    assert.equal(bare.recommendation.command, 'sudo lowport run --sockets --port 80,443 --user alice -- /usr/bin/caddy');
    const python = recommend(
      situation({
        bpfGrantPossible: false,
        systemd: false,
        nft: false,
        program: { path: '/usr/bin/python3', isScript: false, runsScripts: true },
      }),
    );
    assert.match(python.alternatives.find((a) => a.method === 'setcap')?.why ?? '', /every script of every user/);
    const script = recommend(
      situation({ program: { path: '/srv/app.py', isScript: true, interpreter: '/usr/bin/python3', runsScripts: false } }),
    );
    assert.ok(![script.recommendation, ...script.alternatives].some((r) => r.method === 'setcap'));
  });

  it('points at the holder of a port that is in use instead of granting it', () => {
    const r = recommend(
      situation({
        ports: [{ port: 80, canBind: false, errors: ['EADDRINUSE'], heldBy: [{ pid: 4242, command: 'nginx', uid: 33 }], grantedBy: [] }],
      }),
    );
    assert.equal(r.recommendation.method, 'free-port');
    assert.match(r.recommendation.command, /^kill 4242/);
    assert.match(r.recommendation.why, /nginx \(pid 4242, uid 33\)/);
  });

  it('names the reservation that refuses the port, and does not offer to grant it', () => {
    const r = recommend(situation({ ports: [{ ...refused(5432, 'EPERM'), reservedFor: { who: 'user postgres', line: 7 } }] }));
    assert.equal(r.recommendation.method, 'unreserve');
    assert.match(r.recommendation.why, /reserved for user postgres \(line 7 of \/etc\/lowport\/policy\)/);
    assert.ok(!r.alternatives.some((a) => a.method === 'lowport-grant'));
  });

  it('takes a reserved port’s EADDRINUSE (bpf_set_retval) for the reservation, not for a port in use', () => {
    const alone = { port: 5432, canBind: false, errors: ['EADDRINUSE'], heldBy: [], grantedBy: [] };
    const r = recommend(situation({ ports: [{ ...alone, reservedFor: { who: 'user postgres', line: 7 } }] }));
    assert.equal(r.recommendation.method, 'unreserve');
    assert.match(r.recommendation.why, /everyone else gets EADDRINUSE \(the reservation’s: no socket holds the port\)/);
    assert.ok(![r.recommendation, ...r.alternatives].some((a) => a.method === 'free-port' || a.method === 'lowport-grant'));
    // Held by its owner too: still the reservation first (freeing the port would not let this user in).
    const held = recommend(
      situation({
        ports: [{ ...alone, heldBy: [{ pid: 99, command: 'postgres', uid: 111 }], reservedFor: { who: 'user postgres', line: 7 } }],
      }),
    );
    assert.equal(held.recommendation.method, 'unreserve');
    assert.match(held.recommendation.why, /everyone else gets EADDRINUSE, whatever/);
    // The same errno with no reservation: a port in use.
    assert.equal(
      recommend(situation({ ports: [{ ...alone, heldBy: [{ pid: 99, command: 'x', uid: 1 }] }] })).recommendation.method,
      'free-port',
    );
  });

  it('says to apply when the file grants the port but the kernel has something else loaded', () => {
    const r = recommend(situation({ ports: [{ ...refused(80), grantedBy: [2] }], policyNotApplied: true }));
    assert.equal(r.recommendation.method, 'lowport-apply');
    assert.equal(r.recommendation.command, 'sudo lowport apply');
  });
});

describe('recommend: advice that must not be wrong (issue 12)', () => {
  it('says to apply, and why, when the file grants what the kernel refused, even where the live rules are not visible', () => {
    const why =
      'group membership is expanded when the policy is applied, so the kernel has the members of group dns as of the last `lowport apply`';
    const r = recommend(situation({ ports: [{ ...refused(53), grantedBy: [4], notLive: why }], policyNotApplied: false }));
    assert.equal(r.recommendation.method, 'lowport-apply');
    assert.equal(r.recommendation.command, 'sudo lowport apply');
    assert.ok(r.recommendation.why.endsWith(`not what the kernel has loaded: ${why}`), r.recommendation.why);
    // Without a reason from the bind test and with the live rules in sync, a grant line alone is not enough.
    assert.notEqual(recommend(situation({ ports: [{ ...refused(53), grantedBy: [4] }] })).recommendation.method, 'lowport-apply');
  });

  it('never offers setcap on a container tool, and says the grant covers rootless containers’ published ports', () => {
    for (const container of ['podman', 'docker', 'rootlesskit', 'rootlessport', 'nerdctl']) {
      const r = recommend(
        situation({ ports: [refused(80)], program: { path: `/usr/bin/${container}`, isScript: false, runsScripts: false, container } }),
      );
      assert.ok(![r.recommendation, ...r.alternatives].some((o) => o.method === 'setcap'), container);
      assert.equal(r.recommendation.method, 'lowport-grant');
      assert.match(
        r.recommendation.why,
        new RegExp(`works for rootless containers' published ports too \\(${container} run -p 80:8080\\)`),
      );
    }
    // An ordinary binary still gets setcap as an alternative.
    const plain = recommend(situation({ program: { path: '/usr/bin/caddy', isScript: false, runsScripts: false } }));
    assert.ok(plain.alternatives.some((a) => a.method === 'setcap'));
  });

  it('for a JVM under a grant of 0.0.0.0 only, recommends granting :: and names the system property', () => {
    const r = recommend(
      situation({
        ports: [{ ...refused(8443), boundOn: ['0.0.0.0'], jvmWildcardOnly: { lines: [3], protocols: ['tcp'] } }],
        program: { path: '/usr/bin/java', isScript: false, runsScripts: true, jvm: true },
      }),
    );
    assert.equal(r.recommendation.method, 'lowport-grant');
    assert.equal(r.recommendation.command, 'sudo lowport grant 8443/tcp --user alice --addr ::');
    assert.match(
      r.recommendation.why,
      /binds `::`.*line 3 of \/etc\/lowport\/policy grants 8443 on 0\.0\.0\.0 only.*-Djava\.net\.preferIPv4Stack=true/,
    );
  });

  it('says which addresses already bind when a grant covers only some', () => {
    const r = recommend(situation({ ports: [{ ...refused(53), boundOn: ['127.0.0.1', '::1'] }] }));
    assert.equal(r.recommendation.method, 'lowport-grant');
    assert.match(r.recommendation.why, /Port 53 already binds on 127\.0\.0\.1, ::1 \(the grant there is for those addresses only\)/);
  });
});

describe('recommend, with names and paths other users chose', () => {
  // eslint-disable-next-line no-control-regex -- the test is about control characters
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;

  it('names the process holding a port by its pid in the command, never by the name its owner gave it', () => {
    const comm = 'x\nsudo rm -rf / #\x1b[2J';
    const r = recommend(
      situation({
        ports: [{ port: 80, canBind: false, errors: ['EADDRINUSE'], heldBy: [{ pid: 4242, command: comm, uid: 1000 }], grantedBy: [] }],
      }),
    );
    assert.equal(r.recommendation.method, 'free-port');
    assert.equal(r.recommendation.command, 'kill 4242   # or stop the service that runs pid 4242');
    assert.doesNotMatch(r.recommendation.command, RAW);
  });

  it('shell-quotes user names and program paths in every command, and gives User= a uid when the name is not plain', () => {
    const user = "ev'il\nid";
    const path = '/home/x/my server;reboot';
    const r = recommend(situation({ user, uid: 1234, program: { path, isScript: false, runsScripts: false } }));
    assert.equal(r.recommendation.command, `sudo lowport grant 80,443 --user $'ev\\'il\\nid'`);
    for (const c of [r.recommendation, ...r.alternatives]) {
      const lines = c.method === 'systemd-ambient' ? c.command.split('\n') : [c.command];
      for (const line of lines) assert.doesNotMatch(line, RAW, `${c.method}: ${line}`);
    }
    assert.equal(
      r.alternatives.find((a) => a.method === 'lowport-run')?.command,
      `sudo lowport run --port 80,443 --user $'ev\\'il\\nid' -- '/home/x/my server;reboot'`,
    );
    assert.equal(
      r.alternatives.find((a) => a.method === 'setcap')?.command,
      `sudo setcap cap_net_bind_service=+ep '/home/x/my server;reboot'`,
    );
    const dropIn = r.alternatives.find((a) => a.method === 'systemd-ambient')?.command ?? '';
    assert.match(dropIn, /^User=1234$/m);
    assert.equal(dropIn.split('\n').length, 8);
  });

  it('does not say to apply where the kernel refuses BPF: the grant in the file cannot go live there', () => {
    const r = recommend(
      situation({
        ports: [{ ...refused(80), grantedBy: [2] }],
        policyNotApplied: true,
        bpfGrantPossible: false,
        bpfMissing: ['BPF, which this kernel refuses to this process'],
        systemd: false,
      }),
    );
    assert.ok(![r.recommendation, ...r.alternatives].some((o) => o.method === 'lowport-apply'), JSON.stringify(r));
    assert.equal(r.recommendation.method, 'lowport-run-sockets');
  });
});
