/**
 * `lowport list`: the rules as the kernel holds them (read back from the live
 * map, not from the file), their hit counts, whether they are what the file
 * says, and every other program on the bind hooks (they can grant or deny too).
 */
import { diagnostic, type Diagnostic } from '../diagnostic.js';
import { readSubordinateIds, type SubordinateRange } from '../os/subids.js';
import { principalSpan } from '../policy/parse.js';
import { originOf } from '../policy/origin.js';
import { parsePolicyFiles, splitPolicyTexts } from '../policy/sources.js';
import type { PolicyDocument } from '../policy/types.js';
import { readPolicyText, readPolicyTexts } from '../policy-file/policy-file.js';
import { compileDocument, policyFingerprint } from '../grants/document.js';
import { describeTable, namesWithScopes, placeRules, type LiveRule } from '../grants/describe.js';
import { attachedPrograms, readLivePolicy, type AttachedProgram, type LivePolicy, type Target } from '../grants/live.js';
import { addressKey } from '../grants/compile.js';
import { encodeKey, EntryTable, IPPROTO, Kind, KEY_SIZE, RESERVED } from '../grants/map-format.js';
import { appliedBindings, appliedText, pruneScopes, readScopes, type Scope } from '../grants/scopes.js';
import { nameChanges, resolvePolicy, subordinateNotes, type Subject } from '../grants/resolve.js';
import { kernelTarget, liveTarget, policyPath, type LowportOptions } from '../grants/target.js';
import { refreshLive } from './apply.js';
import { removeCommand } from './unresolved.js';

export type { LiveRule } from '../grants/describe.js';

/**
 * A grant that the live map does not carry out where a reservation of the
 * same port holds: its owner's key belongs to the reservation (compile.ts:
 * the reservation claims it, and its binds count there), or, for a grant to
 * everyone, a reserved port never looks everyone up. Without this, such a
 * grant would not show in `list` at all. The parts of one grant line a
 * reservation shadows, as `list` shows rules.
 */
export interface ShadowedGrant extends LiveRule {
  /** The line of the reservation that shadows it (in `shadowedByFile`, when the rules have their files). */
  shadowedBy: number;
  /** The file of that reservation: the policy file or a drop-in. */
  shadowedByFile?: string;
}

export interface ListResult {
  policy: string;
  pinDir: string;
  cgroup: string;
  /** False when lowport has nothing live at this pin directory. */
  live: boolean;
  rules: LiveRule[];
  /**
   * Grants of the applied text, or the parts of them, that reservations of
   * the same ports shadow (see ShadowedGrant), in line order; empty when the
   * applied text is not at hand.
   */
  shadowed: ShadowedGrant[];
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
  /** The line of the applied policy (in `file`, when the applied text is at hand). */
  line: number;
  /** The file of that line: the policy file or a drop-in. */
  file?: string;
  /** `name`: a user or group changed since apply; `subordinate`: an id in someone's subuid/subgid range. */
  kind: 'name' | 'subordinate';
  message: string;
  /**
   * The warning at the rule's user or group name in the applied text, for the
   * caret display; absent when that text is not at hand (applied by an older
   * lowport) or the line is not a statement of it (a `lowport run` scope).
   */
  diagnostic?: Diagnostic;
}

export function list(options: LowportOptions = {}, { prune = true }: { prune?: boolean } = {}): ListResult {
  const path = policyPath(options);
  // The BPF feature probes (kernelTarget: a few program loads, ~25 ms) only
  // where they can matter. With no `lowport run` scope on record there is
  // nothing to prune or refresh, and what is live was loaded on this kernel:
  // they would find what it needed. Else, as before: probes, prune, read.
  const base = liveTarget(options);
  const quiet = readScopes(base).length === 0 ? readLiveExplained(options, base) : undefined;
  const target = quiet !== undefined ? base : kernelTarget(options);
  // What a killed `lowport run` left behind goes now, from the kernel too.
  const scopes = quiet !== undefined ? [] : prune ? pruneAndRefresh(options, target) : readScopes(target);
  const live = quiet ?? readLivePolicy(target.pinDir);
  const table = live?.table ?? new EntryTable();
  const compared = compareWithFile(path, live);
  const applied = live === undefined ? undefined : appliedDocument(target, path);
  // The applied document numbers the lines of all its files in a row: each rule gets its file and its line there.
  const placed = live !== undefined && applied !== undefined && appliedIsLive(target, live) ? applied : undefined;
  const changes = applied === undefined ? [] : boundNameChanges(options, target, applied);
  const file = compared.file === 'in-sync' && changes.some((c) => c.changed) ? 'names-changed' : compared.file;
  const warnings = [...changes.map(({ line, message }): ListWarning => ({ line, kind: 'name', message })), ...subordinateWarnings(table)]
    .sort((a, b) => a.line - b.line)
    .map((w) => located(w, applied, placed));
  const rules = describeTable(table, namesWithScopes(scopes), placed);
  return {
    policy: path,
    pinDir: target.pinDir,
    cgroup: target.cgroup,
    live: live !== undefined,
    rules,
    shadowed: placed === undefined ? [] : placeShadowed(shadowedGrants(table, placed), placed),
    entries: table.count,
    file,
    ...(compared.fileProblem === undefined ? {} : { fileProblem: compared.fileProblem }),
    warnings,
    programs: attachedPrograms(target),
  };
}

