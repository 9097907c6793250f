/**
 * The layout of lowport's policy map, shared by the compiler (which writes it),
 * the bind program (which reads it) and `list` (which reads it back).
 *
 * Key, 32 bytes:
 *    0 u8  kind      PORT 0 (the per-port marker), UID 1, GID 2, CGROUP 3, EVERYONE 4,
 *                    META 255 (one entry, never looked up by the program: its
 *                    16-byte value is the SHA-256 prefix of the policy text it
 *                    was built from, so `list` can tell whether the file changed)
 *    1 u8  protocol  IPPROTO_TCP 6 / IPPROTO_UDP 17
 *    2 u16 port      host byte order
 *    4 u8  family    0 for "any address", AF_INET 2, AF_INET6 10
 *    5 u8[3] zero
 *    8 u64 id        uid, gid or cgroup id (0 for EVERYONE and PORT)
 *   16 u8[16] addr   network byte order; IPv4 in the first 4 bytes; zero for any
 * Value, 16 bytes:
 *    0 u32 rule      the policy line the entry came from (0: not from the file)
 *    4 u32 flags     PORT marker: which lookups can match on this port, and RESERVED;
 *                    a subject's key: RESERVED when it is a reservation owner's (for `list`)
 *    8 u64 hits      binds this entry granted (for the marker: binds it refused)
 *
 * Every (protocol, port) with any rule has a PORT marker. The program looks it
 * up first; no marker means no rule, and the bind goes on under the kernel's own
 * rules after one lookup. The marker's flags say which of the eight
 * (principal kind × exact/any address) lookups can hit, so the program only
 * does those.
 *
 * Before any lookup the program reads the port filter (PORT_FILTER_SIZE
 * below): for each (protocol, port), the flags of its marker. 0 means no
 * rule, and the bind goes on under the kernel's own rules without a lookup;
 * that is every bind of a port no rule names (port 0, every high port), the
 * common case on a machine. A port not RESERVED has its lookups done from
 * the filter's flags, without the marker's lookup; a RESERVED one looks its
 * marker up (its exact flags, and the refusal counter).
 */
import { endianness } from 'node:os';

export const KEY_SIZE = 32;
export const VALUE_SIZE = 16;

export const Kind = { PORT: 0, UID: 1, GID: 2, CGROUP: 3, EVERYONE: 4, META: 255 } as const;
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

/**
 * The port filter: one ARRAY map with one 256 KiB value, read by the program
 * in place (BPF_PSEUDO_MAP_VALUE, no map_lookup_elem): a u16 per (protocol,
 * port), TCP port p at byte 2p, UDP port p at PORT_FILTER_UDP + 2p, holding
 * the flags of the port's marker (lookup flags and RESERVED fit in 16 bits).
 *
 * It is not swapped with the policy map (live.ts): between swaps it holds the
 * live map's flags; during a swap, those of the old and the new map ORed. That
 * is safe because the program reads only two things from it: 0 (no marker in
 * either map: no rule in the live one), and, on a port RESERVED in neither
 * map, which lookups to try; there a lookup flagged by the other map only
 * finds nothing, or a key the live map's own flags name too (keys without a
 * flag exist only on reserved ports: compileTable's EVERYONE). RESERVED in
 * either map sends the bind to the live map's own marker.
 */
export const PORT_FILTER_SIZE = 2 * 65536 * 2;
/** Byte offset of the UDP half of the filter. */
export const PORT_FILTER_UDP = 65536 * 2;

/** The byte offset of a (protocol, port)'s u16 in the filter; undefined for a protocol lowport does not manage. */
export function portFilterOffset(protocol: number, port: number): number | undefined {
  if (protocol === IPPROTO.tcp) return 2 * port;
  if (protocol === IPPROTO.udp) return PORT_FILTER_UDP + 2 * port;
  return undefined;
}

