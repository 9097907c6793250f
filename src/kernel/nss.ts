/**
 * Users and groups through NSS, by running getent(1): names resolve the way
 * the rest of the system resolves them, LDAP and SSSD included. One getent
 * call answers many keys, so resolving a policy costs two or three processes,
 * not one per name.
 */
import { execFileSync } from 'node:child_process';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function getent(database: 'passwd' | 'group', keys: string[]): string {
  if (keys.length === 0) return '';
  try {
    return execFileSync('getent', [database, ...keys], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (e) {
    // Exit status 2: one or more keys were not found; the others are still printed.
    const err = e as { status?: number; stdout?: string };
    if (err.status === 2) return err.stdout ?? '';
    throw e;
  }
}

export function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const f = l.split(':');
      return { name: f[0] ?? '', uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '', shell: f[6] ?? '' };
    });
}

export function parseGroup(text: string): GroupEntry[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const f = l.split(':');
      return { name: f[0] ?? '', gid: Number(f[2]), members: (f[3] ?? '').split(',').filter((m) => m !== '') };
    });
}

/**
 * Looks up users by name or number. The result maps each key that was found
 * to its entry; a key that is missing was not found.
 */
export function lookupUsers(keys: string[]): Map<string, PasswdEntry> {
  const unique = [...new Set(keys)];
  const entries = parsePasswd(getent('passwd', unique));
  return matchKeys(unique, entries, (e) => [e.name, String(e.uid)]);
}

export function lookupGroups(keys: string[]): Map<string, GroupEntry> {
  const unique = [...new Set(keys)];
  const entries = parseGroup(getent('group', unique));
  return matchKeys(unique, entries, (e) => [e.name, String(e.gid)]);
}

function matchKeys<T>(keys: string[], entries: T[], names: (e: T) => string[]): Map<string, T> {
  const byKey = new Map<string, T>();
  for (const e of entries) for (const n of names(e)) if (!byKey.has(n)) byKey.set(n, e);
  const out = new Map<string, T>();
  for (const k of keys) {
    const e = byKey.get(k);
    if (e !== undefined) out.set(k, e);
  }
  return out;
}