/** Shadowed grants with their files, and their reservations' (placeRules). */
function placeShadowed(shadowed: ShadowedGrant[], doc: PolicyDocument): ShadowedGrant[] {
  placeRules(shadowed, doc);
  for (const s of shadowed) {
    const at = originOf(doc, s.shadowedBy);
    s.shadowedBy = at.line;
    s.shadowedByFile = at.file;
  }
  return shadowed;
}

/** The policy texts the live rules were made from, parsed; undefined when not recorded (applied by an older lowport). */
export function appliedDocument(target: Target, path: string): PolicyDocument | undefined {
  const text = appliedText(target);
  if (text === undefined) return undefined;
  try {
    return parsePolicyFiles(splitPolicyTexts(text), path);
  } catch {
    return undefined;
  }
}

/** Whether the applied text on record is the one the live map was made from. */
export function appliedIsLive(target: Target, live: LivePolicy): boolean {
  const text = appliedText(target);
  return text !== undefined && live.fingerprint !== undefined && policyFingerprint(text).equals(live.fingerprint);
}

/**
 * The grants of the applied text that reservations shadow in the live map
 * (ShadowedGrant): a key of the grant's (owner, port, any address) that the
 * map credits to a reservation, or a grant to everyone on a reserved port.
 * Only grants that share a port with a reserved marker are resolved (NSS, as
 * now) and looked up.
 */
function shadowedGrants(table: EntryTable, applied: PolicyDocument): ShadowedGrant[] {
  // (protocol, port) of each reserved marker -> the reservation it credits.
  const reserved = new Map<number, number>();
  for (let i = 0; i < table.count; i++) {
    if (table.kind(i) !== Kind.PORT || (table.flags(i) & RESERVED) === 0) continue;
    const k = table.key(i);
    reserved.set(k.protocol * 65536 + k.port, table.rule(i));
  }
  if (reserved.size === 0) return [];
  const reservedBy = (protocol: number, port: number): number | undefined => reserved.get(protocol * 65536 + port);
  const grants = applied.rules.filter(
    (r) =>
      r.action === 'grant' &&
      r.ports.some((item) =>
        item.protocols.some((p) => {
          for (let port = item.from; port <= item.to; port++) if (reservedBy(IPPROTO[p], port) !== undefined) return true;
          return false;
        }),
      ),
  );
  if (grants.length === 0) return [];
  // Per (grant line, reservation line): the shadowed keys, as a table describeTable reads like the live one.
  const parts = new Map<string, { line: number; by: number; keys: EntryTable }>();
  for (const { rule, subjects } of resolvePolicy({ ...applied, rules: grants }).rules) {
    for (const item of rule.ports) {
      for (const p of item.protocols) {
        const protocol = IPPROTO[p];
        for (let port = item.from; port <= item.to; port++) {
          const by = reservedBy(protocol, port);
          if (by === undefined) continue;
          for (const s of subjects) {
            const everyone = s.kind === Kind.EVERYONE;
            // A grant on addresses keeps keys of its own: only everyone's are shadowed there.
            if (!everyone && rule.addrs.length > 0) continue;
            let shadowedBy = by;
            if (!everyone) {
              const i = table.find(encodeKey({ kind: s.kind, protocol, port, family: 0, id: s.id, addr: ANY }).toString('latin1'));
              if (i === undefined || table.rule(i) === rule.line || (table.flags(i) & RESERVED) === 0) continue;
              shadowedBy = table.rule(i);
            }
            const id = `${rule.line}:${shadowedBy}`;
            let part = parts.get(id);
            if (part === undefined) parts.set(id, (part = { line: rule.line, by: shadowedBy, keys: new EntryTable() }));
            for (const a of everyone && rule.addrs.length > 0 ? rule.addrs.map(addressKey) : [{ family: 0, bytes: ANY }])
              part.keys.put(s.kind, protocol, port, a.family, s.id, a.bytes, rule.line, 0);
          }
        }
      }
    }
  }
  return [...parts.values()]
    .sort((a, b) => a.line - b.line || a.by - b.by)
    .flatMap((part) => describeTable(part.keys).map((r): ShadowedGrant => ({ ...r, shadowedBy: part.by })));
}

