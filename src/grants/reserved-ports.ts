/**
 * Reservations against the ports the kernel picks by itself. The bind hook
 * runs only for bind() of a given port: a port the kernel chooses (bind() to
 * port 0, connect() without bind()) never reaches it, and since Linux 6.3
 * any user narrows that choice to a single port with IP_LOCAL_PORT_RANGE
 * ("inet: Add IP_LOCAL_PORT_RANGE socket option"), so a reserved port inside
 * net.ipv4.ip_local_port_range could be taken that way. The kernel never
 * picks a port listed in net.ipv4.ip_local_reserved_ports
 * (Documentation/networking/ip-sysctl.rst), so lowport lists its reserved
 * ports there, for IPv4 and IPv6 alike (the one sysctl covers both).
 *
 * lowport adds only what is missing and remembers what it added (under
 * /run/lowport, a tmpfs reset at boot like the sysctl itself, per instance
 * and per network namespace: both sysctls belong to the network namespace);
 * it takes a port out again when its reservation goes, or on `off`, unless
 * another instance still wants it. Ports the admin listed stay as they are.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { LowportError } from '../errors.js';
import { netNamespace, readSysctl, writeSysctl } from '../os/system.js';
import type { PolicyDocument } from '../policy/types.js';
import { stateLock, withStateDir } from '../policy-file/state.js';

const RANGE = 'net.ipv4.ip_local_port_range';
const RESERVED = 'net.ipv4.ip_local_reserved_ports';
/** Where the records are, in /run/lowport (policy-file/state.ts). */
const RECORDS = 'reserved-ports';

/** What lowport added to the sysctl for one instance, per network namespace (`net:[4026531840]`). */
interface ReservedRecord {
  pinDir: string;
  added: Record<string, number[]>;
}

/** `8080,9000-9010` (the sysctl's own format) to the ports it lists. */
export function parsePortList(text: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (m === null) continue;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (let p = from; p <= to && p <= 65535; p++) out.add(p);
  }
  return out;
}

/** Ports as the sysctl writes them: sorted, runs as ranges. */
export function formatPortList(ports: Iterable<number>): string {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] ?? 0) + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

export interface ReservedPlan {
  /** The sysctl's new list. */
  next: Set<number>;
  /** What this instance has added, after the change (to remember). */
  mine: number[];
  added: number[];
  removed: number[];
}

/**
 * The sysctl's new value: `wanted` ports inside `range` are listed; a port
 * this instance had added leaves when it is no longer wanted and no other
 * instance added it; ports nobody of lowport's added (the admin's) stay.
 */
export function planReservedPorts(o: {
  current: Set<number>;
  range: [number, number];
  wanted: Iterable<number>;
  mine: Iterable<number>;
  others: Set<number>;
}): ReservedPlan {
  const [lo, hi] = o.range;
  const want = new Set([...o.wanted].filter((p) => p >= lo && p <= hi));
  const mine = new Set(o.mine);
  const next = new Set(o.current);
  const removed: number[] = [];
  for (const p of mine) {
    if (!want.has(p) && !o.others.has(p) && next.delete(p)) removed.push(p);
  }
  const added: number[] = [];
  for (const p of want) {
    if (!next.has(p)) {
      next.add(p);
      added.push(p);
    }
  }
  // Ours: what this change added, what was ours already, and what another instance of lowport added (it may drop it first).
  const nowMine = [...want].filter((p) => !o.current.has(p) || mine.has(p) || o.others.has(p)).sort((a, b) => a - b);
  return { next, mine: nowMine, added: added.sort((a, b) => a - b), removed: removed.sort((a, b) => a - b) };
}

/** The ports of the document's `reserve` statements, any protocol. */
export function reservedPortsOf(doc: PolicyDocument | undefined): number[] {
  const out = new Set<number>();
  for (const rule of doc?.rules ?? []) {
    if (rule.action !== 'reserve') continue;
    for (const item of rule.ports) for (let p = item.from; p <= item.to; p++) out.add(p);
  }
  return [...out];
}

