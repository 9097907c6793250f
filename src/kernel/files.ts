/**
 * The policy file on disk: read it only when no one but root could have
 * written it (as sudo does for sudoers), write it atomically, and serialize
 * writers with a lock.
 */
import { closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync, rmdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { LowportError } from '../errors.js';
import { flock, getXattr, LOCK_EX } from './libc.js';

const S_IWGRP = 0o020;
const S_IWOTH = 0o002;
const S_ISVTX = 0o1000;

/**
 * Refuses a file, or any directory above it, that a user other than root
 * could change: owned by someone else, group-writable by a group other than
 * root, or world-writable (a sticky, root-owned directory such as /tmp is fine:
 * others cannot rename or remove root's entries in it).
 */
export function assertRootControlled(path: string, role: Role = POLICY): void {
  // The real path: a symlink's target and the directories above it are what a user could change.
  const abs = realpathSync(resolve(path));
  const st = statSync(abs);
  checkOwnership(abs, st, st.isDirectory() ? 'directory' : 'file', role);
  checkParents(abs, role);
}

/** What a file is for, in the refusal: `the policy file X ... so that user could grant themselves any port`. */
export interface Role {
  noun: string;
  risk: string;
}

const POLICY: Role = { noun: 'policy', risk: 'grant themselves any port' };

function checkParents(abs: string, role: Role = POLICY): void {
  for (let dir = dirname(abs); dir !== abs; dir = dirname(dir)) {
    checkOwnership(dir, statSync(dir), 'directory', role);
    if (dir === '/') break;
  }
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

function checkOwnership(path: string, st: { uid: number; gid: number; mode: number }, what: 'file' | 'directory', role: Role = POLICY): void {
  const noun = `the ${role.noun} ${what}`;
  const fix = what === 'file' ? `chown root:root ${path} && chmod 644 ${path}` : `chown root:root ${path} && chmod go-w ${path}`;
  const writers = aclWriters(getXattr(path, 'system.posix_acl_access'), st.gid);
  if (writers.length > 0) {
    throw unsafe(`${noun} ${path} has an ACL that lets ${writers.join(', ')} write it, so they could ${role.risk}`, `setfacl -b ${path}`);
  }
  if (st.uid !== 0) {
    throw unsafe(`${noun} ${path} is owned by uid ${st.uid}, not root, so that user could ${role.risk}`, fix);
  }
  if (st.mode & S_IWOTH && !(what === 'directory' && st.mode & S_ISVTX)) {
    throw unsafe(`${noun} ${path} is world-writable, so anyone could ${role.risk}`, fix);
  }
  if (st.mode & S_IWGRP && st.gid !== 0) {
    throw unsafe(`${noun} ${path} is writable by group ${st.gid}, so its members could ${role.risk}`, fix);
  }
}

function unsafe(message: string, fix: string): LowportError {
  return new LowportError('E_POLICY_UNSAFE', `${message}; lowport refuses to use it`, { hint: `Run: ${fix}` });
}

/**
 * The file's text, or undefined when it does not exist. Resolves symlinks
 * once, checks the directories above the real file, then opens it without
 * following links and checks and reads that very open file, so nothing can be
 * swapped in between the check and the read.
 */
export function readPolicyFile(path: string): string | undefined {
  let real: string;
  try {
    real = realpathSync(resolve(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw fileError(path, e);
  }
  checkParents(real);
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw fileError(path, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new LowportError('E_POLICY_UNSAFE', `the policy ${real} is not a regular file`, { hint: 'Point --policy at a file.' });
    checkOwnership(real, st, 'file');
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** A file error a user can act on (permissions, a missing directory), not a stack trace. */
export function fileError(path: string, e: unknown): LowportError {
  const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
  const hint =
    code === 'EACCES' ? `Run it as root (sudo), or make ${path} readable.` : code === 'ENOENT' ? `Create it, or give another path.` : code === 'ELOOP' ? 'Replace the symlink loop with the file.' : 'Check the path.';
  return new LowportError('E_STATE', `cannot read ${path}: ${code}`, { hint, cause: e });
}

/** Creates the policy's directory if needed (root-owned, 0755) and checks that only root controls it. */
export function preparePolicyDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  assertRootControlled(dir);
}

/**
 * Replaces the file in one rename: a reader sees the old text or the new,
 * never half of one. Keeps the old file's mode; new files are 0644.
 */
export function writeFileAtomic(target: string, text: string): void {
  // Write through a symlink to its file, as an editor would, not over the link.
  let path = target;
  try {
    path = realpathSync(target);
  } catch {
    // a new file
  }
  let mode = 0o644;
  try {
    mode = statSync(path).mode & 0o7777;
  } catch {
    // a new file
  }
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
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
 * An exclusive flock(2) on a root-only lock file, opened without following
 * links and refused unless it is root's own, mode 0600: a lock file a user
 * could create, link or open would let them stall lowport or make root write
 * where they point.
 */
export function lockFile(path: string): { release: () => void } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw fileError(path, e);
  }
  const st = fstatSync(fd);
  if (st.uid !== 0 || (st.mode & 0o077) !== 0 || !st.isFile()) {
    closeSync(fd);
    throw unsafe(`the lock file ${path} is not root's own (uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)})`, `rm -f ${path}`);
  }
  flock(fd, LOCK_EX);
  return { release: () => closeSync(fd) };
}

/** Owner, group and mode of a file (following links), or undefined when it does not exist. */
export function fileOwnership(path: string): { uid: number; gid: number; mode: number } | undefined {
  try {
    const st = statSync(path);
    return { uid: st.uid, gid: st.gid, mode: st.mode };
  } catch {
    return undefined;
  }
}

/** The first `bytes` bytes of a file, or undefined when it cannot be read. */
export function readFileHead(path: string, bytes: number): Buffer | undefined {
  try {
    const fd = openSync(path, 'r');
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

/** The parsed *.json files of a directory (none when it does not exist); unreadable or broken ones are skipped. */
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
    try {
      out.push(JSON.parse(readFileSync(join(dir, name), 'utf8')));
    } catch {
      // a half-written file of a killed process: skip it
    }
  }
  return out;
}

/** A JSON file's value, or undefined when it is missing or broken. */
export function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Writes JSON atomically, creating the directory (root-only, 0700) if needed. */
export function writeJsonFile(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
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
}

/** The entries of a directory with their owners and modes (none when it does not exist). */
export function listDirEntries(dir: string): DirEntry[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    try {
      const st = statSync(join(dir, name));
      return [{ name, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, isFile: st.isFile() }];
    } catch {
      return [];
    }
  });
}

export function readTextFile(path: string): string {
  return readFileSync(path, 'utf8');
}

/** Writes a generated file (a unit) with mode 0644, creating its directory. */
export function writeUnitFile(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, text);
}