const ANY = Buffer.alloc(16);

/** A warning about a statement of the applied text, with a diagnostic at its user or group name, and its file and line there. */
function located(w: ListWarning, applied: PolicyDocument | undefined, placed: PolicyDocument | undefined): ListWarning {
  const rule = applied?.rules.find((r) => r.line === w.line);
  const at = placed === undefined || w.line <= 0 ? undefined : originOf(placed, w.line);
  const where = at === undefined ? {} : { line: at.line, file: at.file };
  if (applied === undefined || rule === undefined) return { ...w, ...where };
  return { ...w, ...where, diagnostic: diagnostic('warning', principalSpan(applied, rule), w.message) };
}

/**
 * The live policy's names against what they resolve to now, from the
 * bindings recorded when it was applied; none when no bindings were recorded
 * (applied by an older lowport: `lowport apply` records them).
 */
function boundNameChanges(
  options: LowportOptions,
  target: Target,
  applied: PolicyDocument,
): { line: number; message: string; changed: boolean }[] {
  const bindings = appliedBindings(target);
  if (bindings === undefined) return [];
  return nameChanges(applied.rules, bindings).map((c) => ({
    line: c.line,
    changed: c.changed,
    message: c.gone
      ? `${c.message}; or remove the line: ${removeCommand(options, c.rule, originOf(applied, c.rule.line).file)}`
      : c.message,
  }));
}

/** Live uids and gids in someone's subordinate range, per policy line (finding: those ids are that user's containers'). */
function subordinateWarnings(t: EntryTable): ListWarning[] {
  // The ranges first: without any (the common case) no entry needs a look.
  const subuid = readSubordinateIds('/etc/subuid');
  const subgid = readSubordinateIds('/etc/subgid');
  if (subuid.length === 0 && subgid.length === 0) return [];
  const byLine = new Map<number, Subject[]>();
  for (let i = 0; i < t.count; i++) {
    const k = i * KEY_SIZE;
    const kind = t.keys[k] ?? 0;
    if (kind !== Kind.UID && kind !== Kind.GID) continue;
    // Only ids in some range make a note (subordinateNotes): the others need no Subject.
    const id = t.keys.readBigUInt64LE(k + 8);
    if (!inSomeRange(kind === Kind.UID ? subuid : subgid, Number(id))) continue;
    const line = t.rule(i);
    let subjects = byLine.get(line);
    if (subjects === undefined) byLine.set(line, (subjects = []));
    subjects.push({ kind, id });
  }
  return [...byLine].flatMap(([line, subjects]) =>
    subordinateNotes(subjects, subuid, subgid).map((message): ListWarning => ({ line, kind: 'subordinate', message })),
  );
}

/** Whether an id lies in one of these subordinate ranges, as subordinateNotes tests it. */
function inSomeRange(ranges: readonly SubordinateRange[], id: number): boolean {
  return ranges.some((r) => id >= r.start && id < r.start + r.count);
}

/**
 * The live policy without the probes first; when reading it fails, the
 * probes say why if they can (root without CAP_BPF: E_UNSUPPORTED and its
 * hint, as list said before it skipped them), else the failure itself.
 */
function readLiveExplained(options: LowportOptions, target: Target): LivePolicy | undefined {
  try {
    return readLivePolicy(target.pinDir);
  } catch (e) {
    kernelTarget(options);
    throw e;
  }
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
    // The file and its drop-ins: the fingerprint covers them all, so a changed drop-in is a changed policy.
    const text = readPolicyTexts(path) ?? readPolicyText(path);
    if (live?.fingerprint !== undefined && policyFingerprint(text).equals(live.fingerprint)) return { file: 'in-sync' };
    compileDocument(parsePolicyFiles(splitPolicyTexts(text), path));
    return { file: 'differs' };
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { file: err.code === 'E_POLICY_MISSING' ? 'missing' : 'invalid', fileProblem: err.message ?? String(e) };
  }
}
