/**
 * Files that root reads and writes at paths an admin gives (the policy, its
 * lock, generated units, authbind's tree), on the fd mechanism of dirfd.ts:
 * read one only when no one but root could have written it (as sudo does for
 * sudoers), write atomically, serialize writers with a lock, and never let a
 * name that a user could plant (a symlink, a FIFO) steer root's reads or
 * writes. Unlike lowport's own state (dirfd.ts's openRootDir), such a path
 * may go through symlinks: each is followed only from a directory that
 * passed the check, so only root could have made it.
 *
 * Facts only: an UnsafeFileError (what was found) or a SyscallError (what
 * failed). policy-file/trust.ts words them for the file's role.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  statSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import {
  aclWriters,
  factsOf,
  fileType,
  openDirFollowing,
  openDirPath,
  openPath,
  UnsafeFileError,
  withDir,
  type DirCheck,
  type DirFd,
  type FileCheck,
  type FileType,
  type Finding,
} from './dirfd.js';
import { getXattr, SyscallError } from './libc.js';

export { aclWriters };

const S_IWGRP = 0o020;
const S_IWOTH = 0o002;
const S_ISVTX = 0o1000;
const ENOENT = 2;

/**
 * Why a file or directory is not root's alone, or undefined when it is:
 * owned by someone else, group-writable by a group other than root,
 * world-writable (sticky or not: a sticky bit does not help for a name that
 * lowport has yet to create, such as a new policy, a temp file or a lock, or
 * one it removes), or with an ACL that lets another user write. Pure (the ACL
 * passed in), for tests.
 */
export function ownershipFinding(st: { uid: number; gid: number; mode: number }, acl: Buffer | undefined): Finding | undefined {
  const writers = aclWriters(acl, st.gid);
  if (writers.length > 0) return { problem: 'acl', writers };
  if (st.uid !== 0) return { problem: 'owner', uid: st.uid };
  if (st.mode & S_IWOTH) return { problem: 'world-writable', sticky: (st.mode & S_ISVTX) !== 0 };
  if (st.mode & S_IWGRP && st.gid !== 0) return { problem: 'group-writable', gid: st.gid };
  return undefined;
}

/** The check of every directory on the way to a root-controlled file, and of such a directory itself (ownershipFinding, on the fd). */
const rootControlled: DirCheck = (dir, place) => {
  const st = dir.stat();
  const finding = ownershipFinding(st, dir.acl());
  if (finding !== undefined) throw new UnsafeFileError(dir.path, place, finding, factsOf(st));
};

/** The check of a root-controlled file, on its open fd. */
const rootControlledFile: FileCheck = (fd, st, path) => {
  const finding = ownershipFinding(st, getXattr(`/proc/self/fd/${fd}`, 'system.posix_acl_access'));
  if (finding !== undefined) throw new UnsafeFileError(path, 'file', finding, factsOf(st));
};

/**
 * Walks to `path`'s directory as sudo does for sudoers and OpenSSH's StrictModes for
 * authorized_keys (rootControlled, links followed from checked directories).
 */
function walkTo(path: string, followLast: boolean): { dir: DirFd; name: string } | undefined {
  return openPath(resolve(path), { check: rootControlled, follow: true, followLast });
}

function enoent(path: string): SyscallError {
  return new SyscallError(`open(${path})`, ENOENT);
}

/**
 * Refuses a file or directory, or any directory on the way to it from /,
 * that a user other than root could change (ownershipFinding). A symlink is
 * followed only when the directory it sits in passes the same check, and the
 * directories it leads through are checked too. `missingOk`: nothing to
 * check when it does not exist.
 */
