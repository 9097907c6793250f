/**
 * The bpf(2) commands lowport uses, as checked calls: each returns the result
 * or throws SyscallError (`bpf(BPF_PROG_LOAD): EACCES (13)`), with the
 * verifier's log attached when a program is refused. These take and return
 * fd numbers; code above bpf/ holds handles.ts's typed handles, which own
 * them, instead.
 */
import { closeSync } from 'node:fs';
import {
  BPF_CMD,
  BPF_F_RDONLY,
  decodeBatchCount,
  decodeLinkInfo,
  decodeMapInfo,
  decodeProgInfo,
  decodeProgLengths,
  decodeProgQuery,
  encodeBatch,
  encodeId,
  encodeInfo,
  encodeLinkCreate,
  encodeLinkUpdate,
  encodeMapCreate,
  encodeMapElem,
  encodeObj,
  encodeProgLoad,
  encodeProgQuery,
  LINK_INFO_SIZE,
  MAP_INFO_SIZE,
  PROG_INFO_MAP_IDS,
  PROG_INFO_NR_MAP_IDS,
  PROG_INFO_SIZE,
  type LinkInfo,
  type MapCreate,
  type MapInfo,
  type ProgInfo,
} from './attr.js';
import { EAGAIN, EIO, ENOENT, ENOSPC } from '../os/errno.js';
import { addressOf, bpfSyscall, bpfSyscallRaw, SyscallError } from '../os/libc.js';

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

export function closeFd(fd: number): void {
  closeSync(fd);
}

export function mapCreate(m: MapCreate): number {
  return bpfSyscall(BPF_CMD.MAP_CREATE, encodeMapCreate(m), 'bpf(BPF_MAP_CREATE)');
}

export function mapUpdate(fd: number, key: Buffer, value: Buffer, flags = 0): void {
  bpfSyscall(BPF_CMD.MAP_UPDATE_ELEM, encodeMapElem(fd, addressOf(key), addressOf(value), flags), 'bpf(BPF_MAP_UPDATE_ELEM)');
}

/** The value under `key`, or undefined when there is none. */
export function mapLookup(fd: number, key: Buffer, valueSize: number): Buffer | undefined {
  const value = Buffer.alloc(valueSize);
  const r = bpfSyscallRaw(BPF_CMD.MAP_LOOKUP_ELEM, encodeMapElem(fd, addressOf(key), addressOf(value)));
  if (r === -ENOENT) return undefined;
  if (r < 0) throw new SyscallError('bpf(BPF_MAP_LOOKUP_ELEM)', -r);
  return value;
}

/** Deletes `key`; false when it was not there. */
export function mapDelete(fd: number, key: Buffer): boolean {
  const r = bpfSyscallRaw(BPF_CMD.MAP_DELETE_ELEM, encodeMapElem(fd, addressOf(key), 0n));
  if (r === -ENOENT) return false;
  if (r < 0) throw new SyscallError('bpf(BPF_MAP_DELETE_ELEM)', -r);
  return true;
}

/**
 * Writes `count` entries in as few calls as the kernel takes
 * (BPF_MAP_UPDATE_BATCH): keys and values are packed back to back.
 */
export function mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number): void {
  const keySize = count === 0 ? 0 : keys.length / count;
  const valueSize = count === 0 ? 0 : values.length / count;
  for (let done = 0; done < count;) {
    const k = keys.subarray(done * keySize);
    const v = values.subarray(done * valueSize);
    const attr = encodeBatch({ fd, inBatch: 0n, outBatch: 0n, keys: addressOf(k), values: addressOf(v), count: count - done });
    const r = bpfSyscallRaw(BPF_CMD.MAP_UPDATE_BATCH, attr);
    const n = decodeBatchCount(attr);
    if (r < 0) throw new SyscallError('bpf(BPF_MAP_UPDATE_BATCH)', -r);
    if (n === 0) throw new SyscallError('bpf(BPF_MAP_UPDATE_BATCH)', EIO); // no progress
    done += n;
  }
}

