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
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, readdirSync, type Stats } from 'node:fs';
import { nativeLibc, SyscallError } from './libc.js';

// The generic Linux values (asm-generic/fcntl.h), which x86, arm, arm64,
// riscv, ppc and s390 share. O_DIRECTORY and O_NOFOLLOW differ on arm, so
// those come from Node.
const O_CLOEXEC = 0o2000000;
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

  close(): void {
    closeSync(this.fd);
  }
}

const ENOENT = 2;
const EEXIST = 17;

function openDirAt(dirfd: number, name: string, what: string): number {
  const fd = Number(libc().openat(dirfd, name, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | constants.O_RDONLY, 0));
  if (fd < 0) throw new SyscallError(`openat(${what}, O_DIRECTORY|O_NOFOLLOW)`, libc().errno());
  return fd;
}

/** open(PATH, O_DIRECTORY|O_NOFOLLOW): a symlink at the last step of PATH is refused (ELOOP), earlier steps are followed. */
export function openDirNoFollow(path: string): DirFd {
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
