/**
 * What lowport keeps in the kernel, and the steps that change it.
 *
 * The pin directory (default /sys/fs/bpf/lowport) is root's, mode 0700, and
 * holds everything of this instance (bpf/bpffs.ts checks it, and every
 * step inside goes through its fd):
 *   live/outer    ARRAY_OF_MAPS, one slot: the live policy map (or empty: no policy)
 *   live/bind4    cgroup link, BPF_CGROUP_INET4_BIND, running the bind program
 *   live/bind6    cgroup link, BPF_CGROUP_INET6_BIND, same program
 *   live/events   RINGBUF, the audit trail's events (events.ts); made when a
 *                 policy first has a `log` statement, then kept (with what it
 *                 holds, and the reader's fd valid) until `off`
 *   stage-PID/    a first install in progress (the same three pins)
 * lowport before 0.2 pinned outer, bind4 and bind6 in the pin directory
 * itself and staged in the parent as lowport_stage_NAME-PID; every command
 * that changes what is live first moves such pins into live/ (migratePins),
 * and readers look in both places.
 *
 * Atomicity. A policy change is one update of the outer map's slot, which both
 * hooks read: before it every bind sees the old map, after it the new one. A
 * first install pins everything in stage-PID with the slot still empty (no
 * policy, as before), renames it to live/ (rename(2) inside the pin
 * directory: atomic), and only then fills the slot. Links die with the
 * process unless pinned, so a kill at any step leaves the old state or the new
 * one; a stage a killed install left behind (its links pass every bind
 * through) is removed by the next command. Moving old-layout pins is one
 * rename(2) per pin; a pinned link stays attached and the map stays in use
 * whatever the pin's name, so the grant holds throughout, and a move a kill
 * interrupted is finished by the next command. Pins only ever move from the
 * old place to live/, so a reader that looks in the old place first and then
 * in live/ cannot miss one that moves meanwhile.
 *
 * The port filter (map-format.ts) is not pinned: both programs hold it, and
 * it is found through them (the links' programs' map ids). It is not swapped
 * either; it must only ever hold at least the ports of the live map, or a
 * bind of a port with a rule would skip the rule. So a swap first adds the
 * next map's ports, then swaps the slot, then clears the ports only the old
 * map had. A kill in between leaves extra bits, which only send those ports
 * through the lookups (to no rule); the next swap clears them. Swaps of one
 * pin directory do not overlap: every caller holds the policy lock.
 *
 * Logging on or off (a `log` statement added or removed) is a change of the
 * program (program.ts builds a variant with the event code only when asked):
 * the links are updated to it (BPF_LINK_UPDATE, one atomic step per hook)
 * before the slot is switched. Both variants read the same outer map and
 * port filter, so every bind gets the same verdict from either: for the
 * instant between the two link updates, one hook may log and the other not
 * yet, and that is all. The ring buffer is pinned before a program that
 * writes to it is loaded, so a kill leaves at worst an unused ring (reused
 * by the next swap), and it is never replaced: the program of every later
 * policy writes to the same ring, so `lowport log` and the lowport-log
 * service keep reading across swaps.
 */
import { LowportError } from '../errors.js';
import {
  BPF_CGROUP_INET4_BIND,
  BPF_CGROUP_INET6_BIND,
  BPF_F_QUERY_EFFECTIVE,
  BPF_MAP_TYPE,
  BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
} from '../bpf/attr.js';
import { LinkHandle, MapHandle, OwnedFd, ProgramHandle, withHandle, withHandles } from '../bpf/handles.js';
import { progQuery } from '../bpf/syscall.js';
import { probeCoarseTime, probeSetRetval, probeTaskBtf } from '../bpf/probes.js';
import { checkedEntry, checkedNames, openPinDir, removeOldStage, removePinSet, type PinDir } from '../bpf/bpffs.js';
import type { DirFd } from '../os/dirfd.js';
import { flock, LOCK_EX, SyscallError } from '../os/libc.js';
import { openDir, pidAlive } from '../os/process.js';
import {
  addPorts,
  EntryTable,
  Kind,
  KEY_SIZE,
  metaKey,
  PORT_FILTER_SIZE,
  portFilter,
  VALUE_SIZE,
  type MapKey,
  type MapValue,
} from './map-format.js';
import { RING_BYTES } from './events.js';
import { bindProgramName, buildBindProgram, type BindProgramOptions, type LogOptions } from './program.js';
import type { TaskFields } from '../bpf/task-fields.js';

