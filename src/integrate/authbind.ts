/**
 * `lowport import-authbind`: authbind's configuration (authbind(1)) as policy
 * rules, with a note for everything that cannot be said the same way.
 *
 *   byport/PORT           who may execute the file may bind PORT, as access(2) says (see executors)
 *   byaddr/ADDR,PORT      the same, for that address only (ADDR:PORT: the old spelling, IPv4 only)
 *   byuid/UID             lines: ADDR[/LEN],MIN[-MAX]  ADDRMIN-ADDRMAX,MIN[-MAX]  ADDR4/LEN:MIN,MAX
 *
 * authbind's helper tests them in that order, and the first file that exists
 * decides (a byport file that refuses someone refuses them on every address);
 * for ports 512-1023 the names start with `!`. The import follows that
 * exactly, and where lowport cannot say the same thing it imports less, with
 * a note: never more than authbind allowed.
 */
import { join } from 'node:path';
import { listDirEntries, type DirEntry } from '../os/files.js';
import { assertRootControlled, readTextFile, type Role } from '../policy-file/trust.js';
import { getXattr } from '../os/libc.js';
import { lookupGroups, lookupUsers } from '../os/nss.js';
import { normalizeAddress, parseIPv6 } from '../policy/address.js';
import { formatRule } from '../policy/print.js';
import type { PortItem, Principal, Rule } from '../policy/types.js';
import { escapeControl } from '../text.js';

export interface ImportResult {
  rules: Omit<Rule, 'line'>[];
  /** What could not be expressed, or was expressed more broadly, one sentence each. */
  notes: string[];
}

export interface AuthbindEntry extends DirEntry {
  /** It has a POSIX ACL, which access(2) obeys and the mode alone does not show. */
  acl?: boolean;
}

export interface AuthbindTree {
  byport: AuthbindEntry[];
  byaddr: AuthbindEntry[];
  /** `skipped`: why the file was not read (a symlink), for a note. */
  byuid: { name: string; text: string; skipped?: string }[];
}

const AUTHBIND: Role = { noun: 'authbind', risk: 'give anyone any low port through lowport import-authbind --apply' };
const SUBDIRS = ['byport', 'byaddr', 'byuid'];

/**
 * Refuses an authbind directory that a user other than root could change:
 * the directory, every one on the way to it from /, and its byport/,
 * byaddr/ and byuid/ (those that exist) pass the check of the policy's
 * directory (os/files.ts). authbind's own safety rests on root-owned
 * directories; files in them owned by users are valid (`chown alice
 * byport/80` is how authbind grants alice port 80), links are not followed.
 */
export function checkAuthbindTree(dir: string): void {
  assertRootControlled(dir, AUTHBIND);
  for (const sub of SUBDIRS) assertRootControlled(join(dir, sub), AUTHBIND, true);
}

function withAcls(dir: string): AuthbindEntry[] {
  return listDirEntries(dir).map((e) => ({ ...e, acl: getXattr(join(dir, e.name), 'system.posix_acl_access') !== undefined }));
}

export function readAuthbindTree(dir: string): AuthbindTree {
  return {
    byport: withAcls(join(dir, 'byport')),
    byaddr: withAcls(join(dir, 'byaddr')),
    byuid: listDirEntries(join(dir, 'byuid'))
      .filter((e) => e.isFile || e.isSymlink === true)
      .flatMap((e) => {
        if (e.isSymlink === true)
          return [
            {
              name: e.name,
              text: '',
              skipped: "a symlink, which lowport does not follow in authbind's tree; skipped: replace it with the file it points at",
            },
          ];
        try {
          return [{ name: e.name, text: readTextFile(join(dir, 'byuid', e.name)) }];
        } catch {
          return [];
        }
      }),
  };
}

export interface Names {
  /** The user's name as a policy may hold it; undefined when there is none (or it is not a plain name): the uid is used. */
  user(uid: number): string | undefined;
  group(gid: number): string | undefined;
  /** Whether the user is in the group: its primary group, or listed as a member. */
  inGroup(uid: number, gid: number): boolean;
}

/**
 * A name a policy line can hold as is (policy/principal.ts); anything else is written as its id, so
 * no name can add text to the printed policy.
 */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;