/** ORs into `filter` the flags of every marker of the table; returns `filter`. */
export function addPorts(filter: Buffer, table: EntryTable): Buffer {
  for (let i = 0; i < table.count; i++) {
    if (table.kind(i) !== Kind.PORT) continue;
    const at = i * KEY_SIZE;
    const offset = portFilterOffset(table.keys[at + 1] ?? 0, table.keys.readUInt16LE(at + 2));
    const flags = table.flags(i);
    if (flags > 0xffff) throw new RangeError(`marker flags 0x${flags.toString(16)} do not fit the port filter's 16 bits`);
    if (offset !== undefined) filter.writeUInt16LE(filter.readUInt16LE(offset) | flags, offset);
  }
  return filter;
}

/** The filter of exactly the table's markers. */
export function portFilter(table: EntryTable): Buffer {
  return addPorts(Buffer.alloc(PORT_FILTER_SIZE), table);
}

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

/**
 * The program stores ports and ids in host byte order and the assembler emits
 * little-endian instructions; lowport runs on little-endian hosts (x86-64,
 * arm64), and target.ts refuses others.
 */
export const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export function encodeKey(k: MapKey): Buffer {
  const b = Buffer.alloc(KEY_SIZE);
  writeKey(b, 0, k.kind, k.protocol, k.port, k.family, k.id, k.addr);
  return b;
}

/** `id` as a bigint, or as its 8 key bytes (callers writing many keys for one id encode it once). */
function writeKey(
  b: Buffer,
  at: number,
  kind: number,
  protocol: number,
  port: number,
  family: number,
  id: bigint | Buffer,
  addr: Buffer,
): void {
  b[at] = kind;
  b[at + 1] = protocol;
  b[at + 2] = port & 0xff;
  b[at + 3] = port >>> 8;
  b[at + 4] = family;
  b[at + 5] = b[at + 6] = b[at + 7] = 0;
  if (typeof id === 'bigint') b.writeBigUInt64LE(id, at + 8);
  else id.copy(b, at + 8, 0, 8);
  addr.copy(b, at + 16, 0, 16);
}

/** The 8 key bytes of an id. */
export function idBytes(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
}

export function decodeKey(b: Buffer, at = 0): MapKey {
  return {
    kind: b.readUInt8(at) as Kind,
    protocol: b.readUInt8(at + 1),
    port: b.readUInt16LE(at + 2),
    family: b.readUInt8(at + 4) as MapKey['family'],
    id: b.readBigUInt64LE(at + 8),
    // A view, not a copy.
    addr: b.subarray(at + 16, at + 32),
  };
}

export function encodeValue(v: MapValue): Buffer {
  const b = Buffer.alloc(VALUE_SIZE);
  b.writeUInt32LE(v.rule, 0);
  b.writeUInt32LE(v.flags, 4);
  b.writeBigUInt64LE(v.hits, 8);
  return b;
}

export function decodeValue(b: Buffer, at = 0): MapValue {
  return { rule: b.readUInt32LE(at), flags: b.readUInt32LE(at + 4), hits: b.readBigUInt64LE(at + 8) };
}

/** The key of the META entry. */
export function metaKey(): Buffer {
  const b = Buffer.alloc(KEY_SIZE);
  b.writeUInt8(Kind.META, 0);
  return b;
}

/**
 * Map entries packed as the kernel takes them: keys back to back, values back
 * to back. A policy of 10,000 rules is some 40,000 entries; as one pair of
 * buffers they cost no garbage collection and go to the kernel in one
 * BPF_MAP_UPDATE_BATCH, and a map read back with BPF_MAP_LOOKUP_BATCH is one.
 */
export class EntryTable {
  keys: Buffer;
  values: Buffer;
  count: number;
  /** key bytes (latin1) to index; built on first use. */
  private index: Map<string, number> | undefined;

  constructor(keys: Buffer = Buffer.alloc(256 * KEY_SIZE), values: Buffer = Buffer.alloc(256 * VALUE_SIZE), count = 0) {
    this.keys = keys;
    this.values = values;
    this.count = count;
  }

