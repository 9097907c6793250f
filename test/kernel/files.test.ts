/**
 * Kernel tests (root): the files lowport reads and writes as root in
 * directories a user can write (issue 9, finding 10). A link a user plants
 * in a sticky directory must not make root overwrite the file it points at,
 * a FIFO at the policy path must not hang root's lowport while it holds the
 * lock, and `unit --output-dir` and `install --root` follow the same rules.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runMain } from '../run-main.js';
import { install } from '../../src/integrate/install.js';
import { binds, CLI, ImageRoot, kernelSkipReason, NOBODY, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const VICTIM_TEXT = "# a file of root that is not lowport's\n";

describe('policy files and generated files in directories users can write', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('files');
    pkg = new PackageCopy();
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /** A directory as /tmp is: world-writable and sticky. */
  function sharedDir(name: string): string {
    const dir = join(box.dir, name);
    mkdirSync(dir);
    chmodSync(dir, 0o1777);
    return dir;
  }

  /** A root file, and a link to it that uid 65534 planted at `at`. */
  function plantLink(at: string, victimName: string): string {
    const victim = join(box.dir, victimName);
    writeFileSync(victim, VICTIM_TEXT, { mode: 0o644 });
    symlinkSync(victim, at);
    lchownSync(at, NOBODY, NOBODY);
    return victim;
  }

  it('refuses a policy path that a user linked to a root file in a sticky directory, and leaves that file as it was', async () => {
    const shared = sharedDir('shared');
    const link = join(shared, 'policy');
    const victim = plantLink(link, 'victim-policy');
    const r = await runMain(['--policy', link, '--cgroup', box.cgroup, '--pin-dir', box.pinDir, 'grant', '83', '--user', 'nobody']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`the policy directory ${shared} is writable by everyone \\(sticky`));
    assert.match(r.stderr, /only root can write/);
    assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT);
    assert.deepEqual(box.probe({}, binds(83, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    // A root-owned policy there is refused too: the directory is the problem, not the file.
    const own = join(shared, 'own-policy');
    writeFileSync(own, 'grant 83 user nobody\n', { mode: 0o644 });
    const a = await runMain(['--policy', own, '--cgroup', box.cgroup, '--pin-dir', box.pinDir, 'apply']);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /is writable by everyone/);
  });

  it('refuses a FIFO at the policy path at once instead of waiting on it with the lock held', () => {
    const dir = join(box.dir, 'fifo');
    mkdirSync(dir, { mode: 0o755 });
    const fifo = join(dir, 'policy');
    assert.equal(spawnSync('mkfifo', ['-m', '644', fifo]).status, 0);
    const r = spawnSync(
      process.execPath,
      [CLI, '--policy', fifo, '--cgroup', box.cgroup, '--pin-dir', box.pinDir, 'grant', '84', '--user', 'nobody'],
      {
        encoding: 'utf8',
        timeout: 20_000,
        killSignal: 'SIGKILL',
      },
    );
    assert.equal(r.signal, null, 'lowport hung on the FIFO (killed after 20 s)');
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`the policy ${fifo} is a FIFO`));
    // The lock was released: an apply of a real file beside it goes through.
    writeFileSync(join(dir, 'real'), 'grant 84 user nobody\n', { mode: 0o644 });
    const again = spawnSync(
      process.execPath,
      [CLI, '--policy', join(dir, 'real'), '--cgroup', box.cgroup, '--pin-dir', box.pinDir, 'apply'],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(again.status, 0, again.stderr);
  });

  it('as root, refuses `unit --output-dir` into a sticky directory with a planted link, and replaces a link at a unit name rather than follow it', async () => {
    const shared = sharedDir('units-shared');
    const victim = plantLink(join(shared, 'web.service'), 'victim-unit');
    const unit = (dir: string) => runMain(['unit', 'web', '--user', 'nobody', '--port', '80', '--output-dir', dir, '--', '/bin/true']);
    const r = await unit(shared);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`the output directory ${shared} is writable by everyone`));
    assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT);
    // A directory only root controls, with a link at the unit's name: the link goes, its target stays.
    const own = join(box.dir, 'units-own');
    mkdirSync(own, { mode: 0o755 });
    const victim2 = join(box.dir, 'victim-unit-2');
    writeFileSync(victim2, VICTIM_TEXT, { mode: 0o644 });
    symlinkSync(victim2, join(own, 'web.service'));
    const w = await unit(own);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(readFileSync(victim2, 'utf8'), VICTIM_TEXT);
    assert.ok(lstatSync(join(own, 'web.service')).isFile());
    assert.match(readFileSync(join(own, 'web.service'), 'utf8'), /^ExecStart=\/bin\/true$/m);
  });

  it('lets a normal user write units into their own directory', () => {
    const out = join(box.work, 'units');
    mkdirSync(box.work, { recursive: true });
    chownSync(box.work, NOBODY, NOBODY);
    const r = spawnSync(
      'setpriv',
      [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        '--clear-groups',
        process.execPath,
        pkg.cli,
        'unit',
        'web',
        '--user',
        'nobody',
        '--port',
        '80',
        '--output-dir',
        out,
        '--',
        '/bin/true',
      ],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(lstatSync(join(out, 'web.service')).uid, NOBODY);
  });

  it('refuses install --root into an image under a directory others can write', () => {
    const shared = sharedDir('images');
    const image = join(shared, 'img');
    mkdirSync(image, { mode: 0o755 });
    // The image has lowport, so that install gets as far as the image's /etc.
    new ImageRoot(image);
    assert.throws(
      () => install({ root: image, lowportArgv: [process.execPath, pkg.cli] }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'E_POLICY_UNSAFE');
        assert.match(e.message, new RegExp(`${shared} is writable by everyone`));
        return true;
      },
    );
    assert.throws(() => lstatSync(join(image, 'etc')), /ENOENT/);
  });

  it('refuses uninstall --root --purge through a link a user put in their image, and removes nothing it points at', async () => {
    const image = join(box.dir, 'user-img');
    mkdirSync(image, { mode: 0o755 });
    chownSync(image, NOBODY, NOBODY);
    const realEtc = join(box.dir, 'real-etc');
    mkdirSync(join(realEtc, 'lowport'), { recursive: true, mode: 0o755 });
    writeFileSync(join(realEtc, 'lowport', 'policy'), VICTIM_TEXT, { mode: 0o644 });
    symlinkSync(realEtc, join(image, 'etc'));
    lchownSync(join(image, 'etc'), NOBODY, NOBODY);
    const r = await runMain(['uninstall', '--root', image, '--purge']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`${image} is owned by uid ${NOBODY}, not root`));
    assert.equal(readFileSync(join(realEtc, 'lowport', 'policy'), 'utf8'), VICTIM_TEXT);
  });
});
