/**
 * The one place lowport loads native code. koffi binds a handful of libc
 * functions; everything else in kernel/ calls through here. Raw bindings
 * return the C result; `check()` turns a -1 into a SyscallError carrying the
 * errno read right after the call (koffi.errno() is the thread's errno as the
 * call left it).
 */
import { getSystemErrorName } from 'node:util';
import { createRequire } from 'node:module';
import { LowportError } from '../errors.js';

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

export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

// Syscall numbers differ per architecture (arch/*/include/uapi/asm/unistd*.h).
const SYS_BPF: Partial<Record<string, number>> = { x64: 321, arm64: 280, arm: 386, ia32: 357, riscv64: 280, ppc64: 361, s390x: 351 };

let lib: ReturnType<typeof load> | undefined;
let native: { koffi: typeof import('koffi'); libc: import('koffi').IKoffiLib } | undefined;

/** koffi and libc, loaded once per thread, for the modules of kernel/ that bind calls of their own (stream.ts). */
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
    throw new LowportError('E_UNSUPPORTED', `lowport does not know the bpf() syscall number on ${process.arch}`, {
      hint: 'Use `lowport run --sockets` or the nftables fallback on this machine.',
    });
  }
  const r = Number(libc().syscall(nr, cmd, attr, attr.length));
  if (r < 0) throw new SyscallError(callName, errno());
  return r;
}

/** Like bpfSyscall but returns -errno instead of throwing, for calls where failure is an answer (ENOENT at the end of an iteration). */
export function bpfSyscallRaw(cmd: number, attr: Buffer): number {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) return -38; // ENOSYS
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
export function openBoundSocket(domain: number, type: number, sockaddr: Buffer, options: { backlog: number; v6Only: boolean; what: string }): number {
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
const SOCK_STREAM_TYPE = 1;

/** close(2) for an fd that did not come from node:fs. */
export function closeRawFd(fd: number): void {
  libc().close(fd);
}
