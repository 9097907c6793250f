/**
 * cgroup v2: where the hierarchy is mounted, cgroup ids, and the child cgroups
 * that tests and scoped grants use. /sys/fs/cgroup on most distributions;
 * /sys/fs/cgroup/unified on hybrid (v1 + v2) systems such as these machines.
 */
import { mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LowportError } from '../errors.js';
import { readMounts, type MountEntry } from './mounts.js';
import { signalMembers } from './process.js';

/** No cgroup v2 hierarchy in /proc/self/mountinfo (grants/target.ts says what to do). */
export class NoCgroup2Error extends LowportError {
  constructor() {
    super('E_UNSUPPORTED', 'no cgroup v2 hierarchy is mounted');
  }
}

export function findCgroup2Root(mounts: MountEntry[] = readMounts()): string {
  const m = mounts.find((e) => e.fsType === 'cgroup2');
  if (m === undefined) {
    throw new NoCgroup2Error();
  }
  return m.mountPoint;
}

/** A cgroup's id, as bpf_get_current_cgroup_id() reports it: the kernfs inode number of its directory. */
export function cgroupId(dir: string): bigint {
  return statSync(dir, { bigint: true }).ino;
}

export function isCgroup2Dir(dir: string): boolean {
  try {
    statSync(join(dir, 'cgroup.procs'));
    return true;
  } catch {
    return false;
  }
}

/** Creates a new cgroup; fails (EEXIST) rather than reuse one that is already there. */
export function createNewCgroup(dir: string): void {
  mkdirSync(dir);
}

/** Pids in a cgroup (not its children). */
export function cgroupPids(dir: string): number[] {
  return readFileSync(join(dir, 'cgroup.procs'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);
}

/** Removes an empty cgroup; a missing one is fine. */
export function removeCgroup(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Whether any process is in the cgroup or below it (the `populated` key of cgroup.events). */
export function cgroupPopulated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

/** Pids in a cgroup and every cgroup below it; none when it is gone. */
export function cgroupTreePids(dir: string): number[] {
  let pids: number[];
  let children: string[];
  try {
    pids = cgroupPids(dir);
    children = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
  return [...pids, ...children.flatMap((c) => cgroupTreePids(join(dir, c)))];
}

/**
 * Sends `signal` to every process in a cgroup and below, and to nothing
 * else: each pid is checked to be listed still as the signal goes
 * (os/process.ts signalMembers). Returns the pids that got it.
 */
export function signalCgroup(dir: string, signal: NodeJS.Signals): number[] {
  return signalMembers(() => cgroupTreePids(dir), signal);
}

/**
 * SIGKILL to every process in a cgroup and below: cgroup.kill (Linux 5.14),
 * which also takes what forks meanwhile; else SIGKILL to each pid listed
 * (signalCgroup), which a caller repeats until the cgroup is empty.
 */
export function killCgroup(dir: string): void {
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1');
  } catch {
    signalCgroup(dir, 'SIGKILL');
  }
}

/**
 * Kills every process in a cgroup and its children (cgroup.kill, Linux 5.14;
 * else SIGKILL to each pid listed), waits until it is empty, and removes it.
 * For cleanup of cgroups lowport or its tests made; a missing one is fine.
 */
export async function killAndRemoveCgroup(dir: string, timeoutMs = 5000): Promise<void> {
  if (!isCgroup2Dir(dir)) return;
  const deadline = Date.now() + timeoutMs;
  do {
    killCgroup(dir);
    if (!cgroupPopulated(dir)) break;
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < deadline);
  removeCgroup(dir);
}
