/**
 * `lowport list`: the rules as the kernel holds them (read back from the live
 * map, not from the file), their hit counts, whether they are what the file
 * says, and every other program on the bind hooks (they can grant or deny too).
 */
import { lookupGroups, lookupUsers } from '../kernel/nss.js';
import { readSubordinateIds } from '../kernel/subids.js';
import { formatPorts } from '../policy/ports.js';
import { escapeControl } from '../text.js';
import type { PortItem, Protocol } from '../policy/types.js';
import { addressText, protocolName } from './compile.js';
import { compileDocument, policyFingerprint, readPolicyText, refreshLive, removeCommand } from './apply.js';
import { parsePolicy } from '../policy/parse.js';
import { attachedPrograms, readLivePolicy, type AttachedProgram, type Entry, type LivePolicy, type Target } from './live.js';
import { EntryTable, Kind, KEY_SIZE, RESERVED, VALUE_SIZE } from './map-format.js';
import { appliedBindings, appliedText, pruneScopes, readScopes, type Scope } from './scopes.js';
import { nameChanges, subordinateNotes, type Subject } from './resolve.js';
import { kernelTarget, policyPath, type LowportOptions } from './target.js';

export interface LiveRule {
  /** Line of the policy file the rule came from when it was applied. */
  line: number;
  action: 'grant' | 'reserve';
  /** `user alice (uid 1000)`, `group dev (gid 1001)`, `everyone`, `cgroup 4242`. */
  who: string[];
  /** Canonical port spec, e.g. `80,443` or `53/udp`. */
  ports: string;
  /** Empty: any address. */
  addrs: string[];
  /** Binds this rule granted. */
  hits: number;
  /** Binds refused because of this reservation. */
  refused: number;
}

export interface ListResult {
  policy: string;
  pinDir: string;
  cgroup: string;
  /** False when lowport has nothing live at this pin directory. */
  live: boolean;
  rules: LiveRule[];
  /** Map entries live in the kernel. */
  entries: number;
  /**
   * `in-sync`, `differs` (run apply), `missing` (no file), `invalid` (the file
   * has errors), or `names-changed`: made from the file's text, but a user or
   * group in it has since been deleted, renumbered or given other members.
   */
  file: 'in-sync' | 'differs' | 'missing' | 'invalid' | 'names-changed';
  fileProblem?: string;
  /**
   * Per policy line: names that no longer map to the ids live (or to none),
   * and ids live that lie in some user's subordinate range (/etc/subuid,
   * /etc/subgid). Names in these texts from NSS are escaped.
   */
  warnings: ListWarning[];
  programs: AttachedProgram[];
}

export interface ListWarning {
  line: number;
  /** `name`: a user or group changed since apply; `subordinate`: an id in someone's subuid/subgid range. */
  kind: 'name' | 'subordinate';
  message: string;
}

export function list(options: LowportOptions = {}, { prune = true }: { prune?: boolean } = {}): ListResult {
  const target = kernelTarget(options);
  const path = policyPath(options);
  // What a killed `lowport run` left behind goes now, from the kernel too.
  const scopes = prune ? pruneAndRefresh(options, target) : readScopes(target);
  const live = readLivePolicy(target.pinDir);
  const table = live?.table ?? new EntryTable();
  const compared = compareWithFile(path, live);
  const changes = live === undefined ? [] : boundNameChanges(options, target, path);
  const file = compared.file === 'in-sync' && changes.some((c) => c.changed) ? 'names-changed' : compared.file;
  const warnings = [...changes.map(({ line, message }): ListWarning => ({ line, kind: 'name', message })), ...subordinateWarnings(table)].sort((a, b) => a.line - b.line);
  return {
    policy: path,
    pinDir: target.pinDir,
    cgroup: target.cgroup,
    live: live !== undefined,
    rules: describeTable(table, namesWithScopes(scopes)),
    entries: table.count,
    file,
    ...(compared.fileProblem === undefined ? {} : { fileProblem: compared.fileProblem }),
    warnings,
    programs: attachedPrograms(target),
  };
}

/**
 * The live policy's names against what they resolve to now, from the
 * bindings recorded when it was applied; none when no bindings were recorded
 * (applied by an older lowport: `lowport apply` records them).
 */
function boundNameChanges(options: LowportOptions, target: Target, path: string): { line: number; message: string; changed: boolean }[] {
  const bindings = appliedBindings(target);
  const text = appliedText(target);
  if (bindings === undefined || text === undefined) return [];
  let rules;
  try {
    rules = parsePolicy(text, path).rules;
  } catch {
    return [];
  }
  return nameChanges(rules, bindings).map((c) => ({
    line: c.line,
    changed: c.changed,
    message: c.gone ? `${c.message}; or remove the line: ${removeCommand(options, c.rule)}` : c.message,
  }));
}