/**
 * Every (key, value) of a hash map in a few calls (BPF_MAP_LOOKUP_BATCH). The
 * result packs keys and values back to back, `count` of each.
 */
export function mapLookupAll(
  fd: number,
  keySize: number,
  valueSize: number,
  maxEntries: number,
): { keys: Buffer; values: Buffer; count: number } {
  const room = Math.max(1, maxEntries);
  const keys = Buffer.alloc(room * keySize);
  const values = Buffer.alloc(room * valueSize);
  // The batch token of a hash map is a u32 bucket index.
  const inBatch = Buffer.alloc(8);
  const outBatch = Buffer.alloc(8);
  let count = 0;
  for (let first = true; ; first = false) {
    const attr = encodeBatch({
      fd,
      inBatch: first ? 0n : addressOf(inBatch),
      outBatch: addressOf(outBatch),
      keys: addressOf(keys.subarray(count * keySize)),
      values: addressOf(values.subarray(count * valueSize)),
      count: room - count,
    });
    const r = bpfSyscallRaw(BPF_CMD.MAP_LOOKUP_BATCH, attr);
    if (r < 0 && r !== -ENOENT) throw new SyscallError('bpf(BPF_MAP_LOOKUP_BATCH)', -r);
    count += decodeBatchCount(attr);
    // ENOENT: the walk reached the end (the last elements still came back).
    if (r === -ENOENT || count >= room) break;
    outBatch.copy(inBatch);
  }
  return { keys: keys.subarray(0, count * keySize), values: values.subarray(0, count * valueSize), count };
}

export interface ProgLoadOptions {
  type: number;
  insns: Buffer;
  expectedAttachType: number;
  name: string;
  license?: string;
}

/**
 * Loads a program. Loads without a log first (the common, fast path); when the
 * verifier refuses it, loads again with log level 1 and puts the log in the
 * error so the refusal can be read.
 */
export function progLoad(p: ProgLoadOptions): number {
  const license = cstr(p.license ?? 'GPL');
  const base = {
    type: p.type,
    insns: addressOf(p.insns),
    insnCount: p.insns.length / 8,
    license: addressOf(license),
    expectedAttachType: p.expectedAttachType,
    name: p.name,
  };
  const r = retryOnEagain(() => bpfSyscallRaw(BPF_CMD.PROG_LOAD, encodeProgLoad(base)));
  if (r >= 0) return r;
  const log = Buffer.alloc(1 << 20);
  const again = retryOnEagain(() =>
    bpfSyscallRaw(BPF_CMD.PROG_LOAD, encodeProgLoad({ ...base, logLevel: 1, logBuf: addressOf(log), logSize: log.length })),
  );
  if (again >= 0) return again;
  const end = log.indexOf(0);
  const text = log
    .subarray(0, end < 0 ? log.length : end)
    .toString('utf8')
    .trim();
  throw new SyscallError('bpf(BPF_PROG_LOAD)', -r, text === '' ? {} : { detail: `verifier log:\n${text}` });
}

/**
 * The verifier gives up with EAGAIN when a signal arrives while it works (a
 * profiler's, a terminal's); libbpf retries for that reason, and so do we.
 */
function retryOnEagain(load: () => number): number {
  let r = load();
  for (let i = 0; i < 5 && r === -EAGAIN; i++) r = load();
  return r;
}

export function objPin(fd: number, path: string): void {
  const p = cstr(path);
  bpfSyscall(BPF_CMD.OBJ_PIN, encodeObj(addressOf(p), fd), `bpf(BPF_OBJ_PIN ${path})`);
}

/** Opens a pinned object; undefined when nothing is pinned there. */
export function objGet(path: string, readOnly = false): number | undefined {
  const p = cstr(path);
  const r = bpfSyscallRaw(BPF_CMD.OBJ_GET, encodeObj(addressOf(p), 0, readOnly ? BPF_F_RDONLY : 0));
  if (r === -ENOENT) return undefined;
  if (r < 0) throw new SyscallError(`bpf(BPF_OBJ_GET ${path})`, -r);
  return r;
}

