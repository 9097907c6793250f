/**
 * The one place lowport loads native code. koffi binds a handful of libc
 * functions; everything else in os/ calls through here. Raw bindings
 * return the C result; `check()` turns a -1 into a SyscallError carrying the
 * errno read right after the call (koffi.errno() is the thread's errno as the
 * call left it).
 */
import { createRequire } from 'node:module';
import { LowportError } from '../errors.js';
import { EINVAL, ENOSYS, errnoName } from './errno.js';

export { errnoName };

/** A failed system call: `bpf(BPF_PROG_LOAD): EPERM (1)`. */
export class SyscallError extends LowportError {
  readonly call: string;
  readonly errno: number;
  readonly errnoName: string;

  constructor(call: string, errno: number, options: { hint?: string; detail?: string } = {}) {
    const name = errnoName(errno);
    const detail = options.detail === undefined ? '' : `\n${options.detail}`;
    super('E_SYSCALL', `${call}: ${name} (${errno})${detail}`, options.hint === undefined ? {} : { hint: options.hint });
    this.call = call;
    this.errno = errno;
    this.errnoName = name;
  }
}

// Syscall numbers differ per architecture (arch/*/include/uapi/asm/unistd*.h).
const SYS_BPF: Partial<Record<string, number>> = { x64: 321, arm64: 280, arm: 386, ia32: 357, riscv64: 280, ppc64: 361, s390x: 351 };

let lib: ReturnType<typeof load> | undefined;
let native: { koffi: typeof import('koffi'); libc: import('koffi').IKoffiLib } | undefined;

/** koffi and libc, loaded once per thread, for the modules of os/ that bind calls of their own (stream.ts). */
export function nativeLibc(): { koffi: typeof import('koffi'); libc: import('koffi').IKoffiLib } {
  if (native === undefined) {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    native = { koffi, libc: koffi.load('libc.so.6') };
  }
  return native;
}

/**
 * Loaded on first use: koffi's native module takes tens of milliseconds to
 * load, which commands that make no system call through it (help, usage
 * errors, `apply --check`, most of `doctor`) should not pay.
 */
function load() {
  const { koffi, libc } = nativeLibc();
  return {
    errno: () => koffi.errno(),
    // syscall(2) is variadic; on the ABIs Linux/Node run on, integer and pointer
    // arguments of a variadic call travel exactly like fixed ones, so a fixed
    // prototype is safe and avoids koffi's slower variadic path on hot loops.
    syscall: libc.func('long syscall(long nr, long a1, void *a2, unsigned long a3)'),
    mount: libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
    flock: libc.func('int flock(int fd, int op)'),
    // memmove(p, p, 0) returns p: the portable way to learn where a Buffer's
    // bytes live, for the u64 pointer fields of bpf_attr. koffi passes a
    // Buffer's own memory (no copy) to a `void *` parameter.
    addressOf: libc.func('uint64_t memmove(void *dst, void *src, size_t n)'),
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
    setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
    close: libc.func('int close(int fd)'),
    listen: libc.func('int listen(int fd, int backlog)'),
    getxattr: libc.func('long getxattr(const char *path, const char *name, void *value, size_t size)'),
    inetPton: libc.func('int inet_pton(int af, const char *src, void *dst)'),
  };
}

function libc(): ReturnType<typeof load> {
  lib ??= load();
  return lib;
}

function errno(): number {
  return libc().errno();
}

/** bpf(cmd, attr, size): returns the result (an fd or 0), or throws SyscallError. */
export function bpfSyscall(cmd: number, attr: Buffer, callName: string): number {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) {
    throw new LowportError('E_UNSUPPORTED', `lowport does not know the bpf() syscall number on ${process.arch}`);
  }
  const r = Number(libc().syscall(nr, cmd, attr, attr.length));
  if (r < 0) throw new SyscallError(callName, errno());
  return r;
}

/** Like bpfSyscall but returns -errno instead of throwing, for calls where failure is an answer (ENOENT at the end of an iteration). */
export function bpfSyscallRaw(cmd: number, attr: Buffer): number {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) return -ENOSYS;
  const r = Number(libc().syscall(nr, cmd, attr, attr.length));
  return r < 0 ? -errno() : r;
}

export function mount(source: string, target: string, fstype: string, flags = 0, data?: string): void {
  if (libc().mount(source, target, fstype, flags, data ?? null) !== 0) {
    throw new SyscallError(`mount(${fstype} on ${target})`, errno());
  }
}

