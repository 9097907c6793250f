/**
 * `union bpf_attr` encoders and `bpf_*_info` decoders: pure functions over
 * Buffer, so their layouts are unit-tested without root. Offsets are those of
 * include/uapi/linux/bpf.h; pointers are passed as u64 addresses.
 */

/** enum bpf_cmd */
export const BPF_CMD = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  OBJ_PIN: 6,
  OBJ_GET: 7,
  PROG_GET_FD_BY_ID: 13,
  MAP_GET_FD_BY_ID: 14,
  OBJ_GET_INFO_BY_FD: 15,
  PROG_QUERY: 16,
  LINK_CREATE: 28,
  LINK_UPDATE: 29,
  LINK_GET_FD_BY_ID: 30,
  MAP_LOOKUP_BATCH: 24,
  MAP_UPDATE_BATCH: 26,
} as const;

/** enum bpf_map_type */
export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, ARRAY_OF_MAPS: 12, RINGBUF: 27 } as const;
/** enum bpf_prog_type */
export const BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18;
/** enum bpf_attach_type */
export const BPF_CGROUP_INET4_BIND = 8;
export const BPF_CGROUP_INET6_BIND = 9;
/** BPF_MAP_UPDATE_ELEM flags */
export const BPF_ANY = 0;
/** BPF_PROG_QUERY query_flags: programs that run for the cgroup, its ancestors' included. */
export const BPF_F_QUERY_EFFECTIVE = 1;
/** BPF_OBJ_GET file_flags */
export const BPF_F_RDONLY = 1 << 3;
/** BPF_LINK_UPDATE flags: fail unless the link still runs old_prog_fd. */
export const BPF_F_REPLACE = 1 << 2;

/** Size we pass for every command: large enough for all fields we set, zero-filled beyond. */
const ATTR_SIZE = 128;

function attr(): Buffer {
  return Buffer.alloc(ATTR_SIZE);
}

function writeName(buf: Buffer, offset: number, name: string): void {
  // BPF object names: 15 chars of [A-Za-z0-9_.] plus NUL (bpf_obj_name_cpy).
  const clean = name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15);
  buf.write(clean, offset, 'latin1');
}

export interface MapCreate {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  innerMapFd?: number;
  name?: string;
}

export function encodeMapCreate(m: MapCreate): Buffer {
  const b = attr();
  b.writeUInt32LE(m.type, 0);
  b.writeUInt32LE(m.keySize, 4);
  b.writeUInt32LE(m.valueSize, 8);
  b.writeUInt32LE(m.maxEntries, 12);
  b.writeUInt32LE(m.flags ?? 0, 16);
  b.writeUInt32LE(m.innerMapFd ?? 0, 20);
  if (m.name !== undefined) writeName(b, 28, m.name);
  return b;
}

/** LOOKUP/UPDATE/DELETE/GET_NEXT_KEY: map_fd, key, value (or next_key), flags. */
export function encodeMapElem(fd: number, key: bigint, value: bigint, flags = 0): Buffer {
  const b = attr();
  b.writeUInt32LE(fd, 0);
  b.writeBigUInt64LE(key, 8);
  b.writeBigUInt64LE(value, 16);
  b.writeBigUInt64LE(BigInt(flags), 24);
  return b;
}

/**
 * BPF_MAP_*_BATCH (Linux 5.6): in_batch 0, out_batch 8, keys 16, values 24,
 * count 32 (in: room, out: elements done), map_fd 36, elem_flags 40, flags 48.
 */
export function encodeBatch(b: {
  fd: number;
  inBatch: bigint;
  outBatch: bigint;
  keys: bigint;
  values: bigint;
  count: number;
  elemFlags?: number;
}): Buffer {
  const a = attr();
  a.writeBigUInt64LE(b.inBatch, 0);
  a.writeBigUInt64LE(b.outBatch, 8);
  a.writeBigUInt64LE(b.keys, 16);
  a.writeBigUInt64LE(b.values, 24);
  a.writeUInt32LE(b.count, 32);
  a.writeUInt32LE(b.fd, 36);
  a.writeBigUInt64LE(BigInt(b.elemFlags ?? 0), 40);
  return a;
}

export function decodeBatchCount(a: Buffer): number {
  return a.readUInt32LE(32);
}

export interface ProgLoad {
  type: number;
  insns: bigint;
  insnCount: number;
  license: bigint;
  expectedAttachType: number;
  name?: string;
  logLevel?: number;
  logBuf?: bigint;
  logSize?: number;
}

