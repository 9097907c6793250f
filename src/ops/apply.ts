/**
 * The policy file to the kernel: read (only if root controls it), parse,
 * resolve names, compile, and swap in one step. Every failure before the swap
 * leaves the live policy exactly as it was.
 */
import type { Diagnostic } from '../diagnostic.js';
import { LowportError } from '../errors.js';
import { SyscallError } from '../os/libc.js';
import type { EditResult } from '../policy/edit.js';
import { policyWarnings } from '../policy/clash.js';
import { lineRef, originOf } from '../policy/origin.js';
import { loggingOf, parsePolicy } from '../policy/parse.js';
import type { PolicyDocument } from '../policy/types.js';
import {
  editPolicyFile,
  readPolicy,
  readPolicyText,
  readPolicyTexts,
  readPolicyWithCandidate,
  withPolicyLock,
  type EditOptions,
} from '../policy-file/policy-file.js';
import { parsePolicyFiles, splitPolicyTexts } from '../policy/sources.js';
import { restorePersisted } from '../forward/redirect.js';
import { compileDocument, policyFingerprint, type CompiledPolicy } from '../grants/document.js';
import { describeTable, placeRules, type LiveRule } from '../grants/describe.js';
import { liveLogging, readLivePolicy, removeAll, swapPolicy, type LivePolicy, type Logging, type Target } from '../grants/live.js';
import { VALUE_SIZE, type EntryTable } from '../grants/map-format.js';
import { syncReservedPorts } from '../grants/reserved-ports.js';
import { appliedText, pruneScopes, saveAppliedText, scopeRules } from '../grants/scopes.js';
import { compileTable } from '../grants/compile.js';
import { kernelTarget, liveTarget, policyPath, requireRingbuf, type LowportOptions } from '../grants/target.js';
import { unresolvedReport, withUnknownNames, type UnresolvedReport } from './unresolved.js';

export type { CompiledPolicy } from '../grants/document.js';
export type { UnresolvedReport } from './unresolved.js';

export interface ApplyResult {
  policy: string;
  /** `apply --check --candidate`: the file checked as a drop-in. */
  candidate?: string;
  rules: number;
  entries: number;
  /** True when this call attached lowport's program (it was not live before). */
  installed: boolean;
  /** True when only validated (`apply --check`). */
  checkOnly: boolean;
  /** `forward` statements of the file made live as nftables redirects (apply only). */
  forwards?: number;
  /**
   * Rules whose user or group does not resolve. Everything else is live; a
   * grant here is not, and a reservation here refuses everyone but root. The
   * CLI exits non-zero when there are any.
   */
  unresolved: UnresolvedReport[];
  /** What changed besides the grants, or could not (net.ipv4.ip_local_reserved_ports, reserved-ports.ts). */
  notes?: string[];
  /** Statements that clash with or repeat another (policy/clash.ts); they are live as written. Absent when none. */
  warnings?: Diagnostic[];
}

/**
 * Makes the file's rules, together with the scoped grants of running
 * `lowport run`s, the live policy; returns the entries made live. Then its
 * reserved ports inside the kernel's range for port 0 go into
 * net.ipv4.ip_local_reserved_ports (reserved-ports.ts), whose notes it returns.
 */
export function makeLive(
  target: Target,
  compiled: CompiledPolicy,
  fingerprint: Buffer,
  undoSwap?: () => void,
): { installed: boolean; entries: number; notes: string[] } {
  const logging = loggingOf(compiled.doc);
  // Before anything changes: a kernel without the ring buffer refuses `log` here.
  if (logging.grants || logging.refusals) requireRingbuf((compiled.doc.logs ?? []).map((l) => lineRef(compiled.doc, l.line)));
  const { scopes } = pruneScopes(target);
  // Without scoped grants the file's table is the whole policy: no need to compile it again.
  const table = scopes.length === 0 ? compiled.table : compileTable([...compiled.rules, ...scopeRules(scopes)]);
  const swapped = swapInto(target, table, fingerprint, logging);
  let notes: string[];
  try {
    notes = syncReservedPorts(target.pinDir, compiled.doc);
  } catch (e) {
    // After the swap: an edit puts back what was live, so that a failed step changes nothing.
    undoSwap?.();
    throw e;
  }
  return { ...swapped, entries: table.count, notes };
}

/** Swaps entries into the kernel, turning a refusal by the kernel into a message about the machine. */
function swapInto(target: Target, table: EntryTable, fingerprint: Buffer | undefined, logging?: Logging): { installed: boolean } {
  try {
    return swapPolicy(target, table, fingerprint, logging);
  } catch (e) {
    if (
      e instanceof SyscallError &&
      (e.errnoName === 'EPERM' || e.errnoName === 'EINVAL') &&
      /MAP_CREATE|PROG_LOAD|LINK_CREATE/.test(e.call)
    ) {
      throw new LowportError(
        'E_UNSUPPORTED',
        `the kernel refused to ${e.call.includes('LINK') ? 'attach' : 'load'} the bind hook: ${e.message}`,
        {
          hint:
            'BPF may be locked down here (kernel lockdown, a container without CAP_BPF/CAP_SYS_ADMIN, or a seccomp filter). ' +
            'Run `lowport doctor` for a fallback that works on this machine.',
          cause: e,
        },
      );
    }
    throw e;
  }
}