export const LOCK_EX = 2;

export function flock(fd: number, op: number): void {
  if (libc().flock(fd, op) !== 0) throw new SyscallError('flock', errno());
}

/**
 * The address of a Buffer's bytes, valid while the Buffer is alive (V8 never
 * moves a backing store). Callers keep a reference across the syscall.
 */
export function addressOf(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  return BigInt(libc().addressOf(buf, buf, 0) as number | bigint);
}

/**
 * Tries bind(2) of a new socket to `sockaddr` and closes it: 0 when the bind
 * worked, else the errno (EACCES, EPERM, EADDRINUSE...). Through libc rather
 * than node:net so the answer is the kernel's errno, synchronously, with
 * nothing left listening.
 */
export function tryBind(domain: number, type: number, sockaddr: Buffer, options: { reuseAddr: boolean; v6Only: boolean }): number {
  const c = libc();
  const fd = c.socket(domain, type | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return errno();
  try {
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    if (options.reuseAddr) c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4);
    if (options.v6Only) c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, one, 4);
    return c.bind(fd, sockaddr, sockaddr.length) === 0 ? 0 : errno();
  } finally {
    c.close(fd);
  }
}

const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

/**
 * An extended attribute's value, or undefined when the file has none (ENODATA) or it cannot be read.
 * The buffer holds the largest value Linux allows (XATTR_SIZE_MAX): with a smaller one, a long ACL
 * (over 31 entries) fails with ERANGE and would read as no ACL at all.
 */
export function getXattr(path: string, name: string): Buffer | undefined {
  const value = Buffer.alloc(65536);
  const n = Number(libc().getxattr(path, name, value, value.length));
  return n < 0 ? undefined : value.subarray(0, n);
}

/**
 * A bound (and, for a stream socket, listening) socket for socket passing:
 * returns its fd, which the caller hands to a child and then closes. IPv6
 * sockets are dual-stack unless `v6Only`.
 */
export function openBoundSocket(
  domain: number,
  type: number,
  sockaddr: Buffer,
  options: { backlog: number; v6Only: boolean; what: string },
): number {
  const c = libc();
  const fd = c.socket(domain, type | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new SyscallError(`socket(${options.what})`, errno());
  try {
    const value = Buffer.alloc(4);
    value.writeInt32LE(1);
    c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, value, 4);
    if (domain === AF_INET6_DOMAIN) {
      value.writeInt32LE(options.v6Only ? 1 : 0);
      c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, value, 4);
    }
    if (c.bind(fd, sockaddr, sockaddr.length) !== 0) throw new SyscallError(`bind(${options.what})`, errno());
    if (type === SOCK_STREAM_TYPE && c.listen(fd, options.backlog) !== 0) throw new SyscallError(`listen(${options.what})`, errno());
    return fd;
  } catch (e) {
    c.close(fd);
    throw e;
  }
}

const AF_INET6_DOMAIN = 10;

/** inet_pton(AF_INET6): an IPv6 address's 16 bytes (network order); SyscallError EINVAL when it is none. */
export function inetPton6(text: string, what: string): Buffer {
  const bytes = Buffer.alloc(16);
  if (libc().inetPton(AF_INET6_DOMAIN, text, bytes) !== 1) throw new SyscallError(`inet_pton(${what})`, EINVAL);
  return bytes;
}
const SOCK_STREAM_TYPE = 1;

/** close(2) for an fd that did not come from node:fs. */
export function closeRawFd(fd: number): void {
  libc().close(fd);
}

// ---------------------------------------------------------------------------
// What a child started as another user must not inherit (os/launch.ts,
// os/pty.ts): root's session keyring, root's open fds, root's terminal.

// keyctl(2) has no libc wrapper (libkeyutils has one); syscall numbers per architecture.
const SYS_KEYCTL: Partial<Record<string, number>> = { x64: 250, arm64: 219, arm: 311, ia32: 288, riscv64: 219, ppc64: 271, s390x: 280 };
const KEYCTL_JOIN_SESSION_KEYRING = 1;
/** include/uapi/linux/close_range.h */
const CLOSE_RANGE_CLOEXEC = 1 << 2;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const O_RDWR = 2;
const O_NOCTTY = 0o400;
/** asm-generic/fcntl.h (x86, arm, arm64, riscv, ppc and s390 alike); Node does not export it. */
export const O_CLOEXEC = 0o2000000;
const TCSANOW = 0;
const TCSADRAIN = 1;
// asm-generic/ioctls.h; powerpc encodes them with a size and direction.
const TIOCGWINSZ = process.arch === 'ppc64' ? 0x40087468 : 0x5413;
const TIOCSWINSZ = process.arch === 'ppc64' ? 0x80087467 : 0x5414;