export const HOOKS = [
  { name: 'bind4', attachType: BPF_CGROUP_INET4_BIND, family: 4 },
  { name: 'bind6', attachType: BPF_CGROUP_INET6_BIND, family: 6 },
] as const;

const SLOT0 = Buffer.alloc(4);
const PORT_FILTER_NAME = 'lowport_ports';
const EVENTS = 'events';
const RING_NAME = 'lowport_events';

/** Which verdicts the program writes events for (the policy's `log` statements). */
export interface Logging {
  grants: boolean;
  refusals: boolean;
}
export const NO_LOGGING: Logging = { grants: false, refusals: false };
/** What a `log` statement may turn on: grants, refusals, or both. */
const LOGGINGS: readonly Logging[] = [
  { grants: true, refusals: false },
  { grants: false, refusals: true },
  { grants: true, refusals: true },
];

export interface Target {
  /** cgroup-v2 directory the links attach to. */
  cgroup: string;
  /** bpffs directory for the pins. */
  pinDir: string;
}

export interface Entry {
  key: MapKey;
  value: MapValue;
}

const LIVE = 'live';
const PINS = ['bind4', 'bind6', 'outer'] as const;
// bpffs refuses names with a dot (EPERM), so stage names have none.
const STAGE = /^stage-(\d+)$/;

/** Runs `fn` on the open pin directory; undefined (without calling it) when there is none and `create` is false. */
function withPinDir<T>(pinDir: string, create: boolean, fn: (pins: PinDir) => T): T | undefined {
  const pins = openPinDir(pinDir, { create });
  if (pins === undefined) return undefined;
  try {
    // Anything in it that root did not make (a symlink, another user's entry) is refused here.
    checkedNames(pins.dir);
    return fn(pins);
  } finally {
    pins.close();
  }
}

/**
 * A pin of the live set (outer, bind4, bind6), opened by `open`, or undefined
 * when there is none: the old place first, then live/ (see the header).
 */
function openPin<H>(pins: PinDir, name: (typeof PINS)[number], open: (dir: DirFd, name: string) => H | undefined): H | undefined {
  if (checkedEntry(pins.dir, name) === 'pin') {
    const pinned = open(pins.dir, name);
    if (pinned !== undefined) return pinned;
  }
  const kind = checkedEntry(pins.dir, LIVE);
  if (kind === undefined) return undefined;
  if (kind !== 'dir')
    throw new LowportError('E_STATE', `${pins.path}/${LIVE} is not a directory`, {
      hint: `Run \`lowport off --pin-dir ${pins.path}\`, then apply again.`,
    });
  const live = pins.dir.openDir(LIVE);
  try {
    checkedNames(live);
    return checkedEntry(live, name) === 'pin' ? open(live, name) : undefined;
  } finally {
    live.close();
  }
}

/**
 * Moves pins of the old layout (in the pin directory itself) into live/, one
 * rename each; the grant stays live throughout (see the header).
 */
function migratePins(pins: PinDir): void {
  const old = PINS.filter((name) => checkedEntry(pins.dir, name) === 'pin');
  if (old.length === 0) return;
  pins.dir.mkdir(LIVE, 0o700);
  if (checkedEntry(pins.dir, LIVE) !== 'dir')
    throw new LowportError('E_STATE', `${pins.path}/${LIVE} is not a directory`, {
      hint: `Run \`lowport off --pin-dir ${pins.path}\`, then apply again.`,
    });
  const live = pins.dir.openDir(LIVE);
  try {
    // outer last: it is what tells readers lowport is installed.
    for (const name of old) {
      if (checkedEntry(live, name) !== undefined) {
        throw new LowportError('E_STATE', `${pins.path} has ${name} both in the old place and in ${LIVE}/`, {
          hint: `Run \`lowport off --pin-dir ${pins.path}\`, then apply again.`,
        });
      }
      pins.dir.rename(name, name, live);
    }
  } finally {
    live.close();
  }
}

/**
 * Removes stages whose creator is gone (it was killed mid-install): stage-PID
 * in the pin directory, and lowport_stage_NAME-PID beside it (older lowport),
 * matched exactly and only when it is a real directory of root's.
 */
