/**
 * cgroup v2: where the hierarchy is mounted, cgroup ids, and the child cgroups
 * that tests and scoped grants use. /sys/fs/cgroup on most distributions;
 * /sys/fs/cgroup/unified on hybrid (v1 + v2) systems such as these machines.
 */
import { mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LowportError } from '../errors.js';
import { readMounts, type MountEntry } from './mounts.js';

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

/** SIGKILL to every process in a cgroup and below (cgroup.kill, Linux 5.14; else to each pid listed). */
export function killCgroup(dir: string): void {
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1');
  } catch {
    for (const pid of cgroupPids(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Kills every process in a cgroup and its children (cgroup.kill, Linux 5.14;
 * else SIGKILL to each pid listed), waits until it is empty, and removes it.
 * For cleanup of cgroups lowport or its tests made; a missing one is fine.
 */
export async function killAndRemoveCgroup(dir: string, timeoutMs = 5000): Promise<void> {
  if (!isCgroup2Dir(dir)) return;
  killCgroup(dir);
  const deadline = Date.now() + timeoutMs;
  while (cgroupPopulated(dir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  removeCgroup(dir);
}
