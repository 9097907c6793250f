/** The library calls behind `lowport grant/revoke/reserve/unreserve`: a policy edit, validated and made live in one locked step. */
import { lookupGroups, lookupUsers } from '../os/nss.js';
import { readSubordinateIds } from '../os/subids.js';
import * as policyEdit from '../policy/edit.js';
import { samePrincipal } from '../policy/principal.js';
import { PortSet } from '../policy/ports.js';
import { formatPrincipal, formatRule } from '../policy/print.js';
import type { PortItem, Principal } from '../policy/types.js';
import { lineRef } from '../policy/origin.js';
import { dropinFileName } from '../policy/sources.js';
import type { EditOptions } from '../policy-file/policy-file.js';
import { editPolicy, type CompiledPolicy, type EditOutcome } from './apply.js';
import { Kind } from '../grants/map-format.js';
import { requireKnownPrincipal, subordinateNotes, type ResolvedRule } from '../grants/resolve.js';
import type { LowportOptions } from '../grants/target.js';

export interface GrantSpec {
  ports: PortItem[];
  principal: Principal;
  /** Normalized IP literals; empty for any address. */
  addrs?: string[];
}

/**
 * Grants ports. The user or group must exist: a file may hold lines whose
 * names have gone (they are reported, not live), but an edit adds none.
 */
export function grant(options: LowportOptions, spec: GrantSpec, file?: string): EditOutcome {
  requireKnownPrincipal(spec.principal);
  return editPolicy(
    options,
    (doc) => policyEdit.grant(doc, { ports: spec.ports, principal: spec.principal, addrs: spec.addrs ?? [] }),
    (compiled) => subordinateWarnings(compiled, [spec.principal]),
    inFile(file),
  );
}

/**
 * Which file an edit changes: the policy file, or with `file` (`--file NAME`)
 * the drop-in policy.d/NAME.policy. `elsewhere`: say what the other files
 * hold of what the edit takes away (revoke, unreserve), since only this one
 * changes. A grant or a reservation is the edited file's own: the same
 * statement in another file stays there (apply warns that one repeats the
 * other), so that removing either file leaves the other's grant whole.
 */
function inFile(file: string | undefined, elsewhere = false): EditOptions {
  return { ...(file === undefined ? {} : { dropin: dropinFileName(file) }), elsewhere };
}

/**
 * Notes for ids of the principals' rules that lie in some user's
 * subordinate range (/etc/subuid, /etc/subgid): that user's containers can
 * run processes with them, so the grant reaches those containers.
 */
function subordinateWarnings(compiled: CompiledPolicy, principals: readonly Principal[]): string[] {
  const subjects = compiled.rules.filter((r) => principals.some((p) => samePrincipal(p, r.rule.principal))).flatMap((r) => r.subjects);
  if (subjects.length === 0) return [];
  return subordinateNotes(subjects, readSubordinateIds('/etc/subuid'), readSubordinateIds('/etc/subgid')).map((n) => `warning: ${n}`);
}

export function revoke(options: LowportOptions, spec: GrantSpec, file?: string): EditOutcome {
  return editPolicy(
    options,
    (doc) => policyEdit.revoke(doc, { ports: spec.ports, principal: spec.principal, addrs: spec.addrs ?? [] }),
    (compiled) => stillGiven(compiled, spec),
    inFile(file, true),
  );
}

/**
 * After a revoke: the rules that still give the principal some of those ports
 * by another way (its uid written as a number, its primary group, everyone),
 * so "revoked" is not taken to mean "refused".
 */
function stillGiven(compiled: CompiledPolicy, spec: GrantSpec): string[] {
  const rules: ResolvedRule[] = compiled.rules;
  const p = spec.principal;
  if (p.kind === 'everyone') return [];
  const ids: { kind: number; id: bigint }[] = [];
  if (p.kind === 'user') {
    const u = lookupUsers([p.name]).get(p.name);
    if (u !== undefined) ids.push({ kind: Kind.UID, id: BigInt(u.uid) }, { kind: Kind.GID, id: BigInt(u.gid) });
    else if (/^\d+$/.test(p.name)) ids.push({ kind: Kind.UID, id: BigInt(p.name) });
  } else {
    const g = lookupGroups([p.name]).get(p.name);
    if (g !== undefined) ids.push({ kind: Kind.GID, id: BigInt(g.gid) });
  }
  const revoked = PortSet.fromItems(spec.ports);
  const notes: string[] = [];
  for (const { rule, subjects } of rules) {
    const covers = subjects.some((s) => s.kind === Kind.EVERYONE || ids.some((i) => i.kind === s.kind && i.id === s.id));
    const overlap = PortSet.fromItems(rule.ports).intersect(revoked);
    if (covers && !overlap.isEmpty())
      notes.push(
        `note: ${lineRef(compiled.doc, rule.line)} still gives ${overlap.toString()} to ${formatPrincipal(p)}: ${formatRule(rule)}`,
      );
  }
  return notes;
}

/** Removes every grant and reservation of a principal. */
export function revokeAll(options: LowportOptions, principal: Principal, file?: string): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.revokeAll(doc, principal), undefined, inFile(file, true));
}

export function reserve(options: LowportOptions, spec: { ports: PortItem[]; principal: Principal }, file?: string): EditOutcome {
  requireKnownPrincipal(spec.principal);
  return editPolicy(
    options,
    (doc) => policyEdit.reserve(doc, spec),
    (compiled) => subordinateWarnings(compiled, [spec.principal]),
    inFile(file),
  );
}

export function unreserve(options: LowportOptions, spec: { ports: PortItem[] }, file?: string): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.unreserve(doc, spec), undefined, inFile(file, true));
}

/** Several grants as one edit: one lock, one validation, one swap. */
export function grantAll(options: LowportOptions, specs: GrantSpec[]): EditOutcome {
  for (const spec of specs) requireKnownPrincipal(spec.principal);
  return editPolicy(
    options,
    (start) => {
      let doc = start;
      let changed = false;
      const notes: string[] = [];
      for (const spec of specs) {
        const r = policyEdit.grant(doc, { ports: spec.ports, principal: spec.principal, addrs: spec.addrs ?? [] });
        doc = r.doc;
        changed ||= r.changed;
        notes.push(...r.notes);
      }
      return { doc, changed, notes };
    },
    (compiled) =>
      subordinateWarnings(
        compiled,
        specs.map((s) => s.principal),
      ),
  );
}
