/** `lowport off`: every grant ends at once, then lowport's program, links, map and pins go. The policy file stays. */
import { dirname } from 'node:path';
import { removePersisted } from '../forward/redirect.js';
import { lockDirectory } from '../kernel/files.js';
import { pathExists } from '../kernel/process.js';
import { removeAll } from './live.js';
import { forgetAppliedText, pruneScopes } from './scopes.js';
import { kernelTarget, policyPath, type LowportOptions } from './target.js';

export interface OffResult {
  pinDir: string;
  /** False when nothing of lowport's was live there. */
  removed: boolean;
  /** Persisted forwards (nftables redirects of the policy's `forward` statements) removed. */
  forwards?: number;
}

export function off(options: LowportOptions = {}): OffResult {
  const target = kernelTarget(options);
  // Under the policy's lock when there is one, so that an edit in progress
  // does not swap its policy back in after this.
  const dir = dirname(policyPath(options));
  const lock = pathExists(dir) ? lockDirectory(dir) : undefined;
  try {
    const result = removeAll(target);
    // What killed runs left (their commands gone) goes too; the live text is no longer live.
    pruneScopes(target);
    forgetAppliedText(target);
    // A separate step: the policy's persisted redirects go too; `apply` brings them back.
    const forwards = removePersisted(policyPath(options));
    return { pinDir: target.pinDir, ...result, ...(forwards > 0 ? { forwards } : {}) };
  } finally {
    lock?.release();
  }
}
