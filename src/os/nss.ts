/**
 * Users and groups through NSS: names resolve the way the rest of the system
 * resolves them, LDAP and SSSD included. A few keys (what a command line or a
 * hand-written policy names) are looked up in this process, with glibc's
 * getpwnam_r and friends through koffi: about 15 µs each, where starting
 * getent(1) costs 20–50 ms. More keys go to one getent call, or to one
 * enumeration of the database (see lookup): glibc's lookup of a key that is
 * missing scans every source, 170 µs each here, and a policy of 10,000 uids
 * is answered faster by one `getent passwd`.
 */
import { execFileSync } from 'node:child_process';
import { LowportError, UsageError } from '../errors.js';
import { nativeLibc } from './libc.js';
import { ERANGE } from './errno.js';
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
/** Up to this many keys, glibc answers in this process: cheaper than starting getent. */
const IN_PROCESS_UP_TO = 8;

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

/** glibc's reentrant lookups, bound on first use. */
let reentrant: ReturnType<typeof bindReentrant> | undefined;

function bindReentrant() {
  const { koffi, libc } = nativeLibc();
  // struct passwd and struct group (pwd.h, grp.h); uid_t and gid_t are 32 bits on every Linux ABI.
  const passwd = koffi.struct('lowport_passwd', {
    pw_name: 'char *',
    pw_passwd: 'char *',
    pw_uid: 'uint32_t',
    pw_gid: 'uint32_t',
    pw_gecos: 'char *',
    pw_dir: 'char *',
    pw_shell: 'char *',
  });
  const group = koffi.struct('lowport_group', { gr_name: 'char *', gr_passwd: 'char *', gr_gid: 'uint32_t', gr_mem: 'void *' });
  return {
    koffi,
    pointerSize: koffi.sizeof('void *'),
    passwd,
    group,
    getpwnam: libc.func('int getpwnam_r(const char *name, _Out_ lowport_passwd *pwd, void *buf, size_t len, _Out_ void **result)'),
    getpwuid: libc.func('int getpwuid_r(uint32_t uid, _Out_ lowport_passwd *pwd, void *buf, size_t len, _Out_ void **result)'),
    getgrnam: libc.func('int getgrnam_r(const char *name, _Out_ lowport_group *grp, void *buf, size_t len, _Out_ void **result)'),
    getgrgid: libc.func('int getgrgid_r(uint32_t gid, _Out_ lowport_group *grp, void *buf, size_t len, _Out_ void **result)'),
  };
}

/**
 * One reentrant lookup: the struct, or undefined when there is no such entry.
 * The strings are copied out while the buffer they point into is alive.
 */
function lookupInProcess<T>(
  call: (key: string | number, out: Record<string, unknown>, buf: Buffer, result: unknown[]) => number,
  key: string,
  read: (out: Record<string, unknown>) => T,
): T | undefined {
  // getent reads a key of digits as an id; so does this.
  const numeric = /^\d+$/.test(key);
  const id = numeric ? parseId(key) : undefined;
  if (numeric && id === undefined) return undefined;
  for (let size = 16 << 10; size <= 16 << 20; size *= 4) {
    const buf = Buffer.alloc(size);
    const out: Record<string, unknown> = {};
    const result: unknown[] = [null];
    const rc = call(id ?? key, out, buf, result);
    if (rc === ERANGE) continue;
    // Not found is 0 with a NULL result (or ENOENT and friends from some modules): no entry either way.
    if (rc !== 0 || result[0] === null) return undefined;
    return read(out);
  }
  return undefined;
}

function passwdInProcess(key: string): PasswdEntry | undefined {
  const r = (reentrant ??= bindReentrant());
  return lookupInProcess(
    (k, out, buf, result) =>
      (typeof k === 'number' ? r.getpwuid(k, out, buf, buf.length, result) : r.getpwnam(k, out, buf, buf.length, result)) as number,
    key,
    (out) => {
      const e = out as { pw_name: string; pw_uid: number; pw_gid: number; pw_dir: string | null; pw_shell: string | null };
      return { name: e.pw_name, uid: e.pw_uid, gid: e.pw_gid, home: e.pw_dir ?? '', shell: e.pw_shell ?? '' };
    },
  );
}

function groupInProcess(key: string): GroupEntry | undefined {
  const r = (reentrant ??= bindReentrant());
  return lookupInProcess(
    (k, out, buf, result) =>
      (typeof k === 'number' ? r.getgrgid(k, out, buf, buf.length, result) : r.getgrnam(k, out, buf, buf.length, result)) as number,
    key,
    (out) => {
      const e = out as { gr_name: string; gr_gid: number; gr_mem: unknown };
      // gr_mem: a NULL-terminated array of member names, inside the buffer.
      const members: string[] = [];
      for (let i = 0; e.gr_mem !== null; i++) {
        const m = r.koffi.decode(e.gr_mem, i * r.pointerSize, 'const char *') as string | null;
        if (m === null) break;
        members.push(m);
      }
      return { name: e.gr_name, gid: e.gr_gid, members };
    },
  );
}

function inProcess<T>(one: (key: string) => T | undefined): (keys: string[] | 'all') => T[] {
  return (keys) => {
    if (keys === 'all') throw new Error('an enumeration goes to getent');
    return keys.map(one).filter((e): e is T => e !== undefined);
  };
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
    inProcess(passwdInProcess),
  );
}

export function lookupGroups(keys: string[]): Map<string, GroupEntry> {
  return lookup(
    keys,
    (k) => parseGroup(getent('group', k)),
    (e) => [e.name, String(e.gid)],
    inProcess(groupInProcess),
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
function lookup<T>(
  keys: string[],
  query: (keys: string[] | 'all') => T[],
  names: (e: T) => string[],
  few: (keys: string[]) => T[],
): Map<string, T> {
  const unique = [...new Set(keys)];
  if (unique.length <= IN_PROCESS_UP_TO) return matchKeys(unique, few(unique), names);
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
