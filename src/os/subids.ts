/**
 * Subordinate id ranges, /etc/subuid and /etc/subgid (subuid(5), subgid(5)):
 * `owner:start:count` per line, owner a name or a uid. newuidmap(1) lets the
 * owner map these ids into their user namespaces, so processes of the
 * owner's containers run with them on the host.
 */
import { readFileSync } from 'node:fs';

export interface SubordinateRange {
  owner: string;
  start: number;
  count: number;
}

/**
 * The ranges of a subuid/subgid text; lines that are not `owner:start:count` (comments, blanks,
 * junk) are skipped, as shadow-utils does.
 */
export function parseSubordinateIds(text: string): SubordinateRange[] {
  const out: SubordinateRange[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(':');
    if (f.length !== 3) continue;
    const [owner = '', start = '', count = ''] = f;
    if (owner === '' || owner.startsWith('#') || !/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
    const s = Number(start);
    const c = Number(count);
    if (c === 0 || s + c > 2 ** 32) continue;
    out.push({ owner, start: s, count: c });
  }
  return out;
}

/** The ranges in /etc/subuid or /etc/subgid; none when the file does not exist or cannot be read. */
export function readSubordinateIds(file: '/etc/subuid' | '/etc/subgid'): SubordinateRange[] {
  try {
    return parseSubordinateIds(readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
}
