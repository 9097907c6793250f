/** `lowport off`: every grant ends at once, then lowport's program, links, map and pins go. The policy file stays. */
import { resolve } from 'node:path';
import { removePersisted } from '../forward/redirect.js';
import { readPolicy, withPolicyLock } from '../policy-file/policy-file.js';
import { originOf } from '../policy/origin.js';
import { removeAll } from '../grants/live.js';
import { syncReservedPorts } from '../grants/reserved-ports.js';
import { endScopes, forgetAppliedText } from '../grants/scopes.js';
import { targetIfSupported } from './apply.js';
import { DEFAULT_PIN_DIR, policyPath, type LowportOptions } from '../grants/target.js';

export interface OffResult {
  pinDir: string;
  /** The policy file, which off leaves as it is. */
  policy: string;
  /**
   * Its grants and reservations, which the next apply, grant, revoke, reserve
   * or unreserve makes live again, every one; undefined when the file is
   * missing or cannot be read or parsed.
   */
  policyRules?: number;
  /**
   * The files that hold those rules, in the order they are read (the main
   * file, then its drop-ins, PATH.d/*.policy), each with its count; only
   * files with at least one rule. Undefined when policyRules is.
   */
  policyFiles?: PolicyFileRules[];
  /** False when nothing of lowport's was live there. */
  removed: boolean;
  /** Persisted forwards (nftables redirects of the policy's `forward` statements) removed. */
  forwards?: number;
  /** Running `lowport run`s whose grants this ended (they go on without them). */
  endedRuns: EndedRun[];
  /** The reserved ports lowport had added to net.ipv4.ip_local_reserved_ports, taken out again. */
  notes?: string[];
}

export interface PolicyFileRules {
  /** The file's path. */
  file: string;
  rules: number;
}

export interface EndedRun {
  /** The `lowport run` process. */
  pid: number;
  user: string;
  command: string[];
}

export function off(options: LowportOptions = {}): OffResult {
  // Without the probes: what is live must go even where loading BPF is refused now (without cgroup v2 there is
  // nothing of lowport's in BPF, but there may be persisted redirects).
  const { target } = targetIfSupported(options, { probe: false });
  // Under the policy's lock when there is one, so that an edit in progress
  // does not swap its policy back in after this.
  return withPolicyLock(policyPath(options), { create: false }, () => {
    const pinDir = target?.pinDir ?? resolve(options.pinDir ?? DEFAULT_PIN_DIR);
    // Running `lowport run`s lose their grants for good: marked first (what
    // killed runs left goes meanwhile), so that the next run, by anyone, swaps
    // in its own grant only.
    const ended = target === undefined ? [] : endScopes(target);
    const result = target === undefined ? { removed: false } : removeAll(target);
    // The live text is no longer live.
    if (target !== undefined) forgetAppliedText(target);
    // No reservation is live now: what lowport added to the kernel's reserved ports goes too.
    const notes = syncReservedPorts(pinDir, undefined);
    // A separate step: the policy's persisted redirects go too; `apply` brings them back.
    const forwards = removePersisted(policyPath(options));
    const endedRuns = ended.map((s) => ({ pid: s.owner, user: s.user, command: s.command }));
    const policy = policyPath(options);
    const kept = rulesKept(policy);
    return {
      pinDir,
      policy,
      ...(kept === undefined ? {} : { policyRules: kept.reduce((n, f) => n + f.rules, 0), policyFiles: kept }),
      ...result,
      ...(forwards > 0 ? { forwards } : {}),
      endedRuns,
      ...(notes.length > 0 ? { notes } : {}),
    };
  });
}

/**
 * The grants and reservations the policy keeps, per file (the main file and
 * its drop-ins); undefined when there is no policy, or it cannot be read or
 * parsed (off goes on regardless).
 */
function rulesKept(path: string): PolicyFileRules[] | undefined {
  try {
    const { doc, missing, texts } = readPolicy(path, true);
    if (missing === true && texts.dropins.length === 0) return undefined;
    const counts = new Map<string, number>();
    for (const r of doc.rules) {
      const file = originOf(doc, r.line).file;
      counts.set(file, (counts.get(file) ?? 0) + 1);
    }
    return [...counts].map(([file, rules]) => ({ file, rules }));
  } catch {
    return undefined;
  }
}
