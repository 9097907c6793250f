/**
 * Listening sockets that lowport binds for a command and hands over
 * (`run --sockets`, `forward serve`): bound here, as root or as a user
 * granted the port, before anything drops privileges; the caller passes the
 * fd to its child and closes its own copy.
 */
import { closeRawFd, inetPton6, openBoundSocket } from './libc.js';
import { AF_INET, AF_INET6, familyOf, SOCK_DGRAM, SOCK_STREAM, sockaddrIn, sockaddrIn6 } from './sockaddr.js';

export interface Listener {
  fd: number;
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  /** `tcp [::]:80`: for messages (and in the SyscallError's call). */
  what: string;
}

/**
 * socket(2), SO_REUSEADDR, IPV6_V6ONLY (an IPv6 socket takes IPv4 too
 * unless `v6Only`), bind(2), and listen(2) for TCP; throws SyscallError
 * (`bind(tcp [::]:80): EACCES (13)`), with nothing left open.
 */
export function openListener(protocol: 'tcp' | 'udp', addr: string, port: number, options: { backlog: number; v6Only: boolean }): Listener {
  const family = familyOf(addr);
  const what = listenerName(protocol, addr, port);
  const sockaddr = family === 4 ? sockaddrIn(addr, port) : sockaddrIn6(ipv6Groups(inetPton6(addr, what)), port);
  const fd = openBoundSocket(family === 4 ? AF_INET : AF_INET6, protocol === 'tcp' ? SOCK_STREAM : SOCK_DGRAM, sockaddr, {
    ...options,
    what,
  });
  return { fd, protocol, family, what };
}

/** `tcp 0.0.0.0:80`, `udp [::]:53`. */
export function listenerName(protocol: 'tcp' | 'udp', addr: string, port: number): string {
  return `${protocol} ${familyOf(addr) === 4 ? addr : `[${addr}]`}:${port}`;
}

/** Closes this process's copies (the child has its own). */
export function closeListeners(listeners: readonly Pick<Listener, 'fd'>[]): void {
  for (const l of listeners) closeRawFd(l.fd);
}

function ipv6Groups(bytes: Buffer): number[] {
  return Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
}