export const nssNames: Names = {
  user: (uid) => lookupUsers([String(uid)]).get(String(uid))?.name,
  group: (gid) => lookupGroups([String(gid)]).get(String(gid))?.name,
  inGroup: (uid, gid) => {
    const user = lookupUsers([String(uid)]).get(String(uid));
    if (user === undefined) return false;
    return (
      user.gid === gid ||
      (lookupGroups([String(gid)])
        .get(String(gid))
        ?.members.includes(user.name) ??
        false)
    );
  },
};

function userPrincipal(uid: number, names: Names): Principal {
  const name = names.user(uid);
  return { kind: 'user', name: name !== undefined && PLAIN_NAME.test(name) ? name : String(uid) };
}

function groupPrincipal(gid: number, names: Names): Principal {
  const name = names.group(gid);
  return { kind: 'group', name: name !== undefined && PLAIN_NAME.test(name) ? name : String(gid) };
}

function who(p: Principal): string {
  return p.kind === 'everyone' ? 'everyone' : `${p.kind} ${p.name}`;
}

const ALL: PortItem['protocols'] = ['tcp', 'udp'];

/**
 * authbind only ever asks about low ports (libauthbind passes binds of 1024
 * and up straight to the kernel), and reads files for ports 512-1023 under
 * names with a leading `!` (authbind(1), PORTS 512-1023): `byport/!600`,
 * `byaddr/!ADDR,600`, `byuid/!UID`. A file under the other spelling is never read.
 */
function fileRange(bang: boolean): { from: number; to: number } {
  return bang ? { from: 512, to: 1023 } : { from: 1, to: 511 };
}

/** A decimal number as authbind prints it (`%u`: no sign, no leading zero), or undefined. */
function decimal(text: string): number | undefined {
  return /^(0|[1-9]\d{0,9})$/.test(text) ? Number(text) : undefined;
}

/** Why authbind never reads a file for port `port` under this spelling, or undefined when it does. */
function unreadPort(port: number, bang: boolean): string | undefined {
  if (port === 0 || port >= 1024) return `authbind plays no part in binds of port ${port} (only 1-1023), so lowport imports nothing for it`;
  if (port >= 512 && !bang) return `authbind reads the name with a leading '!' for ports 512-1023, so it never reads this one`;
  if (port < 512 && bang) return `authbind reads names with a leading '!' only for ports 512-1023, so it never reads this one`;
  return undefined;
}

/**
 * Whether access(2) lets this (non-root) user execute the file: the owner by the owner's bit only,
 * a group member by the group's only, anyone else by the others'.
 */
export function mayExecute(file: { uid: number; gid: number; mode: number }, uid: number, inGroup: boolean): boolean {
  if (file.uid === uid) return (file.mode & 0o100) !== 0;
  if (inGroup) return (file.mode & 0o010) !== 0;
  return (file.mode & 0o001) !== 0;
}

/** The byport name authbind tests for a port: `!PORT` for 512-1023 (authbind(1)); undefined for ports it plays no part in. */
export function byportName(port: number): string | undefined {
  return port < 1 || port > 1023 ? undefined : port >= 512 ? `!${port}` : String(port);
}

export type Executors = { kind: 'some'; principals: Principal[] } | { kind: 'none' } | { kind: 'inexact'; why: string };

/**
 * Who may bind through a port or address file: whoever access(2) lets
 * execute it (authbind's helper asks with the caller's real ids). The owner
 * gets the owner's bits only, the group's other members the group's bits
 * only, everyone else the others' bits; root binds anyway. Where that cannot
 * be said with grants (everyone but someone), nobody is imported: never more
 * than authbind allowed.
 */
