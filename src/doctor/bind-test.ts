/**
 * The real test: can this process bind the port? TCP and UDP, IPv4 and IPv6,
 * the wildcard and the loopback address, each bound and closed at once, so
 * nothing stays bound. TCP sockets set SO_REUSEADDR as servers do (a socket in
 * TIME_WAIT is not "in use"); IPv6 sockets are IPv6-only so each family is
 * answered for itself.
 */
import { errnoName, tryBind } from '../os/libc.js';
import { AF_INET, AF_INET6, SOCK_DGRAM, SOCK_STREAM, sockaddrIn, sockaddrIn6 } from '../os/sockaddr.js';
import type { Protocol } from '../policy/types.js';

export interface BindAttempt {
  protocol: Protocol;
  family: 4 | 6;
  address: string;
  scope: 'wildcard' | 'loopback';
  /** undefined: bound; else the errno name (EACCES, EPERM, EADDRINUSE, ...). */
  error: string | undefined;
}

const TARGETS = [
  { family: 4, address: '0.0.0.0', scope: 'wildcard', sockaddr: (port: number) => sockaddrIn('0.0.0.0', port) },
  { family: 4, address: '127.0.0.1', scope: 'loopback', sockaddr: (port: number) => sockaddrIn('127.0.0.1', port) },
  { family: 6, address: '::', scope: 'wildcard', sockaddr: (port: number) => sockaddrIn6([0, 0, 0, 0, 0, 0, 0, 0], port) },
  { family: 6, address: '::1', scope: 'loopback', sockaddr: (port: number) => sockaddrIn6([0, 0, 0, 0, 0, 0, 0, 1], port) },
] as const;

/** Errors that mean "this family is not available here", not "refused". */
export const UNAVAILABLE = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT', 'EPROTONOSUPPORT']);

export function bindTest(port: number): BindAttempt[] {
  const out: BindAttempt[] = [];
  for (const protocol of ['tcp', 'udp'] as const) {
    for (const t of TARGETS) {
      const errno = tryBind(t.family === 4 ? AF_INET : AF_INET6, protocol === 'tcp' ? SOCK_STREAM : SOCK_DGRAM, t.sockaddr(port), {
        reuseAddr: protocol === 'tcp',
        v6Only: t.family === 6,
      });
      out.push({ protocol, family: t.family, address: t.address, scope: t.scope, error: errno === 0 ? undefined : errnoName(errno) });
    }
  }
  return out;
}