/** The kernel target, or (as root, on a machine without the BPF path) why there is none. */
export function targetIfSupported(
  options: LowportOptions,
  { probe = true }: { probe?: boolean } = {},
): { target: Target; unsupported?: undefined } | { target?: undefined; unsupported: LowportError } {
  try {
    return { target: probe ? kernelTarget(options) : liveTarget(options) };
  } catch (e) {
    if (e instanceof LowportError && e.code === 'E_UNSUPPORTED') return { unsupported: e };
    throw e;
  }
}

/**
 * `lowport apply`: load the file and its drop-ins into the kernel (or, with
 * check, only validate them; with a candidate, as they would be with that
 * file as drop-in `candidate.dropin`, e.g. `web.policy`).
 */
export function apply(
  options: LowportOptions = {},
  { check = false, candidate }: { check?: boolean; candidate?: { path: string; dropin: string } } = {},
): ApplyResult {
  const path = policyPath(options);
  if (check) {
    const { doc } = withUnknownNames(() =>
      candidate === undefined ? readPolicy(path, false) : readPolicyWithCandidate(path, candidate.dropin, candidate.path),
    );
    const compiled = compileDocument(doc);
    return {
      policy: path,
      ...(candidate === undefined ? {} : { candidate: candidate.path }),
      rules: compiled.rules.length,
      entries: compiled.table.count,
      installed: false,
      checkOnly: true,
      unresolved: unresolvedReport(options, compiled.unresolved),
      ...warningsOf(doc),
    };
  }
  const found = targetIfSupported(options);
  // A missing file is said as such, before the lock (which lives beside it).
  readPolicyText(path);
  // Under the lock, so that an edit finishing meanwhile is not undone.
  return withPolicyLock(path, { create: false }, () => {
    const { text, doc } = withUnknownNames(() => readPolicy(path, false));
    // Syntax errors throw here and change nothing; unknown names only cost their own lines.
    const compiled = compileDocument(doc);
    const unresolved = unresolvedReport(options, compiled.unresolved);
    if (found.target === undefined) {
      // No BPF grant on this machine: the persisted redirects (the fallback
      // for exactly such machines) are still restored; grants are an error.
      const forwards = applyForwards(path, doc);
      if (compiled.rules.length > 0) throw found.unsupported;
      return { policy: path, rules: 0, entries: 0, installed: false, checkOnly: false, forwards, unresolved, ...warningsOf(doc) };
    }
    const target = found.target;
    const { installed, entries, notes } = makeLive(target, compiled, policyFingerprint(text));
    saveAppliedText(target, text, compiled.bindings);
    const forwards = applyForwards(path, doc);
    return {
      policy: path,
      rules: compiled.rules.length,
      entries,
      installed,
      checkOnly: false,
      forwards,
      unresolved,
      ...(notes.length > 0 ? { notes } : {}),
      ...warningsOf(doc),
    };
  });
}

function warningsOf(doc: PolicyDocument): { warnings?: Diagnostic[] } {
  const warnings = policyWarnings(doc);
  return warnings.length > 0 ? { warnings } : {};
}

/**
 * apply's second step, separate from the grants: the file's `forward`
 * statements become lowport's persisted nftables redirects, replacing the
 * ones an earlier apply made (src/forward/redirect.ts). It runs after the
 * swap, so a failure here (no nft, a conflicting redirect) reports an error
 * with the grants already applied.
 */
function applyForwards(path: string, doc: PolicyDocument): number {
  return restorePersisted(path, doc.forwards ?? []);
}

export interface EditOutcome extends ApplyResult {
  /** The drop-in edited (`--file`); absent when the edit was the policy file's. */
  file?: string;
  changed: boolean;
  notes: string[];
  /**
   * When nothing of the file was live (after `lowport off`): the file's other
   * rules, which this edit made live again with its own, as `list` shows
   * them. Empty when lowport was on.
   */
  revived: LiveRule[];
}

/**
 * A grant, revoke or reservation: the policy file's one edit transaction
 * (policy-file.ts) with the grants as its make-live step. The old live
 * policy, or nothing, is swapped back if the file cannot be written.
 */
