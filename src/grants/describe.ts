/**
 * The live map read back as rules: entries grouped by the policy line they
 * credit, ports as ranges, ids as names, with the hits each rule counted.
 */
import { lookupGroups, lookupUsers } from '../os/nss.js';
import { formatPorts } from '../policy/ports.js';
import { escapeControl } from '../text.js';
import { partOf } from '../policy/origin.js';
import type { PolicyDocument, PortItem, Protocol } from '../policy/types.js';
import { addressText, protocolName } from './compile.js';
import type { Entry } from './live.js';
import { EntryTable, Kind, KEY_SIZE, RESERVED, VALUE_SIZE } from './map-format.js';
import type { Scope } from './scopes.js';

export interface LiveRule {
  /** Line of the policy file the rule came from when it was applied (in `file`, once placeRules has run). */
  line: number;
  /**
   * The file of the policy the rule came from: the policy file or one of its
   * drop-ins (placeRules). Absent for a `lowport run` scope, and where the
   * applied text is not at hand.
   */
  file?: string;
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

interface Group {
  line: number;
  reserve: boolean;
  /**
   * Its subjects, ids as numbers (uids, gids and cgroup ids are well below
   * 2^53): the first one in kind/id (kind -1: none yet), any other in `more`,
   * kind -> ids. Most rules have one subject, and a Map and a Set per rule
   * were most of what 10,000 rules allocated here.
   */
  kind: number;
  id: number;
  more: Map<number, Set<number>> | undefined;
  tcp: number[];
  udp: number[];
  /** Made for the first address: most rules have none. */
  addrs: Set<string> | undefined;
  hits: number;
  refused: number;
}

/** describeTable for entries as objects. */
export function describe(entries: Entry[], names?: NameLookup): LiveRule[] {
  return describeTable(EntryTable.fromEntries(entries), names);
}

export type NameLookup = (kind: number, ids: bigint[]) => Map<bigint, string>;

/**
 * Groups live entries back into rules, by the policy line each entry credits.
 * Reads the packed table in place: a 40,000-entry map makes no object per entry.
 * With `from`, the document the table was made from: each file rule gets its
 * file and its line there (policy/origin.ts), as placeRules gives them.
 */
export function describeTable(t: EntryTable, names: NameLookup = nssNames, from?: Pick<PolicyDocument, 'file' | 'parts'>): LiveRule[] {
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
      g = { line, reserve: false, kind: -1, id: 0, more: undefined, tcp: [], udp: [], addrs: undefined, hits: 0, refused: 0 };
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
    addSubject(g, kind, keys.readUInt32LE(k + 8) + keys.readUInt32LE(k + 12) * 2 ** 32);
    g[protocol].push(keys.readUInt16LE(k + 2));
    const family = keys[k + 4] ?? 0;
    if (family !== 0) {
      const addr = addressText(family, keys.subarray(k + 16, k + 32));
      if (addr !== undefined) (g.addrs ??= new Set()).add(addr);
    }
    g.hits += hitsAt(t, i);
  }

  const all = [...groups.values(), ...scoped.values()];
  const byKind = new Map<number, Set<number>>();
  const collect = (kind: number, id: number): void => {
    let ids = byKind.get(kind);
    if (ids === undefined) byKind.set(kind, (ids = new Set()));
    ids.add(id);
  };
  for (const g of all) {
    if (g.kind !== -1) collect(g.kind, g.id);
    if (g.more !== undefined) for (const [kind, ids] of g.more) for (const id of ids) collect(kind, id);
  }
  // Labels by kind and id as a number: no BigInt per rule to look one up.
  const labels = new Map<number, Map<number, string>>();
  for (const [kind, ids] of byKind) {
    const named = names(kind, [...ids].map(BigInt));
    const byId = new Map<number, string>();
    for (const id of ids) {
      const label = named.get(BigInt(id));
      if (label !== undefined) byId.set(id, label);
    }
    labels.set(kind, byId);
  }
  const label = (kind: number, id: number): string => labels.get(kind)?.get(id) ?? `${KIND_NAME[kind] ?? 'id'} ${id}`;

  return all
    .filter((g) => g.tcp.length + g.udp.length > 0)
    .sort((a, b) => a.line - b.line)
    .map((g): LiveRule => {
      const action = g.reserve ? ('reserve' as const) : ('grant' as const);
      const who = whoOf(g, label);
      const ports = portsText(toRanges(g.tcp, 'tcp'), toRanges(g.udp, 'udp'));
      const addrs = g.addrs === undefined ? [] : [...g.addrs].sort();
      if (from === undefined || g.line <= 0) return { line: g.line, action, who, ports, addrs, hits: g.hits, refused: g.refused };
      // The file in the object from the start (placeRules adds it later): no backing store per rule for a property added after.
      const part = partOf(from, g.line);
      const line = part === undefined ? g.line : g.line - part.offset;
      return { line, action, who, ports, addrs, hits: g.hits, refused: g.refused, file: part === undefined ? from.file : part.file };
    });
}

/**
 * The labels of a rule's subjects, by kind then id. Most rules name one
 * subject: that case is built directly, without sorting copies.
 */
function whoOf(g: Group, label: (kind: number, id: number) => string): string[] {
  if (g.kind === -1) return [];
  if (g.more === undefined) return [label(g.kind, g.id)];
  return [...subjectsOf(g)].sort(([a], [b]) => a - b).flatMap(([kind, ids]) => [...ids].sort((a, b) => a - b).map((id) => label(kind, id)));
}

function addSubject(g: Group, kind: number, id: number): void {
  if (g.kind === -1) {
    g.kind = kind;
    g.id = id;
    return;
  }
  if (g.kind === kind && g.id === id) return;
  g.more ??= new Map();
  let ids = g.more.get(kind);
  if (ids === undefined) g.more.set(kind, (ids = new Set()));
  ids.add(id);
}

/** A group's subjects, kind -> distinct ids, in the order first seen per kind. */
function subjectsOf(g: Group): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>();
  if (g.kind === -1) return out;
  out.set(g.kind, new Set([g.id]));
  if (g.more !== undefined) {
    for (const [kind, ids] of g.more) {
      let all = out.get(kind);
      if (all === undefined) out.set(kind, (all = new Set()));
      for (const id of ids) all.add(id);
    }
  }
  return out;
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
  // Most rules have one port per protocol, or none: no typed array to sort then.
  if (ports.length === 0) return [];
  if (ports.length === 1) return [{ from: ports[0] ?? 0, to: ports[0] ?? 0, protocols: [protocol] }];
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
export function namesWithScopes(scopes: Scope[]): NameLookup {
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

/**
 * Gives file rules (line > 0) their file, and their line in it, from the
 * applied document (policy/origin.ts): a document of several files numbers
 * its lines through all of them. In place: `list` runs this on every rule.
 */
export function placeRules<R extends LiveRule>(rules: R[], doc: Pick<PolicyDocument, 'file' | 'parts'>): R[] {
  for (const r of rules) {
    if (r.line <= 0) continue;
    const part = partOf(doc, r.line);
    if (part === undefined) {
      r.file = doc.file;
    } else {
      r.file = part.file;
      r.line -= part.offset;
    }
  }
  return rules;
}