/** Live uids and gids in someone's subordinate range, per policy line (finding: those ids are that user's containers'). */
function subordinateWarnings(t: EntryTable): ListWarning[] {
  const byLine = new Map<number, Subject[]>();
  for (let i = 0; i < t.count; i++) {
    const k = i * KEY_SIZE;
    const kind = t.keys[k] ?? 0;
    if (kind !== Kind.UID && kind !== Kind.GID) continue;
    const line = t.rule(i);
    let subjects = byLine.get(line);
    if (subjects === undefined) byLine.set(line, (subjects = []));
    subjects.push({ kind, id: t.keys.readBigUInt64LE(k + 8) });
  }
  if (byLine.size === 0) return [];
  const subuid = readSubordinateIds('/etc/subuid');
  const subgid = readSubordinateIds('/etc/subgid');
  if (subuid.length === 0 && subgid.length === 0) return [];
  return [...byLine].flatMap(([line, subjects]) => subordinateNotes(subjects, subuid, subgid).map((message): ListWarning => ({ line, kind: 'subordinate', message })));
}

function pruneAndRefresh(options: LowportOptions, target: Target): Scope[] {
  const { scopes, pruned } = pruneScopes(target);
  if (pruned) refreshLive(options, target, { onlyIfLive: true });
  return scopes;
}

/**
 * In sync when the live map was built from exactly the file's current text
 * (its fingerprint, map-format.ts). Otherwise the file is checked, to tell an
 * edit not yet applied from a file that cannot be applied.
 */
function compareWithFile(path: string, live: LivePolicy | undefined): { file: ListResult['file']; fileProblem?: string } {
  try {
    const text = readPolicyText(path);
    if (live?.fingerprint !== undefined && policyFingerprint(text).equals(live.fingerprint)) return { file: 'in-sync' };
    compileDocument(parsePolicy(text, path));
    return { file: 'differs' };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { file: err.code === 'E_POLICY_MISSING' ? 'missing' : 'invalid', fileProblem: err.message ?? String(e) };
  }
}

interface Group {
  line: number;
  reserve: boolean;
  /** kind -> ids (as numbers: uids, gids and cgroup ids are well below 2^53). */
  subjects: Map<number, Set<number>>;
  tcp: number[];
  udp: number[];
  addrs: Set<string>;
  hits: number;
  refused: number;
}

/** describeTable for entries as objects. */
export function describe(entries: Entry[], names?: NameLookup): LiveRule[] {
  return describeTable(EntryTable.fromEntries(entries), names);
}

type NameLookup = (kind: number, ids: bigint[]) => Map<bigint, string>;

/**
 * Groups live entries back into rules, by the policy line each entry credits.
 * Reads the packed table in place: a 40,000-entry map makes no object per entry.
 */
export function describeTable(t: EntryTable, names: NameLookup = nssNames): LiveRule[] {
  // By policy line; entries of no line (0: scoped grants of `lowport run`) by their cgroup.
  const groups = new Map<number, Group>();
  const scoped = new Map<bigint, Group>();
  const keys = t.keys;
  for (let i = 0; i < t.count; i++) {
    const k = i * KEY_SIZE;
    const protocol = protocolName(keys[k + 1] ?? 0);
    if (protocol === undefined) continue;
    const line = t.rule(i);
    const kind = keys[k] ?? 0;
    const byScope = line === 0 && kind === Kind.CGROUP;
    const scope = byScope ? keys.readBigUInt64LE(k + 8) : 0n;
    let g = byScope ? scoped.get(scope) : groups.get(line);
    if (g === undefined) {
      g = { line, reserve: false, subjects: new Map(), tcp: [], udp: [], addrs: new Set(), hits: 0, refused: 0 };
      if (byScope) scoped.set(scope, g);
      else groups.set(line, g);
    }
    if (kind === Kind.PORT) {
      if (t.flags(i) & RESERVED) {
        g.reserve = true;
        g.refused += hitsAt(t, i);
        // Its ports too: a reservation whose owner did not resolve has no other key.
        g[protocol].push(keys.readUInt16LE(k + 2));
      }
      continue;
    }
    if (t.flags(i) & RESERVED) g.reserve = true;
    let ids = g.subjects.get(kind);
    if (ids === undefined) g.subjects.set(kind, (ids = new Set()));
    ids.add(keys.readUInt32LE(k + 8) + keys.readUInt32LE(k + 12) * 2 ** 32);
    g[protocol].push(keys.readUInt16LE(k + 2));
    const family = keys[k + 4] ?? 0;
    if (family !== 0) {
      const addr = addressText(family, keys.subarray(k + 16, k + 32));
      if (addr !== undefined) g.addrs.add(addr);
    }
    g.hits += hitsAt(t, i);
  }

  const all = [...groups.values(), ...scoped.values()];
  const byKind = new Map<number, Set<number>>();
  for (const g of all) {
    for (const [kind, ids] of g.subjects) {
      let all = byKind.get(kind);
      if (all === undefined) byKind.set(kind, (all = new Set()));
      for (const id of ids) all.add(id);
    }
  }
  const labels = new Map<number, Map<bigint, string>>();
  for (const [kind, ids] of byKind) labels.set(kind, names(kind, [...ids].map(BigInt)));

  return all
    .filter((g) => g.tcp.length + g.udp.length > 0)
    .sort((a, b) => a.line - b.line)
    .map((g) => ({
      line: g.line,
      action: g.reserve ? 'reserve' : 'grant',
      who: [...g.subjects]
        .sort(([a], [b]) => a - b)
        .flatMap(([kind, ids]) => [...ids].sort((a, b) => a - b).map((id) => labels.get(kind)?.get(BigInt(id)) ?? `${KIND_NAME[kind] ?? 'id'} ${id}`)),
      ports: portsText(toRanges(g.tcp, 'tcp'), toRanges(g.udp, 'udp')),
      addrs: [...g.addrs].sort(),
      hits: g.hits,
      refused: g.refused,
    }));
}