export function editPolicy(
  options: LowportOptions,
  edit: (doc: PolicyDocument) => EditResult,
  explain?: (compiled: CompiledPolicy) => string[],
  files: EditOptions = {},
): EditOutcome {
  const target = kernelTarget(options);
  // A file with syntax errors stops the edit (in the transaction too): say all its problems, its unknown names with them.
  withUnknownNames(() => readPolicy(policyPath(options), true));
  const done = editPolicyFile(
    policyPath(options),
    edit,
    (after, before) => {
      const compiled = compileDocument(after.doc);
      const previous = readLivePolicy(target.pinDir);
      const previousLogging = liveLogging(target.pinDir);
      const untouched = untouchedLines(before.doc, after.doc);
      const revived = fileWasLive(previous) ? new Set<number>() : untouched;
      // Back to what was live: the old policy, or nothing.
      const undo = (): void => {
        if (previous !== undefined) swapInto(target, previous.table, previous.fingerprint, previousLogging);
        else removeAll(target);
      };
      const live = makeLive(target, compiled, policyFingerprint(after.text), undo);
      return {
        result: { compiled, revived, untouched, ...live },
        undo,
        commit: () => saveAppliedText(target, after.text, compiled.bindings),
      };
    },
    files,
  );
  const { compiled, revived, untouched, installed, entries, notes: liveNotes } = done.live;
  // The clash warnings apply prints, for the statements this edit wrote (or those that clash with them), in any file.
  const all = done.all.doc;
  const written = new Set(
    all.rules
      .filter((r) => !untouched.has(r.line))
      .map((r) => {
        const at = originOf(all, r.line);
        return `${at.line}:${at.file}`;
      }),
  );
  const touches = (at: { file: string; line: number }): boolean => at.file === done.path && written.has(`${at.line}:${at.file}`);
  const warnings = policyWarnings(all).filter((w) => touches(w) || (w.related ?? []).some(touches));
  return {
    policy: policyPath(options),
    ...(done.path === policyPath(options) ? {} : { file: done.path }),
    rules: compiled.rules.length,
    entries,
    installed,
    checkOnly: false,
    changed: done.changed,
    notes: [...done.notes, ...(explain?.(compiled) ?? []), ...liveNotes],
    // Dead lines elsewhere in the file do not stop an edit; the CLI warns about each.
    unresolved: unresolvedReport(options, compiled.unresolved),
    revived:
      revived.size === 0
        ? []
        : placeRules(
            describeTable(compiled.table).filter((r) => revived.has(r.line)),
            compiled.doc,
          ),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}

/** Whether the live policy was made from a file: not when nothing is live, nor when only runs' grants are (a zero fingerprint). */
function fileWasLive(live: LivePolicy | undefined): boolean {
  return live !== undefined && (live.fingerprint === undefined || !live.fingerprint.equals(Buffer.alloc(VALUE_SIZE)));
}

/** Lines of the edited document whose statement the edit left as it was. */
function untouchedLines(before: PolicyDocument, after: PolicyDocument): Set<number> {
  const kept = new Set(before.rules.map((r) => before.lines[r.line - 1]));
  return new Set(after.rules.filter((r) => kept.has(after.lines[r.line - 1])).map((r) => r.line));
}

/**
 * Swaps in the live policy's own text (kept when it was applied, not the file
 * as it may be by now) with the current scopes, under the policy lock. When
 * lowport is off: only the scopes, or (onlyIfLive) nothing — a run must not
 * turn the whole policy back on after `off`.
 */
export function refreshLive(options: LowportOptions, target: Target, { onlyIfLive }: { onlyIfLive: boolean }): void {
  const path = policyPath(options);
  withPolicyLock(path, { create: true }, () => {
    const live = readLivePolicy(target.pinDir);
    if (live === undefined) {
      // Off: only the scopes in force (never those `off` ended), and nothing when there are none.
      if (!onlyIfLive && pruneScopes(target).scopes.length > 0)
        makeLive(target, compileDocument(parsePolicy('', path)), Buffer.alloc(VALUE_SIZE));
      return;
    }
    // A zero fingerprint: what is live was made by runs alone while lowport was off.
    const runsOnly = live.fingerprint === undefined || live.fingerprint.equals(Buffer.alloc(VALUE_SIZE));
    if (runsOnly && pruneScopes(target).scopes.length === 0) {
      removeAll(target);
      return;
    }
    const text = runsOnly ? '' : (savedTextIfLive(target, live.fingerprint) ?? currentTextIfLive(path, live.fingerprint));
    if (text === undefined) {
      throw new LowportError('E_STATE', 'the text of the live policy is not known here, and the file has changed since', {
        hint: 'Run `lowport apply` to load the file, then try again.',
      });
    }
    const compiled = compileDocument(parsePolicyFiles(splitPolicyTexts(text), path));
    makeLive(target, compiled, runsOnly ? Buffer.alloc(VALUE_SIZE) : policyFingerprint(text));
    // The names were resolved again: record what the kernel now holds, so list flags only what moved since.
    if (!runsOnly) saveAppliedText(target, text, compiled.bindings);
  });
}

/** The text saved at apply, when it is what is live (a record another process left may be older, or not this instance's). */
function savedTextIfLive(target: Target, fingerprint: Buffer | undefined): string | undefined {
  const text = appliedText(target);
  return text !== undefined && fingerprint !== undefined && policyFingerprint(text).equals(fingerprint) ? text : undefined;
}

function currentTextIfLive(path: string, fingerprint: Buffer | undefined): string | undefined {
  const text = readPolicyTexts(path);
  return text !== undefined && fingerprint !== undefined && policyFingerprint(text).equals(fingerprint) ? text : undefined;
}
