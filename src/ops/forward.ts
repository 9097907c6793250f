/**
 * `lowport forward add|remove --persist`: `forward` statements of the policy
 * file, edited through the file's one edit transaction (policy-file.ts) with
 * the persisted nftables redirects as its make-live step. The kernel changes
 * first: if nft refuses, the file stays as it was.
 */
import { addForward, removeForward, type EditResult } from '../policy/edit.js';
import type { PolicyDocument, Protocol } from '../policy/types.js';
import { editPolicyFile } from '../policy-file/policy-file.js';
import type { RedirectSpec } from '../forward/nft.js';
import { requireNftRoot, restorePersisted } from '../forward/redirect.js';

export interface PersistResult {
  policy: string;
  changed: boolean;
  notes: string[];
  /** Persisted redirects live now. */
  live: number;
}

function editForwards(policyPath: string, edit: (doc: PolicyDocument) => EditResult): PersistResult {
  requireNftRoot();
  const done = editPolicyFile(policyPath, edit, (after, before) => ({
    result: restorePersisted(policyPath, after.doc.forwards ?? []),
    undo: () => void restorePersisted(policyPath, before.doc.forwards ?? []),
  }));
  return { policy: done.path, changed: done.changed, notes: done.notes, live: done.live };
}

/** `lowport forward add PORT TO --persist`: a `forward` statement in the policy file, live now and after every `lowport apply`. */
export function persistForward(policyPath: string, spec: RedirectSpec): PersistResult {
  return editForwards(policyPath, (doc) => addForward(doc, spec));
}

/** `lowport forward remove PORT`: the statement leaves the file and its redirect the kernel. */
export function unpersistForward(policyPath: string, port: number, protocols: Protocol[]): PersistResult {
  return editForwards(policyPath, (doc) => removeForward(doc, { port, protocols }));
}