type IdKind = 'prog' | 'map' | 'link';
const FD_BY_ID = { prog: BPF_CMD.PROG_GET_FD_BY_ID, map: BPF_CMD.MAP_GET_FD_BY_ID, link: BPF_CMD.LINK_GET_FD_BY_ID };

/** An fd for an object id; undefined when it went away meanwhile. */
export function fdById(kind: IdKind, id: number): number | undefined {
  const r = bpfSyscallRaw(FD_BY_ID[kind], encodeId(id));
  if (r === -ENOENT) return undefined;
  if (r < 0) throw new SyscallError(`bpf(BPF_${kind.toUpperCase()}_GET_FD_BY_ID)`, -r);
  return r;
}

function objInfo(fd: number, size: number, patch?: (info: Buffer) => void): Buffer {
  const info = Buffer.alloc(size);
  patch?.(info);
  bpfSyscall(BPF_CMD.OBJ_GET_INFO_BY_FD, encodeInfo(fd, addressOf(info), size), 'bpf(BPF_OBJ_GET_INFO_BY_FD)');
  return info;
}

export function progInfo(fd: number): ProgInfo & { mapIds: number[] } {
  const first = decodeProgInfo(objInfo(fd, PROG_INFO_SIZE));
  const ids = Buffer.alloc(4 * first.mapIdCount);
  if (first.mapIdCount > 0) {
    objInfo(fd, PROG_INFO_SIZE, (info) => {
      info.writeUInt32LE(first.mapIdCount, PROG_INFO_NR_MAP_IDS);
      info.writeBigUInt64LE(addressOf(ids), PROG_INFO_MAP_IDS);
    });
  }
  const mapIds = Array.from({ length: first.mapIdCount }, (_, i) => ids.readUInt32LE(i * 4));
  return { ...first, mapIds };
}

/** The program's length after the verifier (BPF instructions) and the JIT (bytes of machine code). */
export function progLengths(fd: number): { jitedBytes: number; xlatedInsns: number } {
  return decodeProgLengths(objInfo(fd, PROG_INFO_SIZE));
}

export function mapInfo(fd: number): MapInfo {
  return decodeMapInfo(objInfo(fd, MAP_INFO_SIZE));
}

export function linkInfo(fd: number): LinkInfo {
  return decodeLinkInfo(objInfo(fd, LINK_INFO_SIZE));
}

/** Program ids attached to a cgroup at a hook (BPF_PROG_QUERY), with the attach flags. */
export function progQuery(cgroupFd: number, attachType: number, queryFlags = 0): { progIds: number[]; attachFlags: number } {
  for (let room = 64; ; room *= 4) {
    const ids = Buffer.alloc(4 * room);
    const b = encodeProgQuery(cgroupFd, attachType, queryFlags, addressOf(ids), room);
    const r = bpfSyscallRaw(BPF_CMD.PROG_QUERY, b);
    const { attachFlags, progCount } = decodeProgQuery(b);
    if (r === -ENOSPC && room < 65536) continue; // more programs than room
    if (r < 0) throw new SyscallError('bpf(BPF_PROG_QUERY)', -r);
    return { progIds: Array.from({ length: progCount }, (_, i) => ids.readUInt32LE(i * 4)), attachFlags };
  }
}

export function linkCreate(progFd: number, cgroupFd: number, attachType: number): number {
  return bpfSyscall(BPF_CMD.LINK_CREATE, encodeLinkCreate(progFd, cgroupFd, attachType), 'bpf(BPF_LINK_CREATE)');
}

/** Atomically replaces the program a link runs; with oldProgFd, only if it still runs that one. */
export function linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void {
  bpfSyscall(BPF_CMD.LINK_UPDATE, encodeLinkUpdate(linkFd, newProgFd, oldProgFd), 'bpf(BPF_LINK_UPDATE)');
}
