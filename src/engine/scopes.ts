/**
 * Scoped grants: ports granted to one cgroup for as long as a command runs in
 * it (`lowport run`), not written to the policy file.
 *
 * Each scope is a JSON file under /run/lowport (tmpfs: gone at reboot, like
 * the kernel state it describes), one directory per lowport instance. Every
 * swap compiles the policy file's rules together with the scopes, so an admin
 * editing the policy while a run is active does not end the run's grant. A
 * scope whose run is gone (its lowport process was killed) and whose cgroup has
 * emptied is removed, with its cgroup, by the next command that swaps.
 */
import { join } from 'node:path';
import { cgroupId, cgroupPopulated, removeCgroup } from '../kernel/cgroup.js';
import { listJsonFiles, readJsonFile, removeEmptyDir, removeFile, writeJsonFile } from '../kernel/files.js';
import { pathExists, processStartTime } from '../kernel/process.js';
import type { PortItem } from '../policy/types.js';
import type { Target } from './live.js';
import { Kind } from './map-format.js';
import type { NameBindings, ResolvedRule } from './resolve.js';

export interface Scope {
  /** The cgroup the command runs in (a child of the attach cgroup). */
  cgroup: string;
  /** Its id, as the program sees it (decimal). */
  cgroupId: string;
  ports: PortItem[];
  /** Empty: any address. */
  addrs: string[];
  /** The `lowport run` process that owns the scope: its pid and start time (a reused pid has another). */
  owner: number;
  ownerStart: number;
  user: string;
  command: string[];
}

const RUN_DIR = '/run/lowport';

/** Where this instance keeps its scopes: one directory per pin directory, so test instances stay apart. */
export function scopeDir(target: Target): string {
  return join(RUN_DIR, `scopes${target.pinDir.replace(/[^A-Za-z0-9_-]/g, '_')}`);
}

/**
 * The text of the policy that is live, kept when it is applied: a scope that
 * starts or ends swaps in that text again with the scopes, not whatever the
 * file says by then (an edit not yet applied must not go live on its own).
 */
function appliedFile(target: Target): string {
  return join(RUN_DIR, `applied${target.pinDir.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
}

/** With the name -> id bindings the text was made live with (resolve.ts, NameBindings). */
export function saveAppliedText(target: Target, text: string, bindings?: NameBindings): void {
  writeJsonFile(appliedFile(target), bindings === undefined ? { text } : { text, bindings });
}

/** The bindings saved with the applied text; undefined when none were (an older lowport applied it). */
export function appliedBindings(target: Target): NameBindings | undefined {
  const saved = readJsonFile(appliedFile(target)) as { bindings?: NameBindings } | undefined | null;
  const b = typeof saved === 'object' && saved !== null ? saved.bindings : undefined;
  return typeof b === 'object' && b !== null && typeof b.users === 'object' && typeof b.groups === 'object' ? b : undefined;
}

export function appliedText(target: Target): string | undefined {
  const saved = readJsonFile(appliedFile(target));
  return typeof saved === 'object' && saved !== null && typeof (saved as { text?: unknown }).text === 'string' ? (saved as { text: string }).text : undefined;
}

export function forgetAppliedText(target: Target): void {
  removeFile(appliedFile(target));
  removeEmptyDir(RUN_DIR);
}

function scopeFile(target: Target, scope: Pick<Scope, 'cgroupId'>): string {
  return join(scopeDir(target), `${scope.cgroupId}.json`);
}

export function readScopes(target: Target): Scope[] {
  return listJsonFiles(scopeDir(target)) as Scope[];
}

export function saveScope(target: Target, scope: Scope): void {
  writeJsonFile(scopeFile(target, scope), scope);
}

export function forgetScope(target: Target, scope: Scope): void {
  removeFile(scopeFile(target, scope));
  removeEmptyDir(scopeDir(target));
  removeEmptyDir(RUN_DIR);
}

/**
 * Scopes still in force: their owner runs, or their command still does. The
 * others are forgotten and their cgroups removed; returns whether any were.
 */
export function pruneScopes(target: Target): { scopes: Scope[]; pruned: boolean } {
  const scopes: Scope[] = [];
  let pruned = false;
  for (const s of readScopes(target)) {
    const exists = pathExists(s.cgroup) && cgroupId(s.cgroup).toString() === s.cgroupId;
    const ownerRuns = processStartTime(s.owner) === s.ownerStart;
    if (exists && (ownerRuns || cgroupPopulated(s.cgroup))) {
      scopes.push(s);
      continue;
    }
    if (exists) removeCgroup(s.cgroup);
    forgetScope(target, s);
    pruned = true;
  }
  return { scopes, pruned };
}

/** Scopes as rules for the compiler: a grant to a cgroup id, credited to line 0 (no line of the file). */
export function scopeRules(scopes: Scope[]): ResolvedRule[] {
  return scopes.map((s) => ({
    rule: { action: 'grant', ports: s.ports, principal: { kind: 'everyone' }, addrs: s.addrs, line: 0 },
    subjects: [{ kind: Kind.CGROUP, id: BigInt(s.cgroupId) }],
    label: `lowport run ${s.command.join(' ')} (cgroup ${s.cgroup})`,
  }));
}
