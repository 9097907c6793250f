/** Mount discovery from /proc/self/mountinfo (proc(5)). */
import { readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040 ...). */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    // Optional fields end at a lone "-"; the filesystem type and source follow it.
    const dash = fields.indexOf('-', 6);
    const mountPoint = fields[4];
    const fsType = fields[dash + 1];
    const source = fields[dash + 2];
    if (dash < 0 || mountPoint === undefined || fsType === undefined) continue;
    out.push({ mountPoint: unescapeOctal(mountPoint), fsType, source: unescapeOctal(source ?? '') });
  }
  return out;
}

export function readMounts(): MountEntry[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** The mount that holds `path`: the longest mount point that is a prefix of it (the last one wins when stacked). */
export function mountOf(path: string, mounts: MountEntry[] = readMounts()): MountEntry | undefined {
  const abs = resolve(path);
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const inside = abs === m.mountPoint || m.mountPoint === '/' || abs.startsWith(m.mountPoint + sep);
    if (inside && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}
