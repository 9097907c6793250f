/**
 * PROXY protocol headers (haproxy doc/proxy-protocol.txt), version 1 (text)
 * and version 2 (binary): the first bytes the forwarder sends to the backend,
 * so that it learns the client's address (nginx `listen ... proxy_protocol`,
 * haproxy `accept-proxy`). Pure encoders over Buffer.
 *
 * A client of a dual-stack socket appears as `::ffff:a.b.c.d`; the header
 * names it as the IPv4 address it is (TCP4 / AF_INET), as haproxy does. When
 * the two ends are not of one family (or unknown), v1 sends `PROXY UNKNOWN`
 * and v2 the PROXY command with AF_UNSPEC, which tell the receiver to use the
 * connection's own addresses (spec 2.1 and 2.2).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { AF_INET as SOCKADDR_AF_INET, AF_INET6 as SOCKADDR_AF_INET6 } from '../os/sockaddr.js';
import { parseIPv6 } from '../policy/address.js';

export type ProxyProtocolVersion = 'v1' | 'v2';

export interface Endpoint {
  address: string;
  port: number;
}

export interface ConnectionInfo {
  transport: 'tcp' | 'udp';
  /** The client. */
  source: Endpoint;
  /** The address and port the client connected to (the forwarder's). */
  destination: Endpoint;
}

/** The 12-byte signature that opens every v2 header: \r\n\r\n\0\r\nQUIT\n. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Version 2 in the high nibble; command PROXY (1) in the low one. LOCAL is 0x20. */
const V2_PROXY = 0x21;
const AF_UNSPEC = 0x00;
const AF_INET = 0x10;
const AF_INET6 = 0x20;
const STREAM = 0x01;
const DGRAM = 0x02;

/** `::ffff:1.2.3.4` as `1.2.3.4`, without a zone id (`fe80::1%eth0`); other addresses as they are. */
export function unmapAddress(address: string): string {
  const bare = address.split('%')[0] ?? address;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  return m?.[1] ?? bare;
}

/** 4, 6, or undefined when the two ends differ in family or are not IP addresses. */
function familyOf(info: ConnectionInfo): { family: 4 | 6; src: string; dst: string } | undefined {
  const src = unmapAddress(info.source.address);
  const dst = unmapAddress(info.destination.address);
  if (isIPv4(src) && isIPv4(dst)) return { family: 4, src, dst };
  if (isIPv6(src) && isIPv6(dst)) return { family: 6, src, dst };
  return undefined;
}

/** `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`, or `PROXY UNKNOWN\r\n`. v1 is TCP only. */
export function encodeV1(info: ConnectionInfo): Buffer {
  const f = familyOf(info);
  if (f === undefined || info.transport !== 'tcp') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  return Buffer.from(`PROXY TCP${f.family} ${f.src} ${f.dst} ${info.source.port} ${info.destination.port}\r\n`, 'latin1');
}

/** The binary header: signature, version/command, family/transport, length, then the addresses and ports. */
export function encodeV2(info: ConnectionInfo): Buffer {
  const f = familyOf(info);
  if (f === undefined) {
    const b = Buffer.alloc(16);
    V2_SIGNATURE.copy(b, 0);
    b[12] = V2_PROXY;
    b[13] = AF_UNSPEC;
    b.writeUInt16BE(0, 14);
    return b;
  }
  const addrLen = f.family === 4 ? 4 : 16;
  const length = 2 * addrLen + 4;
  const b = Buffer.alloc(16 + length);
  V2_SIGNATURE.copy(b, 0);
  b[12] = V2_PROXY;
  b[13] = (f.family === 4 ? AF_INET : AF_INET6) | (info.transport === 'tcp' ? STREAM : DGRAM);
  b.writeUInt16BE(length, 14);
  writeAddress(b, 16, f.src, f.family);
  writeAddress(b, 16 + addrLen, f.dst, f.family);
  b.writeUInt16BE(info.source.port, 16 + 2 * addrLen);
  b.writeUInt16BE(info.destination.port, 18 + 2 * addrLen);
  return b;
}

export function encodeHeader(version: ProxyProtocolVersion, info: ConnectionInfo): Buffer {
  return version === 'v1' ? encodeV1(info) : encodeV2(info);
}

function writeAddress(b: Buffer, offset: number, address: string, family: 4 | 6): void {
  if (family === 4) {
    address.split('.').forEach((part, i) => (b[offset + i] = Number(part)));
    return;
  }
  parseIPv6(address).forEach((g, i) => b.writeUInt16BE(g, offset + 2 * i));
}

/** The IPv4 address a sockaddr holds (sockaddr_in, or sockaddr_in6 with a v4-mapped ::ffff:a.b.c.d), as its offset in `b`. */
function ipv4Offset(b: Buffer): number | undefined {
  const family = b.length >= 2 ? b.readUInt16LE(0) : -1;
  if (family === SOCKADDR_AF_INET && b.length >= 8) return 4;
  if (family !== SOCKADDR_AF_INET6 || b.length < 24) return undefined;
  for (let i = 8; i < 18; i++) if (b[i] !== 0) return undefined;
  return b[18] === 0xff && b[19] === 0xff ? 20 : undefined;
}

/**
 * The v2 TCP header straight from the two struct sockaddr (accept4's peer,
 * getsockname's local), as encodeV2 makes it from their text: the same
 * bytes without formatting and parsing addresses, since the forwarder builds
 * one per connection. sockaddr_in: family u16 (host order), port (network
 * order) at 2, address at 4; sockaddr_in6: address at 8 (netinet/in.h).
 */
export function encodeV2FromSockaddrs(source: Buffer, destination: Buffer): Buffer {
  const src4 = ipv4Offset(source);
  const dst4 = ipv4Offset(destination);
  const isV6 = (b: Buffer): boolean => b.length >= 24 && b.readUInt16LE(0) === SOCKADDR_AF_INET6;
  let b: Buffer;
  if (src4 !== undefined && dst4 !== undefined) {
    b = Buffer.allocUnsafe(28);
    b[13] = AF_INET | STREAM;
    b.writeUInt16BE(12, 14);
    source.copy(b, 16, src4, src4 + 4);
    destination.copy(b, 20, dst4, dst4 + 4);
    source.copy(b, 24, 2, 4);
    destination.copy(b, 26, 2, 4);
  } else if (src4 === undefined && dst4 === undefined && isV6(source) && isV6(destination)) {
    b = Buffer.allocUnsafe(52);
    b[13] = AF_INET6 | STREAM;
    b.writeUInt16BE(36, 14);
    source.copy(b, 16, 8, 24);
    destination.copy(b, 32, 8, 24);
    source.copy(b, 48, 2, 4);
    destination.copy(b, 50, 2, 4);
  } else {
    b = Buffer.allocUnsafe(16);
    b[13] = AF_UNSPEC;
    b.writeUInt16BE(0, 14);
  }
  V2_SIGNATURE.copy(b, 0);
  b[12] = V2_PROXY;
  return b;
}
