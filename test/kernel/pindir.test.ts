/**
 * Kernel tests (root): the pin directory on a bpffs others can write (the
 * sandbox mounts its own, bare: mode 1777). What a local user plants there
 * never makes root delete, follow or reuse anything, and each refusal says
 * what is wrong and what to do. Pins of the old layout (outer, bind4, bind6
 * in the pin directory itself) move into live/ with the grant live all along.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readLivePolicy } from '../../src/grants/live.js';
import { binds, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

/** Runs a command as uid/gid 65534 with no capabilities: the hostile local user. */
function asNobody(...argv: string[]): void {
  const r = spawnSync(
    'setpriv',
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', ...argv],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, `as nobody: ${argv.join(' ')}: ${r.stderr}`);
}

function liveRules(pinDir: string): string {
  const t = readLivePolicy(pinDir)?.table;
  return Array.from({ length: t?.count ?? 0 }, (_, i) => t?.keyString(i))
    .sort()
    .join(',');
}

describe('the pin directory on a bpffs others can write', { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('pindir');
    box.writePolicy('grant 80 user nobody\n');
  });
  after(() => box?.dispose());

  it('is root-owned, mode 0700, in a 1777 bpffs, and holds the live pins in live/', async () => {
    assert.equal(statSync(box.bpffs).mode & 0o7777, 0o1777, 'the test means a bpffs others can write');
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    const st = statSync(box.pinDir);
    assert.equal(st.uid, 0);
    assert.equal(st.mode & 0o7777, 0o700);
    assert.deepEqual(readdirSync(box.pinDir), ['live']);
    assert.deepEqual(readdirSync(join(box.pinDir, 'live')).sort(), ['bind4', 'bind6', 'outer']);
    assert.deepEqual(
      readdirSync(box.bpffs).filter((n) => !n.endsWith('.debug')),
      ['lowport'],
      'nothing of lowport’s but the pin directory has a name in the shared directory',
    );
  });

  it('never follows a symlink planted under an old stage name, and deletes nothing of the directory it points to', async () => {
    const victim = join(box.dir, 'victim');
    mkdirSync(victim, { mode: 0o700 });
    writeFileSync(join(victim, 'authorized_keys'), 'ssh-ed25519 AAAA root\n');
    writeFileSync(join(victim, 'sudoers'), 'root ALL=(ALL) ALL\n');
    // A non-numeric pid (skipped the liveness check before) and a dead one.
    const planted = ['lowport_stage_lowport-x', 'lowport_stage_lowport-999999999', 'lowport_stage_lowport-'];
    for (const name of planted) asNobody('ln', '-s', victim, join(box.bpffs, name));
    try {
      for (const args of [['apply'], ['grant', '81', '--user', 'nobody'], ['list'], ['off'], ['apply']]) {
        const r = await box.cli(...args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        assert.deepEqual(readdirSync(victim).sort(), ['authorized_keys', 'sudoers'], `after ${args.join(' ')}`);
      }
      for (const name of planted) assert.ok(lstatSync(join(box.bpffs, name)).isSymbolicLink(), `${name} is the user's and stays`);
      assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok'], 'lowport goes on working');
    } finally {
      for (const name of planted) rmSync(join(box.bpffs, name), { force: true });
    }
  });

  it('removes a real stage of root’s that an older lowport left beside the pin directory', async () => {
    const stage = join(box.bpffs, 'lowport_stage_lowport-999999998');
    mkdirSync(stage, { mode: 0o700 });
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(stage), false);
  });

  it('refuses a symlink at the pin directory that points to another instance, and leaves that instance alone', async () => {
    const other = new Sandbox('pindir-other');
    const link = join(box.bpffs, 'hijacked');
    try {
      other.writePolicy('grant 90 user nobody\n');
      assert.equal((await other.cli('apply')).code, 0);
      const before = liveRules(other.pinDir);
      assert.notEqual(before, '');
      asNobody('ln', '-s', other.pinDir, link);
      for (const args of [['apply'], ['off'], ['list']]) {
        const r = await box.cli(...args, '--pin-dir', link);
        assert.equal(r.code, 1, `${args.join(' ')} through the symlink: ${r.stdout}`);
        assert.match(r.stderr, new RegExp(`pin directory ${link} is a symlink`));
        assert.match(r.stderr, new RegExp(`\nRemove it \\(rm ${link};`));
        assert.doesNotMatch(r.stderr, /internal error/);
      }
      assert.equal(liveRules(other.pinDir), before, 'the other instance’s policy is untouched');
      assert.deepEqual(other.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), ['ok']);
    } finally {
      rmSync(link, { force: true });
      await other.cli('off');
      await other.dispose();
    }
  });

  it('refuses a directory another user made at the pin directory, saying whose it is and what to do', async () => {
    const taken = join(box.bpffs, 'taken');
    asNobody('mkdir', '-p', join(taken, 'sub'));
    try {
      for (const args of [['apply'], ['off']]) {
        const r = await box.cli(...args, '--pin-dir', taken);
        assert.equal(r.code, 1, r.stdout);
        assert.match(r.stderr, new RegExp(`pin directory ${taken} is owned by uid ${NOBODY}, not root`));
        assert.match(r.stderr, new RegExp(`rm -r ${taken}`));
        assert.doesNotMatch(r.stderr, /internal error/);
      }
      const json = await box.cli('apply', '--json', '--pin-dir', taken);
      assert.equal((JSON.parse(json.stdout || json.stderr) as { error: { code: string } }).error.code, 'E_POLICY_UNSAFE');
      assert.ok(existsSync(join(taken, 'sub')), 'the user’s directory is left as it is');
    } finally {
      rmSync(taken, { recursive: true, force: true });
    }
  });

  it('refuses a symlink or another user’s entry inside the pin directory', async () => {
    assert.equal((await box.cli('apply')).code, 0);
    const before = liveRules(box.pinDir);
    // Only root can write in the 0700 pin directory: planted as root, as a mistake or a compromise would leave them.
    const stage = join(box.pinDir, 'stage-1');
    const extra = join(box.pinDir, 'live', 'extra');
    const plants: [string, string, () => void][] = [
      ['a symlink', stage, () => symlinkSync('/etc', stage)],
      ['a symlink in live/', extra, () => symlinkSync('/etc', extra)],
      [
        'another user’s directory',
        stage,
        () => {
          mkdirSync(stage);
          chownSync(stage, NOBODY, NOBODY);
        },
      ],
    ];
    for (const [what, planted, plant] of plants) {
      plant();
      try {
        for (const args of [['apply'], ['off']]) {
          const r = await box.cli(...args);
          assert.equal(r.code, 1, `${what}, ${args.join(' ')}: ${r.stdout}`);
          assert.match(r.stderr, new RegExp(`${planted} is (a symlink|owned by uid ${NOBODY})`), what);
          assert.doesNotMatch(r.stderr, /internal error/);
        }
        assert.throws(() => readLivePolicy(box.pinDir), /lowport refuses to use it/, `${what}: reads refuse too`);
        assert.ok(existsSync('/etc/passwd'));
      } finally {
        if (lstatSync(planted).isDirectory()) rmdirSync(planted);
        else unlinkSync(planted);
      }
      assert.equal(liveRules(box.pinDir), before, `${what}: nothing changed live`);
    }
  });

  it('moves an old-layout installation into live/ on apply, with the grant live before, during and after', async () => {
    box.writePolicy('grant 80 user nobody\n');
    assert.equal((await box.cli('apply')).code, 0);
    // The layout of lowport before: outer, bind4 and bind6 in the pin directory itself.
    for (const name of ['outer', 'bind4', 'bind6']) renameSync(join(box.pinDir, 'live', name), join(box.pinDir, name));
    rmdirSync(join(box.pinDir, 'live'));
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok'], 'old layout: granted');
    assert.notEqual(liveRules(box.pinDir), '', 'old layout: readable');
    const listed = JSON.parse((await box.cli('list', '--json')).stdout) as { live: boolean; programs: { ours: boolean }[] };
    assert.equal(listed.live, true);
    assert.equal(listed.programs.filter((p) => p.ours).length, 2, 'old layout: list knows its own programs');

    // A move a kill interrupted: one link moved, the rest not yet.
    mkdirSync(join(box.pinDir, 'live'), { mode: 0o700 });
    renameSync(join(box.pinDir, 'bind4'), join(box.pinDir, 'live', 'bind4'));
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok'], 'half moved: granted');
    assert.notEqual(liveRules(box.pinDir), '', 'half moved: readable');

    box.writePolicy('grant 80,81 user nobody\n');
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /hooks attached/, 'the installed hooks were kept, not installed again');
    assert.deepEqual(readdirSync(box.pinDir), ['live']);
    assert.deepEqual(readdirSync(join(box.pinDir, 'live')).sort(), ['bind4', 'bind6', 'outer']);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp']).concat(binds(81, ['::1'], ['tcp']))), ['ok', 'ok'], 'moved: granted');
  });

  it('turns an old-layout installation off', async () => {
    assert.equal((await box.cli('apply')).code, 0);
    for (const name of ['outer', 'bind4', 'bind6']) renameSync(join(box.pinDir, 'live', name), join(box.pinDir, name));
    rmdirSync(join(box.pinDir, 'live'));
    const r = await box.cli('off');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /lowport is off/);
    assert.equal(existsSync(box.pinDir), false);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });
});
