/**
 * What lowport keeps in the kernel, and the steps that change it.
 *
 * In the pin directory (default /sys/fs/bpf/lowport):
 *   outer   ARRAY_OF_MAPS, one slot: the live policy map (or empty: no policy)
 *   bind4   cgroup link, BPF_CGROUP_INET4_BIND, running the bind program
 *   bind6   cgroup link, BPF_CGROUP_INET6_BIND, same program
 *
 * Atomicity. A policy change is one update of the outer map's slot, which both
 * hooks read: before it every bind sees the old map, after it the new one. A
 * first install pins everything in a staging directory next to the pin
 * directory with the slot still empty (no policy, as before), renames the
 * directory into place, and only then fills the slot. Links die with the
 * process unless pinned, so a kill at any step leaves the old state or the new
 * one; a staging directory a killed install left behind (its links pass every
 * bind through) is removed by the next command.
 */
import { basename, dirname, join } from 'node:path';
import { LowportError } from '../errors.js';
import { BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND, BPF_F_QUERY_EFFECTIVE, BPF_MAP_TYPE, BPF_PROG_TYPE_CGROUP_SOCK_ADDR } from '../kernel/bpf-attr.js';
import {
  closeFd,
  fdById,
  linkCreate,
  linkInfo,
  linkUpdate,
  mapCreate,
  mapDelete,
  mapInfo,
  mapLookup,
  mapLookupAll,
  mapUpdate,
  mapUpdateBatch,
  objGet,
  objPin,
  progInfo,
  progLoad,
  progQuery,
  withFd,
} from '../kernel/bpf.js';
import { ensurePinDir, listDir, removePinDir, renamePin } from '../kernel/bpffs.js';
import { openDir, pathExists, pidAlive } from '../kernel/process.js';
import { EntryTable, Kind, KEY_SIZE, metaKey, VALUE_SIZE, type MapKey, type MapValue } from './map-format.js';
import { bindProgramName, buildBindProgram } from './program.js';

export const HOOKS = [
  { name: 'bind4', attachType: BPF_CGROUP_INET4_BIND, family: 4 },
  { name: 'bind6', attachType: BPF_CGROUP_INET6_BIND, family: 6 },
] as const;

const SLOT0 = Buffer.alloc(4);

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

// bpffs refuses names with a dot (EPERM), so the staging name has none.
const STAGE_PREFIX = 'lowport_stage_';

function stageDirFor(pinDir: string): string {
  return join(dirname(pinDir), `${STAGE_PREFIX}${basename(pinDir)}-${process.pid}`);
}

/** Removes staging directories whose creator is gone (it was killed mid-install). */
export function removeStaleStages(pinDir: string): void {
  const parent = dirname(pinDir);
  const prefix = `${STAGE_PREFIX}${basename(pinDir)}-`;
  for (const name of listDir(parent)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) continue;
    try {
      removePinDir(join(parent, name));
    } catch {
      // Not lowport's (a directory someone else made with a matching name): leave it.
    }
  }
}

function createPolicyMap(entries: number): number {
  // A hash map holds exactly max_entries: room for every entry and the META one.
  return mapCreate({ type: BPF_MAP_TYPE.HASH, keySize: KEY_SIZE, valueSize: VALUE_SIZE, maxEntries: Math.max(16, entries + 1), name: 'lowport_policy' });
}

/** Opens the live outer map, or undefined when lowport is not installed at this pin directory. */
function openOuter(pinDir: string): number | undefined {
  return objGet(join(pinDir, 'outer'));
}

/** An fd for the policy map in the outer map's slot, or undefined when the slot is empty. */
function openPolicyMap(outerFd: number): number | undefined {
  const id = mapLookup(outerFd, SLOT0, 4);
  if (id === undefined) return undefined;
  return fdById('map', id.readUInt32LE(0));
}

export interface LivePolicy {
  /** The entries, without the META one. */
  table: EntryTable;
  /** The META entry's value: what the policy was built from (see map-format.ts). */
  fingerprint: Buffer | undefined;
}