export function assertRootControlled(path: string, missingOk = false): void {
  const at = walkTo(path, true);
  if (at === undefined) {
    if (missingOk) return;
    throw enoent(path);
  }
  withDir(at.dir, (dir) => {
    if (at.name === '') return rootControlled(dir, 'directory');
    const st = dir.lstat(at.name);
    if (st === undefined) {
      if (missingOk) return;
      throw enoent(path);
    }
    const finding = ownershipFinding(st, getXattr(dir.procPath(at.name), 'system.posix_acl_access'));
    if (finding !== undefined) throw new UnsafeFileError(dir.join(at.name), st.isDirectory() ? 'directory' : 'file', finding, factsOf(st));
  });
}

/**
 * The text of a file only root controls, or undefined when it does not
 * exist. Checks the directories on the way to it, then opens the last name
 * without following a link and without blocking, and checks and reads that
 * very open file (a regular file, root-controlled), so nothing can be
 * swapped in between the check and the read.
 */
export function readRootControlledFile(path: string): string | undefined {
  const at = walkTo(path, true);
  if (at === undefined) return undefined;
  return withDir(at.dir, (dir) => dir.readText(at.name, rootControlledFile));
}

/**
 * The texts of the files of directory `dir` that `pick` chooses from its
 * names (and in its order), or undefined when the directory does not exist.
 * The directory is reached and checked as readRootControlledFile reaches a
 * file's (every directory from /, then it itself, on its fd); its names are
 * read from that fd, and each file is opened relative to it without
 * following a link or blocking, then checked and read on its own fd. A file
 * gone between the listing and the open is skipped.
 */
export function readRootControlledDirFiles(dir: string, pick: (names: string[]) => string[]): { name: string; text: string }[] | undefined {
  const d = openDirPath(resolve(dir), { check: rootControlled, follow: true });
  if (d === undefined) return undefined;
  return withDir(d, (open) =>
    pick(open.names()).flatMap((name) => {
      const text = open.readText(name, rootControlledFile);
      return text === undefined ? [] : [{ name, text }];
    }),
  );
}

/**
 * An existing directory only root controls, every directory on the way to it
 * checked, open. With `create`, missing directories (it and those above it)
 * are made, root's, with that mode, each checked before anything is made in it.
 */
function openRootControlledDir(dir: string, create?: number): DirFd {
  const d = openDirPath(resolve(dir), { check: rootControlled, follow: true, ...(create === undefined ? {} : { create }) });
  if (d === undefined) throw enoent(dir);
  return d;
}

/** Creates a directory if needed (openRootControlledDir) and returns its real path. */
export function ensureRootControlledDir(dir: string, mode: number): string {
  return withDir(openRootControlledDir(dir, mode), (d) => d.path);
}

export interface WriteOptions {
  /**
   * Whether the directories must be root's alone (the default). False only
   * for a non-root user writing their own files, who gains nothing from a
   * link another user plants that they could not do themselves.
   */
  rootOnly?: boolean;
  /**
   * Write through a symlink at the name to its file (as an editor would) when
   * the link is root's own (it is in a checked directory). False: the link
   * itself is replaced, never followed.
   */
  followLink?: boolean;
}

/**
 * Replaces the file in one rename (DirFd.writeTextAtomic), in its checked
 * directory. Keeps the old file's permission bits; new files are 0644.
 */
export function writeFileAtomic(target: string, text: string, options: WriteOptions = {}): void {
  const rootOnly = options.rootOnly ?? true;
  let at: { dir: DirFd; name: string } | undefined;
  if (!rootOnly) at = { dir: openDirFollowing(realpathSync(dirname(resolve(target)))), name: basename(target) };
  else if (options.followLink === false) at = { dir: openRootControlledDir(dirname(resolve(target))), name: basename(target) };
  else at = walkTo(target, true);
  if (at === undefined || at.name === '') throw enoent(target);
  const name = at.name;
  withDir(at.dir, (dir) => {
    const old = dir.lstat(name);
    dir.writeTextAtomic(name, text, old?.isFile() === true ? old.mode & 0o777 : 0o644);
  });
}

/** An exclusive lock on lock file `path` (DirFd.lock) in a directory only root controls, checked from /. */
export function lockFile(path: string): { release: () => void } {
  return withDir(openRootControlledDir(dirname(resolve(path))), (dir) => dir.lock(basename(path)));
}

