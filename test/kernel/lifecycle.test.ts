/**
 * Kernel tests (root): apply, off and the safety rules around them: a bad or
 * unsafe policy changes nothing live, concurrent edits both land, a killed
 * apply leaves the old policy or the new one, and off leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { compileDocument } from '../../src/grants/document.js';
import { HOOKS, readLivePolicy } from '../../src/grants/live.js';
import type { EntryTable } from '../../src/grants/map-format.js';
import { OwnedFd, withHandle } from '../../src/bpf/handles.js';
import { progQuery } from '../../src/bpf/syscall.js';
import { openDir } from '../../src/os/process.js';
import { parsePolicy } from '../../src/policy/parse.js';
import { STATE_DIR } from '../../src/policy-file/state.js';
import { binds, CLI, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

function attachedCount(cgroup: string): number {
  return withHandle(new OwnedFd(openDir(cgroup), `cgroup ${cgroup}`), (c) =>
    HOOKS.reduce((n, h) => n + progQuery(c.fd, h.attachType).progIds.length, 0),
  );
}

/** The entries of a table as sorted text: key bytes and rule line, not hits. */
function signature(t: EntryTable | undefined): string {
  return Array.from({ length: t?.count ?? 0 }, (_, i) => `${t?.keyString(i)}=${t?.rule(i)}`)
    .sort()
    .join('\n');
}

/** Runs the built CLI to its end; resolves to its exit code. */
function runCli(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: 'ignore' });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

