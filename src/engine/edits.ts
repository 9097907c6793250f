/** The library calls behind `lowport grant/revoke/reserve/unreserve`: a policy edit, validated and made live in one locked step. */
import * as policyEdit from '../policy/edit.js';
import type { PortItem, Principal } from '../policy/types.js';
import { editPolicy, type EditOutcome } from './apply.js';
import type { LowportOptions } from './target.js';

export interface GrantSpec {
  ports: PortItem[];
  principal: Principal;
  /** Normalized IP literals; empty for any address. */
  addrs?: string[];
}

export function grant(options: LowportOptions, spec: GrantSpec): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.grant(doc, { ports: spec.ports, principal: spec.principal, addrs: spec.addrs ?? [] }));
}

export function revoke(options: LowportOptions, spec: GrantSpec): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.revoke(doc, { ports: spec.ports, principal: spec.principal, addrs: spec.addrs ?? [] }));
}

/** Removes every grant and reservation of a principal. */
export function revokeAll(options: LowportOptions, principal: Principal): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.revokeAll(doc, principal));
}

export function reserve(options: LowportOptions, spec: { ports: PortItem[]; principal: Principal }): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.reserve(doc, spec));
}

export function unreserve(options: LowportOptions, spec: { ports: PortItem[] }): EditOutcome {
  return editPolicy(options, (doc) => policyEdit.unreserve(doc, spec));
}

/** Several grants as one edit: one lock, one validation, one swap. */
export function grantAll(options: LowportOptions, specs: GrantSpec[]): EditOutcome {
  return editPolicy(options, (start) => {
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
  });
}
