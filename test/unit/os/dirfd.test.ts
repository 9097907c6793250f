/**
 * The fd walk every file root touches goes through (os/dirfd.ts), in a temp
 * directory: symlinks followed only when asked (and checked where they lead),
 * refused otherwise, `..`, missing directories made, and the checks run on
 * every directory on the way. Needs no root.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openDirPath, openPath, UnsafeFileError, withDir, type DirCheck } from '../../../src/os/dirfd.js';
import { SyscallError } from '../../../src/os/libc.js';

describe('openPath: the walk from / one directory fd at a time', () => {
  let top: string;
  /** Every directory the walk checked, in order. */
  let seen: string[];
  const record: DirCheck = (dir) => {
    seen.push(dir.path);
  };
  const walk = (path: string, o: { follow: boolean; followLast?: boolean; create?: number }) => {
    seen = [];
    const at = openPath(path, { check: record, ...o });
    if (at === undefined) return undefined;
    return withDir(at.dir, (d) => ({ dir: d.path, name: at.name }));
  };

  before(() => {
    top = realpathSync(mkdtempSync(join(tmpdir(), 'lowport-dirfd-')));
    mkdirSync(join(top, 'a', 'b'), { recursive: true });
    writeFileSync(join(top, 'a', 'b', 'f'), 'x');
    symlinkSync(join(top, 'a'), join(top, 'abs'));
    symlinkSync('a/b', join(top, 'rel'));
    symlinkSync('loop', join(top, 'loop'));
  });
  after(() => rmSync(top, { recursive: true, force: true }));

  it('checks / and every directory on the way, and returns the last name in its directory', () => {
    assert.deepEqual(walk(join(top, 'a', 'b', 'f'), { follow: false }), { dir: join(top, 'a', 'b'), name: 'f' });
    assert.equal(seen[0], '/');
    assert.deepEqual(seen.slice(-2), [join(top, 'a'), join(top, 'a', 'b')]);
    assert.deepEqual(walk('/', { follow: false }), { dir: '/', name: '' });
  });

  it('follows symlinks only when asked, to their real directories, and checks those', () => {
    assert.deepEqual(walk(join(top, 'abs', 'b', 'f'), { follow: true }), { dir: join(top, 'a', 'b'), name: 'f' });
    assert.ok(seen.includes(join(top, 'a', 'b')));
    assert.deepEqual(walk(join(top, 'rel', 'f'), { follow: true }), { dir: join(top, 'a', 'b'), name: 'f' });
    // A symlink at the last name stays the name unless followLast.
    assert.deepEqual(walk(join(top, 'rel'), { follow: true }), { dir: top, name: 'rel' });
    assert.deepEqual(walk(join(top, 'rel'), { follow: true, followLast: true }), { dir: join(top, 'a'), name: 'b' });
    assert.throws(
      () => walk(join(top, 'abs', 'b', 'f'), { follow: false }),
      (e: unknown) => e instanceof UnsafeFileError && e.place === 'path' && e.finding.problem === 'symlink' && e.path === join(top, 'abs'),
    );
  });

  it('goes up with .., gives up on a symlink loop, and refuses a file on the way', () => {
    assert.deepEqual(walk(join(top, 'a', 'b', '..', 'b', 'f'), { follow: false }), { dir: join(top, 'a', 'b'), name: 'f' });
    assert.throws(
      () => walk(join(top, 'loop', 'x'), { follow: true }),
      (e: unknown) => e instanceof SyscallError && e.errnoName === 'ELOOP',
    );
    assert.throws(
      () => walk(join(top, 'a', 'b', 'f', 'x'), { follow: false }),
      (e: unknown) => e instanceof SyscallError && e.errnoName === 'ENOTDIR',
    );
  });

  it('returns undefined for a missing directory on the way, or makes it with `create`', () => {
    assert.equal(walk(join(top, 'new', 'deeper', 'f'), { follow: false }), undefined);
    assert.deepEqual(walk(join(top, 'new', 'deeper', 'f'), { follow: false, create: 0o700 }), {
      dir: join(top, 'new', 'deeper'),
      name: 'f',
    });
    const made = openDirPath(join(top, 'made', 'here'), { check: () => {}, follow: false, create: 0o755 });
    assert.equal(made?.path, join(top, 'made', 'here'));
    made?.close();
  });

  it('stops at the first directory the check refuses, and opens nothing below it', () => {
    const refuse: DirCheck = (dir, place) => {
      if (dir.path === join(top, 'a')) throw new UnsafeFileError(dir.path, place, { problem: 'owner', uid: 1000 }, undefined);
    };
    assert.throws(
      () => openPath(join(top, 'a', 'b', 'f'), { check: refuse, follow: false }),
      (e: unknown) => e instanceof UnsafeFileError && e.message === `${join(top, 'a')}: owner uid 1000` && e.code === 'E_POLICY_UNSAFE',
    );
  });
});

describe('DirFd files: O_NOFOLLOW reads, atomic writes, JSON records', () => {
  let top: string;
  before(() => {
    top = realpathSync(mkdtempSync(join(tmpdir(), 'lowport-dirfd-')));
  });
  after(() => rmSync(top, { recursive: true, force: true }));

  it('writes a record by rename and reads it back; refuses a symlink at its name, and replaces it on write', () => {
    const dir = openDirPath(top, { check: () => {}, follow: false });
    assert.ok(dir !== undefined);
    withDir(dir, (d) => {
      const mine = (_fd: number, _st: unknown, _path: string) => {};
      d.writeJson('r.json', { a: 1 });
      assert.deepEqual(JSON.parse(d.readText('r.json', mine) ?? ''), { a: 1 });
      assert.equal(d.readText('missing', mine), undefined);
      symlinkSync(join(top, 'r.json'), join(top, 'link.json'));
      assert.throws(
        () => d.readText('link.json', mine),
        (e: unknown) => e instanceof UnsafeFileError && e.finding.problem === 'symlink' && e.place === 'file',
      );
      d.writeJson('link.json', { b: 2 });
      assert.deepEqual(JSON.parse(d.readText('r.json', mine) ?? ''), { a: 1 }, 'the write went through the link');
      assert.deepEqual(JSON.parse(d.readText('link.json', mine) ?? ''), { b: 2 });
      assert.deepEqual(
        d.names().filter((n) => n.endsWith('.tmp')),
        [],
        'a temp file stayed',
      );
    });
  });

  it("removes a killed writer's temp files of one name, and nothing else", () => {
    const dir = openDirPath(top, { check: () => {}, follow: false });
    assert.ok(dir !== undefined);
    withDir(dir, (d) => {
      const killed = ['.s.json.0123456789ab.tmp', '.s.json.ffffffffffff.tmp'];
      const others = [
        '.s.json.0123456789a.tmp',
        '.s.json.0123456789abc.tmp',
        '.s.json.0123456789AB.tmp',
        '.t.json.0123456789ab.tmp',
        's.json',
      ];
      for (const name of [...killed, ...others]) writeFileSync(join(top, name), '');
      d.removeTemps('s.json');
      for (const name of killed) assert.ok(!existsSync(join(top, name)), name);
      for (const name of others) assert.ok(existsSync(join(top, name)), name);
    });
  });
});
