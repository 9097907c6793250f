/**
 * `lowport import-authbind`: authbind's configuration (authbind(1)) as policy
 * rules, with a note for everything that cannot be said the same way.
 *
 *   byport/PORT           who may execute the file may bind PORT: the owner (u+x), the group (g+x), everyone (o+x)
 *   byaddr/ADDR,PORT      the same, for that address only (ADDR:PORT: the old IPv4 spelling)
 *   byuid/UID             lines: ADDR[/LEN],MIN[-MAX]  ADDRMIN-ADDRMAX,MIN[-MAX]  ADDR4/LEN:MIN,MAX
 */
import { join } from 'node:path';
import { listDirEntries, readTextFile, type DirEntry } from '../kernel/files.js';
import { lookupGroups, lookupUsers } from '../kernel/nss.js';
import { normalizeAddress } from '../policy/address.js';
import { formatRule } from '../policy/print.js';
import type { PortItem, Principal, Rule } from '../policy/types.js';

export interface ImportResult {
  rules: Omit<Rule, 'line'>[];
  /** What could not be expressed, or was expressed more broadly, one sentence each. */
  notes: string[];
}

export interface AuthbindTree {
  byport: DirEntry[];
  byaddr: DirEntry[];
  byuid: { name: string; text: string }[];
}

export function readAuthbindTree(dir: string): AuthbindTree {
  return {
    byport: listDirEntries(join(dir, 'byport')),
    byaddr: listDirEntries(join(dir, 'byaddr')),
    byuid: listDirEntries(join(dir, 'byuid'))
      .filter((e) => e.isFile)
      .flatMap((e) => {
        try {
          return [{ name: e.name, text: readTextFile(join(dir, 'byuid', e.name)) }];
        } catch {
          return [];
        }
      }),
  };
}

export interface Names {
  user(uid: number): string;
  group(gid: number): string;
}

export const nssNames: Names = {
  user: (uid) => lookupUsers([String(uid)]).get(String(uid))?.name ?? String(uid),
  group: (gid) => lookupGroups([String(gid)]).get(String(gid))?.name ?? String(gid),
};

const ALL: PortItem['protocols'] = ['tcp', 'udp'];

function port(text: string): number | undefined {
  const n = Number(text);
  return /^\d+$/.test(text) && n >= 1 && n <= 65535 ? n : undefined;
}

/** Who may execute a file, as authbind's access(2) check sees it. */
function executors(e: DirEntry, names: Names): Principal[] {
  const out: Principal[] = [];
  if (e.mode & 0o001) return [{ kind: 'everyone' }];
  if (e.mode & 0o100 && e.uid !== 0) out.push({ kind: 'user', name: names.user(e.uid) });
  if (e.mode & 0o010) out.push({ kind: 'group', name: names.group(e.gid) });
  return out;
}

export function convertAuthbind(tree: AuthbindTree, names: Names = nssNames): ImportResult {
  const rules: Omit<Rule, 'line'>[] = [];
  const notes: string[] = [];
  const grant = (ports: PortItem[], principal: Principal, addrs: string[]) => rules.push({ action: 'grant', ports, principal, addrs });

  for (const e of tree.byport) {
    const p = port(e.name);
    if (p === undefined || !e.isFile) {
      notes.push(`byport/${e.name}: not a port file; skipped`);
      continue;
    }
    const who = executors(e, names);
    if (who.length === 0) notes.push(`byport/${e.name}: executable by no one but root (mode ${e.mode.toString(8)}): authbind refuses everyone else; lowport needs no rule for that`);
    for (const w of who) grant([{ from: p, to: p, protocols: ALL }], w, []);
  }

  for (const e of tree.byaddr) {
    const m = /^(.+)[,:](\d+)$/.exec(e.name);
    const p = m?.[2] === undefined ? undefined : port(m[2]);
    let addr: string | undefined;
    try {
      addr = m?.[1] === undefined ? undefined : normalizeAddress(m[1]);
    } catch {
      addr = undefined;
    }
    if (p === undefined || addr === undefined || !e.isFile) {
      notes.push(`byaddr/${e.name}: not an ADDR,PORT file; skipped`);
      continue;
    }
    for (const w of executors(e, names)) grant([{ from: p, to: p, protocols: ALL }], w, [addr]);
  }

  for (const f of tree.byuid) {
    if (!/^\d+$/.test(f.name)) {
      notes.push(`byuid/${f.name}: not a uid; skipped`);
      continue;
    }
    const user: Principal = { kind: 'user', name: names.user(Number(f.name)) };
    f.text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `byuid/${f.name} line ${i + 1} (${line})`;
      const converted = convertByuidLine(line);
      if (typeof converted === 'string') {
        notes.push(`${where}: ${converted}`);
        return;
      }
      if (converted.note !== undefined) notes.push(`${where}: ${converted.note}`);
      grant([{ from: converted.from, to: converted.to, protocols: ALL }], user, converted.addrs);
    });
  }
  return { rules, notes };
}

/** One byuid line: the ports and addresses, or why it cannot be expressed. */
function convertByuidLine(line: string): { from: number; to: number; addrs: string[]; note?: string } | string {
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
    if (/^[^/]+-[^/]+$/.test(spec) && !spec.includes('/')) return 'an address range (ADDRMIN-ADDRMAX) cannot be expressed: list the addresses with --addr';
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
  if (length === 0) {
    return { from, to, addrs: [], note: `covers every ${v4 ? 'IPv4' : 'IPv6'} address; the lowport rule covers every address of both families` };
  }
  return `a network (/${length}) cannot be expressed: lowport rules name single addresses`;
}

/** The rules as policy text, notes as comments. */
export function formatImport(r: ImportResult, source: string): string {
  const lines = [`# imported from ${source} by lowport import-authbind`, ...r.rules.map((rule) => formatRule(rule))];
  if (r.notes.length > 0) lines.push('#', '# not imported as is:', ...r.notes.map((n) => `#   ${n}`));
  return `${lines.join('\n')}\n`;
}
