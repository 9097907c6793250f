/**
 * Directories held open, and every step inside one taken relative to its fd
 * (openat, mkdirat, unlinkat, renameat; see openat(2)), never by a path that
 * is looked up again. A name in the directory is resolved once, without
 * following a symlink at the last step, so nothing another user does to the
 * path afterwards (a rename, a symlink) changes what lowport acts on.
 *
 * Reading an entry's type and owner, and listing a directory, go through
 * /proc/self/fd/N/NAME: the kernel resolves /proc/self/fd/N to the open
 * directory itself (not to its name), and lstat does not follow NAME, which is
 * exactly fstatat(N, NAME, AT_SYMLINK_NOFOLLOW) without decoding struct stat
 * (its layout differs per architecture) through koffi. The same path is how
 * bpf(BPF_OBJ_GET/BPF_OBJ_PIN), which take a path only, reach into the
 * directory: BPF_F_PATH_FD came with Linux 6.5, after Debian 12's 6.1.
 */
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, lstatSync, readdirSync, readFileSync, writeSync, type Stats } from 'node:fs';
import { LowportError } from '../errors.js';
import { EEXIST, ELOOP, ENOENT, ENOTEMPTY } from './errno.js';
import { nativeLibc, O_CLOEXEC, SyscallError } from './libc.js';

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

