/**
 * Files lowport reads and writes as root: the policy, its lock, generated
 * units, its records under /run. Read one only when no one but root could
 * have written it (as sudo does for sudoers), write atomically, serialize
 * writers with a lock, and never let a name that a user could plant (a
 * symlink, a FIFO) steer root's reads or writes.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { LowportError } from '../errors.js';
import { flock, getXattr, LOCK_EX } from './libc.js';

const S_IWGRP = 0o020;
const S_IWOTH = 0o002;
const S_ISVTX = 0o1000;

// Node opens every file with O_CLOEXEC (libuv adds it), so no fd here reaches a child.
/** A read that never follows a link at the last name and never blocks (a FIFO opens at once, then fstat refuses it). */
const O_READ = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** What a file is for, in the refusal: `the policy file X ... so that user could grant themselves any port`. */
export interface Role {
  noun: string;
  risk: string;
}

const POLICY: Role = { noun: 'policy', risk: 'grant themselves any port' };
const LOCK: Role = { noun: 'lock', risk: 'stall lowport or make root write where they point' };
/** Files lowport generates for root (units): a planted link would make root overwrite the file it points at. */
export const GENERATED: Role = { noun: 'output', risk: 'plant a link there and make root overwrite any file' };
const RECORD: Role = { noun: 'state', risk: 'forge what lowport remembers' };

/**
 * Refuses a file, or any directory on the way to it from /, that a user other
 * than root could change: owned by someone else, group-writable by a group
 * other than root, world-writable (sticky or not), or with an ACL that lets
 * another user write. A symlink is followed only when the directory it sits
 * in passes the same check (only root could have made it), and the
 * directories it leads through are checked too.
 */
