/** struct sockaddr_in / sockaddr_in6 (netinet/in.h) as Buffers: pure, unit-tested. */
import { isIPv4 } from 'node:net';

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;

/** sockaddr_in: family u16 (host order), port u16 (network order), addr 4 bytes, zero padding to 16. */
export function sockaddrIn(addr: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  addr.split('.').forEach((part, i) => b.writeUInt8(Number(part), 4 + i));
  return b;
}

/** sockaddr_in6: family u16, port u16 (network order), flowinfo u32, addr 16 bytes, scope_id u32. */
export function sockaddrIn6(groups: readonly number[], port: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  groups.forEach((g, i) => b.writeUInt16BE(g, 8 + i * 2));
  return b;
}

export function familyOf(addr: string): 4 | 6 {
  return isIPv4(addr) ? 4 : 6;
}

/** What a struct sockaddr holds: an IPv4 address as text, an IPv6 one as its eight groups. */
export type DecodedSockaddr = { family: 4; address: string; port: number } | { family: 6; groups: number[]; port: number };

/** Reads a sockaddr_in or sockaddr_in6 (from getpeername, getsockname); undefined for other families or short buffers. */
export function decodeSockaddr(b: Buffer): DecodedSockaddr | undefined {
  if (b.length < 2) return undefined;
  const family = b.readUInt16LE(0);
  if (family === AF_INET && b.length >= 8) {
    return { family: 4, address: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port: b.readUInt16BE(2) };
  }
  if (family === AF_INET6 && b.length >= 24) {
    return { family: 6, groups: Array.from({ length: 8 }, (_, i) => b.readUInt16BE(8 + i * 2)), port: b.readUInt16BE(2) };
  }
  return undefined;
}