describe('apply and off', { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('lifecycle');
  });
  after(() => box?.dispose());

  it('loads a hand-written policy with apply, and checks one without root-only steps with apply --check', async () => {
    box.writePolicy('# web\ngrant 80 user nobody   # the dev server\n');
    const check = await box.cli('apply', '--check');
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /OK, 1 rule/);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('rejects a malformed policy whole, names every error with line and column, and changes nothing live', async () => {
    const before = signature(readLivePolicy(box.pinDir)?.table);
    box.writePolicy('grant 80 user nobody\ngrant 70000 user nobody\nallow 22 user nobody\ngrant 81 user no-such-user-xyz\n');
    const r = await box.cli('apply');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /policy:2:7-11: error: port 70000 is out of range/);
    assert.match(r.stderr, /policy:3:1-5: error: unknown statement 'allow'/);
    assert.match(r.stderr, /\ngrant 70000 user nobody\n {6}\^~{4}\n/); // a caret and tildes under 70000
    assert.equal(signature(readLivePolicy(box.pinDir)?.table), before);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('refuses a port reserved for two owners, marking the first reservation, and changes nothing live', async () => {
    // An error since policy/owners.ts (a warning before, which left both owners able to bind it).
    const before = signature(readLivePolicy(box.pinDir)?.table);
    box.writePolicy('grant 80 user nobody\nreserve 5432 user nobody\nreserve 5432 user daemon\n');
    const r = await box.cli('apply');
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /policy:3:9-12: error: 5432 is already reserved for user nobody on line 2, so user daemon and user nobody would both bind it[^\n]*\nreserve 5432 user daemon\n {8}\^~{3}\n/,
    );
    assert.match(r.stderr, /policy:2:9-12: note: first reserved here\nreserve 5432 user nobody\n {8}\^~{3}\n/);
    assert.equal(signature(readLivePolicy(box.pinDir)?.table), before);
  });

  it('reports an unknown user at its line and column with exit 1, and makes the other lines live (names.test.ts has the rest)', async () => {
    box.writePolicy('grant 80 user nobody\ngrant 81 user no-such-user-xyz\n');
    const r = await box.cli('apply');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /policy:2:15-30: error: unknown user 'no-such-user-xyz'/);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('refuses a world-writable policy or directory, names the path and the fix, and changes nothing live', async () => {
    box.writePolicy('grant 80,81 user nobody\n');
    chmodSync(box.policy, 0o666);
    const r = await box.cli('apply');
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${box.policy} is world-writable`));
    assert.match(r.stderr, /chmod/);
    chmodSync(box.policy, 0o644);
    chmodSync(box.dir, 0o777);
    try {
      const d = await box.cli('grant', '82', '--user', 'nobody');
      assert.equal(d.code, 1);
      assert.match(d.stderr, new RegExp(`directory ${box.dir} is world-writable`));
    } finally {
      chmodSync(box.dir, 0o755);
    }
    assert.deepEqual(box.probe({}, binds(81, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('refuses a policy file that an ACL lets another user write, and keeps its lock file root-only', async () => {
    box.writePolicy('grant 80 user nobody\n');
    const set = spawnSync('setfacl', ['-m', 'u:nobody:rw', box.policy], { encoding: 'utf8' });
    assert.equal(set.status, 0, set.stderr);
    try {
      const r = await box.cli('apply');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /has an ACL that lets user 65534 write it/);
      assert.match(r.stderr, /setfacl -b/);
    } finally {
      spawnSync('setfacl', ['-b', box.policy]);
    }
    assert.equal((await box.cli('apply')).code, 0);
    const lock = statSync(join(box.dir, '.lowport.lock'));
    assert.equal(lock.uid, 0);
    assert.equal(lock.mode & 0o777, 0o600);
  });

  it('lands both of two concurrent grants', async () => {
    box.writePolicy('grant 80 user nobody\n');
    const codes = await Promise.all(
      ['1001', '1002', '1003', '1004'].map((port) => runCli(['grant', port, '--user', String(NOBODY), ...box.args])),
    );
    assert.deepEqual(codes, [0, 0, 0, 0]);
    assert.deepEqual(
      box.probe(
        {},
        ['1001', '1002', '1003', '1004'].flatMap((p) => binds(Number(p), ['127.0.0.1'], ['tcp'])),
      ),
      ['ok', 'ok', 'ok', 'ok'],
    );
    // The four edits merge into one statement; each was made on the file the previous one wrote.
    assert.match(box.readPolicy(), /^grant 1001-1004 user 65534$/m);
  });

  it('leaves the old policy or the new one live when apply is killed at any moment', async () => {
    const A = 'grant 10000-11999 user nobody\n';
    const B = 'grant 20000-21999 user daemon\nreserve 22000-22999 user daemon\n';
    const sigA = signature(compileDocument(parsePolicy(A, box.policy)).table);
    const sigB = signature(compileDocument(parsePolicy(B, box.policy)).table);
    // How long a whole apply takes here, so the kills can land anywhere in one.
    box.writePolicy(B);
    const started = Date.now();
    assert.equal(await runCli(['apply', ...box.args]), 0);
    const duration = Date.now() - started;
    let sawOld = 0;
    let sawNew = 0;
    // At least 16 rounds, and on until the kills have landed on both sides of the switch (a random delay can
    // miss one side a dozen times in a row: a kill that lands after the switch is about one in four), at most 64.
    for (let i = 0; i < 64 && (i < 16 || sawOld === 0 || sawNew === 0); i++) {
      // Every fourth round starts from nothing, so kills also land in a first install.
      if (i % 4 === 0) assert.equal((await box.cli('off')).code, 0);
      const old = signature(readLivePolicy(box.pinDir)?.table);
      const next = i % 2 === 0 ? A : B;
      box.writePolicy(next);
      const child = spawn(process.execPath, [CLI, 'apply', ...box.args], { stdio: 'ignore' });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      await sleep(Math.random() * duration * 1.2);
      child.kill('SIGKILL');
      await exited;
      const live = signature(readLivePolicy(box.pinDir)?.table);
      const wanted = next === A ? sigA : sigB;
      assert.ok(live === old || live === wanted, `round ${i}: the live policy is neither the old nor the new one`);
      if (live === wanted && live !== old) sawNew++;
      else sawOld++;
    }
    // The kills must have landed on both sides of the switch for the test to mean anything.
    assert.ok(sawOld > 0 && sawNew > 0, `old ${sawOld}, new ${sawNew}`);
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    // Only this instance's names: its stages beside the pin directory (lowport_stage_NAME-PID) and in it (stage-PID).
    const own = `lowport_stage_${basename(box.pinDir)}-`;
    const stale = [
      ...readdirSync(dirname(box.pinDir)).filter((n) => n.startsWith(own)),
      ...readdirSync(box.pinDir).filter((n) => n.startsWith('stage-')),
    ];
    assert.deepEqual(stale, [], 'a killed install left a staging directory that the next command did not remove');
    // Nor a temp file of the applied text (a kill between its create and its rename): the next apply removes it.
    assert.deepEqual(
      readdirSync(instanceDir(box)).filter((n) => n.endsWith('.tmp')),
      [],
    );
  });

  it('shows the programs of other instances on the same hooks in list', async () => {
    const other = new Sandbox('other');
    try {
      other.writePolicy('grant 99 user nobody\n');
      assert.equal((await other.cli('apply', '--cgroup', box.cgroup)).code, 0);
      type Listed = { programs: { ours: boolean; id: number }[] };
      const programs = (JSON.parse((await box.cli('list', '--json')).stdout) as Listed).programs;
      // The other instance's programs by id, as it lists them: a lowport running on the machine (attached
      // higher up, so seen here too) is neither instance's and must not change the counts.
      const theirs = (JSON.parse((await other.cli('list', '--json', '--cgroup', box.cgroup)).stdout) as Listed).programs
        .filter((p) => p.ours)
        .map((p) => p.id);
      assert.equal(programs.filter((p) => p.ours).length, 2);
      assert.equal(theirs.length, 2);
      assert.deepEqual(
        programs.filter((p) => theirs.includes(p.id)).map((p) => p.ours),
        [false, false],
      );
      const human = await box.cli('list');
      assert.match(human.stdout, /Other programs on the bind hooks/);
    } finally {
      await other.cli('off', '--cgroup', box.cgroup);
      await other.dispose();
    }
  });

  it('removes every program, link, map and pin on off, and keeps the policy file', async () => {
    const policyBefore = box.readPolicy();
    assert.ok(attachedCount(box.cgroup) > 0);
    // A killed apply's temp file of the applied text must not keep the instance's state directory.
    writeFileSync(join(instanceDir(box), '.applied.json.0123456789ab.tmp'), '', { mode: 0o600 });
    const r = await box.cli('off');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(box.pinDir), false);
    assert.equal(existsSync(instanceDir(box)), false, 'off left the state directory');
    assert.equal(attachedCount(box.cgroup), 0);
    assert.equal(box.readPolicy(), policyBefore);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    const again = await box.cli('off');
    assert.equal(again.code, 0);
    assert.match(again.stdout, /already off/);
  });
});

/** The instance's state directory under /run/lowport (grants/scopes.ts: a hash of its canonical pin directory). */
function instanceDir(box: Sandbox): string {
  return join(STATE_DIR, `instance-${createHash('sha256').update(resolve(box.pinDir)).digest('hex')}`);
}
