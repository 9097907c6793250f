/**
 * The one way lowport touches files as root: directories held open, and every
 * step inside one taken relative to its fd (openat, mkdirat, unlinkat,
 * renameat; see openat(2)), never by a path that is looked up again. A name
 * in the directory is resolved once, without following a symlink at the last
 * step, so nothing another user does to the path afterwards (a rename, a
 * symlink) changes what lowport acts on. A path is reached by walking from /
 * one directory fd at a time (openPath), each directory checked on its fd
 * before anything in it is trusted; files are opened O_NOFOLLOW|O_NONBLOCK
 * and checked on the fd (readText), written to an O_EXCL temp file and
 * renamed over the name (writeTextAtomic), and locked on a checked lock file
 * (lock). The JSON records under /run are read and written here too.
 *
 * Reading an entry's type and owner, and listing a directory, go through
 * /proc/self/fd/N/NAME: the kernel resolves /proc/self/fd/N to the open
 * directory itself (not to its name), and lstat does not follow NAME, which is
 * exactly fstatat(N, NAME, AT_SYMLINK_NOFOLLOW) without decoding struct stat
 * (its layout differs per architecture) through koffi. The same path is how
 * bpf(BPF_OBJ_GET/BPF_OBJ_PIN), which take a path only, reach into the
 * directory: BPF_F_PATH_FD came with Linux 6.5, after Debian 12's 6.1.
 *
 * Only facts leave this module: a SyscallError, or an UnsafeFileError that
 * says what was found (a symlink, owner uid 1000, writable by group 100).
 * What that means to a user, and what to do, is said by the layer that knows
 * what the file is for (policy-file/trust.ts, bpf/bpffs.ts).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { LowportError } from '../errors.js';
import { EEXIST, ELOOP, ENOENT, ENOTDIR, ENOTEMPTY } from './errno.js';
import { flock, getXattr, LOCK_EX, nativeLibc, O_CLOEXEC, SyscallError } from './libc.js';

// The generic Linux values (asm-generic/fcntl.h), which x86, arm, arm64,
// riscv, ppc and s390 share. O_DIRECTORY and O_NOFOLLOW differ on arm, so
// those come from Node.
const O_DIRECTORY = constants.O_DIRECTORY;
const O_NOFOLLOW = constants.O_NOFOLLOW;
const AT_REMOVEDIR = 0x200;
const AT_FDCWD = -100;

let calls: ReturnType<typeof bind> | undefined;

function bind() {
  const { koffi, libc } = nativeLibc();
  return {
    errno: () => koffi.errno(),
    // openat(2) is variadic (the mode); as for syscall() in libc.ts, a fixed
    // prototype passes the argument the same way on the ABIs Node runs on.
    openat: libc.func('int openat(int dirfd, const char *path, int flags, uint32_t mode)'),
    mkdirat: libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)'),
    unlinkat: libc.func('int unlinkat(int dirfd, const char *path, int flags)'),
    renameat: libc.func('int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)'),
  };
}

function libc(): ReturnType<typeof bind> {
  calls ??= bind();
  return calls;
}

export type FileType = 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'device' | 'other';

export function fileType(st: Stats): FileType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'device';
  return 'other';
}

/** What was found that makes a file or directory unsafe for root to use. */
export type Finding =
  | { problem: 'symlink' }
  | { problem: 'type'; type: FileType }
  | { problem: 'acl'; writers: string[] }
  | { problem: 'owner'; uid: number }
  | { problem: 'world-writable'; sticky: boolean }
  | { problem: 'group-writable'; gid: number }
  | { problem: 'mode'; mode: number }
  | { problem: 'links'; nlink: number };

/** The facts of a stat, as an UnsafeFileError carries them. */
export interface FileFacts {
  type: FileType;
  uid: number;
  gid: number;
  /** Permission bits, with setuid, setgid and sticky. */
  mode: number;
}

