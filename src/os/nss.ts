/**
 * Users and groups through NSS, by running getent(1): names resolve the way
 * the rest of the system resolves them, LDAP and SSSD included. One getent
 * call answers many keys, so resolving a policy costs two or three processes,
 * not one per name.
 */
import { execFileSync } from 'node:child_process';
import { LowportError, UsageError } from '../errors.js';
import { MissingToolError, systemTool, systemToolEnv } from './process.js';

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

/** getent(1) from the system's directories (glibc's libc-bin), never the caller's PATH: lowport runs it as root. */
function getentPath(): string {
  const getent = systemTool('getent');
  if (getent === undefined) throw new MissingToolError(['getent'], 'libc-bin', 'lowport resolves users and groups with it');
  return getent;
}

function getent(database: 'passwd' | 'group', keys: string[] | 'all'): string {
  if (keys !== 'all' && keys.length === 0) return '';
  try {
    return execFileSync(getentPath(), [database, ...(keys === 'all' ? [] : keys)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 256 << 20,
      env: systemToolEnv(),
    });
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
  return lookup(
    keys,
    (k) => parsePasswd(getent('passwd', k)),
    (e) => [e.name, String(e.uid)],
  );
}

export function lookupGroups(keys: string[]): Map<string, GroupEntry> {
  return lookup(
    keys,
    (k) => parseGroup(getent('group', k)),
    (e) => [e.name, String(e.gid)],
  );
}

/**
 * The users whose passwd entry names one of these gids as their primary
 * group, by gid: members of the group that /etc/group does not list (it
 * normally lists only supplementary members). One enumeration of the passwd
 * database (`getent passwd`); a directory that does not enumerate (SSSD or
 * LDAP with enumeration off) contributes only the users it lists.
 */
export function usersByPrimaryGroup(gids: number[]): Map<number, PasswdEntry[]> {
  const out = new Map<number, PasswdEntry[]>();
  if (gids.length === 0) return out;
  const wanted = new Set(gids);
  for (const e of parsePasswd(getent('passwd', 'all'))) {
    if (!wanted.has(e.gid) || !isValidId(e.uid)) continue;
    const list = out.get(e.gid);
    if (list === undefined) out.set(e.gid, [e]);
    else if (!list.some((u) => u.uid === e.uid)) list.push(e);
  }
  return out;
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

/** The largest uid or gid: (uid_t)-1 is "no change" to setreuid(2), chown(2) and setpriv(1), never an id. */
export const MAX_ID = 0xffff_fffe;

/**
 * A uid or gid written as a number, or undefined when the text is not one:
 * plain decimal digits, no sign, no leading zero, at most MAX_ID. getent and
 * setpriv parse "00", "+1" or 4294967296 their own ways (as 0, as 1, cut to
 * 32 bits), so lowport accepts only the text that means one id everywhere.
 */
export function parseId(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,9})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

/** Whether a number is a valid uid or gid (an integer from 0 to MAX_ID). */
export function isValidId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= MAX_ID;
}

/**
 * A user by name or uid. A uid that no passwd entry lists stands for itself
 * (gid = uid, home /, `known` false: no name, so no supplementary groups), as
 * chown(1) and setpriv(1) accept it, unless a group holds that gid. An unknown name is an error; so is a key
 * that looks like a number but is not a valid id (parseId), and an entry
 * whose ids are out of range.
 */
export function userByNameOrUid(key: string, hint: string): PasswdEntry & { known: boolean } {
  const numeric = /^[-+\s\d]/.test(key);
  const id = parseId(key);
  if (numeric && id === undefined) {
    throw new UsageError(
      `'${key}' is not a valid uid: a uid is written in plain decimal, from 0 to ${MAX_ID}`,
      `${hint} (no sign, spaces or leading zeros; 4294967295 is (uid_t)-1 and never a user).`,
    );
  }
  const entry = lookupUsers([key]).get(key);
  if (entry !== undefined) {
    if (!isValidId(entry.uid) || !isValidId(entry.gid)) {
      throw new UsageError(
        `the passwd entry of '${entry.name}' has an invalid uid or gid (${entry.uid}:${entry.gid})`,
        'Fix the entry (getent passwd NAME), or give another user.',
      );
    }
    return { ...entry, known: true };
  }
  if (id !== undefined) {
    // gid = uid, as systemd's DynamicUser picks its ids: only where no group
    // holds that number, or an unnamed uid 43 would run with gid 43, utmp.
    const group = lookupGroups([String(id)]).get(String(id));
    if (group !== undefined) {
      throw new UsageError(
        `uid ${id} has no user, and gid ${id} is the group '${group.name}': lowport would run it with that group`,
        `${hint} (a user name, or a uid without a passwd entry whose number no group holds).`,
      );
    }
    return { name: key, uid: id, gid: id, home: '/', shell: '/bin/sh', known: false };
  }
  throw new LowportError('E_UNKNOWN_USER', `unknown user '${key}'`, { hint });
}
