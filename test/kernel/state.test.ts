/**
 * Kernel tests (root): what lowport keeps under /run/lowport for an instance
 * (the applied text, the scopes of running runs) is that instance's alone,
 * used only while it matches what is live, and never read or written through
 * a symlink.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { refreshLive } from '../../src/ops/apply.js';
import { readLivePolicy } from '../../src/grants/live.js';
import { appliedText, forgetAppliedText, saveAppliedText } from '../../src/grants/scopes.js';
import { withStateDir } from '../../src/policy-file/state.js';
import { binds, CLI, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const noNft = spawnSync('sh', ['-c', 'command -v nft'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).status !== 0;

function liveRules(pinDir: string): string {
  const t = readLivePolicy(pinDir)?.table;
  return Array.from({ length: t?.count ?? 0 }, (_, i) => t?.keyString(i))
    .sort()
    .join(',');
}

describe('instance state under /run/lowport', { skip }, () => {
  let box: Sandbox;
  let other: Sandbox;
  // Two pin directories that the old naming (every character but [A-Za-z0-9_-] made '_') gave one name.
  let one: { policy: string; cgroup: string; pinDir: string };
  let two: { policy: string; cgroup: string; pinDir: string };
  const TEXT_ONE = 'grant 80 user nobody\n';
  const TEXT_TWO = 'grant 1-1023 everyone\n';

  before(() => {
    box = new Sandbox('state');
    other = new Sandbox('state-other');
    one = { ...box.options, pinDir: join(box.bpffs, 'a_b') };
    two = { ...other.options, pinDir: join(box.bpffs, 'a', 'b') };
    box.writePolicy(TEXT_ONE);
    other.writePolicy(TEXT_TWO);
  });
  after(async () => {
    for (const o of [one, two]) {
      forgetAppliedText(o);
      await box.cli('off', '--policy', o.policy, '--cgroup', o.cgroup, '--pin-dir', o.pinDir);
    }
    rmSync(join('/run/lowport', `applied${one.pinDir.replace(/[^A-Za-z0-9_-]/g, '_')}.json`), { force: true });
    await other?.dispose();
    await box?.dispose();
  });

  async function applyTo(o: typeof one): Promise<void> {
    const r = await box.cli('apply', '--policy', o.policy, '--cgroup', o.cgroup, '--pin-dir', o.pinDir);
    assert.equal(r.code, 0, r.stderr);
  }

  it('keeps the applied text of two instances whose pin directories used to share a name apart', async () => {
    await applyTo(one);
    await applyTo(two);
    assert.equal(appliedText(one), TEXT_ONE);
    assert.equal(appliedText(two), TEXT_TWO);
    const before = liveRules(one.pinDir);
    // What a `lowport run` starting or ending in instance one does.
    refreshLive(one, { cgroup: one.cgroup, pinDir: one.pinDir }, { onlyIfLive: true });
    assert.equal(liveRules(one.pinDir), before, 'instance one got instance two’s policy');
    assert.deepEqual(box.probe({}, binds(81, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('uses a saved text only when its fingerprint is the one live', async () => {
    await applyTo(one);
    const before = liveRules(one.pinDir);
    // A record that is not what is live (stale, or planted): it must not go live.
    saveAppliedText(one, 'grant 1-1023 everyone\n');
    refreshLive(one, { cgroup: one.cgroup, pinDir: one.pinDir }, { onlyIfLive: true });
    assert.equal(liveRules(one.pinDir), before);
    assert.deepEqual(box.probe({}, binds(81, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    // Nor, with a file changed since, does anything: the existing error says to apply.
    // (The refresh above recorded the live text again, so plant the stale record anew.)
    saveAppliedText(one, 'grant 1-1023 everyone\n');
    box.writePolicy('grant 82 user nobody\n');
    try {
      assert.throws(
        () => refreshLive(one, { cgroup: one.cgroup, pinDir: one.pinDir }, { onlyIfLive: true }),
        /the text of the live policy is not known here/,
      );
      assert.equal(liveRules(one.pinDir), before);
    } finally {
      box.writePolicy(TEXT_ONE);
    }
  });

  it('never writes through a symlink planted at the applied record', async () => {
    const victim = join(box.dir, 'victim');
    writeFileSync(victim, 'root:secret\n');
    const hash = createHash('sha256').update(one.pinDir).digest('hex');
    const record = join('/run/lowport', `instance-${hash}`, 'applied.json');
    const oldRecord = join('/run/lowport', `applied${one.pinDir.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
    await applyTo(one);
    mkdirSync(dirname(record), { recursive: true, mode: 0o700 });
    rmSync(record, { force: true });
    symlinkSync(victim, record);
    rmSync(oldRecord, { force: true });
    symlinkSync(victim, oldRecord);
    try {
      await applyTo(one);
      assert.equal(readFileSync(victim, 'utf8'), 'root:secret\n', 'root wrote through the symlink');
      assert.ok(lstatSync(record).isFile(), 'the record replaced the symlink');
    } finally {
      rmSync(oldRecord, { force: true });
    }
    // And a symlink is not read either.
    rmSync(record);
    symlinkSync(victim, record);
    assert.throws(() => appliedText(one), /is a symlink, which lowport never makes/);
    rmSync(record);
  });

  it('refuses a state directory that is a symlink or not root’s alone', () => {
    const base = join(box.dir, 'state');
    mkdirSync(base, { mode: 0o755 });
    const userDir = join(base, 'user');
    mkdirSync(userDir, { mode: 0o700 });
    chownSync(userDir, NOBODY, NOBODY);
    symlinkSync('/etc', join(base, 'link'));
    const open = (root: string) => withStateDir([], { create: true, root }, () => true);
    assert.throws(() => open(userDir), /is not root's alone \(uid 65534/);
    assert.throws(() => open(join(base, 'link')), /is a symlink/);
    assert.throws(() => open(join(base, 'link', 'x')), /is a symlink/);
  });

  /**
   * A persisted forward (a `forward` statement) changes the file's text but
   * no grant: `list` must not then call the file different from the live
   * rules. The CLI runs as its own process in a private network namespace,
   * so the nftables redirects live and die there.
   */
  it('keeps list in sync with the file across forward add --persist and forward remove', { skip: noNft && 'nft is not installed' }, () => {
    const G = box.args.join(' ');
    const run = (script: string): string => {
      const r = spawnSync('unshare', ['--net', '--', 'sh', '-ec', `ip link set lo up\n${script}`], {
        encoding: 'utf8',
        env: { ...process.env, LOWPORT: `${process.execPath} ${CLI}` },
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    const listed = (out: string): { file: string; rules: { line: number; ports: string }[] }[] =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { file: string; rules: { line: number; ports: string }[] });
    const compact = `sed -e 's/^ *//' | tr -d '\\n'; echo`;
    // The forward first, so that removing it moves the grant up a line.
    box.writePolicy('forward 80/tcp to 8080\n# web\ngrant 8000 user nobody\n');
    try {
      const out = run(`
        $LOWPORT apply ${G} >/dev/null
        $LOWPORT list --json ${G} | ${compact}
        $LOWPORT forward remove 80/tcp ${G} >/dev/null
        $LOWPORT list --json ${G} | ${compact}
        $LOWPORT forward add 443/tcp 8443 --persist ${G} >/dev/null
        $LOWPORT list --json ${G} | ${compact}
        $LOWPORT forward remove 443/tcp ${G} >/dev/null
        $LOWPORT off ${G} >/dev/null
      `);
      const [applied, removed, added] = listed(out);
      assert.equal(applied?.file, 'in-sync', out);
      assert.deepEqual(
        applied?.rules.map((r) => [r.line, r.ports]),
        [[3, '8000']],
      );
      assert.equal(removed?.file, 'in-sync', out);
      // The live rule's line follows the file: the grant is line 2 now.
      assert.deepEqual(
        removed?.rules.map((r) => [r.line, r.ports]),
        [[2, '8000']],
      );
      assert.equal(added?.file, 'in-sync', out);
      assert.equal(box.readPolicy(), '# web\ngrant 8000 user nobody\n');
    } finally {
      box.writePolicy(TEXT_ONE);
    }
  });

  it('off says the file stays and comes back whole; the next edit names every rule it made live again', async () => {
    // Ports instance one (same cgroup, TEXT_ONE) does not grant.
    box.writePolicy('grant 85 user nobody\n# db\nreserve 5433 user daemon\ngrant 86 user nobody\n');
    try {
      assert.equal((await box.cli('apply')).code, 0);
      const off = await box.cli('off');
      assert.equal(off.code, 0, off.stderr);
      assert.match(off.stdout, /lowport is off: removed everything at /);
      assert.match(
        off.stdout,
        /The policy file \S+ stays as it is, with its 3 rules: the next `lowport apply`, `grant`, `revoke`, `reserve` or `unreserve` makes all of them live again\. To drop a rule for good, `lowport revoke` or `lowport unreserve` it, or edit the file\./,
      );
      assert.equal((JSON.parse((await box.cli('off', '--json')).stdout) as { policyRules?: number }).policyRules, 3);
      assert.deepEqual(box.probe({}, binds(85, ['127.0.0.1'], ['tcp'])), ['EACCES']);

      // One revoke, and the two other rules are back.
      const revoke = await box.cli('revoke', '86', '--user', 'nobody');
      assert.equal(revoke.code, 0, revoke.stderr);
      assert.match(revoke.stderr, /lowport: lowport was off, and this edit made 2 other rules of the file live again too/);
      assert.match(revoke.stderr, /^lowport: {3}line 1: grant 85 user nobody \(uid 65534\)$/m);
      assert.match(revoke.stderr, /^lowport: {3}line 3: reserve 5433 user daemon \(uid 1\)$/m);
      assert.deepEqual(box.probe({}, binds(85, ['127.0.0.1'], ['tcp'])), ['ok']);

      // Now on: an edit revives nothing, and says nothing of it.
      const grant = await box.cli('grant', '87', '--user', 'nobody', '--json');
      assert.equal(grant.code, 0, grant.stderr);
      assert.deepEqual((JSON.parse(grant.stdout) as { revived: unknown[] }).revived, []);

      // The clash warning apply prints, an edit prints too: here at the grant, since the reservation's line (3) is the edit's.
      assert.equal((await box.cli('grant', '5400-5499/tcp', '--everyone')).code, 0);
      const reserve = await box.cli('reserve', '5432', '--user', 'daemon');
      assert.equal(reserve.code, 0, reserve.stderr);
      assert.match(
        reserve.stderr,
        /policy:4:7-19: warning: the grant to everyone does not open 5432-5433\/tcp: line 3 reserves it for user daemon/,
      );
      assert.match(reserve.stderr, /policy:3:9-17: note: reserved here/);
    } finally {
      await box.cli('off');
      box.writePolicy(TEXT_ONE);
    }
  });
});