function recordFile(pinDir: string): string {
  return `${createHash('sha256').update(resolve(pinDir)).digest('hex').slice(0, 32)}.json`;
}

function isRecord(v: unknown): v is ReservedRecord {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as ReservedRecord).pinDir === 'string' &&
    typeof (v as ReservedRecord).added === 'object'
  );
}

function parseRange(text: string | undefined): [number, number] | undefined {
  const m = /^(\d+)\s+(\d+)$/.exec(text ?? '');
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

/**
 * Brings net.ipv4.ip_local_reserved_ports of this network namespace in line
 * with the reservations of `doc` (none: `off`, or a policy without any) for
 * the instance at `pinDir`. Returns what a user should know: what was added
 * or taken out, or why the sysctl could not be changed (the reservations
 * still hold for bind(); only the kernel's own choice is not covered).
 */
export function syncReservedPorts(pinDir: string, doc: PolicyDocument | undefined): string[] {
  const wanted = reservedPortsOf(doc);
  const file = recordFile(pinDir);
  const saved = withStateDir([RECORDS], { create: false }, (dir) => dir.readJson(file));
  const record: ReservedRecord = isRecord(saved) ? saved : { pinDir: resolve(pinDir), added: {} };
  const ns = netNamespace() ?? 'unknown';
  const mine = record.added[ns] ?? [];
  // Nothing to add and nothing of ours to take out: leave the sysctl (and /run) alone.
  if (wanted.length === 0 && mine.length === 0) return [];
  const range = parseRange(readSysctl(RANGE));
  const currentText = readSysctl(RESERVED);
  if (range === undefined || currentText === undefined) {
    return wanted.length === 0
      ? []
      : [
          `warning: cannot read ${RANGE} and ${RESERVED} here: reserved ports inside the kernel's range for port 0 may still be handed out by the kernel`,
        ];
  }
  const lock = stateLock('reserved-ports.lock');
  try {
    const others = new Set<number>();
    for (const { value: r } of withStateDir([RECORDS], { create: true }, (dir) => dir.listJson()) ?? []) {
      if (isRecord(r) && r.pinDir !== record.pinDir) for (const p of r.added[ns] ?? []) others.add(p);
    }
    const current = parsePortList(readSysctl(RESERVED) ?? currentText);
    const plan = planReservedPorts({ current, range, wanted, mine, others });
    const notes: string[] = [];
    if (plan.added.length > 0 || plan.removed.length > 0) {
      try {
        writeSysctl(RESERVED, formatPortList(plan.next));
      } catch (e) {
        if (!(e instanceof LowportError)) throw e;
        return [
          `warning: ${e.message}: reserved port${plan.added.length === 1 ? '' : 's'} ${formatPortList(plan.added)} inside ${RANGE} (${range[0]}-${range[1]}) may still be handed out by the kernel for port 0`,
        ];
      }
      if (plan.added.length > 0) {
        notes.push(
          `added ${formatPortList(plan.added)} to ${RESERVED}: inside ${RANGE} (${range[0]}-${range[1]}), so the kernel never hands ${plan.added.length === 1 ? 'it' : 'them'} out for port 0`,
        );
      }
      if (plan.removed.length > 0)
        notes.push(
          `took ${formatPortList(plan.removed)} out of ${RESERVED} again (lowport had added ${plan.removed.length === 1 ? 'it' : 'them'})`,
        );
    }
    if (plan.mine.length > 0) record.added[ns] = plan.mine;
    else delete record.added[ns];
    withStateDir([RECORDS], { create: true }, (dir) => {
      if (Object.keys(record.added).length > 0) dir.writeJson(file, record);
      else dir.unlink(file);
    });
    return notes;
  } finally {
    lock.release();
  }
}

/** Forgets what lowport added for an instance, without touching the sysctl (tests, after their network namespace is gone). */
export function forgetReservedPorts(pinDir: string): void {
  withStateDir([RECORDS], { create: false }, (dir) => dir.unlink(recordFile(pinDir)));
}
