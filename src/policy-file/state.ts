/**
 * lowport's runtime state: /run/lowport (tmpfs: gone at reboot, like the
 * kernel state it describes), root's alone. Everything in it (the applied
 * text and scopes of grants/scopes.ts, the reserved-port records of
 * grants/reserved-ports.ts, forward/redirect.ts's owner records, the lock
 * files) is reached through directory fds from /, never through a symlink
 * (os/dirfd.ts's openRootDir), and refused, with what to do, when anything on
 * the way is not root's alone.
 */
import { basename, dirname } from 'node:path';
import type { LowportError } from '../errors.js';
import { errnoCode, openDirChain, openRootDir, UnsafeFileError, withDir, type DirFd } from '../os/dirfd.js';
import { lockRefusal, unsafe } from './trust.js';

/** lowport's runtime directory. */
export const STATE_DIR = '/run/lowport';

const WHAT = "lowport's state directory";

function octal(mode: number | undefined): string {
  return (mode ?? 0).toString(8);
}

/** What os/ found under the state directory, worded; any other error as it is. */
function stateRefusal(e: unknown, root: string): unknown {
  if (e instanceof UnsafeFileError) {
    const { path, finding, facts } = e;
    const ids =
      finding.problem === 'acl'
        ? `an ACL lets ${finding.writers.join(', ')} write it`
        : `uid ${facts?.uid ?? '?'}, mode ${octal(facts?.mode)}`;
    switch (e.place) {
      case 'lock':
        return lockRefusal(e);
      case 'path':
        if (finding.problem === 'symlink')
          return unsafe(`${path} is a symlink; lowport refuses a path to ${WHAT} that goes through one`, 'Give the real path.', e);
        return unsafe(
          `${path}, above ${WHAT}, is not root's alone (${ids}): others could move what is in it`,
          `Use a path under directories only root controls (chown root ${path} && chmod go-w ${path}, if it should be).`,
          e,
        );
      case 'directory':
        if (finding.problem === 'symlink' || finding.problem === 'type') {
          return unsafe(
            `${path} is ${finding.problem === 'symlink' ? 'a symlink' : 'not a directory'}`,
            `Remove it (rm ${path}) and run the command again.`,
            e,
          );
        }
        return unsafe(`${path} is not root's alone (${ids})`, `Remove it (rm -r ${path}) and run the command again.`, e);
      case 'file':
        if (finding.problem === 'symlink')
          return unsafe(`${path} is a symlink, which lowport never makes`, `Remove it (rm ${path}) and run the command again.`, e);
        return unsafe(`${path} is not a file only root can write (${ids})`, `Remove it (rm ${path}) and run the command again.`, e);
    }
  }
  if (errnoCode(e) === 'ENOTDIR') return unsafe(`the path of ${WHAT} (${root}) is not a chain of directories`, 'Give the real path.', e);
  return e;
}

function worded<T>(root: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw stateRefusal(e, root) as LowportError;
  }
}

/**
 * Runs `fn` in the state directory's subdirectory `subdirs` (each root's
 * alone, 0700), made when missing and `create`; undefined, without running
 * `fn`, when one is missing otherwise. `root`: another state directory than
 * /run/lowport (tests).
 */
export function withStateDir<T>(subdirs: string[], o: { create: boolean; root?: string }, fn: (dir: DirFd) => T): T | undefined {
  const root = o.root ?? STATE_DIR;
  return worded(root, () => {
    let dir = openRootDir(root, { create: o.create, mode: 0o700 });
    if (dir === undefined) return undefined;
    try {
      for (const name of subdirs) {
        const next: DirFd | undefined = dir.openRootSubdir(name, { create: o.create, mode: 0o700 });
        if (next === undefined) return undefined;
        dir.close();
        dir = next;
      }
      return fn(dir);
    } finally {
      dir.close();
    }
  });
}

/**
 * Removes the state directory's subdirectory `subdirs`, and each above it up
 * to the state directory itself, as far as they are empty.
 */
export function removeEmptyStateDirs(subdirs: string[]): void {
  for (let i = subdirs.length; i > 0; i--)
    withStateDir(subdirs.slice(0, i - 1), { create: false }, (d) => d.removeIfEmpty(subdirs[i - 1] ?? ''));
  worded(STATE_DIR, () => {
    const parent = openDirChain(dirname(STATE_DIR), { create: false });
    if (parent !== undefined) withDir(parent, (p) => p.removeIfEmpty(basename(STATE_DIR)));
  });
}

/**
 * An exclusive flock(2) on lock file NAME in the state directory (made when
 * missing), until `release` or the end of the process; the lock file must be
 * root's own (os/dirfd.ts, DirFd.lock).
 */
export function stateLock(name: string): { release: () => void } {
  const lock = withStateDir([], { create: true }, (dir) => dir.lock(name));
  if (lock === undefined) throw new Error(`${STATE_DIR} was not created`);
  return lock;
}
