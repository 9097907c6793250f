/**
 * The bundled CLI as `npm run build` leaves it in dist/bundle
 * (scripts/bundle.ts): every file it imports or starts by path is there, every
 * file the sources start by path is an entry of it, it runs (--version, help),
 * and package.json's bin points at it. test/kernel/bundle.test.ts has it do
 * real work as root.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ENTRIES } from '../../scripts/bundle.js';
import { ownPackageDir, packageDirOf } from '../../src/os/package-dir.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUNDLE = join(ROOT, 'dist', 'bundle');
const MAIN = join(BUNDLE, 'main.js');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

describe('the CLI bundle (dist/bundle)', () => {
  const files = readdirSync(BUNDLE);

  it('has every entry, flat, and chunks; no source maps', () => {
    for (const e of ENTRIES) assert.ok(files.includes(basename(e)), `${basename(e)} in ${files.join(' ')}`);
    assert.ok(files.some((f) => f.startsWith('chunk-')));
    assert.deepEqual(
      files.filter((f) => !f.endsWith('.js')),
      [],
    );
    for (const f of files) assert.doesNotMatch(readFileSync(join(BUNDLE, f), 'utf8'), /sourceMappingURL/, f);
  });

  it('refers to no file that is not there: imports, dynamic imports and paths resolved beside import.meta.url', () => {
    let references = 0;
    for (const f of files) {
      const text = readFileSync(join(BUNDLE, f), 'utf8');
      const relative = [
        ...text.matchAll(/\bfrom\s*"(\.[^"]*)"/g),
        ...text.matchAll(/\bimport\s*\(\s*"(\.[^"]*)"\s*\)/g),
        ...text.matchAll(/^import\s*"(\.[^"]*)"/gm),
        ...text.matchAll(/new URL\(\s*["'](\.[^"']*)["'],\s*import\.meta\.url\s*\)/g),
      ].map((m) => m[1] ?? '');
      for (const r of relative) {
        references++;
        assert.ok(r.startsWith('./') && !r.slice(2).includes('/'), `${f} refers to ${r}, outside the bundle's one directory`);
        assert.ok(existsSync(join(BUNDLE, r)), `${f} refers to ${r}, which is not in dist/bundle`);
      }
    }
    // The CLI's chunks, the command modules (loaded lazily), probe-main.js, worker-main.js and tcp-thread.js at the least.
    assert.ok(references > 30, `${references} references`);
  });

  it('has as an entry every file that the sources start by path beside themselves', () => {
    const started = new Set<string>();
    for (const file of sourceFiles(join(ROOT, 'src')))
      for (const m of readFileSync(file, 'utf8').matchAll(/new URL\('\.\/([^'/]+)\.js', import\.meta\.url\)/g)) started.add(m[1] ?? '');
    assert.deepEqual([...started].sort(), ['accept-main', 'main', 'probe-main', 'tcp-thread', 'worker-main']);
    for (const s of started)
      assert.ok(
        ENTRIES.some((e) => basename(e) === `${s}.js`),
        `${s}.js is started by path: scripts/bundle.ts must bundle it as an entry`,
      );
  });

  it('runs: --version and help, from the executable main.js with its #! line', () => {
    assert.ok((statSync(MAIN).mode & 0o111) !== 0, 'main.js is executable');
    assert.match(readFileSync(MAIN, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      version: string;
      bin: { lowport: string };
      files: string[];
    };
    const v = spawnSync(MAIN, ['--version'], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, `${pkg.version}\n`);
    const h = spawnSync(process.execPath, [MAIN, 'help'], { encoding: 'utf8' });
    assert.equal(h.status, 0, h.stderr);
    assert.match(h.stdout, /^lowport \d+\.\d+\.\d+: let non-root programs bind ports below 1024/);
    assert.match(h.stdout, /\n {2}grant /);
    // What npm installs as `lowport`, and ships.
    assert.equal(pkg.bin.lowport, 'dist/bundle/main.js');
    assert.ok(pkg.files.includes('dist/bundle'));
  });

  it('finds the package directory from the bundle and from dist/src alike', () => {
    assert.equal(packageDirOf('/usr/lib/lowport/dist/bundle/main.js'), '/usr/lib/lowport');
    assert.equal(packageDirOf('/usr/lib/lowport/dist/bundle/chunk-ABC.js'), '/usr/lib/lowport');
    assert.equal(packageDirOf('/usr/lib/lowport/dist/src/cli/main.js'), '/usr/lib/lowport');
    assert.equal(packageDirOf('/opt/dist/lowport/dist/src/doctor/probe-main.js'), '/opt/dist/lowport');
    assert.equal(ownPackageDir(), ROOT.replace(/\/$/, ''));
  });
});
