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
 *
 * An instance's directory is named by a hash of its pin directory (a name
 * made of the path lost the difference between /x/a_b and /x/a/b), and each
 * record holds the pin directory too, which a read compares. /run/lowport and
 * everything in it is root's alone, and is read and written through directory
 * fds without following a symlink (policy-file/state.ts, os/dirfd.ts).
 */
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { cgroupId, cgroupPopulated, removeCgroup } from '../os/cgroup.js';
import type { DirFd } from '../os/dirfd.js';
import { pathExists, processStartTime } from '../os/process.js';
import type { PortItem } from '../policy/types.js';
import { removeEmptyStateDirs, STATE_DIR, withStateDir } from '../policy-file/state.js';
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
  /** Set by `lowport off`: the run goes on, without its grant, and no later swap brings the grant back. */
  ended?: true;
}

const SCOPES = 'scopes';
const APPLIED = 'applied.json';

/** The instance's name under /run/lowport: a hash of its canonical pin directory. */
function instanceName(target: Target): string {
  return `instance-${createHash('sha256').update(canonicalPinDir(target)).digest('hex')}`;
}

/** The pin directory as lowport uses it (bpf/bpffs.ts refuses a path through a symlink, so this is its real path). */
function canonicalPinDir(target: Target): string {
  return resolve(target.pinDir);
}

/** Where this instance keeps its state. */
function instanceDir(target: Target): string {
  return join(STATE_DIR, instanceName(target));
}

/** Where this instance keeps its scopes. */
export function scopeDir(target: Target): string {
  return join(instanceDir(target), SCOPES);
}

/** Runs `fn` in the instance's directory (or its scopes/), created when `create`; undefined when it is not there. */
function inStateDir<T>(target: Target, sub: 'instance' | 'scopes', create: boolean, fn: (dir: DirFd) => T): T | undefined {
  return withStateDir(sub === 'instance' ? [instanceName(target)] : [instanceName(target), SCOPES], { create }, fn);
}

/** Removes the instance's directories and /run/lowport when they are empty. */
function removeEmptyInstanceDirs(target: Target): void {
  removeEmptyStateDirs([instanceName(target), SCOPES]);
}

function parseRecord(value: unknown, target: Target): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  // Another instance's record (or one from before the pin directory was stored) is not this one's.
  return record.pinDir === canonicalPinDir(target) ? record : undefined;
}

/**
 * What was applied to this instance, kept when it is applied: a scope that
 * starts or ends swaps in that text again with the scopes, not whatever the
 * file says by then (an edit not yet applied must not go live on its own).
 * A record, so that more facts of the apply can join the text.
 */
export interface AppliedState {
  /** The canonical pin directory: a record is used only by its own instance. */
  pinDir: string;
  /** The policy text that was made live. Use it only when its fingerprint is the live one. */
  text: string;
  [more: string]: unknown;
}

/** With the name -> id bindings the text was made live with (resolve.ts, NameBindings). */
export function saveAppliedText(target: Target, text: string, bindings?: NameBindings): void {
  const state: AppliedState = { ...(bindings === undefined ? {} : { bindings }), pinDir: canonicalPinDir(target), text };
  inStateDir(target, 'instance', true, (dir) => {
    // Every writer of applied.json holds the policy lock, as this one does: a temp file of it here is a killed writer's.
    dir.removeTemps(APPLIED);
    dir.writeJson(APPLIED, state);
  });
}

function appliedState(target: Target): AppliedState | undefined {
  const record = parseRecord(
    inStateDir(target, 'instance', false, (dir) => dir.readJson(APPLIED)),
    target,
  );
  return record !== undefined && typeof record.text === 'string' ? (record as AppliedState) : undefined;
}

/** The bindings saved with the applied text; undefined when none were (an older lowport applied it). */
export function appliedBindings(target: Target): NameBindings | undefined {
  const b = appliedState(target)?.bindings as NameBindings | undefined | null;
  return typeof b === 'object' && b !== null && typeof b.users === 'object' && typeof b.groups === 'object' ? b : undefined;
}

export function appliedText(target: Target): string | undefined {
  return appliedState(target)?.text;
}

export function forgetAppliedText(target: Target): void {
  inStateDir(target, 'instance', false, (dir) => {
    dir.unlink(APPLIED);
    // Under the policy lock (off holds it): a killed apply's temp file would keep the directory for good.
    dir.removeTemps(APPLIED);
  });
  removeEmptyInstanceDirs(target);
}

function scopeFile(scope: Pick<Scope, 'cgroupId'>): string {
  // Our own record's id, but a file name all the same: digits only.
  if (!/^\d+$/.test(scope.cgroupId)) throw new Error(`not a cgroup id: ${scope.cgroupId}`);
  return `${scope.cgroupId}.json`;
}

export function readScopes(target: Target): Scope[] {
  return (
    inStateDir(target, 'scopes', false, (dir) =>
      dir
        .listJson((name) => /^\d+\.json$/.test(name))
        .flatMap(({ value }) => {
          const record = parseRecord(value, target);
          return record === undefined || typeof record.cgroupId !== 'string' ? [] : [record as unknown as Scope];
        }),
    ) ?? []
  );
}

export function saveScope(target: Target, scope: Scope): void {
  inStateDir(target, 'scopes', true, (dir) => dir.writeJson(scopeFile(scope), { ...scope, pinDir: canonicalPinDir(target) }));
}

export function forgetScope(target: Target, scope: Scope): void {
  inStateDir(target, 'scopes', false, (dir) => dir.unlink(scopeFile(scope)));
  removeEmptyInstanceDirs(target);
}

/**
 * Scopes still in force: their owner runs, or their command still does, and
 * `off` has not ended them. Those whose run is over are forgotten and their
 * cgroups removed; returns whether any were. An ended scope's record stays
 * until then, so that its cgroup is cleaned up like any other.
 */
export function pruneScopes(target: Target): { scopes: Scope[]; pruned: boolean } {
  const scopes: Scope[] = [];
  let pruned = false;
  for (const s of readScopes(target)) {
    const exists = pathExists(s.cgroup) && cgroupId(s.cgroup).toString() === s.cgroupId;
    const ownerRuns = processStartTime(s.owner) === s.ownerStart;
    if (exists && (ownerRuns || cgroupPopulated(s.cgroup))) {
      if (s.ended !== true) scopes.push(s);
      continue;
    }
    if (exists) removeCgroup(s.cgroup);
    forgetScope(target, s);
    pruned = true;
  }
  return { scopes, pruned };
}

/**
 * For `lowport off`: every scope in force is marked ended, so that no later
 * swap (another run starting, an apply) brings its grant back. Returns them.
 */
export function endScopes(target: Target): Scope[] {
  const { scopes } = pruneScopes(target);
  for (const s of scopes) saveScope(target, { ...s, ended: true });
  return scopes;
}

/** Scopes as rules for the compiler: a grant to a cgroup id, credited to line 0 (no line of the file). */
export function scopeRules(scopes: Scope[]): ResolvedRule[] {
  return scopes.map((s) => ({
    rule: { action: 'grant', ports: s.ports, principal: { kind: 'everyone' }, addrs: s.addrs, line: 0 },
    subjects: [{ kind: Kind.CGROUP, id: BigInt(s.cgroupId) }],
    label: `lowport run ${s.command.join(' ')} (cgroup ${s.cgroup})`,
  }));
}