/** An entry's hit count as a number (exact below 2^53 binds), without allocating a BigInt. */
function hitsAt(t: EntryTable, i: number): number {
  return t.values.readUInt32LE(i * VALUE_SIZE + 8) + t.values.readUInt32LE(i * VALUE_SIZE + 12) * 2 ** 32;
}

/**
 * The canonical text of a rule's ports (policy/ports.ts formatPorts) from its
 * merged ranges. Most rules are TCP only, UDP only, or the same ports for
 * both: those are written directly, which with 10,000 rules saves building a
 * PortSet per rule; a mix goes through formatPorts.
 */
function portsText(tcp: PortItem[], udp: PortItem[]): string {
  const same = tcp.length === udp.length && tcp.every((r, i) => r.from === udp[i]?.from && r.to === udp[i]?.to);
  if (!same && tcp.length > 0 && udp.length > 0) return formatPorts([...tcp, ...udp]);
  const suffix = same ? '' : tcp.length > 0 ? '/tcp' : '/udp';
  return (tcp.length > 0 ? tcp : udp).map((r) => `${r.from === r.to ? r.from : `${r.from}-${r.to}`}${suffix}`).join(',');
}

/** Ports (unsorted, maybe repeated: one per subject and address) as merged ranges. */
function toRanges(ports: number[], protocol: Protocol): PortItem[] {
  const sorted = Uint16Array.from(ports).sort();
  const out: PortItem[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && p <= last.to + 1) last.to = Math.max(last.to, p);
    else out.push({ from: p, to: p, protocols: [protocol] });
  }
  return out;
}

/** NSS names, and for cgroups the `lowport run` that owns them. */
function namesWithScopes(scopes: Scope[]): NameLookup {
  return (kind, ids) => {
    if (kind !== Kind.CGROUP) return nssNames(kind, ids);
    const out = new Map<bigint, string>();
    for (const s of scopes) out.set(BigInt(s.cgroupId), `lowport run by ${s.user} (pid ${s.owner}): ${s.command.join(' ')}`);
    return out;
  };
}

const KIND_NAME: Record<number, string> = { [Kind.UID]: 'uid', [Kind.GID]: 'gid', [Kind.CGROUP]: 'cgroup', [Kind.EVERYONE]: 'everyone' };

function nssNames(kind: number, ids: bigint[]): Map<bigint, string> {
  const out = new Map<bigint, string>();
  if (kind === Kind.EVERYONE) {
    for (const id of ids) out.set(id, 'everyone');
  } else if (kind === Kind.UID) {
    const users = lookupUsers(ids.map(String));
    for (const id of ids) {
      const u = users.get(String(id));
      out.set(id, u === undefined ? `uid ${id}` : `user ${escapeControl(u.name)} (uid ${id})`);
    }
  } else if (kind === Kind.GID) {
    const groups = lookupGroups(ids.map(String));
    for (const id of ids) {
      const g = groups.get(String(id));
      out.set(id, g === undefined ? `gid ${id}` : `group ${escapeControl(g.name)} (gid ${id})`);
    }
  }
  return out;
}