function executors(e: { uid: number; gid: number; mode: number }, names: Names): Executors {
  const ownerX = e.uid === 0 || (e.mode & 0o100) !== 0;
  const groupX = (e.mode & 0o010) !== 0;
  const otherX = (e.mode & 0o001) !== 0;
  const owner = e.uid === 0 ? 'root' : who(userPrincipal(e.uid, names));
  const group = who(groupPrincipal(e.gid, names));
  if (otherX) {
    if (ownerX && groupX) return { kind: 'some', principals: [{ kind: 'everyone' }] };
    const but = [...(ownerX ? [] : [owner]), ...(groupX ? [] : [`the other members of ${group}`])].join(' and ');
    return { kind: 'inexact', why: `authbind lets everyone but ${but} bind it, and lowport cannot grant "everyone but"` };
  }
  const principals: Principal[] = [];
  if (e.uid !== 0 && (e.mode & 0o100) !== 0) principals.push(userPrincipal(e.uid, names));
  if (groupX) {
    // The owner uses the owner's bits even when in the group: a group grant would give it to them too.
    if (!ownerX && names.inGroup(e.uid, e.gid)) {
      return {
        kind: 'inexact',
        why: `authbind lets ${group} bind it but not its member ${owner}, the owner, and lowport cannot grant a group but one member`,
      };
    }
    principals.push(groupPrincipal(e.gid, names));
  }
  return principals.length === 0 ? { kind: 'none' } : { kind: 'some', principals };
}

/** The ports of a bitmap as ranges. */
function portRanges(ports: Uint8Array): { from: number; to: number }[] {
  const out: { from: number; to: number }[] = [];
  for (let p = 1; p < ports.length; p++) {
    if (!ports[p]) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.to === p - 1) last.to = p;
    else out.push({ from: p, to: p });
  }
  return out;
}

function rangeText(r: { from: number; to: number }[]): string {
  return r.map((x) => (x.from === x.to ? String(x.from) : `${x.from}-${x.to}`)).join(',');
}

/**
 * An address as authbind writes it into a byaddr name (inet_ntop, or for
 * IPv6 also each group in hex without the `::`), when lowport writes it the
 * same way; undefined when not (an IPv4-mapped or -compatible address, which
 * inet_ntop writes with a dotted quad).
 */
function authbindSpellings(normalized: string): string[] | undefined {
  if (!normalized.includes(':')) return [normalized];
  const g = parseIPv6(normalized);
  if (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || (g[5] === 0 && g[6] !== 0))) return undefined;
  return [normalized, g.map((x) => x.toString(16)).join(':')];
}