export function encodeProgLoad(p: ProgLoad): Buffer {
  const b = attr();
  b.writeUInt32LE(p.type, 0);
  b.writeUInt32LE(p.insnCount, 4);
  b.writeBigUInt64LE(p.insns, 8);
  b.writeBigUInt64LE(p.license, 16);
  b.writeUInt32LE(p.logLevel ?? 0, 24);
  b.writeUInt32LE(p.logSize ?? 0, 28);
  b.writeBigUInt64LE(p.logBuf ?? 0n, 32);
  if (p.name !== undefined) writeName(b, 48, p.name);
  b.writeUInt32LE(p.expectedAttachType, 68);
  return b;
}

/** OBJ_PIN / OBJ_GET: pathname, bpf_fd, file_flags. */
export function encodeObj(path: bigint, fd: number, flags = 0): Buffer {
  const b = attr();
  b.writeBigUInt64LE(path, 0);
  b.writeUInt32LE(fd, 8);
  b.writeUInt32LE(flags, 12);
  return b;
}

/** *_GET_FD_BY_ID: the id, a u32 at offset 0. */
export function encodeId(id: number): Buffer {
  const b = attr();
  b.writeUInt32LE(id, 0);
  return b;
}

export function encodeInfo(fd: number, info: bigint, infoLen: number): Buffer {
  const b = attr();
  b.writeUInt32LE(fd, 0);
  b.writeUInt32LE(infoLen, 4);
  b.writeBigUInt64LE(info, 8);
  return b;
}

export function encodeProgQuery(targetFd: number, attachType: number, queryFlags: number, progIds: bigint, progCount: number): Buffer {
  const b = attr();
  b.writeUInt32LE(targetFd, 0);
  b.writeUInt32LE(attachType, 4);
  b.writeUInt32LE(queryFlags, 8);
  b.writeBigUInt64LE(progIds, 16);
  b.writeUInt32LE(progCount, 24);
  return b;
}

/** What PROG_QUERY wrote back: attach_flags at 12, prog_cnt at 24. */
export function decodeProgQuery(b: Buffer): { attachFlags: number; progCount: number } {
  return { attachFlags: b.readUInt32LE(12), progCount: b.readUInt32LE(24) };
}

export function encodeLinkCreate(progFd: number, targetFd: number, attachType: number): Buffer {
  const b = attr();
  b.writeUInt32LE(progFd, 0);
  b.writeUInt32LE(targetFd, 4);
  b.writeUInt32LE(attachType, 8);
  return b;
}

export function encodeLinkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): Buffer {
  const b = attr();
  b.writeUInt32LE(linkFd, 0);
  b.writeUInt32LE(newProgFd, 4);
  b.writeUInt32LE(oldProgFd === undefined ? 0 : BPF_F_REPLACE, 8);
  b.writeUInt32LE(oldProgFd ?? 0, 12);
  return b;
}

export const PROG_INFO_SIZE = 88;
export interface ProgInfo {
  type: number;
  id: number;
  tag: string;
  createdByUid: number;
  loadTime: bigint;
  mapIdCount: number;
  name: string;
}

function readName(b: Buffer, offset: number): string {
  const raw = b.subarray(offset, offset + 16);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? 16 : end).toString('latin1');
}

export function decodeProgInfo(b: Buffer): ProgInfo {
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    tag: b.subarray(8, 16).toString('hex'),
    loadTime: b.readBigUInt64LE(40),
    createdByUid: b.readUInt32LE(48),
    mapIdCount: b.readUInt32LE(52),
    name: readName(b, 64),
  };
}

/**
 * The size of the program as the kernel runs it: `jited_prog_len` (bytes of
 * machine code, 0 without the JIT) at 16 and `xlated_prog_len` (bytes of BPF
 * after the verifier's rewrites, 8 a slot) at 20 of bpf_prog_info.
 */
export function decodeProgLengths(b: Buffer): { jitedBytes: number; xlatedInsns: number } {
  return { jitedBytes: b.readUInt32LE(16), xlatedInsns: b.readUInt32LE(20) / 8 };
}

/** Offset of `map_ids` (u64 pointer) in bpf_prog_info; `nr_map_ids` is at 52. */
export const PROG_INFO_MAP_IDS = 56;
export const PROG_INFO_NR_MAP_IDS = 52;

export const MAP_INFO_SIZE = 40;
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

export function decodeMapInfo(b: Buffer): MapInfo {
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    keySize: b.readUInt32LE(8),
    valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16),
    flags: b.readUInt32LE(20),
    name: readName(b, 24),
  };
}

export const LINK_INFO_SIZE = 32;
export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** For cgroup links. */
  cgroupId: bigint;
  attachType: number;
}

export function decodeLinkInfo(b: Buffer): LinkInfo {
  return {
    type: b.readUInt32LE(0),
    id: b.readUInt32LE(4),
    progId: b.readUInt32LE(8),
    cgroupId: b.readBigUInt64LE(16),
    attachType: b.readUInt32LE(24),
  };
}