let isolation: ReturnType<typeof loadIsolation> | undefined;

function loadIsolation() {
  const { koffi, libc } = nativeLibc();
  let closeRange: ((first: number, last: number, flags: number) => number) | undefined;
  try {
    // glibc 2.34 and later.
    closeRange = libc.func('int close_range(unsigned int first, unsigned int last, int flags)') as typeof closeRange;
  } catch {
    closeRange = undefined;
  }
  return {
    errno: () => koffi.errno(),
    keyctl: libc.func('long syscall(long nr, long op, void *a2, long a3)'),
    closeRange,
    // fcntl(2) and ioctl(2) are variadic; integer and pointer arguments travel like fixed ones (see syscall above).
    fcntl: libc.func('int fcntl(int fd, int cmd, long arg)'),
    ioctl: libc.func('int ioctl(int fd, unsigned long request, void *arg)'),
    posixOpenpt: libc.func('int posix_openpt(int flags)'),
    grantpt: libc.func('int grantpt(int fd)'),
    unlockpt: libc.func('int unlockpt(int fd)'),
    ptsnameR: libc.func('int ptsname_r(int fd, void *buf, size_t len)'),
    tcgetattr: libc.func('int tcgetattr(int fd, void *termios)'),
    tcsetattr: libc.func('int tcsetattr(int fd, int when, const void *termios)'),
    cfmakeraw: libc.func('void cfmakeraw(void *termios)'),
    tcgetpgrp: libc.func('int tcgetpgrp(int fd)'),
    getpgrp: libc.func('int getpgrp(void)'),
  };
}

function iso(): ReturnType<typeof loadIsolation> {
  isolation ??= loadIsolation();
  return isolation;
}

/**
 * Makes this thread's session keyring a new, empty, anonymous one
 * (keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL), as pam_keyinit does for a new
 * session): children forked from this thread no longer possess the keyring
 * of root's login, and cannot read the keys in it. Credentials are per
 * thread: call it on the thread that spawns (Node's main thread).
 */
export function joinAnonymousSessionKeyring(): void {
  const nr = SYS_KEYCTL[process.arch];
  if (nr === undefined) throw new LowportError('E_UNSUPPORTED', `lowport does not know the keyctl() syscall number on ${process.arch}`);
  const r = Number(iso().keyctl(nr, KEYCTL_JOIN_SESSION_KEYRING, null, 0));
  if (r < 0) {
    const e = iso().errno();
    // ENOSYS: a kernel without keys (CONFIG_KEYS=n) has no keyring to leak.
    if (e !== ENOSYS) throw new SyscallError('keyctl(KEYCTL_JOIN_SESSION_KEYRING)', e);
  }
}

/**
 * Marks every fd from 3 up close-on-exec: close_range(3, ~0U,
 * CLOSE_RANGE_CLOEXEC) (Linux 5.11), else fcntl(FD_CLOEXEC) on each fd
 * /proc/self/fd lists. The fds a child is meant to get are handed over
 * through spawn's stdio array, which dup2()s them (the copy is inheritable).
 */
