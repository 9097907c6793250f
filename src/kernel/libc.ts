/**
 * The one place lowport loads native code. koffi binds a handful of libc
 * functions; everything else in kernel/ calls through here. Raw bindings
 * return the C result; `check()` turns a -1 into a SyscallError carrying the
 * errno read right after the call (koffi.errno() is the thread's errno as the
 * call left it).
 */
import { getSystemErrorName } from 'node:util';
import koffi from 'koffi';
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

function load() {
  const libc = koffi.load('libc.so.6');
  return {
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
  };
}

function libc(): ReturnType<typeof load> {
  lib ??= load();
  return lib;
}

function errno(): number {
  return koffi.errno();
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

export function mount(source: string, target: string, fstype: string, flags = 0): void {
  if (libc().mount(source, target, fstype, flags, null) !== 0) {
    throw new SyscallError(`mount(${fstype} on ${target})`, errno());
  }
}

export const LOCK_EX = 2;
export const LOCK_UN = 8;

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
