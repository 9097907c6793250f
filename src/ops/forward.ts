/**
 * `lowport forward add|remove --persist`: `forward` statements of the policy
 * file, edited through the file's one edit transaction (policy-file.ts) with
 * the persisted nftables redirects as its make-live step. The kernel changes
 * first: if nft refuses, the file stays as it was.
 */
import { addForward, removeForward, type EditResult } from '../policy/edit.js';
import type { PolicyDocument, Protocol } from '../policy/types.js';
import { editPolicyFile, type PolicyText } from '../policy-file/policy-file.js';
import type { RedirectSpec } from '../forward/nft.js';
import { requireNftRoot, restorePersisted } from '../forward/redirect.js';
import { policyFingerprint } from '../grants/document.js';
import { readLivePolicy, swapPolicy } from '../grants/live.js';
import { EntryTable, KEY_SIZE, VALUE_SIZE } from '../grants/map-format.js';
import { appliedBindings, saveAppliedText } from '../grants/scopes.js';
import { policyPath, type LowportOptions } from '../grants/target.js';
import { targetIfSupported } from './apply.js';

export interface PersistResult {
  policy: string;
  changed: boolean;
  notes: string[];
  /** Persisted redirects live now. */
  live: number;
}

function editForwards(options: LowportOptions, edit: (doc: PolicyDocument) => EditResult): PersistResult {
  requireNftRoot();
  const path = policyPath(options);
  const done = editPolicyFile(path, edit, (after, before) => {
    const live = restorePersisted(path, after.doc.forwards ?? []);
    const undoForwards = (): void => void restorePersisted(path, before.doc.forwards ?? []);
    let grants: { undo: () => void; commit: () => void } | undefined;
    try {
      grants = grantsFollowText(options, before, after);
    } catch (e) {
      undoForwards();
      throw e;
    }
    return {
      result: live,
      undo: () => {
        grants?.undo();
        undoForwards();
      },
      ...(grants === undefined ? {} : { commit: grants.commit }),
    };
  });
  return { policy: done.path, changed: done.changed, notes: done.notes, live: done.live };
}

/**
 * A forward statement changes no grant, but the live map carries the
 * fingerprint of the text it was made from, and the lines of its rules: left
 * as they were, `list` would call the file different from the live rules
 * after every forward edit (and credit lines that moved). So when the grants
 * live are the file's before the edit, the same entries go in again with the
 * new text's fingerprint and lines. Nothing is resolved again and hits carry
 * over; grants that are not the file's (off, or an edit not yet applied) are
 * left alone, and so is a machine without the BPF path.
 */
function grantsFollowText(
  options: LowportOptions,
  before: PolicyText,
  after: PolicyText,
): { undo: () => void; commit: () => void } | undefined {
  if (after.text === before.text || after.doc.rules.length !== before.doc.rules.length) return undefined;
  const { target } = targetIfSupported(options, { probe: false });
  if (target === undefined) return undefined;
  const live = readLivePolicy(target.pinDir);
  if (live?.fingerprint === undefined || !live.fingerprint.equals(policyFingerprint(before.text))) return undefined;
  // The edit keeps every grant and reservation, in order; only their lines move. Line 0 (`lowport run` scopes) stays.
  const moved = new Map(before.doc.rules.map((r, i) => [r.line, after.doc.rules[i]?.line ?? r.line]));
  const table = new EntryTable(
    Buffer.from(live.table.keys.subarray(0, live.table.count * KEY_SIZE)),
    Buffer.from(live.table.values.subarray(0, live.table.count * VALUE_SIZE)),
    live.table.count,
  );
  for (let i = 0; i < table.count; i++) {
    const line = moved.get(table.rule(i));
    if (line !== undefined) table.setRule(i, line);
  }
  swapPolicy(target, table, policyFingerprint(after.text));
  return {
    undo: () => void swapPolicy(target, live.table, live.fingerprint),
    commit: () => saveAppliedText(target, after.text, appliedBindings(target)),
  };
}

/** A policy path (as before there were options here) or the instance's options. */
function optionsOf(options: LowportOptions | string): LowportOptions {
  return typeof options === 'string' ? { policy: options } : options;
}

/**
 * `lowport forward add PORT TO --persist`: a `forward` statement in the policy file, live now and after every `lowport apply`.
 * Give the instance's options (its pin directory), so that its live grants follow the file's new text.
 */
export function persistForward(options: LowportOptions | string, spec: RedirectSpec): PersistResult {
  return editForwards(optionsOf(options), (doc) => addForward(doc, spec));
}

/** `lowport forward remove PORT`: the statement leaves the file and its redirect the kernel. */
export function unpersistForward(options: LowportOptions | string, port: number, protocols: Protocol[]): PersistResult {
  return editForwards(optionsOf(options), (doc) => removeForward(doc, { port, protocols }));
}