function removeStaleStages(pins: PinDir): void {
  for (const name of pins.dir.names()) {
    const m = STAGE.exec(name);
    if (m !== null && !runsElsewhere(Number(m[1]))) removePinSet(pins.dir, name);
  }
  const old = new RegExp(`^lowport_stage_${escapeRegExp(pins.path.slice(pins.path.lastIndexOf('/') + 1))}-(\\d+)$`);
  for (const name of pins.parent.names()) {
    const m = old.exec(name);
    if (m !== null && !runsElsewhere(Number(m[1]))) removeOldStage(pins.parent, name);
  }
}

/** A pid that is another process that still runs (its stage may be in use). */
function runsElsewhere(pid: number): boolean {
  return pid !== process.pid && pidAlive(pid);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function openOuter(pins: PinDir): MapHandle | undefined {
  return openPin(pins, 'outer', (dir, name) => MapHandle.openPinned(dir, name));
}

function openLink(pins: PinDir, hook: (typeof HOOKS)[number]): LinkHandle | undefined {
  return openPin(pins, hook.name, (dir, name) => LinkHandle.openPinned(dir, name));
}

function openCgroup(cgroup: string): OwnedFd {
  return new OwnedFd(openDir(cgroup), `cgroup ${cgroup}`);
}

function createPolicyMap(entries: number): MapHandle {
  // A hash map holds exactly max_entries: room for every entry and the META one.
  return MapHandle.create({
    type: BPF_MAP_TYPE.HASH,
    keySize: KEY_SIZE,
    valueSize: VALUE_SIZE,
    maxEntries: Math.max(16, entries + 1),
    name: 'lowport_policy',
  });
}

/** The policy map in the outer map's slot, or undefined when the slot is empty. */
function openPolicyMap(outer: MapHandle): MapHandle | undefined {
  const id = outer.lookup(SLOT0);
  if (id === undefined) return undefined;
  return MapHandle.fromId(id.readUInt32LE(0));
}

export interface LivePolicy {
  /** The entries, without the META one. */
  table: EntryTable;
  /** The META entry's value: what the policy was built from (see map-format.ts). */
  fingerprint: Buffer | undefined;
}

/** The live policy, or undefined when none is live at this pin directory. */
export function readLivePolicy(pinDir: string): LivePolicy | undefined {
  const outer = withPinDir(pinDir, false, openOuter);
  if (outer === undefined) return undefined;
  return withHandle(outer, (outerMap) => {
    const policy = openPolicyMap(outerMap);
    if (policy === undefined) return undefined;
    return withHandle(policy, (policyMap) => {
      const all = readAll(policyMap);
      const meta = findMeta(all);
      if (meta === undefined) return { table: all, fingerprint: undefined };
      const fingerprint = Buffer.from(all.values.subarray(meta * VALUE_SIZE, (meta + 1) * VALUE_SIZE));
      // Move the last entry into the META entry's place.
      const last = all.count - 1;
      all.keys.copy(all.keys, meta * KEY_SIZE, last * KEY_SIZE, (last + 1) * KEY_SIZE);
      all.values.copy(all.values, meta * VALUE_SIZE, last * VALUE_SIZE, (last + 1) * VALUE_SIZE);
      return { table: new EntryTable(all.keys, all.values, last), fingerprint };
    });
  });
}

function findMeta(t: EntryTable): number | undefined {
  for (let i = 0; i < t.count; i++) if (t.kind(i) === Kind.META) return i;
  return undefined;
}

/**
 * Makes `table` the live policy in one step. Hit counts of entries that stay
 * are carried over from the old map.
 */
export function swapPolicy(
  target: Target,
  table: EntryTable,
  fingerprint: Buffer = Buffer.alloc(VALUE_SIZE),
  logging: Logging = NO_LOGGING,
): { installed: boolean } {
  const done = withPinDir(target.pinDir, true, (pins) => {
    // One swap at a time per pin directory, whichever policy file or process drives it: the port filter's three
    // writes (superset, switch, new ports alone) are right only when no other swap interleaves with them, and the
    // policy lock is per policy file. Released when the directory is closed.
    flock(pins.dir.fd, LOCK_EX);
    migratePins(pins);
    removeStaleStages(pins);
    return withHandle(createPolicyMap(table.count), (policy) => {
      const outer = openOuter(pins);
      if (outer !== undefined) {
        withHandles((own) => {
          const outerMap = own(outer);
          const oldMap = openPolicyMap(outerMap);
          const old = oldMap === undefined ? undefined : withHandle(oldMap, readAll);
          if (old !== undefined) carryHits(old, table);
          fill(policy, table, fingerprint);
          // What every program of this set reads (one filter; a new one for programs of before the filter).
          const filters = portFilters(pins).map(own);
          if (filters.length === 0) filters.push(own(createPortFilter()));
          // Before the switch: the ports of both maps (and any left from a killed swap), a superset of either.
          for (const f of filters) {
            const both = addPorts(f.lookup(SLOT0) ?? Buffer.alloc(PORT_FILTER_SIZE), table);
            f.update(SLOT0, old === undefined ? both : addPorts(both, old));
          }
          const ring = logsAny(logging) ? own(liveRing(pins)) : undefined;
          upgradeProgram(pins, outerMap, filters[0] ?? own(createPortFilter()), logOptions(logging, ring));
          setSlot(outerMap, policy);
          // After it: the new map's ports alone.
          const next = portFilter(table);
          for (const f of filters) f.update(SLOT0, next);
        });
        return { installed: false };
      }
      fill(policy, table, fingerprint);
      install(target, pins, policy, table, logging);
      return { installed: true };
    });
  });
  // withPinDir creates the directory, so it is there.
  return done ?? { installed: false };
}

function readAll(map: MapHandle): EntryTable {
  const { keys, values, count } = map.lookupAll();
  return new EntryTable(keys, values, count);
}

/** Gives the table's entries the hit counts their keys have in the old map. */
function carryHits(old: EntryTable, table: EntryTable): void {
  for (let i = 0; i < old.count; i++) {
    const hits = old.hits(i);
    if (hits === 0n || old.kind(i) === Kind.META) continue;
    const j = table.find(old.keyString(i));
    if (j !== undefined) table.setHits(j, hits);
  }
}

function fill(map: MapHandle, table: EntryTable, fingerprint: Buffer): void {
  const keys = Buffer.concat([table.keys.subarray(0, table.count * KEY_SIZE), metaKey()]);
  const values = Buffer.concat([table.values.subarray(0, table.count * VALUE_SIZE), fingerprint]);
  map.updateBatch(keys, values, table.count + 1);
}

/** Puts `policy` in the outer map's slot (userspace writes an inner map by its fd). */
function setSlot(outer: MapHandle, policy: MapHandle): void {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(policy.fd, 0);
  outer.update(SLOT0, value);
}

function createOuter(): MapHandle {
  // The inner-map template only fixes the type and key/value sizes the slot accepts.
  return withHandle(createPolicyMap(1), (template) =>
    MapHandle.create({
      type: BPF_MAP_TYPE.ARRAY_OF_MAPS,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      innerMapFd: template.fd,
      name: 'lowport_outer',
    }),
  );
}

/** The port filter (map-format.ts): one element, read by the programs in place. */
function createPortFilter(): MapHandle {
  return MapHandle.create({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: PORT_FILTER_SIZE, maxEntries: 1, name: PORT_FILTER_NAME });
}

/**
 * The port filters the programs on this set's links read, found by name
 * among their maps: one, or none for programs of a lowport before the filter.
 */
function portFilters(pins: PinDir): MapHandle[] {
  const ids = new Set<number>();
  for (const hook of HOOKS) {
    const link = openLink(pins, hook);
    if (link === undefined) continue;
    const program = withHandle(link, (l) => ProgramHandle.fromId(l.info().progId));
    if (program === undefined) continue;
    for (const id of withHandle(program, (p) => p.info().mapIds)) ids.add(id);
  }
  const out: MapHandle[] = [];
  for (const id of ids) {
    const map = MapHandle.fromId(id);
    if (map === undefined) continue;
    const info = map.info();
    if (info.name === PORT_FILTER_NAME && info.type === BPF_MAP_TYPE.ARRAY && info.valueSize === PORT_FILTER_SIZE) out.push(map);
    else map.close();
  }
  return out;
}

/**
 * The program variant this kernel takes: reservations refuse with EADDRINUSE
 * where a bind hook may set its errno; events take the coarse clock where the
 * kernel has it.
 */
export function bindProgramVariant(): BindProgramOptions {
  return { addrInUse: probeSetRetval().ok, coarseTime: probeCoarseTime().ok };
}

function logsAny(logging: Logging): boolean {
  return logging.grants || logging.refusals;
}

function logOptions(logging: Logging, ring: MapHandle | undefined): LogOptions | undefined {
  return ring === undefined ? undefined : { ...logging, ringFd: ring.fd };
}

function createRing(): MapHandle {
  // A ring buffer has no keys or values: max_entries is its size in bytes.
  return MapHandle.create({ type: BPF_MAP_TYPE.RINGBUF, keySize: 0, valueSize: 0, maxEntries: RING_BYTES, name: RING_NAME });
}

/** The ring pinned as `events` in `dir`, or undefined. */
function openRingIn(dir: DirFd): MapHandle | undefined {
  return checkedEntry(dir, EVENTS) === 'pin' ? MapHandle.openPinned(dir, EVENTS) : undefined;
}

/** live/events, made and pinned first when missing (see the header). live/ exists: the outer map is in it. */
function liveRing(pins: PinDir): MapHandle {
  const live = pins.dir.openDir(LIVE);
  try {
    const ring = openRingIn(live);
    if (ring !== undefined) return ring;
    const made = createRing();
    try {
      made.pin(live, EVENTS);
    } catch (e) {
      made.close();
      throw e;
    }
    return made;
  } finally {
    live.close();
  }
}

/**
 * The audit trail's ring buffer at this pin directory, with the live/
 * directory it is pinned in (its reader locks that directory: one consumer at
 * a time); undefined when no policy with `log` was ever live here since `off`.
 */
export function openEventRing(pinDir: string): { ring: MapHandle; live: DirFd } | undefined {
  return withPinDir(pinDir, false, (pins) => {
    if (checkedEntry(pins.dir, LIVE) !== 'dir') return undefined;
    const live = pins.dir.openDir(LIVE);
    try {
      const ring = openRingIn(live);
      if (ring === undefined) {
        live.close();
        return undefined;
      }
      return { ring, live };
    } catch (e) {
      live.close();
      throw e;
    }
  });
}

/** What the live programs log, told by their name (program.ts: a hash of the code); undefined when none is live. */
export function liveLogging(pinDir: string): Logging | undefined {
  return withPinDir(pinDir, false, (pins) => {
    const hook = HOOKS[0];
    const link = openLink(pins, hook);
    if (link === undefined) return undefined;
    const name = programInfoById(withHandle(link, (l) => l.info().progId))?.name;
    // Any logging variant (EPERM or EADDRINUSE, either clock, the task read in place or through helpers) may be
    // live: a program loaded before the kernel's answer changed. None of them is a program without logging.
    // The program without logging is tried first: only a logging one needs the task's offsets (the kernel's BTF).
    if (name === bindProgramName(hook.family, bindProgramVariant())) return NO_LOGGING;
    const variants = (task: TaskFields | undefined) =>
      [false, true].flatMap((addrInUse) =>
        [false, true].flatMap((coarseTime) =>
          LOGGINGS.map((logging) => ({ logging, options: { addrInUse, coarseTime, task, log: { ...logging, ringFd: 0 } } })),
        ),
      );
    const match = (task: TaskFields | undefined) => variants(task).find((v) => name === bindProgramName(hook.family, v.options));
    return (match(undefined) ?? match(probeTaskBtf().fields))?.logging ?? NO_LOGGING;
  });
}

/**
 * The program this kernel takes (bindProgramVariant), with the audit trail's
 * logging when `log` is given: then the events read the task's fields in
 * place where the kernel lets them (probe task-btf; it reads the kernel's
 * BTF, so only a policy with `log` pays for it).
 */
export function programOptions(log: LogOptions | undefined): BindProgramOptions {
  if (log === undefined) return bindProgramVariant();
  const { fields } = probeTaskBtf();
  return { ...bindProgramVariant(), ...(fields === undefined ? {} : { task: fields }), log };
}

function loadProgram(outer: MapHandle, filter: MapHandle, hook: (typeof HOOKS)[number], log?: LogOptions): ProgramHandle {
  const options = programOptions(log);
  return ProgramHandle.load({
    type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    insns: buildBindProgram(hook.family, outer.fd, filter.fd, options).assemble(),
    expectedAttachType: hook.attachType,
    name: bindProgramName(hook.family, options),
  });
}

function install(target: Target, pins: PinDir, policy: MapHandle, table: EntryTable, logging: Logging): void {
  const stage = `stage-${process.pid}`;
  removePinSet(pins.dir, stage);
  pins.dir.mkdir(stage, 0o700);
  // Every fd taken here (the stage directory, the outer map, the cgroup, the
  // programs and links) is closed when the install ends, however it ends:
  // what stays is what is pinned.
  withHandles((own) => {
    const stageDir = own(pins.dir.openDir(stage));
    try {
      const outer = own(createOuter());
      outer.pin(stageDir, 'outer');
      // Held by the programs, not pinned; it has the policy's ports before the slot is filled.
      const filter = own(createPortFilter());
      filter.update(SLOT0, portFilter(table));
      const cgroup = own(openCgroup(target.cgroup));
      let ring: MapHandle | undefined;
      if (logsAny(logging)) {
        ring = own(createRing());
        ring.pin(stageDir, EVENTS);
      }
      for (const hook of HOOKS) {
        const program = own(loadProgram(outer, filter, hook, logOptions(logging, ring)));
        const link = own(LinkHandle.attachCgroup(program, cgroup, hook.attachType, hook.name));
        link.pin(stageDir, hook.name);
      }
      // No outer map but a live set: what a killed `off` left (its slot was
      // emptied first, so these links pass every bind through). Replace it.
      removePinSet(pins.dir, LIVE);
      pins.dir.rename(stage, LIVE);
      setSlot(outer, policy);
    } catch (e) {
      removePinSet(pins.dir, stage);
      throw e;
    }
  });
}

/** When this lowport's program differs from the one the links run (an upgrade), swap it in on both links. */
function upgradeProgram(pins: PinDir, outer: MapHandle, filter: MapHandle, log: LogOptions | undefined): void {
  for (const hook of HOOKS) {
    const link = openLink(pins, hook);
    if (link === undefined) {
      throw new LowportError('E_STATE', `the ${hook.name} link is missing from ${pins.path}`, {
        hint: `Run \`lowport off --pin-dir ${pins.path}\`, then apply again.`,
      });
    }
    withHandle(link, (l) => {
      if (programInfoById(l.info().progId)?.name === bindProgramName(hook.family, programOptions(log))) return;
      withHandle(loadProgram(outer, filter, hook, log), (program) => l.update(program));
    });
  }
}

function programInfoById(id: number): ReturnType<ProgramHandle['info']> | undefined {
  const program = ProgramHandle.fromId(id);
  return program === undefined ? undefined : withHandle(program, (p) => p.info());
}

/**
 * Removes everything lowport put in the kernel at this pin directory. The
 * slot is emptied first, so every grant ends at one instant; then the links
 * (detaching the program) and the map are unpinned.
 */
export function removeAll(target: Target): { removed: boolean } {
  const removed = withPinDir(target.pinDir, false, (pins) => {
    removeStaleStages(pins);
    const outer = openOuter(pins);
    if (outer !== undefined) withHandle(outer, (outerMap) => outerMap.delete(SLOT0));
    // The links (detaching the program) and the map, in either layout.
    for (const name of PINS) if (checkedEntry(pins.dir, name) === 'pin') pins.dir.unlink(name);
    removePinSet(pins.dir, LIVE);
    try {
      pins.parent.rmdir(pins.path.slice(pins.path.lastIndexOf('/') + 1));
    } catch (e) {
      // A stage of a lowport still at work, or an entry lowport does not know: the directory stays.
      if (!(e instanceof SyscallError && e.errnoName === 'ENOTEMPTY')) throw e;
    }
    return true;
  });
  return { removed: removed === true };
}

export interface AttachedProgram {
  hook: 'bind4' | 'bind6';
  id: number;
  name: string;
  tag: string;
  /** True when it is lowport's own program at this pin directory. */
  ours: boolean;
  /** Where it is attached: this cgroup or an ancestor (effective). */
  inherited: boolean;
  createdByUid: number;
}

/** Every program that runs on the bind hooks for this cgroup (its own and inherited ones). */
export function attachedPrograms(target: Target): AttachedProgram[] {
  const ours = new Set<number>();
  withPinDir(target.pinDir, false, (pins) => {
    for (const hook of HOOKS) {
      const link = openLink(pins, hook);
      if (link !== undefined) withHandle(link, (l) => ours.add(l.info().progId));
    }
  });
  const out: AttachedProgram[] = [];
  withHandle(openCgroup(target.cgroup), (cgroup) => {
    for (const hook of HOOKS) {
      const own = new Set(progQuery(cgroup.fd, hook.attachType).progIds);
      for (const id of progQuery(cgroup.fd, hook.attachType, BPF_F_QUERY_EFFECTIVE).progIds) {
        const info = programInfoById(id);
        if (info === undefined) continue;
        out.push({
          hook: hook.name,
          id,
          name: info.name,
          tag: info.tag,
          ours: ours.has(id),
          inherited: !own.has(id),
          createdByUid: info.createdByUid,
        });
      }
    }
  });
  return out;
}