export function convertAuthbind(tree: AuthbindTree, names: Names = nssNames): ImportResult {
  const rules: Omit<Rule, 'line'>[] = [];
  const notes: string[] = [];
  const grant = (ranges: { from: number; to: number }[], principal: Principal, addrs: string[]) => {
    if (ranges.length > 0) rules.push({ action: 'grant', ports: ranges.map((r) => ({ ...r, protocols: ALL })), principal, addrs });
  };
  const grantFile = (where: string, e: AuthbindEntry, port: number, addrs: string[]) => {
    if (e.isSymlink === true) {
      return notes.push(
        `${where}: a symlink, which lowport does not follow in authbind's tree; skipped: replace it with the file it points at (authbind still tests it first, so no other file gives port ${port}${addrs.length > 0 ? ` on ${addrs[0] ?? ''}` : ''})`,
      );
    }
    if (!e.isFile)
      return notes.push(
        `${where}: not a regular file; skipped (authbind still tests it first, so no other file gives port ${port}${addrs.length > 0 ? ` on ${addrs[0] ?? ''}` : ''})`,
      );
    if (e.acl === true) return notes.push(`${where}: has an ACL, which lowport does not translate; skipped: write its grants by hand`);
    const x = executors(e, names);
    if (x.kind === 'none')
      return notes.push(
        `${where}: executable by no one but root (mode ${e.mode.toString(8)}): authbind refuses everyone else; lowport needs no rule for that`,
      );
    if (x.kind === 'inexact') return notes.push(`${where}: ${x.why}; skipped: grant the users who should have it by hand`);
    for (const p of x.principals) grant([{ from: port, to: port }], p, addrs);
    return undefined;
  };

  // 1. byport/PORT: tested first; when it exists it decides, and nothing else is read for that port.
  const byPort = new Set<number>();
  for (const e of tree.byport) {
    const bang = e.name.startsWith('!');
    const port = decimal(bang ? e.name.slice(1) : e.name);
    if (port === undefined) {
      notes.push(`byport/${e.name}: not a port number as authbind writes it; never read, skipped`);
      continue;
    }
    const unread = unreadPort(port, bang);
    if (unread !== undefined) {
      notes.push(`byport/${e.name}: ${unread}; skipped`);
      continue;
    }
    byPort.add(port);
    grantFile(`byport/${e.name}`, e, port, []);
  }

  // 2. byaddr/ADDR,PORT, or failing that (IPv4 only) byaddr/ADDR:PORT.
  const byAddr = new Map<number, Set<string>>();
  const parsed = tree.byaddr.map((e) => {
    const bang = e.name.startsWith('!');
    const m = /^(.+)([,:])(\d+)$/.exec(bang ? e.name.slice(1) : e.name);
    const port = m?.[3] === undefined ? undefined : decimal(m[3]);
    let addr: string | undefined;
    try {
      addr = m?.[1] === undefined ? undefined : normalizeAddress(m[1]);
    } catch {
      addr = undefined;
    }
    return { e, bang, text: m?.[1], comma: m?.[2] === ',', port, addr };
  });
  const commaNames = new Set(parsed.filter((x) => x.comma).map((x) => `${x.bang ? '!' : ''}${x.text ?? ''},${x.port ?? ''}`));
  for (const { e, bang, text, comma, port, addr } of parsed) {
    const where = `byaddr/${e.name}`;
    if (port === undefined || addr === undefined || text === undefined) {
      notes.push(`${where}: not an ADDR,PORT name authbind reads; skipped`);
      continue;
    }
    const unread = unreadPort(port, bang);
    if (unread !== undefined) {
      notes.push(`${where}: ${unread}; skipped`);
      continue;
    }
    if (!comma && addr.includes(':')) {
      notes.push(
        `${where}: authbind reads ADDR:PORT names for IPv4 only, never for an IPv6 address; skipped (byaddr/${bang ? '!' : ''}${text},${port} is the name it reads)`,
      );
      continue;
    }
    if (!(authbindSpellings(addr) ?? []).includes(text)) {
      notes.push(
        `${where}: authbind looks for this address as ${authbindSpellings(addr)?.join(' or ') ?? 'a dotted quad that lowport does not reproduce'}, so it never reads this name; skipped`,
      );
      continue;
    }
    if (byPort.has(port)) {
      notes.push(
        `${where}: byport/${bang ? '!' : ''}${port} exists and decides port ${port} first, so authbind never reads this file; skipped`,
      );
      continue;
    }
    if (!comma && commaNames.has(`${bang ? '!' : ''}${text},${port}`)) {
      notes.push(`${where}: byaddr/${bang ? '!' : ''}${text},${port} exists and is read first, so authbind never reads this file; skipped`);
      continue;
    }
    const decided = byAddr.get(port) ?? new Set<string>();
    decided.add(addr);
    byAddr.set(port, decided);
    grantFile(where, e, port, [addr]);
  }

  // 3. byuid/UID: read only for binds that no byport or byaddr file decided.
  for (const f of tree.byuid) {
    if (f.skipped !== undefined) {
      notes.push(`byuid/${f.name}: ${f.skipped}`);
      continue;
    }
    const bang = f.name.startsWith('!');
    const uid = decimal(bang ? f.name.slice(1) : f.name);
    if (uid === undefined) {
      notes.push(`byuid/${f.name}: not a uid as authbind writes it; never read, skipped`);
      continue;
    }
    const user = userPrincipal(uid, names);
    const range = fileRange(bang);
    const everywhere = { 4: new Uint8Array(1024), 6: new Uint8Array(1024) };
    f.text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `byuid/${f.name} line ${i + 1} (${line})`;
      const converted = convertByuidLine(line);
      if (typeof converted === 'string') {
        notes.push(`${where}: ${converted}`);
        return;
      }
      const ports = new Uint8Array(1024);
      for (let p = Math.max(converted.from, range.from); p <= Math.min(converted.to, range.to); p++) ports[p] = 1;
      if (converted.from < range.from || converted.to > range.to) {
        notes.push(
          `${where}: this file is read only for ports ${range.from}-${range.to}${bang ? '' : ' (512-1023: byuid/!UID)'}, so only those are imported`,
        );
      }
      const addr = converted.addrs[0];
      const shadowed = new Uint8Array(1024);
      for (let p = 1; p < 1024; p++) {
        if (!ports[p]) continue;
        if (byPort.has(p) || (addr === undefined ? (byAddr.get(p)?.size ?? 0) > 0 : (byAddr.get(p)?.has(addr) ?? false))) {
          ports[p] = 0;
          shadowed[p] = 1;
        }
      }
      const decided = portRanges(shadowed);
      if (decided.length > 0)
        notes.push(
          `${where}: port${decided.length === 1 && decided[0]?.from === decided[0]?.to ? '' : 's'} ${rangeText(decided)}: a byport or byaddr file decides first, so not imported from this line`,
        );
      if (converted.family !== undefined) {
        // Every address of one family: lowport has no rule for that, only for every address of both.
        for (let p = 1; p < 1024; p++) if (ports[p]) everywhere[converted.family][p] = 1;
        return;
      }
      grant(portRanges(ports), user, converted.addrs);
    });
    const both = new Uint8Array(1024);
    const only: { 4: Uint8Array; 6: Uint8Array } = { 4: new Uint8Array(1024), 6: new Uint8Array(1024) };
    for (let p = 1; p < 1024; p++) {
      if (everywhere[4][p] && everywhere[6][p]) both[p] = 1;
      else if (everywhere[4][p]) only[4][p] = 1;
      else if (everywhere[6][p]) only[6][p] = 1;
    }
    grant(portRanges(both), user, []);
    for (const family of [4, 6] as const) {
      const left = portRanges(only[family]);
      if (left.length > 0) {
        notes.push(
          `byuid/${f.name}: ports ${rangeText(left)} on every IPv${family} address but not every IPv${family === 4 ? 6 : 4} one: lowport cannot grant every address of one family; skipped: list the addresses with --addr`,
        );
      }
    }
  }
  return { rules, notes };
}

