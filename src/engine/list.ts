/**
 * `lowport list`: the rules as the kernel holds them (read back from the live
 * map, not from the file), their hit counts, whether they are what the file
 * says, and every other program on the bind hooks (they can grant or deny too).
 */
import { lookupGroups, lookupUsers } from '../kernel/nss.js';
import { formatPorts } from '../policy/ports.js';
import type { PortItem } from '../policy/types.js';
import { addressText, keyId, protocolName } from './compile.js';
import { compileDocument, readPolicy } from './apply.js';
import { attachedPrograms, readLiveEntries, type AttachedProgram, type Entry } from './live.js';
import { Kind, RESERVED } from './map-format.js';
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
  /** `in-sync`, `differs` (run apply), `missing` (no file) or `invalid` (the file has errors). */
  file: 'in-sync' | 'differs' | 'missing' | 'invalid';
  fileProblem?: string;
  programs: AttachedProgram[];
}

export function list(options: LowportOptions = {}): ListResult {
  const target = kernelTarget(options);
  const path = policyPath(options);
  const live = readLiveEntries(target.pinDir);
  const entries = live ?? [];
  const { file, fileProblem } = compareWithFile(path, entries);
  return {
    policy: path,
    pinDir: target.pinDir,
    cgroup: target.cgroup,
    live: live !== undefined,
    rules: describe(entries),
    entries: entries.length,
    file,
    ...(fileProblem === undefined ? {} : { fileProblem }),
    programs: attachedPrograms(target),
  };
}

function compareWithFile(path: string, live: Entry[]): { file: ListResult['file']; fileProblem?: string } {
  let fromFile: Entry[];
  try {
    fromFile = compileDocument(readPolicy(path, false)).entries;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { file: err.code === 'E_POLICY_MISSING' ? 'missing' : 'invalid', fileProblem: err.message ?? String(e) };
  }
  const signature = (es: Entry[]) => es.map((e) => `${keyId(e.key)}=${e.value.rule}:${e.value.flags}`).sort().join('\n');
  return { file: signature(fromFile) === signature(live) ? 'in-sync' : 'differs' };
}

interface Group {
  line: number;
  reserve: boolean;
  subjects: Map<string, { kind: number; id: bigint }>;
  ports: Map<string, PortItem>;
  addrs: Set<string>;
  hits: bigint;
  refused: bigint;
}

/** Groups live entries back into rules, by the policy line each entry credits. */
export function describe(entries: Entry[], names: (kind: number, ids: bigint[]) => Map<bigint, string> = nssNames): LiveRule[] {
  const groups = new Map<number, Group>();
  const group = (line: number): Group => {
    let g = groups.get(line);
    if (g === undefined) {
      g = { line, reserve: false, subjects: new Map(), ports: new Map(), addrs: new Set(), hits: 0n, refused: 0n };
      groups.set(line, g);
    }
    return g;
  };
  for (const { key, value } of entries) {
    const protocol = protocolName(key.protocol);
    if (protocol === undefined) continue;
    const g = group(value.rule);
    if (key.kind === Kind.PORT) {
      if (value.flags & RESERVED) {
        g.reserve = true;
        g.refused += value.hits;
      }
      continue;
    }
    g.subjects.set(`${key.kind}/${key.id}`, { kind: key.kind, id: key.id });
    g.ports.set(`${protocol}/${key.port}`, { from: key.port, to: key.port, protocols: [protocol] });
    const addr = addressText(key.family, key.addr);
    if (addr !== undefined) g.addrs.add(addr);
    g.hits += value.hits;
  }

  const byKind = new Map<number, bigint[]>();
  for (const g of groups.values()) for (const s of g.subjects.values()) byKind.set(s.kind, [...(byKind.get(s.kind) ?? []), s.id]);
  const labels = new Map<number, Map<bigint, string>>();
  for (const [kind, ids] of byKind) labels.set(kind, names(kind, [...new Set(ids)]));

  return [...groups.values()]
    .filter((g) => g.ports.size > 0)
    .sort((a, b) => a.line - b.line)
    .map((g) => ({
      line: g.line,
      action: g.reserve ? 'reserve' : 'grant',
      who: [...g.subjects.values()]
        .sort((a, b) => a.kind - b.kind || Number(a.id - b.id))
        .map((s) => labels.get(s.kind)?.get(s.id) ?? `${KIND_NAME[s.kind] ?? 'id'} ${s.id}`),
      ports: formatPorts([...g.ports.values()]),
      addrs: [...g.addrs].sort(),
      hits: Number(g.hits),
      refused: Number(g.refused),
    }));
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
      out.set(id, u === undefined ? `uid ${id}` : `user ${u.name} (uid ${id})`);
    }
  } else if (kind === Kind.GID) {
    const groups = lookupGroups(ids.map(String));
    for (const id of ids) {
      const g = groups.get(String(id));
      out.set(id, g === undefined ? `gid ${id}` : `group ${g.name} (gid ${id})`);
    }
  }
  return out;
}