export function markFdsCloseOnExec(listFds: () => number[]): void {
  const c = iso();
  if (c.closeRange !== undefined && c.closeRange(3, 0xffffffff, CLOSE_RANGE_CLOEXEC) === 0) return;
  for (const fd of listFds()) {
    if (fd < 3) continue;
    const flags = c.fcntl(fd, F_GETFD, 0) as number;
    if (flags >= 0 && (flags & FD_CLOEXEC) === 0) c.fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

// pidfd_send_signal(2) (Linux 5.1) and pidfd_open(2) (5.3): numbered alike on every architecture (the unified table
// from 5.1 on, include/uapi/asm-generic/unistd.h; alpha aside, where Node does not run).
const SYS_PIDFD_SEND_SIGNAL = 424;
const SYS_PIDFD_OPEN = 434;

let pidfdCalls: ((nr: number, a1: number, a2: number, a3: number, a4: number) => number | bigint) | undefined;

function pidfdSyscall(nr: number, a1: number, a2: number): number {
  const { koffi, libc } = nativeLibc();
  pidfdCalls ??= libc.func('long syscall(long nr, long a1, long a2, long a3, long a4)') as typeof pidfdCalls & object;
  const r = Number(pidfdCalls(nr, a1, a2, 0, 0));
  return r < 0 ? -koffi.errno() : r;
}

/** A pidfd for the process that has `pid` now (close-on-exec), or -errno: ESRCH when there is none, ENOSYS before Linux 5.3. */
export function pidfdOpen(pid: number): number {
  return pidfdSyscall(SYS_PIDFD_OPEN, pid, 0);
}

/** pidfd_send_signal(fd, signal, NULL, 0): 0, or -errno (ESRCH once the process has ended). */
export function pidfdSendSignal(fd: number, signal: number): number {
  return pidfdSyscall(SYS_PIDFD_SEND_SIGNAL, fd, signal);
}

/** A new pseudo-terminal pair: the master's fd (close-on-exec) and the slave's path. */
export function openPtyMaster(): { master: number; slavePath: string } {
  const c = iso();
  const master = c.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC) as number;
  if (master < 0) throw new SyscallError('posix_openpt', c.errno());
  try {
    if (c.grantpt(master) !== 0) throw new SyscallError('grantpt', c.errno());
    if (c.unlockpt(master) !== 0) throw new SyscallError('unlockpt', c.errno());
    const name = Buffer.alloc(128);
    const r = c.ptsnameR(master, name, name.length) as number;
    if (r !== 0) throw new SyscallError('ptsname_r', r);
    return { master, slavePath: name.toString('latin1', 0, name.indexOf(0)) };
  } catch (e) {
    closeRawFd(master);
    throw e;
  }
}

/** Flags for opening a pty slave: never as this process's controlling terminal. */
export const PTY_SLAVE_FLAGS = O_RDWR | O_NOCTTY;

/** Copies the terminal settings of `from` to `to` (tcgetattr, tcsetattr); false when `from` is no terminal. */
export function copyTermios(from: number, to: number): boolean {
  const t = Buffer.alloc(256); // struct termios: 60 bytes in glibc
  const c = iso();
  if (c.tcgetattr(from, t) !== 0) return false;
  if (c.tcsetattr(to, TCSANOW, t) !== 0) throw new SyscallError('tcsetattr', c.errno());
  return true;
}

/**
 * Copies the window size of terminal `from` to terminal `to` (TIOCGWINSZ, TIOCSWINSZ; the kernel
 * sends SIGWINCH to `to`'s foreground group).
 */
export function copyWindowSize(from: number, to: number): void {
  const ws = Buffer.alloc(8); // struct winsize: 4 unsigned shorts
  const c = iso();
  if (c.ioctl(from, TIOCGWINSZ, ws) !== 0) return;
  c.ioctl(to, TIOCSWINSZ, ws);
}

/**
 * Puts terminal `fd` in raw mode (cfmakeraw(3): no echo, no line editing, no
 * signals, no output processing) and returns its previous settings for
 * restoreTermios; undefined when `fd` is no terminal.
 */
export function makeRaw(fd: number): Buffer | undefined {
  const c = iso();
  const saved = Buffer.alloc(256);
  if (c.tcgetattr(fd, saved) !== 0) return undefined;
  const raw = Buffer.from(saved);
  c.cfmakeraw(raw);
  if (c.tcsetattr(fd, TCSADRAIN, raw) !== 0) throw new SyscallError('tcsetattr', c.errno());
  return saved;
}

/**
 * The interrupt and quit characters (VINTR, VQUIT: ^C and ^\ unless stty
 * changed them) of settings makeRaw returned, but those disabled (0). In
 * Linux's struct termios, c_cc follows the four tcflag_t and c_line (it
 * precedes c_line on powerpc); VINTR is c_cc[0], VQUIT c_cc[1].
 */
export function signalCharacters(saved: Buffer): number[] {
  const cc = process.arch === 'ppc64' || process.arch === 'ppc' ? 16 : 17;
  return [saved[cc], saved[cc + 1]].filter((c): c is number => c !== undefined && c !== 0);
}

/** Gives terminal `fd` back the settings makeRaw returned. */
export function restoreTermios(fd: number, saved: Buffer): void {
  iso().tcsetattr(fd, TCSADRAIN, saved);
}

/**
 * Whether this process is in the foreground process group of terminal `fd`:
 * a background job that changes the terminal's mode or reads from it is
 * stopped (SIGTTOU, SIGTTIN).
 */
export function inForeground(fd: number): boolean {
  const c = iso();
  return (c.tcgetpgrp(fd) as number) === (c.getpgrp() as number);
}