/** A port in a byuid line, which authbind reads with sscanf's %u (leading zeros allowed). */
function port(text: string): number | undefined {
  const n = Number(text);
  return /^\d{1,5}$/.test(text) && n >= 1 && n <= 65535 ? n : undefined;
}

/** One byuid line: the ports and addresses, or why it cannot be expressed. */
function convertByuidLine(line: string): { from: number; to: number; addrs: string[]; family?: 4 | 6 } | string {
  // Old form: ADDR4/LEN:MIN,MAX
  let m = /^([0-9.]+)\/(\d+):(\d+),(\d+)$/.exec(line);
  let addr: string | undefined;
  let length: number | undefined;
  let from: number | undefined;
  let to: number | undefined;
  if (m !== null) {
    [addr, length, from, to] = [m[1], Number(m[2]), port(m[3] ?? ''), port(m[4] ?? '')];
  } else {
    m = /^([^,]+),(\d+)(?:-(\d+))?$/.exec(line);
    if (m === null) return 'not a line authbind understands either; skipped';
    from = port(m[2] ?? '');
    to = m[3] === undefined ? from : port(m[3]);
    const spec = m[1] ?? '';
    if (/^[^/]+-[^/]+$/.test(spec) && !spec.includes('/'))
      return 'an address range (ADDRMIN-ADDRMAX) cannot be expressed: list the addresses with --addr';
    const slash = spec.split('/');
    addr = slash[0];
    length = slash[1] === undefined ? undefined : Number(slash[1]);
  }
  if (from === undefined || to === undefined || from > to) return 'bad port range; skipped';
  let normalized: string;
  try {
    normalized = normalizeAddress(addr ?? '');
  } catch {
    return `bad address '${addr ?? ''}'; skipped`;
  }
  const v4 = !normalized.includes(':');
  const full = v4 ? 32 : 128;
  if (length === undefined || length === full) return { from, to, addrs: [normalized] };
  if (length === 0) return { from, to, addrs: [], family: v4 ? 4 : 6 };
  return `a network (/${length}) cannot be expressed: lowport rules name single addresses`;
}

/** The rules as policy text, notes as comments. */
export function formatImport(r: ImportResult, source: string): string {
  // Notes quote file names and file lines that others may have chosen: escaped, a newline in one cannot start a live policy line.
  const lines = [`# imported from ${escapeControl(source)} by lowport import-authbind`, ...r.rules.map((rule) => formatRule(rule))];
  if (r.notes.length > 0) lines.push('#', '# not imported as is:', ...r.notes.map((n) => `#   ${escapeControl(n)}`));
  return `${lines.join('\n')}\n`;
}