  static fromEntries(entries: readonly { key: MapKey; value: MapValue }[]): EntryTable {
    const t = new EntryTable(Buffer.alloc(Math.max(1, entries.length) * KEY_SIZE), Buffer.alloc(Math.max(1, entries.length) * VALUE_SIZE));
    for (const { key, value } of entries) {
      const i = t.put(key.kind, key.protocol, key.port, key.family, key.id, key.addr, value.rule, value.flags);
      if (i.added) t.setHits(i.index, value.hits);
    }
    return t;
  }

  /** The key bytes of entry i as a string, for maps and comparisons. */
  keyString(i: number): string {
    return this.keys.toString('latin1', i * KEY_SIZE, (i + 1) * KEY_SIZE);
  }

  /** The entry with this key, if any. */
  find(keyString: string): number | undefined {
    if (this.index === undefined) {
      this.index = new Map();
      for (let i = 0; i < this.count; i++) this.index.set(this.keyString(i), i);
    }
    return this.index.get(keyString);
  }

  /**
   * Adds an entry unless its key is already there; either way returns its
   * index. A new entry gets `rule` and `flags` and zero hits.
   */
  put(
    kind: number,
    protocol: number,
    port: number,
    family: number,
    id: bigint | Buffer,
    addr: Buffer,
    rule: number,
    flags: number,
  ): { index: number; added: boolean } {
    this.grow();
    writeKey(this.keys, this.count * KEY_SIZE, kind, protocol, port, family, id, addr);
    const ks = this.keyString(this.count);
    const have = this.find(ks);
    if (have !== undefined) return { index: have, added: false };
    const i = this.count++;
    this.index?.set(ks, i);
    this.values.writeUInt32LE(rule, i * VALUE_SIZE);
    this.values.writeUInt32LE(flags, i * VALUE_SIZE + 4);
    this.values.writeBigUInt64LE(0n, i * VALUE_SIZE + 8);
    return { index: i, added: true };
  }

  private grow(): void {
    if ((this.count + 1) * KEY_SIZE <= this.keys.length) return;
    const keys = Buffer.alloc(this.keys.length * 2 || KEY_SIZE * 256);
    const values = Buffer.alloc(this.values.length * 2 || VALUE_SIZE * 256);
    this.keys.copy(keys);
    this.values.copy(values);
    this.keys = keys;
    this.values = values;
  }

  kind(i: number): number {
    return this.keys[i * KEY_SIZE] ?? 0;
  }
  key(i: number): MapKey {
    return decodeKey(this.keys, i * KEY_SIZE);
  }
  value(i: number): MapValue {
    return decodeValue(this.values, i * VALUE_SIZE);
  }
  rule(i: number): number {
    return this.values.readUInt32LE(i * VALUE_SIZE);
  }
  setRule(i: number, rule: number): void {
    this.values.writeUInt32LE(rule, i * VALUE_SIZE);
  }
  flags(i: number): number {
    return this.values.readUInt32LE(i * VALUE_SIZE + 4);
  }
  setFlags(i: number, flags: number): void {
    this.values.writeUInt32LE(flags >>> 0, i * VALUE_SIZE + 4);
  }
  addFlags(i: number, flags: number): void {
    this.values.writeUInt32LE((this.flags(i) | flags) >>> 0, i * VALUE_SIZE + 4);
  }
  hits(i: number): bigint {
    return this.values.readBigUInt64LE(i * VALUE_SIZE + 8);
  }
  setHits(i: number, hits: bigint): void {
    this.values.writeBigUInt64LE(hits, i * VALUE_SIZE + 8);
  }

  /** The entries as objects (for tests and small tables). */
  toEntries(): { key: MapKey; value: MapValue }[] {
    return Array.from({ length: this.count }, (_, i) => ({ key: this.key(i), value: this.value(i) }));
  }
}