export function assertRootControlled(path: string, role: Role = POLICY, missingOk = false): void {
  const where = trustedLocation(path, role);
  if ((where === undefined || !where.exists) && missingOk) return;
  if (where === undefined || !where.exists) throw fileError(path, Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
  const st = lstatSync(where.path);
  checkOwnership(where.path, st, st.isDirectory() ? 'directory' : 'file', role);
}

/**
 * Where a name leads, walked from / one component at a time as the kernel
 * does, checking each directory before anything in it is trusted: as sudo
 * does for sudoers and OpenSSH's StrictModes for authorized_keys, a
 * directory someone else can write lets them put any name in it, and a
 * sticky bit does not help for a name that lowport has yet to create (a new
 * policy, a temp file, a lock) or one it removes (the tmp cleaner's,
 * `uninstall --purge`). A symlink is followed only from a checked directory
 * (so only root could have made it), and whatever it leads through is
 * checked in turn. The last name is followed too unless `followLast` is
 * false. Returns the path with no link left in its directories; `exists`
 * false when nothing is at the last name yet. Undefined: a directory on the
 * way does not exist.
 */
function trustedLocation(path: string, role: Role, followLast = true): { path: string; exists: boolean } | undefined {
  const pending = resolve(path).split('/').filter((p) => p !== '');
  let real = '/';
  checkOwnership('/', lstatSync('/'), 'directory', role);
  let hops = 0;
  while (pending.length > 0) {
    const name = pending.shift() ?? '';
    if (name === '.') continue;
    if (name === '..') {
      real = dirname(real); // checked on the way down
      continue;
    }
    const next = join(real, name);
    const last = pending.length === 0;
    let st: Stats;
    try {
      st = lstatSync(next);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return last ? { path: next, exists: false } : undefined;
      throw fileError(path, e);
    }
    if (st.isSymbolicLink() && (!last || followLast)) {
      if (++hops > 40) throw fileError(path, Object.assign(new Error('ELOOP'), { code: 'ELOOP' }));
      const target = readlinkSync(next);
      if (target.startsWith('/')) real = '/';
      pending.unshift(...target.split('/').filter((p) => p !== ''));
      continue;
    }
    if (last) return { path: next, exists: true };
    if (!st.isDirectory()) throw fileError(path, Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' }));
    checkOwnership(next, st, 'directory', role);
    real = next;
  }
  return { path: real, exists: true };
}

/** An existing directory, with every directory on the way to it and itself checked; returns its real path. */
function trustedDir(dir: string, role: Role): string {
  const where = trustedLocation(dir, role);
  if (where === undefined || !where.exists) throw fileError(dir, Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
  const st = lstatSync(where.path);
  if (!st.isDirectory()) throw fileError(dir, Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' }));
  checkOwnership(where.path, st, 'directory', role);
  return where.path;
}

// struct posix_acl_xattr_entry (linux/posix_acl_xattr.h): u16 tag, u16 perm, u32 id, after a u32 version.
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_WRITE = 0x02;

/**
 * Who, besides the owner, a POSIX ACL lets write: with an ACL the mode's group
 * bits are only the mask, so they alone do not tell. Named entries for ids
 * other than root, and the owning group when it is not root, count.
 */
export function aclWriters(acl: Buffer | undefined, fileGid: number): string[] {
  if (acl === undefined || acl.length < 4) return [];
  const out: string[] = [];
  for (let at = 4; at + 8 <= acl.length; at += 8) {
    const tag = acl.readUInt16LE(at);
    const perm = acl.readUInt16LE(at + 2);
    const id = acl.readUInt32LE(at + 4);
    if ((perm & ACL_WRITE) === 0) continue;
    if (tag === ACL_USER && id !== 0) out.push(`user ${id}`);
    if (tag === ACL_GROUP && id !== 0) out.push(`group ${id}`);
    if (tag === ACL_GROUP_OBJ && fileGid !== 0) out.push(`group ${fileGid}`);
  }
  return out;
}

/**
 * Why a file or directory is not root's alone, or undefined when it is. Pure
 * (the ACL passed in), for tests; checkOwnership turns it into the refusal.
 */
export function ownershipProblem(
  path: string,
  st: { uid: number; gid: number; mode: number },
  what: 'file' | 'directory',
  acl: Buffer | undefined,
  role: Role = POLICY,
): { message: string; fix: string } | undefined {
  const noun = `the ${role.noun} ${what}`;
  const fix = what === 'file' ? `chown root:root ${path} && chmod 644 ${path}` : `chown root:root ${path} && chmod go-w ${path}`;
  const writers = aclWriters(acl, st.gid);
  if (writers.length > 0) return { message: `${noun} ${path} has an ACL that lets ${writers.join(', ')} write it, so they could ${role.risk}`, fix: `setfacl -b ${path}` };
  if (st.uid !== 0) return { message: `${noun} ${path} is owned by uid ${st.uid}, not root, so that user could ${role.risk}`, fix };
  if (st.mode & S_IWOTH) {
    if (what === 'directory' && st.mode & S_ISVTX) {
      return {
        message: `${noun} ${path} is writable by everyone (sticky, as /tmp is: anyone can still plant a symlink or a FIFO at a name lowport is about to use), so anyone could ${role.risk}`,
        fix: `a directory that only root can write${role === POLICY ? ' (for the policy, the default /etc/lowport)' : ''}; do not share one with every user`,
      };
    }
    return { message: `${noun} ${path} is world-writable, so anyone could ${role.risk}`, fix };
  }
  if (st.mode & S_IWGRP && st.gid !== 0) return { message: `${noun} ${path} is writable by group ${st.gid}, so its members could ${role.risk}`, fix };
  return undefined;
}

function checkOwnership(path: string, st: { uid: number; gid: number; mode: number }, what: 'file' | 'directory', role: Role = POLICY): void {
  const problem = ownershipProblem(path, st, what, getXattr(path, 'system.posix_acl_access'), role);
  if (problem !== undefined) throw unsafe(problem.message, problem.fix.startsWith('a directory') ? `Use ${problem.fix}.` : `Run: ${problem.fix}`);
}

function unsafe(message: string, hint: string): LowportError {
  return new LowportError('E_POLICY_UNSAFE', `${message}; lowport refuses to use it`, { hint });
}

/** What a non-regular file is, for the refusal. */
function fileKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO (named pipe): reading it could block lowport forever';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The file's text, or undefined when it does not exist. Checks the
 * directories on the way to it (trustedLocation), then opens the last name
 * without following a link and without blocking, and checks and reads that
 * very open file, so nothing can be swapped in between the check and the read.
 */
export function readPolicyFile(path: string): string | undefined {
  const where = trustedLocation(path, POLICY);
  if (where === undefined || !where.exists) return undefined;
  return readCheckedFile(where.path, path, POLICY, true);
}

/**
 * Opens a file at a name that is not a link (O_NOFOLLOW), without blocking
 * (O_NONBLOCK: a FIFO opens at once), and reads it only when fstat says it is
 * a regular file (and, with `rootOwned`, root's alone). Undefined when it is
 * gone.
 */
function readCheckedFile(real: string, given: string, role: Role, rootOwned: boolean): string | undefined {
  let fd: number;
  try {
    fd = openSync(real, O_READ);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw unsafe(`the ${role.noun} ${real} became a symlink while lowport read it`, 'Check who else changes it, then try again.');
    throw fileError(given, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw unsafe(`the ${role.noun} ${real} is ${fileKind(st)}, not a regular file`, `Point lowport at a regular file owned by root (rm ${real}, if it is not yours).`);
    if (rootOwned) checkOwnership(real, st, 'file', role);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** A file error a user can act on (permissions, a missing directory), not a stack trace. */
function fileError(path: string, e: unknown): LowportError {
  const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
  const hint =
    code === 'EACCES' ? `Run it as root (sudo), or make ${path} readable.` : code === 'ENOENT' ? `Create it, or give another path.` : code === 'ELOOP' ? 'Replace the symlink loop with the file.' : 'Check the path.';
  return new LowportError('E_STATE', `cannot use ${path}: ${code}`, { hint, cause: e });
}

/**
 * Creates a directory if needed and checks that only root controls it and
 * every directory above it: the nearest existing ancestor is checked before
 * anything is made in it, then each new level is made (root's, `mode`) one
 * at a time. Returns its real path.
 */
export function ensureTrustedDir(dir: string, mode: number, role: Role = POLICY): string {
  let where = trustedLocation(dir, role);
  if (where === undefined) {
    const parent = dirname(resolve(dir));
    if (parent === resolve(dir)) throw fileError(dir, Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
    ensureTrustedDir(parent, mode, role);
    where = trustedLocation(dir, role);
  }
  if (where === undefined) throw fileError(dir, Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
  if (!where.exists) {
    try {
      mkdirSync(where.path, { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fileError(dir, e);
    }
  }
  return trustedDir(where.path, role);
}

/** Creates the policy's directory if needed (root-owned, 0755) and checks that only root controls it. */
export function preparePolicyDir(dir: string): void {
  ensureTrustedDir(dir, 0o755, POLICY);
}

export interface WriteOptions {
  /** What the file is, in a refusal. */
  role?: Role;
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
 * Replaces the file in one rename: a reader sees the old text or the new,
 * never half of one. The new text goes to a temp file created with
 * O_CREAT|O_EXCL|O_NOFOLLOW in the checked directory (so nothing planted
 * there is written through), then renamed over the name. Keeps the old
 * file's permission bits; new files are 0644.
 */
export function writeFileAtomic(target: string, text: string, options: WriteOptions = {}): void {
  const role = options.role ?? POLICY;
  const rootOnly = options.rootOnly ?? true;
  let path: string;
  let exists: boolean;
  if (options.followLink === false || !rootOnly) {
    let dir: string;
    try {
      dir = rootOnly ? trustedDir(dirname(resolve(target)), role) : realpathSync(dirname(resolve(target)));
    } catch (e) {
      throw e instanceof LowportError ? e : fileError(target, e);
    }
    path = join(dir, basename(target));
    exists = lstatOrUndefined(path) !== undefined;
  } else {
    const where = trustedLocation(target, role);
    if (where === undefined) throw fileError(target, Object.assign(new Error('ENOENT'), { code: 'ENOENT' }));
    ({ path, exists } = where);
  }
  const old = exists ? lstatOrUndefined(path) : undefined;
  const mode = old?.isFile() === true ? old.mode & 0o777 : 0o644;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (e) {
    throw fileError(tmp, e);
  }
  try {
    fchmodSync(fd, mode); // the umask may have taken bits off
    const bytes = Buffer.from(text);
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
    rmSync(tmp, { force: true });
    throw e instanceof LowportError ? e : fileError(path, e);
  }
  syncDir(dirname(path));
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The rename reaches the disk with the directory's own fsync (rename(2) is atomic, not durable). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // best effort: the file's own data is synced already
  }
}

/**
 * Takes an exclusive lock on a directory (flock(2) on its fd) until `release`
 * is called or the process exits; two lowport commands editing the same policy
 * run one after the other, and both edits land.
 */
export function lockDirectory(dir: string): { release: () => void } {
  // A root-only file, not the directory itself: flock needs only an open fd,
  // and any user can open a 0755 directory and hold its lock forever.
  return lockFile(join(dir, '.lowport.lock'));
}

/**
 * An exclusive flock(2) on a root-only lock file in a directory only root
 * controls (checked up to /), opened without following links or blocking
 * and refused unless it is root's own regular file, mode 0600: a lock file
 * a user could create, link or open would let them stall lowport or make
 * root write where they point.
 */
export function lockFile(path: string): { release: () => void } {
  const real = join(trustedDir(dirname(resolve(path)), LOCK), basename(path));
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw unsafe(`the lock file ${real} is a symlink`, `rm -f ${real}`);
    throw fileError(real, e);
  }
  const st = fstatSync(fd);
  if (st.uid !== 0 || (st.mode & 0o077) !== 0 || !st.isFile() || st.nlink !== 1) {
    closeSync(fd);
    throw unsafe(`the lock file ${real} is not root's own (uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}${st.isFile() ? '' : `, ${fileKind(st)}`})`, `rm -f ${real}`);
  }
  flock(fd, LOCK_EX);
  return { release: () => closeSync(fd) };
}

/**
 * Owner, group and mode of a file (following links), or undefined when it
 * does not exist; `kind` says what it is when it is not a regular file.
 */
export function fileOwnership(path: string): { uid: number; gid: number; mode: number; kind?: string } | undefined {
  try {
    const st = statSync(path);
    return { uid: st.uid, gid: st.gid, mode: st.mode, ...(st.isFile() ? {} : { kind: fileKind(st) }) };
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

/** The parsed *.json files of a directory (none when it does not exist); unreadable, broken or non-regular ones are skipped. */
export function listJsonFiles(dir: string): unknown[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: unknown[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const value = readJsonFile(join(dir, name));
    // a half-written file of a killed process: skip it
    if (value !== undefined) out.push(value);
  }
  return out;
}

/** A JSON file's value, or undefined when it is missing, broken, a link or not a regular file. */
export function readJsonFile(path: string): unknown {
  try {
    const text = readCheckedFile(path, path, RECORD, false);
    return text === undefined ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Writes JSON atomically, creating the directory (root-only, 0700) if needed. */
export function writeJsonFile(path: string, value: unknown): void {
  ensureTrustedDir(dirname(path), 0o700, RECORD);
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`, { role: RECORD, followLink: false });
}

export function removeFile(path: string): void {
  rmSync(path, { force: true });
}

/** Removes a directory if it is empty; leaves it (and says nothing) otherwise. */
export function removeEmptyDir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or gone
  }
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
      const st = lstatSync(join(dir, name));
      return [{ name, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, isFile: st.isFile(), isSymlink: st.isSymbolicLink() }];
    } catch {
      return [];
    }
  });
}

/** A regular file's text (following links: authbind's own files); anything else is refused without being opened (openRegularFile). */
export function readTextFile(path: string): string {
  let fd: number | undefined;
  try {
    fd = openRegularFile(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (fd === undefined) {
    let kind = 'not a regular file';
    try {
      kind = fileKind(statSync(path));
    } catch {
      // changed since: not a regular file either way
    }
    throw new LowportError('E_STATE', `${path} is ${kind}, not a regular file`, { hint: 'Replace it with a regular file, or remove it.' });
  }
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a generated file (a unit) with mode 0644, creating its directory.
 * A link at the file's name is replaced, never followed. As root, the
 * directory and every one above it must be root's alone (a link or a
 * directory planted in a shared one would steer root's write); a non-root
 * user may write into their own directories.
 */
export function writeUnitFile(path: string, text: string): void {
  const root = process.geteuid?.() === 0;
  if (root) ensureTrustedDir(dirname(path), 0o755, GENERATED);
  else mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, text, { role: GENERATED, rootOnly: root, followLink: false });
}
