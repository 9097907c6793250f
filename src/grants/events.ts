/**
 * The audit trail's event: what the bind program writes to the ring buffer
 * (program.ts, when the policy has a `log` statement) and what `lowport log`
 * decodes. One layout, shared by both sides, as map-format.ts is for the
 * policy map.
 *
 * Event (little-endian as the machine; the kernel writes in host order): 56
 * bytes from the IPv4 hook, 68 from the IPv6 one (the address is last, and as
 * long as the family's). An IPv4 event and its 8-byte record header fill
 * exactly one 64-byte cache line of the ring, where 72 bytes spilled a
 * quarter of the next one (bench/README.md).
 *    0 u64 time      CLOCK_MONOTONIC, as process.hrtime: bpf_ktime_get_coarse_ns() (to the
 *                    last tick) where the kernel has it, else bpf_ktime_get_ns()
 *    8 u64 cgroup    the binding process's cgroup v2 id (task->cgroups->dfl_cgrp->kn->id read in
 *                    place where the kernel lets a bind hook, else bpf_get_current_cgroup_id())
 *   16 u32 pid       the tgid (what ps calls the pid; task->tgid, else bpf_get_current_pid_tgid())
 *   20 u32 uid       real uid and gid in the initial user namespace
 *   24 u32 gid       (bpf_get_current_uid_gid: the primary gid only)
 *   28 u32 line      the policy line of the grant used or of the reservation (0: not from the file: a `run` scope)
 *   32 u16 port      host order
 *   34 u8  protocol  IPPROTO_TCP 6 / IPPROTO_UDP 17
 *   35 u8  kind      verdict << 4 | family: the verdict is the program's return value (3 granted,
 *                    0 refused), the family the hook's, 4 or 6 (an IPv4-mapped address comes through bind6)
 *   36 u8[16] comm   the thread's name (task->comm, else bpf_get_current_comm()), NUL-terminated,
 *                    read up to the first NUL; the process chose it (prctl PR_SET_NAME): never
 *                    trust it as text
 *   52 u8[4|16] addr network order: 4 bytes from bind4, 16 from bind6
 * Every byte is written by the program: nothing of the kernel's memory leaks
 * (comm's bytes are the task's own name, which the kernel keeps NUL-padded).
 */
import { normalizeAddress, parseIPv6 } from '../policy/address.js';
import { addressText, protocolName } from './compile.js';
import { AF_INET, AF_INET6 } from './map-format.js';

export const EVENT = {
  TIME: 0,
  CGROUP: 8,
  PID: 16,
  UID: 20,
  GID: 24,
  LINE: 28,
  PORT: 32,
  PROTOCOL: 34,
  KIND: 35,
  COMM: 36,
  ADDR: 52,
} as const;
export const COMM_SIZE = 16;
const ADDR_SIZE = { 4: 4, 6: 16 } as const;

/** The event's size from a hook of this family. */
export function eventSize(family: 4 | 6): number {
  return EVENT.ADDR + ADDR_SIZE[family];
}

/**
 * The ring buffer's data size: 1 MiB, 16,384 IPv4 events (64 bytes each with
 * the record header; 13,107 IPv6 ones, 80 bytes). A power of two and a multiple of the page size, as
 * BPF_MAP_TYPE_RINGBUF requires. When it is full (nobody reads), new events
 * are dropped, never the binds.
 */
export const RING_BYTES = 1 << 20;

export type Verdict = 'granted' | 'refused';

export interface BindEvent {
  /** When, as CLOCK_MONOTONIC nanoseconds (the kernel's clock). */
  monotonicNs: bigint;
  cgroupId: bigint;
  pid: number;
  uid: number;
  gid: number;
  /** The policy line that granted or reserved; 0 when none (a `lowport run` scope). */
  line: number;
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  /** The bound address, normalized (`0.0.0.0`, `::`, `::ffff:127.0.0.1`). */
  address: string;
  port: number;
  verdict: Verdict;
  /** The process's name as it set it: raw, may hold any byte but NUL (escape it before a terminal). */
  comm: string;
}