export function factsOf(st: Stats): FileFacts {
  return { type: fileType(st), uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
}

/**
 * Where the thing found stands: a directory on the way to what was asked for
 * (`path`), or what was asked for, as a directory, a file or a lock file.
 */
export type Place = 'path' | 'directory' | 'file' | 'lock';

function findingText(f: Finding): string {
  switch (f.problem) {
    case 'symlink':
      return 'a symlink';
    case 'type':
      return `a ${f.type}`;
    case 'acl':
      return `an ACL lets ${f.writers.join(', ')} write`;
    case 'owner':
      return `owner uid ${f.uid}`;
    case 'world-writable':
      return `writable by everyone${f.sticky ? ' (sticky)' : ''}`;
    case 'group-writable':
      return `writable by group ${f.gid}`;
    case 'mode':
      return `mode ${f.mode.toString(8)}`;
    case 'links':
      return `${f.nlink} links`;
  }
}

/**
 * A file or directory that root must not use, and why, as facts: the path (its
 * real one: no symlink left in its directories), where it stands, what was
 * found and its stat. E_POLICY_UNSAFE, so that one reaching the CLI unworded
 * is still a refusal, not a crash; the callers word it (policy-file/trust.ts).
 */
export class UnsafeFileError extends LowportError {
  constructor(
    readonly path: string,
    readonly place: Place,
    readonly finding: Finding,
    readonly facts: FileFacts | undefined,
  ) {
    super('E_POLICY_UNSAFE', `${path}: ${findingText(finding)}`);
  }
}

/** The errno name of a failed file operation (a SyscallError of koffi's calls, or Node's fs error), or undefined for anything else. */
export function errnoCode(e: unknown): string | undefined {
  if (e instanceof SyscallError) return e.errnoName;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && !(e instanceof LowportError) ? code : undefined;
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

/** Checks a directory on its fd; throws an UnsafeFileError (with the place given) when it may not be trusted. */
export type DirCheck = (dir: DirFd, place: 'path' | 'directory') => void;

/**
 * The check of lowport's own state directories (/run/lowport): root's, and no
 * write bit for group or others. On the way to them (`path`) a sticky
 * directory is fine: others cannot move root's entries out of it.
 */
const rootAlone: DirCheck = (dir, place) => {
  const st = dir.stat();
  const finding = rootAloneFinding(st, place === 'path');
  if (finding !== undefined) throw new UnsafeFileError(dir.path, place, finding, factsOf(st));
};

/**
 * The check of lowport's own state (/run/lowport, each directory on the way
 * to it and in it): root's, no write bit for group or others, sticky or not,
 * and no ACL that lets anyone else write.
 */
const stateDir: DirCheck = (dir, place) => {
  const st = dir.stat();
  const writers = aclWriters(dir.acl(), st.gid);
  const finding = rootAloneFinding(st, false) ?? (writers.length > 0 ? { problem: 'acl' as const, writers } : undefined);
  if (finding !== undefined) throw new UnsafeFileError(dir.path, place, finding, factsOf(st));
};

function rootAloneFinding(st: { uid: number; gid: number; mode: number }, stickyOk: boolean): Finding | undefined {
  if (st.uid !== 0) return { problem: 'owner', uid: st.uid };
  if ((st.mode & 0o022) !== 0 && !(stickyOk && (st.mode & 0o1000) !== 0)) {
    return (st.mode & 0o002) !== 0
      ? { problem: 'world-writable', sticky: (st.mode & 0o1000) !== 0 }
      : { problem: 'group-writable', gid: st.gid };
  }
  return undefined;
}

/** An open directory: an fd and its path (the real one, for messages and for nothing else). */
export class DirFd {
  constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** NAME's path in this directory, for messages. */
  join(name: string): string {
    return `${this.path === '/' ? '' : this.path}/${name}`;
  }

  /** The path, through this fd, that bpf() and lstat use for NAME in this directory. */
  procPath(name: string): string {
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  /** fstat(2) of the directory itself. */
  stat(): Stats {
    return fstatSync(this.fd);
  }

  /** The directory's POSIX ACL (system.posix_acl_access), read through its fd; undefined when it has none. */
  acl(): Buffer | undefined {
    return getXattr(`/proc/self/fd/${this.fd}`, 'system.posix_acl_access');
  }

  chmod(mode: number): void {
    fchmodSync(this.fd, mode);
  }

  /** The names in the directory. */
  names(): string[] {
    return readdirSync(`/proc/self/fd/${this.fd}`);
  }

  /** fstatat(fd, NAME, AT_SYMLINK_NOFOLLOW): a symlink is reported as one; undefined when there is no such entry. */
  lstat(name: string): Stats | undefined {
    try {
      return lstatSync(this.procPath(name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** readlinkat(fd, NAME): where symlink NAME points. */
  readlink(name: string): string {
    return readlinkSync(this.procPath(name));
  }

  /** openat(fd, NAME, O_DIRECTORY|O_NOFOLLOW): fails with ELOOP on a symlink and ENOTDIR on anything but a directory. */
  openDir(name: string): DirFd {
    return new DirFd(openDirAt(this.fd, name, this.join(name)), this.join(name));
  }

  /**
   * Subdirectory NAME, checked on the open directory: not a symlink, and root's
   * alone (stateDir). Created (`mode`) when missing and `create`; undefined
   * when missing otherwise.
   */
  openRootSubdir(name: string, { create, mode }: { create: boolean; mode: number }): DirFd | undefined {
    return this.openSubdir(name, { create: create ? mode : undefined, check: stateDir });
  }

  /**
   * Subdirectory NAME, made (`create`: its mode) when missing, refused when it is a symlink or not
   * a directory, then `check`ed on its fd.
   */
  openSubdir(name: string, { create, check }: { create?: number; check: DirCheck }): DirFd | undefined {
    if (create !== undefined) this.mkdir(name, create);
    const st = this.lstat(name);
    if (st === undefined) return undefined;
    if (st.isSymbolicLink()) throw new UnsafeFileError(this.join(name), 'directory', { problem: 'symlink' }, factsOf(st));
    if (!st.isDirectory()) throw new UnsafeFileError(this.join(name), 'directory', { problem: 'type', type: fileType(st) }, factsOf(st));
    const dir = this.openDir(name);
    try {
      check(dir, 'directory');
    } catch (e) {
      dir.close();
      throw e;
    }
    return dir;
  }

  /** Removes directory NAME if it is empty; says nothing when it is not, or is gone. */
  removeIfEmpty(name: string): void {
    if (Number(libc().unlinkat(this.fd, name, AT_REMOVEDIR)) === 0) return;
    const errno = libc().errno();
    if (errno !== ENOENT && errno !== ENOTEMPTY && errno !== EEXIST)
      throw new SyscallError(`unlinkat(${this.join(name)}, AT_REMOVEDIR)`, errno);
  }

  /** mkdirat(2); false when NAME exists already (of whatever type: the caller checks). */
  mkdir(name: string, mode: number): boolean {
    if (Number(libc().mkdirat(this.fd, name, mode)) === 0) return true;
    const errno = libc().errno();
    if (errno === EEXIST) return false;
    throw new SyscallError(`mkdirat(${this.join(name)})`, errno);
  }

  /** unlinkat(2) of a file (or a symlink itself); a missing one is fine. */
  unlink(name: string): void {
    this.unlinkAt(name, 0);
  }

  /** unlinkat(AT_REMOVEDIR) of an empty directory; a missing one is fine. */
  rmdir(name: string): void {
    this.unlinkAt(name, AT_REMOVEDIR);
  }

  private unlinkAt(name: string, flags: number): void {
    if (Number(libc().unlinkat(this.fd, name, flags)) === 0) return;
    const errno = libc().errno();
    if (errno !== ENOENT) throw new SyscallError(`unlinkat(${this.join(name)})`, errno);
  }

  /** renameat(2) from NAME here to TO in `into` (this directory by default): atomic, replacing an empty directory or a file at TO. */
  rename(name: string, to: string, into: DirFd = this): void {
    if (Number(libc().renameat(this.fd, name, into.fd, to)) !== 0) {
      throw new SyscallError(`renameat(${this.join(name)} -> ${into.join(to)})`, libc().errno());
    }
  }

  /**
   * Opens file NAME for reading without following a symlink (a symlink:
   * UnsafeFileError) and without blocking (a FIFO opens at once, and cannot
   * hang root); undefined when there is none. The caller checks the open file
   * (fstat) and closes it.
   */
  openFile(name: string): number | undefined {
    const fd = Number(libc().openat(this.fd, name, constants.O_RDONLY | O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC, 0));
    if (fd >= 0) return fd;
    const errno = libc().errno();
    if (errno === ENOENT) return undefined;
    if (errno === ELOOP) throw new UnsafeFileError(this.join(name), 'file', { problem: 'symlink' }, undefined);
    throw new SyscallError(`openat(${this.join(name)}, O_NOFOLLOW)`, errno);
  }

  /**
   * The text of file NAME, or undefined when there is none. Opened as
   * openFile does, then checked on the open file, so that nothing can be
   * swapped in between the check and the read: a regular file, and `check`
   * (by default: root's, not writable by group or others).
   */
  readText(name: string, check: FileCheck = rootOnlyFile): string | undefined {
    const fd = this.openFile(name);
    if (fd === undefined) return undefined;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new UnsafeFileError(this.join(name), 'file', { problem: 'type', type: fileType(st) }, factsOf(st));
      check(fd, st, this.join(name));
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Replaces file NAME with `text` in one renameat(2): a reader sees the old
   * text or the new, never half of one. The new text goes to a temp file
   * created here with O_CREAT|O_EXCL|O_NOFOLLOW (so nothing planted is written
   * through), with `mode` (fchmod: the umask does not take bits off), synced,
   * then renamed over NAME, which replaces whatever NAME was, a symlink
   * included, without writing through it. The directory is synced too
   * (rename(2) is atomic, not durable).
   */
  writeTextAtomic(name: string, text: string, mode = 0o600): void {
    const tmp = tempName(name, randomBytes(6).toString('hex'));
    const fd = Number(
      libc().openat(this.fd, tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode),
    );
    if (fd < 0) throw new SyscallError(`openat(${this.join(tmp)}, O_CREAT|O_EXCL)`, libc().errno());
    try {
      fchmodSync(fd, mode);
      const bytes = Buffer.from(text);
      for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      this.unlink(tmp);
      throw e;
    }
    closeSync(fd);
    try {
      this.rename(tmp, name);
    } catch (e) {
      this.unlink(tmp);
      throw e;
    }
    try {
      fsyncSync(this.fd);
    } catch {
      // best effort: the file's own data is synced already
    }
  }

  /**
   * Removes the temp files writeTextAtomic left for NAME: a writer killed
   * between creating its temp file and renaming it leaves one, and it keeps
   * the directory from ever being empty. Only for a caller that holds the
   * lock every writer of NAME holds: then no temp file of NAME is a live
   * writer's.
   */
  removeTemps(name: string): void {
    for (const entry of this.names()) if (isTempName(name, entry)) this.unlink(entry);
  }

  /**
   * An exclusive flock(2) on lock file NAME here, until `release` or the end
   * of the process. Opened (created 0600 if missing) without following a
   * link or blocking, and refused unless it is root's own regular file, mode
   * 0600 or less, with one link: a lock file a user could create, link or
   * open would let them stall lowport or make root write where they point.
   * The file stays: removing a lock file races with its next user.
   */
  lock(name: string): { release: () => void } {
    const fd = Number(
      libc().openat(this.fd, name, constants.O_RDWR | constants.O_CREAT | O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC, 0o600),
    );
    if (fd < 0) {
      const errno = libc().errno();
      if (errno === ELOOP) throw new UnsafeFileError(this.join(name), 'lock', { problem: 'symlink' }, undefined);
      throw new SyscallError(`openat(${this.join(name)}, O_CREAT|O_NOFOLLOW)`, errno);
    }
    try {
      const st = fstatSync(fd);
      const finding: Finding | undefined =
        st.uid !== 0
          ? { problem: 'owner', uid: st.uid }
          : !st.isFile()
            ? { problem: 'type', type: fileType(st) }
            : (st.mode & 0o077) !== 0
              ? { problem: 'mode', mode: st.mode & 0o7777 }
              : st.nlink !== 1
                ? { problem: 'links', nlink: st.nlink }
                : undefined;
      if (finding !== undefined) throw new UnsafeFileError(this.join(name), 'lock', finding, factsOf(st));
      flock(fd, LOCK_EX);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return { release: () => closeSync(fd) };
  }

  /**
   * A JSON record's value (readText, so checked as it does); undefined when there is none or it is
   * not valid JSON (a half-written file of a killed process).
   */
  readJson(name: string): unknown {
    const text = this.readText(name);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return undefined;
    }
  }

  /** Writes a JSON record atomically (writeTextAtomic), root's alone (0600). */
  writeJson(name: string, value: unknown): void {
    this.writeTextAtomic(name, `${JSON.stringify(value, null, 2)}\n`);
  }

  /** The values of the *.json records here whose names pass `filter` (readJson: invalid ones are skipped). */
  listJson(filter: (name: string) => boolean = (name) => name.endsWith('.json')): { name: string; value: unknown }[] {
    return this.names()
      .filter(filter)
      .sort()
      .flatMap((name) => {
        const value = this.readJson(name);
        return value === undefined ? [] : [{ name, value }];
      });
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Checks an open regular file (its fd and fstat); throws an UnsafeFileError when it may not be used. */
export type FileCheck = (fd: number, st: Stats, path: string) => void;

/** A file only root can write: root's, no write bit for group or others. */
const rootOnlyFile: FileCheck = (_fd, st, path) => {
  const finding = rootAloneFinding(st, false);
  if (finding !== undefined) throw new UnsafeFileError(path, 'file', finding, factsOf(st));
};

export interface WalkOptions {
  /** Checks each directory on the way, on its fd, before anything in it is trusted (from / on). */
  check: DirCheck;
  /**
   * Follow symlinks: each only from a directory that passed `check` (so only
   * root could have made it), and whatever it leads through is checked in
   * turn. False: a symlink on the way is refused (UnsafeFileError, `path`).
   */
  follow: boolean;
  /** With `follow`, a symlink at the last name is followed too. */
  followLast?: boolean;
  /** Make missing directories on the way, with this mode (root's: the process is). */
  create?: number;
}

/**
 * Walks `path` (absolute) from / one directory fd at a time, as the kernel
 * does, and returns the directory that holds its last name, open and
 * checked, with that name ('' for / itself). No symlink is left in the
 * returned directory's path. Undefined when a directory on the way is
 * missing (and not `create`d). At most 40 symlinks, as the kernel allows.
 */
export function openPath(path: string, o: WalkOptions): { dir: DirFd; name: string } | undefined {
  if (!path.startsWith('/')) throw new Error(`openPath: not an absolute path: ${path}`);
  const pending = path.split('/').filter((p) => p !== '' && p !== '.');
  const stack = [new DirFd(openDirAt(AT_FDCWD, '/', '/'), '/')];
  let hops = 0;
  try {
    o.check(stack[0] as DirFd, 'path');
    while (pending.length > 0) {
      const name = pending.shift() ?? '';
      const at = stack[stack.length - 1] as DirFd;
      if (name === '.') continue;
      if (name === '..') {
        // checked on the way down
        if (stack.length > 1) stack.pop()?.close();
        continue;
      }
      const last = pending.length === 0;
      const st = at.lstat(name);
      if (st?.isSymbolicLink() === true && (!last || o.followLast === true)) {
        if (!o.follow) throw new UnsafeFileError(at.join(name), 'path', { problem: 'symlink' }, factsOf(st));
        if (++hops > 40) throw new SyscallError(`open(${path})`, ELOOP);
        const target = at.readlink(name);
        if (target.startsWith('/')) while (stack.length > 1) stack.pop()?.close();
        pending.unshift(...target.split('/').filter((p) => p !== ''));
        continue;
      }
      if (last) {
        stack.pop();
        return { dir: at, name };
      }
      if (st === undefined) {
        if (o.create === undefined) return undefined;
        at.mkdir(name, o.create);
      } else if (!st.isDirectory()) {
        throw new SyscallError(`open(${at.join(name)})`, ENOTDIR);
      }
      const next = at.openDir(name);
      stack.push(next);
      o.check(next, 'path');
    }
    return { dir: stack.pop() as DirFd, name: '' };
  } finally {
    for (const d of stack) d.close();
  }
}

/**
 * The directory at `path`, open: every directory on the way checked as in
 * openPath, and it itself not a symlink (unless `follow` and a checked
 * directory holds it), a directory, and checked on its fd. Made (`create`:
 * its mode, and the mode of any missing directory on the way) when missing;
 * undefined when missing otherwise.
 */
export function openDirPath(path: string, o: WalkOptions): DirFd | undefined {
  const at = openPath(path, { ...o, followLast: o.follow });
  if (at === undefined) return undefined;
  if (at.name === '') {
    // '/' itself: checked on the way as a path, now as what was asked for
    try {
      o.check(at.dir, 'directory');
    } catch (e) {
      at.dir.close();
      throw e;
    }
    return at.dir;
  }
  return withDir(at.dir, (d) => d.openSubdir(at.name, { ...(o.create === undefined ? {} : { create: o.create }), check: o.check }));
}

/**
 * Opens `dir` walking from / without following symlinks, every directory on
 * the way and itself root's and not writable by others unless sticky
 * (others then cannot move root's entries: rootAlone on the way). Missing
 * directories are made (root's, 0755) when `create`; otherwise the result is
 * undefined.
 */
export function openDirChain(dir: string, { create }: { create: boolean }): DirFd | undefined {
  const check: DirCheck = (d) => rootAlone(d, 'path');
  return openDirPath(dir, { check, follow: false, ...(create ? { create: 0o755 } : {}) });
}

/**
 * A directory only root may write (lowport's state under /run): reached from
 * / without a symlink, every directory on the way and itself checked
 * (stateDir: root's, no write for anyone else, sticky or not), made (root's,
 * `mode`; missing ones on the way 0755) when missing and `create`. Undefined
 * when it does not exist and `create` is false.
 */
export function openRootDir(path: string, { create, mode }: { create: boolean; mode: number }): DirFd | undefined {
  const at = openPath(path, { check: stateDir, follow: false, ...(create ? { create: 0o755 } : {}) });
  if (at === undefined) return undefined;
  if (at.name === '') {
    at.dir.close();
    throw new Error('openRootDir: not /');
  }
  return withDir(at.dir, (d) => d.openRootSubdir(at.name, { create, mode }));
}

/** open(PATH, O_DIRECTORY), following links: a directory of a user's own, for a write that needs no check (the user's own files). */
export function openDirFollowing(path: string): DirFd {
  const fd = Number(libc().openat(AT_FDCWD, path, O_DIRECTORY | O_CLOEXEC | constants.O_RDONLY, 0));
  if (fd < 0) throw new SyscallError(`openat(${path}, O_DIRECTORY)`, libc().errno());
  return new DirFd(fd, path);
}

function openDirAt(dirfd: number, name: string, what: string): number {
  const fd = Number(libc().openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | constants.O_RDONLY, 0));
  if (fd < 0) throw new SyscallError(`openat(${what}, O_DIRECTORY|O_NOFOLLOW)`, libc().errno());
  return fd;
}

/** Runs `fn` with the directory, then closes it. */
export function withDir<T>(dir: DirFd, fn: (dir: DirFd) => T): T {
  try {
    return fn(dir);
  } finally {
    dir.close();
  }
}

/** writeTextAtomic's temp file for NAME: hidden, with 12 hex digits of its own. */
function tempName(name: string, hex: string): string {
  return `.${name}.${hex}.tmp`;
}

function isTempName(name: string, entry: string): boolean {
  const hex = entry.startsWith(`.${name}.`) && entry.endsWith('.tmp') ? entry.slice(name.length + 2, -4) : '';
  return /^[0-9a-f]{12}$/.test(hex) && entry === tempName(name, hex);
}
