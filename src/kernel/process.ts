/** Small process and filesystem facts the engine needs, kept here so that kernel/ stays the only code touching the OS. */
import { existsSync, openSync } from 'node:fs';

/** An O_RDONLY fd on a directory (for a cgroup's target_fd, or flock). The caller closes it. */
export function openDir(dir: string): number {
  return openSync(dir, 'r');
}

export function pathExists(path: string): boolean {
  return existsSync(path);
}

/** True while a process with this pid exists (a zombie counts). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function effectiveUid(): number {
  return process.geteuid?.() ?? -1;
}