/** Decodes one event; undefined when it is not one of this layout (a record of another size, an unknown verdict). */
export function decodeEvent(b: Buffer): BindEvent | undefined {
  const kind = b[EVENT.KIND] ?? 0;
  const family = kind & 0x0f;
  const verdict = kind >> 4 === 3 ? 'granted' : kind >> 4 === 0 ? 'refused' : undefined;
  const protocol = protocolName(b[EVENT.PROTOCOL] ?? 0);
  if ((family !== 4 && family !== 6) || b.length !== eventSize(family) || verdict === undefined || protocol === undefined) return undefined;
  const address = addressOf(family, b.subarray(EVENT.ADDR));
  const commBytes = b.subarray(EVENT.COMM, EVENT.COMM + COMM_SIZE);
  const nul = commBytes.indexOf(0);
  return {
    monotonicNs: b.readBigUInt64LE(EVENT.TIME),
    cgroupId: b.readBigUInt64LE(EVENT.CGROUP),
    pid: b.readUInt32LE(EVENT.PID),
    uid: b.readUInt32LE(EVENT.UID),
    gid: b.readUInt32LE(EVENT.GID),
    line: b.readUInt32LE(EVENT.LINE),
    protocol,
    family,
    address,
    port: b.readUInt16LE(EVENT.PORT),
    verdict,
    // latin1 keeps every byte as one character, so escaping shows exactly what the process set.
    comm: commBytes.subarray(0, nul < 0 ? COMM_SIZE : nul).toString('latin1'),
  };
}

/** Addresses by their bytes: a machine binds few, and the reader formats each once, not once per event. */
const ADDRESSES = new Map<string, string>();
const ADDRESSES_MAX = 4096;

function addressOf(family: 4 | 6, bytes: Buffer): string {
  const key = bytes.toString('latin1');
  let text = ADDRESSES.get(key);
  if (text === undefined) {
    text = normalizeAddress(addressText(family === 4 ? AF_INET : AF_INET6, bytes) ?? '');
    if (ADDRESSES.size >= ADDRESSES_MAX) ADDRESSES.clear();
    ADDRESSES.set(key, text);
  }
  return text;
}

/** Encodes an event as the program writes it (for tests of the decoder and the ring consumer). */
export function encodeEvent(e: BindEvent): Buffer {
  const b = Buffer.alloc(eventSize(e.family));
  b.writeBigUInt64LE(e.monotonicNs, EVENT.TIME);
  b.writeBigUInt64LE(e.cgroupId, EVENT.CGROUP);
  b.writeUInt32LE(e.pid, EVENT.PID);
  b.writeUInt32LE(e.uid, EVENT.UID);
  b.writeUInt32LE(e.gid, EVENT.GID);
  b.writeUInt32LE(e.line, EVENT.LINE);
  b.writeUInt16LE(e.port, EVENT.PORT);
  b[EVENT.PROTOCOL] = e.protocol === 'tcp' ? 6 : 17;
  b[EVENT.KIND] = ((e.verdict === 'granted' ? 3 : 0) << 4) | e.family;
  if (e.family === 4) Buffer.from(e.address.split('.').map(Number)).copy(b, EVENT.ADDR);
  else ipv6Bytes(e.address).copy(b, EVENT.ADDR);
  Buffer.from(e.comm, 'latin1')
    .subarray(0, COMM_SIZE - 1)
    .copy(b, EVENT.COMM);
  return b;
}

function ipv6Bytes(text: string): Buffer {
  const b = Buffer.alloc(16);
  parseIPv6(text).forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

/** A monotonic timestamp as wall-clock time, by the offset between the two clocks now. */
export function wallClock(monotonicNs: bigint, now = Date.now(), monotonicNow = process.hrtime.bigint()): Date {
  return new Date(now - Number((monotonicNow - monotonicNs) / 1_000_000n));
}
