/** Where a boot unit's program lives: temporary places, checkouts, npm links, paths inside an image. Without root. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkoutMarker, npmLinkOnPath, packageDirOf, resolveInRoot, shebang, temporaryPlace } from '../../../src/os/program-place.js';

describe('program place', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowport-place-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('calls /tmp, /var/tmp, /run and /dev/shm temporary by path, and /usr/lib/lowport not', () => {
    assert.deepEqual(temporaryPlace('/tmp/lowport/dist/src/cli/main.js', false), {
      path: '/tmp/lowport/dist/src/cli/main.js',
      why: 'temporary-dir',
      at: '/tmp',
    });
    assert.equal(temporaryPlace('/var/tmp/x', false)?.at, '/var/tmp');
    assert.equal(temporaryPlace('/run/lowport-pkg-1/dist', false)?.at, '/run');
    assert.equal(temporaryPlace('/dev/shm/a', false)?.at, '/dev/shm');
    assert.equal(temporaryPlace('/usr/lib/lowport/dist/src/cli/main.js', false), undefined);
    assert.equal(temporaryPlace('/tmpfoo/x', false), undefined);
    assert.equal(temporaryPlace('/usr/bin/node'), undefined);
  });

  it('finds the marks of a source checkout, which npm pack and the package never ship', () => {
    const clone = join(dir, 'clone');
    mkdirSync(join(clone, 'dist'), { recursive: true });
    assert.equal(checkoutMarker(clone), undefined);
    writeFileSync(join(clone, 'tsconfig.json'), '{}');
    assert.equal(checkoutMarker(clone), join(clone, 'tsconfig.json'));
    writeFileSync(join(clone, '.git'), 'gitdir: /elsewhere\n'); // a worktree's .git is a file
    assert.equal(checkoutMarker(clone), join(clone, '.git'));
    assert.equal(packageDirOf(join(clone, 'dist/src/cli/main.js')), clone);
  });

  it('finds the link npm install -g . makes in node_modules, through the bin link, and not a copied package', () => {
    const pkg = join(dir, 'pkg');
    mkdirSync(join(pkg, 'dist/src/cli'), { recursive: true });
    writeFileSync(join(pkg, 'dist/src/cli/main.js'), '');
    const linked = join(dir, 'linked');
    mkdirSync(join(linked, 'lib/node_modules'), { recursive: true });
    mkdirSync(join(linked, 'bin'));
    symlinkSync(pkg, join(linked, 'lib/node_modules/lowport'));
    symlinkSync('../lib/node_modules/lowport/dist/src/cli/main.js', join(linked, 'bin/lowport'));
    assert.deepEqual(npmLinkOnPath(join(linked, 'bin/lowport'), 'lowport'), {
      link: join(linked, 'lib/node_modules/lowport'),
      target: pkg,
    });
    const copied = join(dir, 'copied');
    mkdirSync(join(copied, 'lib/node_modules/lowport/dist/src/cli'), { recursive: true });
    writeFileSync(join(copied, 'lib/node_modules/lowport/dist/src/cli/main.js'), '');
    mkdirSync(join(copied, 'bin'));
    symlinkSync('../lib/node_modules/lowport/dist/src/cli/main.js', join(copied, 'bin/lowport'));
    assert.equal(npmLinkOnPath(join(copied, 'bin/lowport'), 'lowport'), undefined);
    // A link of another name (a merged /usr's /lib, a user's own link) is not npm's.
    symlinkSync(pkg, join(dir, 'lowport-somewhere'));
    assert.equal(npmLinkOnPath(join(dir, 'lowport-somewhere/dist/src/cli/main.js'), 'lowport'), undefined);
  });

  it('resolves links inside an image, absolute ones too, and never above its root', () => {
    const img = join(dir, 'img');
    mkdirSync(join(img, 'usr/lib/lowport/dist/src/cli'), { recursive: true });
    mkdirSync(join(img, 'usr/bin'), { recursive: true });
    writeFileSync(join(img, 'usr/lib/lowport/dist/src/cli/main.js'), '#!/usr/bin/node\nconsole.log(1);\n');
    symlinkSync('../lib/lowport/dist/src/cli/main.js', join(img, 'usr/bin/lowport'));
    symlinkSync('/usr/lib/lowport/dist/src/cli/main.js', join(img, 'usr/bin/lowport-abs'));
    symlinkSync('../../../../../../usr/bin/lowport', join(img, 'usr/bin/lowport-up'));
    symlinkSync('usr', join(img, 'usr-link'));
    const main = '/usr/lib/lowport/dist/src/cli/main.js';
    assert.equal(resolveInRoot(img, '/usr/bin/lowport'), main);
    assert.equal(resolveInRoot(img, '/usr/bin/lowport-abs'), main);
    assert.equal(resolveInRoot(img, '/usr/bin/lowport-up'), main);
    assert.equal(resolveInRoot(img, '/usr-link/bin/lowport'), main);
    assert.equal(resolveInRoot(img, '/usr/bin/node'), undefined);
    symlinkSync('loop', join(img, 'loop'));
    assert.equal(resolveInRoot(img, '/loop'), undefined);
    assert.equal(shebang(join(img, main)), '/usr/bin/node');
    writeFileSync(join(img, 'plain'), 'text');
    assert.equal(shebang(join(img, 'plain')), undefined);
  });
});
