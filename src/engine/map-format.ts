/**
 * The layout of lowport's policy map, shared by the compiler (which writes it),
 * the bind program (which reads it) and `list` (which reads it back).
 *
 * Key, 32 bytes:
 *    0 u8  kind      PORT 0 (the per-port marker), UID 1, GID 2, CGROUP 3, EVERYONE 4
 *    1 u8  protocol  IPPROTO_TCP 6 / IPPROTO_UDP 17
 *    2 u16 port      host byte order
 *    4 u8  family    0 for "any address", AF_INET 2, AF_INET6 10
 *    5 u8[3] zero
 *    8 u64 id        uid, gid or cgroup id (0 for EVERYONE and PORT)
 *   16 u8[16] addr   network byte order; IPv4 in the first 4 bytes; zero for any
 * Value, 16 bytes:
 *    0 u32 rule      the policy line the entry came from (0: not from the file)
 *    4 u32 flags     PORT marker only: which lookups can match on this port, and RESERVED
 *    8 u64 hits      binds this entry granted (for the marker: binds it refused)
 *
 * Every (protocol, port) with any rule has a PORT marker. The program looks it
 * up first; no marker means no rule, and the bind goes on under the kernel's own
 * rules after one lookup. The marker's flags say which of the eight
 * (principal kind × exact/any address) lookups can hit, so the program only
 * does those.
 */
import { endianness } from 'node:os';

export const KEY_SIZE = 32;
export const VALUE_SIZE = 16;

export const Kind = { PORT: 0, UID: 1, GID: 2, CGROUP: 3, EVERYONE: 4 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];
/** The principal kinds, in the order the program tries them: the most specific first. */
export const PRINCIPAL_KINDS = [Kind.UID, Kind.GID, Kind.CGROUP, Kind.EVERYONE] as const;

export const IPPROTO = { tcp: 6, udp: 17 } as const;
export const AF_INET = 2;
export const AF_INET6 = 10;

/** Marker flag: a lookup of `kind` with an exact address (`any` = false) or any address can match. */
export function lookupFlag(kind: Exclude<Kind, 0>, any: boolean): number {
  return 1 << ((kind - 1) * 2 + (any ? 1 : 0));
}
/** Marker flag: the port is reserved; a caller no lookup matched is refused (root excepted). */
export const RESERVED = 1 << 8;

export interface MapKey {
  kind: Kind;
  protocol: number;
  port: number;
  family: 0 | typeof AF_INET | typeof AF_INET6;
  id: bigint;
  /** 16 bytes. */
  addr: Buffer;
}

export interface MapValue {
  rule: number;
  flags: number;
  hits: bigint;
}

const LE = endianness() === 'LE';

export function encodeKey(k: MapKey): Buffer {
  const b = Buffer.alloc(KEY_SIZE);
  b.writeUInt8(k.kind, 0);
  b.writeUInt8(k.protocol, 1);
  if (LE) b.writeUInt16LE(k.port, 2);
  else b.writeUInt16BE(k.port, 2);
  b.writeUInt8(k.family, 4);
  if (LE) b.writeBigUInt64LE(k.id, 8);
  else b.writeBigUInt64BE(k.id, 8);
  k.addr.copy(b, 16, 0, 16);
  return b;
}

export function decodeKey(b: Buffer): MapKey {
  return {
    kind: b.readUInt8(0) as Kind,
    protocol: b.readUInt8(1),
    port: LE ? b.readUInt16LE(2) : b.readUInt16BE(2),
    family: b.readUInt8(4) as MapKey['family'],
    id: LE ? b.readBigUInt64LE(8) : b.readBigUInt64BE(8),
    addr: Buffer.from(b.subarray(16, 32)),
  };
}

export function encodeValue(v: MapValue): Buffer {
  const b = Buffer.alloc(VALUE_SIZE);
  if (LE) {
    b.writeUInt32LE(v.rule, 0);
    b.writeUInt32LE(v.flags, 4);
    b.writeBigUInt64LE(v.hits, 8);
  } else {
    b.writeUInt32BE(v.rule, 0);
    b.writeUInt32BE(v.flags, 4);
    b.writeBigUInt64BE(v.hits, 8);
  }
  return b;
}

export function decodeValue(b: Buffer): MapValue {
  return LE
    ? { rule: b.readUInt32LE(0), flags: b.readUInt32LE(4), hits: b.readBigUInt64LE(8) }
    : { rule: b.readUInt32BE(0), flags: b.readUInt32BE(4), hits: b.readBigUInt64BE(8) };
}
