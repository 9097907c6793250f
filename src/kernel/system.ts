/** Facts about the running kernel that decide whether the BPF grant can work here. */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';

/** [major, minor] of the running kernel, from uname(2). */
export function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release());
  return m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
}

export function kernelRelease(): string {
  return release();
}

/** A /proc/sys value as text, or undefined when it cannot be read. */
export function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
