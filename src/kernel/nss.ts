/**
 * Users and groups through NSS, by running getent(1): names resolve the way
 * the rest of the system resolves them, LDAP and SSSD included. One getent
 * call answers many keys, so resolving a policy costs two or three processes,
 * not one per name.
 */
import { execFileSync } from 'node:child_process';
import { LowportError } from '../errors.js';

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

/** Past this many keys, one enumeration of the whole database is cheaper than getent's lookup per key. */
const ENUMERATE_ABOVE = 32;

function getent(database: 'passwd' | 'group', keys: string[] | 'all'): string {
  if (keys !== 'all' && keys.length === 0) return '';
  try {
    return execFileSync('getent', [database, ...(keys === 'all' ? [] : keys)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 << 20 });
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
  return lookup(keys, (k) => parsePasswd(getent('passwd', k)), (e) => [e.name, String(e.uid)]);
}

export function lookupGroups(keys: string[]): Map<string, GroupEntry> {
  return lookup(keys, (k) => parseGroup(getent('group', k)), (e) => [e.name, String(e.gid)]);
}

/**
 * getent looks each key up on its own, and a key that is not there costs a
 * full scan of every source (10,000 unknown uids: over a second). For many
 * keys, enumerate the database once; then look up only the names it did not
 * list (directories such as LDAP may not enumerate), never numbers: an id
 * that no entry lists is an id without a name.
 */
function lookup<T>(keys: string[], query: (keys: string[] | 'all') => T[], names: (e: T) => string[]): Map<string, T> {
  const unique = [...new Set(keys)];
  if (unique.length <= ENUMERATE_ABOVE) return matchKeys(unique, query(unique), names);
  const found = matchKeys(unique, query('all'), names);
  const missing = unique.filter((k) => !found.has(k) && !/^\d+$/.test(k));
  if (missing.length > 0) for (const [k, e] of matchKeys(missing, query(missing), names)) found.set(k, e);
  return found;
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

/**
 * A user by name or uid. A uid that no passwd entry lists stands for itself
 * (gid = uid, home /, `known` false: no name, so no supplementary groups), as
 * chown(1) and setpriv(1) accept it. An unknown name is an error.
 */
export function userByNameOrUid(key: string, hint: string): PasswdEntry & { known: boolean } {
  const entry = lookupUsers([key]).get(key);
  if (entry !== undefined) return { ...entry, known: true };
  if (/^\d+$/.test(key)) return { name: key, uid: Number(key), gid: Number(key), home: '/', shell: '/bin/sh', known: false };
  throw new LowportError('E_UNKNOWN_USER', `unknown user '${key}'`, { hint });
}