/** Makes a directory and those above it (a non-root user's own: nothing is checked). */
export function makeDirs(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

/**
 * Owner, group, mode and type of a file (following links), or undefined when
 * it does not exist.
 */
export function fileOwnership(path: string): { uid: number; gid: number; mode: number; type: FileType } | undefined {
  try {
    const st = statSync(path);
    return { uid: st.uid, gid: st.gid, mode: st.mode, type: fileType(st) };
  } catch {
    return undefined;
  }
}

/**
 * Opens a regular file for reading, following links (a program, authbind's
 * files), or returns undefined when the name leads to anything else: stat
 * first, so a device, a FIFO or a socket a user's symlink points at is never
 * opened (opening a device as root has effects: a tty can become the
 * controlling terminal, a watchdog or a tape acts on open); then open with
 * O_NONBLOCK|O_NOCTTY and check that the open file is that very regular file
 * (same device and inode), so nothing swapped in between is read.
 */
function openRegularFile(path: string): number | undefined {
  const st = statSync(path, { bigint: true });
  if (!st.isFile()) return undefined;
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  const now = fstatSync(fd, { bigint: true });
  if (!now.isFile() || now.dev !== st.dev || now.ino !== st.ino) {
    closeSync(fd);
    return undefined;
  }
  return fd;
}

/** The first `bytes` bytes of a regular file, or undefined when it cannot be read or is not a regular file (which is never opened). */
export function readFileHead(path: string, bytes: number): Buffer | undefined {
  try {
    const fd = openRegularFile(path);
    if (fd === undefined) return undefined;
    try {
      const b = Buffer.alloc(bytes);
      const n = readSync(fd, b, 0, bytes, 0);
      return b.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

/**
 * A regular file's text (following links: authbind's own files); anything
 * else is never opened (openRegularFile) and is an UnsafeFileError naming
 * its type.
 */
export function readRegularFile(path: string): string {
  const fd = openRegularFile(path);
  if (fd === undefined) {
    let st: Stats | undefined;
    try {
      st = statSync(path);
    } catch {
      // changed since: not a regular file either way
    }
    throw new UnsafeFileError(
      path,
      'file',
      { problem: 'type', type: st === undefined ? 'other' : fileType(st) },
      st === undefined ? undefined : factsOf(st),
    );
  }
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes file `path` (unlinkat: a symlink itself, never what it points at)
 * from its directory, reached as walkTo does, so that no directory on the way
 * is one a user could have swapped for a link. A missing one is fine.
 */
export function removeRootControlledFile(path: string): void {
  const at = walkTo(path, false);
  if (at === undefined) return;
  withDir(at.dir, (dir) => {
    if (at.name !== '') dir.unlink(at.name);
  });
}

/** Removes directory `dir` if it is empty (reached as removeRootControlledFile does); leaves it, and says nothing, otherwise. */
export function removeRootControlledDirIfEmpty(dir: string): void {
  const at = walkTo(dir, false);
  if (at === undefined) return;
  withDir(at.dir, (d) => {
    try {
      if (at.name !== '') d.removeIfEmpty(at.name);
    } catch (e) {
      // a symlink, a mount point: not a directory lowport may remove
      if (!(e instanceof SyscallError)) throw e;
    }
  });
}

export interface DirEntry {
  name: string;
  uid: number;
  gid: number;
  mode: number;
  isFile: boolean;
  /** The entry is a symlink (entries are lstat'ed: owner, mode and isFile are the link's own). */
  isSymlink?: boolean;
}

/** The entries of a directory with their owners and modes, links not followed (none when it does not exist). */
export function listDirEntries(dir: string): DirEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    try {
      const st = lstatSync(`${dir}/${name}`);
      return [{ name, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, isFile: st.isFile(), isSymlink: st.isSymbolicLink() }];
    } catch {
      return [];
    }
  });
}
