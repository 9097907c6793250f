/**
 * Kernel tests (root): lowport as root WITHOUT CAP_BPF and CAP_SYS_ADMIN, as
 * in a container that lacks them (capsh drops both from the bounding set).
 * The feature probes (bpf/probes.ts) find the refusal: grant and apply say
 * what is missing and point to doctor, doctor reports each probe and
 * recommends a fallback, and that fallback serves a real client on port 80.
 * lowport runs in a private network namespace (made before the drop:
 * unshare itself needs CAP_SYS_ADMIN).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { probeBindReturn, probeFeatures } from '../../src/bpf/probes.js';
import { binds, kernelSkipReason, PackageCopy, Sandbox } from './sandbox.js';

// capsh is libcap2-bin's, installed by .ci/run and in the VM image: its absence fails the test rather than skipping it.
const skip = kernelSkipReason({ curl: 'curl' });

interface DoctorJson {
  checks: { id: string; status: string; detail: string }[];
  recommendation?: { method: string; command: string };
}

describe('root without CAP_BPF and CAP_SYS_ADMIN', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('nobpf');
    pkg = new PackageCopy();
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /** A bash script in a fresh network namespace; `$NOBPF CMD...` runs CMD as root without the two capabilities. */
  function inNetns(script: string): { status: number | null; out: string } {
    const file = join(box.dir, 'nobpf.sh');
    const helpers = `waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: no $what within $limit s"; return 1; }
    sleep 0.1
  done
}
NOBPF() { capsh --drop=cap_bpf,cap_sys_admin -- -c 'exec "$@"' lowport-test "$@"; }
# In the background (cmd &: a subshell), exec all the way down, so that $! is lowport itself and gets the SIGTERM.
NOBPF_BG() { exec capsh --drop=cap_bpf,cap_sys_admin -- -c 'exec "$@"' lowport-test "$@"; }`;
    writeFileSync(
      file,
      `set -u\nip link set lo up\nLOWPORT="${process.execPath} ${pkg.cli}"\nG="${box.args.join(' ')}"\n${helpers}\n${script}\n`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1];
  }

  it('grant and apply say that BPF is refused here, and point to doctor', () => {
    const { status, out } = inNetns(`
      NOBPF $LOWPORT grant 80 --user nobody $G 2>&1; echo "GRANT=$?"
      NOBPF cat /proc/self/status | grep -E '^CapBnd' | sed 's/:\\s*/=/'
    `);
    assert.equal(status, 0, `the script ended on its own, not at the time-out\n${out}`);
    assert.equal(value(out, 'GRANT'), '1', out);
    assert.match(out, /the kernel does not let this process use BPF \(load `r0 = 3; exit` for BPF_CGROUP_INET4_BIND: EPERM\)/);
    assert.match(out, /Run `lowport doctor` to see what is refused/);
    // The drop is real: bit 21 (CAP_SYS_ADMIN) and bit 39 (CAP_BPF) are gone from the bounding set.
    const bounding = BigInt(`0x${value(out, 'CapBnd') ?? '0'}`);
    assert.equal(bounding & (1n << 21n), 0n, out);
    assert.equal(bounding & (1n << 39n), 0n, out);
    assert.notEqual(bounding & (1n << 10n), 0n, 'CAP_NET_BIND_SERVICE stays');
    assert.equal(existsSync(box.policy), false, 'the refused grant wrote no policy file');

    box.writePolicy('grant 80 user nobody\n');
    const applied = inNetns(`NOBPF $LOWPORT apply $G 2>&1; echo "APPLY=$?"`);
    assert.equal(value(applied.out, 'APPLY'), '1', applied.out);
    assert.match(applied.out, /does not let this process use BPF/);
    assert.equal(existsSync(box.pinDir), false, 'nothing was loaded');
  });

  it('doctor reports each probe, and its recommended fallback serves curl on port 80 as nobody', () => {
    const server = join(box.dir, 'server.cjs');
    writeFileSync(server, `require('http').createServer((q, s) => s.end('uid ' + process.getuid())).listen({ fd: 3 });`);
    const { status, out } = inNetns(`
      NOBPF $LOWPORT doctor --port 80 --user nobody --json $G > ${box.dir}/doctor.json
      NOBPF_BG $LOWPORT run --sockets --port 80/tcp --user nobody $G -- ${process.execPath} ${server} &
      lp=$!
      body=
      serving() { body=$(curl -s http://127.0.0.1:80/) && [ -n "$body" ]; }
      waitfor 120 'an answer on port 80' serving
      echo "BODY=$body"
      kill -TERM $lp; wait $lp; echo "RUN_EXIT=$?"
    `);
    const report = JSON.parse(readFileSync(join(box.dir, 'doctor.json'), 'utf8')) as DoctorJson;
    const check = (id: string) => report.checks.find((c) => c.id === id);
    assert.equal(check('kernel')?.status, 'fail', out);
    assert.match(check('kernel')?.detail ?? '', /does not let this process use BPF/);
    assert.match(check('probe:bind-return-3')?.detail ?? '', /EPERM/);
    assert.match(check('probe:hash-map')?.detail ?? '', /EPERM/);
    assert.equal(check('probe:cgroup-link')?.status, 'fail');
    // The audit trail's probe is refused too, and says what that means for a `log` statement.
    assert.equal(check('probe:ringbuf')?.status, 'info');
    assert.match(check('probe:ringbuf')?.detail ?? '', /: EPERM: no audit trail: apply refuses a policy with a 'log' statement/);
    // The recommendation needs no BPF; it is the one run here, end to end.
    assert.equal(report.recommendation?.method, 'lowport-run-sockets', JSON.stringify(report.recommendation));
    assert.equal(status, 0, `the script ended on its own, not at the time-out\n${out}`);
    assert.equal(value(out, 'BODY'), 'uid 65534', out);
    // SIGTERM ends the run and its server (143: the server's status, killed by the relayed signal).
    assert.match(value(out, 'RUN_EXIT') ?? '', /^(0|143)$/, out);
    assert.equal(existsSync(box.pinDir), false, 'nothing of lowport in BPF');
  });

  it('off still takes down what is live, though the probes now fail (the review: it said "already off" and left the grants)', async () => {
    const granted = await box.cli('grant', '80', '--user', 'nobody');
    assert.equal(granted.code, 0, granted.stderr);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok']);
    const { status, out } = inNetns(`NOBPF $LOWPORT off $G 2>&1; echo "OFF=$?"`);
    assert.equal(status, 0, out);
    assert.equal(value(out, 'OFF'), '0', out);
    assert.match(out, /lowport is off: removed everything/);
    assert.equal(existsSync(box.pinDir), false, out);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['EACCES'], 'the grant ended');
  });
});

describe('feature probes on this kernel', { skip: kernelSkipReason() }, () => {
  it('all pass here, once per process', () => {
    const first = probeFeatures();
    assert.deepEqual(
      first.map((r) => [r.name, r.ok]),
      [
        ['bind-return-3', true],
        ['cgroup-link', true],
        ['hash-map', true],
        ['array-of-maps', true],
        ['port-filter', true],
      ],
    );
    assert.equal(probeFeatures(), first, 'cached');
  });

  it('report a verifier refusal with its errno and the verifier line (a return value of 4, refused by every kernel)', () => {
    const { result, fd } = probeBindReturn(4);
    assert.equal(fd, undefined);
    assert.equal(result.ok, false);
    assert.equal(result.errno, 'EINVAL');
    assert.match(result.verifier ?? '', /R0/, JSON.stringify(result));
    assert.doesNotMatch(result.verifier ?? '', /^processed/);
  });
});