/** An open directory: an fd and, for messages only, the path it was opened by. */
export class DirFd {
  constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  /** The path, through this fd, that bpf() and lstat use for NAME in this directory. */
  procPath(name: string): string {
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  /** fstat(2) of the directory itself. */
  stat(): Stats {
    return fstatSync(this.fd);
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

  /** openat(fd, NAME, O_DIRECTORY|O_NOFOLLOW): fails with ELOOP on a symlink and ENOTDIR on anything but a directory. */
  openDir(name: string): DirFd {
    return new DirFd(openDirAt(this.fd, name, `${this.path}/${name}`), `${this.path}/${name}`);
  }

  /**
   * Subdirectory NAME, checked on the open directory: root's, not writable by
   * others, not a symlink. Created (`mode`) when missing and `create`;
   * undefined when missing otherwise.
   */
  openRootSubdir(name: string, { create, mode }: { create: boolean; mode: number }): DirFd | undefined {
    const path = `${this.path === '/' ? '' : this.path}/${name}`;
    if (create) this.mkdir(name, mode);
    const st = this.lstat(name);
    if (st === undefined) return undefined;
    if (st.isSymbolicLink() || !st.isDirectory()) throw unsafe(`${path} is ${st.isSymbolicLink() ? 'a symlink' : 'not a directory'}`, `Remove it (rm ${path}) and run the command again.`);
    const dir = new DirFd(openDirAt(this.fd, name, path), path);
    const own = dir.stat();
    if (own.uid !== 0 || (own.mode & 0o022) !== 0) {
      dir.close();
      throw unsafe(`${path} is not root's alone (uid ${own.uid}, mode ${(own.mode & 0o7777).toString(8)})`, `Remove it (rm -r ${path}) and run the command again.`);
    }
    return dir;
  }

  /** Removes directory NAME if it is empty; says nothing when it is not, or is gone. */
  removeIfEmpty(name: string): void {
    if (Number(libc().unlinkat(this.fd, name, AT_REMOVEDIR)) === 0) return;
    const errno = libc().errno();
    if (errno !== ENOENT && errno !== ENOTEMPTY && errno !== EEXIST) throw new SyscallError(`unlinkat(${this.path}/${name}, AT_REMOVEDIR)`, errno);
  }

  /** mkdirat(2); false when NAME exists already (of whatever type: the caller checks). */
  mkdir(name: string, mode: number): boolean {
    if (Number(libc().mkdirat(this.fd, name, mode)) === 0) return true;
    const errno = libc().errno();
    if (errno === EEXIST) return false;
    throw new SyscallError(`mkdirat(${this.path}/${name})`, errno);
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
    if (errno !== ENOENT) throw new SyscallError(`unlinkat(${this.path}/${name})`, errno);
  }

  /** renameat(2) from NAME here to TO in `into` (this directory by default): atomic, replacing an empty directory or a file at TO. */
  rename(name: string, to: string, into: DirFd = this): void {
    if (Number(libc().renameat(this.fd, name, into.fd, to)) !== 0) {
      throw new SyscallError(`renameat(${this.path}/${name} -> ${into.path}/${to})`, libc().errno());
    }
  }

  /**
   * The text of file NAME, or undefined when there is none. Opened without
   * following a symlink and without blocking (a FIFO cannot hang root), then
   * checked on the open file: a regular file of root's that only root can write.
   */
  readText(name: string): string | undefined {
    const fd = Number(libc().openat(this.fd, name, constants.O_RDONLY | O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC, 0));
    if (fd < 0) {
      const errno = libc().errno();
      if (errno === ENOENT) return undefined;
      if (errno === ELOOP) throw unsafe(`${this.path}/${name} is a symlink, which lowport never makes`, `Remove it (rm ${this.path}/${name}) and run the command again.`);
      throw new SyscallError(`openat(${this.path}/${name}, O_NOFOLLOW)`, errno);
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
        throw unsafe(`${this.path}/${name} is not a file only root can write (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`, `Remove it (rm ${this.path}/${name}) and run the command again.`);
      }
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Replaces file NAME with `text` in one renameat(2): a reader sees the old
   * text or the new. The new file is created here (O_EXCL|O_NOFOLLOW, root's,
   * `mode`), and the rename replaces whatever NAME was, a symlink included,
   * without writing through it.
   */
  writeTextAtomic(name: string, text: string, mode = 0o600): void {
    const tmp = `.${name}.${process.pid}.tmp`;
    this.unlink(tmp);
    const fd = Number(libc().openat(this.fd, tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (fd < 0) throw new SyscallError(`openat(${this.path}/${tmp}, O_CREAT|O_EXCL)`, libc().errno());
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } catch (e) {
      closeSync(fd);
      this.unlink(tmp);
      throw e;
    }
    closeSync(fd);
    this.rename(tmp, name);
  }

  close(): void {
    closeSync(this.fd);
  }
}

function unsafe(message: string, hint: string): LowportError {
  return new LowportError('E_POLICY_UNSAFE', `${message}; lowport refuses to use it`, { hint });
}

/**
 * Opens `dir` by walking from / one name at a time without following
 * symlinks, checking each step: root's, and not writable by others unless
 * sticky (others then cannot move root's entries). A missing step is created
 * (root's, 0755) when `create`; otherwise the result is undefined. `what`
 * names what lies below, for the refusal: `the pin directory`.
 */
export function openDirChain(dir: string, { create, what }: { create: boolean; what: string }): DirFd | undefined {
  let at = openDirNoFollow('/');
  try {
    for (const name of dir.split('/').filter((n) => n !== '')) {
      const st = at.lstat(name);
      const where = at.path === '/' ? `/${name}` : `${at.path}/${name}`;
      if (st === undefined) {
        if (!create) {
          at.close();
          return undefined;
        }
        at.mkdir(name, 0o755);
      } else if (st.isSymbolicLink()) {
        throw unsafe(`${where} is a symlink; lowport refuses a path to ${what} that goes through one`, 'Give the real path.');
      }
      const next = at.openDir(name);
      at.close();
      at = new DirFd(next.fd, where);
      const own = at.stat();
      const othersWrite = (own.mode & 0o022) !== 0 && (own.mode & 0o1000) === 0;
      if (own.uid !== 0 || othersWrite) {
        throw unsafe(
          `${where}, above ${what}, is not root's alone (uid ${own.uid}, mode ${(own.mode & 0o7777).toString(8)}): others could move what is in it`,
          `Use a path under directories only root controls (chown root ${where} && chmod go-w ${where}, if it should be).`,
        );
      }
    }
    return at;
  } catch (e) {
    at.close();
    if (e instanceof SyscallError && e.errnoName === 'ENOTDIR') throw unsafe(`the path of ${what} (${dir}) is not a chain of directories`, 'Give the real path.');
    throw e;
  }
}

/**
 * A directory only root may write (lowport's state under /run): every step
 * to it checked as in openDirChain, created (root's, `mode`) when missing and
 * `create`, and refused when it is a symlink, not a directory, not root's or
 * writable by others. Undefined when it does not exist and `create` is false.
 */
export function openRootDir(path: string, { create, mode, what }: { create: boolean; mode: number; what: string }): DirFd | undefined {
  const slash = path.lastIndexOf('/');
  const parent = openDirChain(path.slice(0, slash) || '/', { create, what });
  if (parent === undefined) return undefined;
  return withDir(parent, (p) => p.openRootSubdir(path.slice(slash + 1), { create, mode }));
}

function openDirAt(dirfd: number, name: string, what: string): number {
  const fd = Number(libc().openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | constants.O_RDONLY, 0));
  if (fd < 0) throw new SyscallError(`openat(${what}, O_DIRECTORY|O_NOFOLLOW)`, libc().errno());
  return fd;
}

/** open(PATH, O_DIRECTORY|O_NOFOLLOW): a symlink at the last step of PATH is refused, earlier steps are followed. */
function openDirNoFollow(path: string): DirFd {
  return new DirFd(openDirAt(AT_FDCWD, path, path), path);
}

/** Runs `fn` with the directory, then closes it. */
export function withDir<T>(dir: DirFd, fn: (dir: DirFd) => T): T {
  try {
    return fn(dir);
  } finally {
    dir.close();
  }
}