/** The live policy, or undefined when none is live at this pin directory. */
export function readLivePolicy(pinDir: string): LivePolicy | undefined {
  const outer = openOuter(pinDir);
  if (outer === undefined) return undefined;
  return withFd(outer, (outerFd) => {
    const policy = openPolicyMap(outerFd);
    if (policy === undefined) return undefined;
    return withFd(policy, (fd) => {
      const all = readAll(fd);
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
export function swapPolicy(target: Target, table: EntryTable, fingerprint: Buffer = Buffer.alloc(VALUE_SIZE)): { installed: boolean } {
  ensurePinDir(dirname(target.pinDir));
  removeStaleStages(target.pinDir);
  const policyFd = createPolicyMap(table.count);
  try {
    const outer = openOuter(target.pinDir);
    if (outer !== undefined) {
      withFd(outer, (outerFd) => {
        const old = openPolicyMap(outerFd);
        if (old !== undefined) withFd(old, (oldFd) => carryHits(oldFd, table));
        fill(policyFd, table, fingerprint);
        upgradeProgram(target, outerFd);
        setSlot(outerFd, policyFd);
      });
      return { installed: false };
    }
    fill(policyFd, table, fingerprint);
    install(target, policyFd);
    return { installed: true };
  } finally {
    closeFd(policyFd);
  }
}

function readAll(fd: number): EntryTable {
  const { keys, values, count } = mapLookupAll(fd, KEY_SIZE, VALUE_SIZE, mapInfo(fd).maxEntries);
  return new EntryTable(keys, values, count);
}

/** Gives the table's entries the hit counts their keys have in the old map. */
function carryHits(oldFd: number, table: EntryTable): void {
  const old = readAll(oldFd);
  for (let i = 0; i < old.count; i++) {
    const hits = old.hits(i);
    if (hits === 0n || old.kind(i) === Kind.META) continue;
    const j = table.find(old.keyString(i));
    if (j !== undefined) table.setHits(j, hits);
  }
}

function fill(fd: number, table: EntryTable, fingerprint: Buffer): void {
  const keys = Buffer.concat([table.keys.subarray(0, table.count * KEY_SIZE), metaKey()]);
  const values = Buffer.concat([table.values.subarray(0, table.count * VALUE_SIZE), fingerprint]);
  mapUpdateBatch(fd, keys, values, table.count + 1);
}

function setSlot(outerFd: number, policyFd: number): void {
  const value = Buffer.alloc(4);
  value.writeUInt32LE(policyFd, 0);
  mapUpdate(outerFd, SLOT0, value);
}

function createOuter(): number {
  // The inner-map template only fixes the type and key/value sizes the slot accepts.
  const template = createPolicyMap(1);
  try {
    return mapCreate({ type: BPF_MAP_TYPE.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 1, innerMapFd: template, name: 'lowport_outer' });
  } finally {
    closeFd(template);
  }
}

function loadProgram(outerFd: number, hook: (typeof HOOKS)[number]): number {
  return progLoad({
    type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    insns: buildBindProgram(hook.family, outerFd).assemble(),
    expectedAttachType: hook.attachType,
    name: bindProgramName(hook.family),
  });
}

function install(target: Target, policyFd: number): void {
  const stage = stageDirFor(target.pinDir);
  removePinDir(stage);
  ensurePinDir(stage);
  const fds: number[] = [];
  try {
    const outerFd = createOuter();
    fds.push(outerFd);
    objPin(outerFd, join(stage, 'outer'));
    const cgroupFd = openDir(target.cgroup);
    fds.push(cgroupFd);
    for (const hook of HOOKS) {
      const progFd = loadProgram(outerFd, hook);
      fds.push(progFd);
      const linkFd = linkCreate(progFd, cgroupFd, hook.attachType);
      fds.push(linkFd);
      objPin(linkFd, join(stage, hook.name));
    }
    // No outer map but a pin directory: what a killed `off` left (its slot was
    // emptied first, so these links pass every bind through). Replace it.
    removePinDir(target.pinDir);
    renamePin(stage, target.pinDir);
    setSlot(outerFd, policyFd);
  } catch (e) {
    removePinDir(stage);
    throw e;
  } finally {
    for (const fd of fds) closeFd(fd);
  }
}

/** When this lowport's program differs from the one the links run (an upgrade), swap it in on both links. */
function upgradeProgram(target: Target, outerFd: number): void {
  for (const hook of HOOKS) {
    const linkFd = objGet(join(target.pinDir, hook.name));
    if (linkFd === undefined) {
      throw new LowportError('E_STATE', `the ${hook.name} link is missing from ${target.pinDir}`, {
        hint: `Run \`lowport off --pin-dir ${target.pinDir}\`, then apply again.`,
      });
    }
    withFd(linkFd, (fd) => {
      if (progInfoById(linkInfo(fd).progId)?.name === bindProgramName(hook.family)) return;
      withFd(loadProgram(outerFd, hook), (progFd) => linkUpdate(fd, progFd));
    });
  }
}

function progInfoById(id: number): ReturnType<typeof progInfo> | undefined {
  const fd = fdById('prog', id);
  return fd === undefined ? undefined : withFd(fd, progInfo);
}

/**
 * Removes everything lowport put in the kernel at this pin directory. The
 * slot is emptied first, so every grant ends at one instant; then the links
 * (detaching the program) and the map are unpinned.
 */
export function removeAll(target: Target): { removed: boolean } {
  removeStaleStages(target.pinDir);
  const outer = pathExists(target.pinDir) ? openOuter(target.pinDir) : undefined;
  if (outer !== undefined) withFd(outer, (fd) => mapDelete(fd, SLOT0));
  const existed = pathExists(target.pinDir);
  removePinDir(target.pinDir);
  return { removed: existed };
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
  for (const hook of HOOKS) {
    const fd = pathExists(target.pinDir) ? objGet(join(target.pinDir, hook.name)) : undefined;
    if (fd !== undefined) withFd(fd, (f) => ours.add(linkInfo(f).progId));
  }
  const out: AttachedProgram[] = [];
  withFd(openDir(target.cgroup), (cgroupFd) => {
    for (const hook of HOOKS) {
      const own = new Set(progQuery(cgroupFd, hook.attachType).progIds);
      for (const id of progQuery(cgroupFd, hook.attachType, BPF_F_QUERY_EFFECTIVE).progIds) {
        const info = progInfoById(id);
        if (info === undefined) continue;
        out.push({ hook: hook.name, id, name: info.name, tag: info.tag, ours: ours.has(id), inherited: !own.has(id), createdByUid: info.createdByUid });
      }
    }
  });
  return out;
}
