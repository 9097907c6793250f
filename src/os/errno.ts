/**
 * Errno values and names: one table for all of lowport, Node's own
 * (os.constants.errno, the values of this platform's <errno.h>), never
 * numbers written by hand. Raw calls return -errno; checked ones throw
 * SyscallError (libc.ts), which carries the name.
 */
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';

export const {
  EADDRINUSE,
  EAGAIN,
  EBADF,
  EEXIST,
  EINPROGRESS,
  EINVAL,
  EIO,
  ELOOP,
  EMFILE,
  ENFILE,
  ENOBUFS,
  ENOENT,
  ENOMEM,
  ENOSPC,
  ENOSYS,
  ENOTDIR,
  ENOTEMPTY,
  EPERM,
  ERANGE,
  ETIMEDOUT,
} = constants.errno;

/** `ENOENT` for 2; `errno N` for a number the platform has no name for. */
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
