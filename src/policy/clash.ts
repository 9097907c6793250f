/**
 * Statements that are valid one by one but clash with or repeat an earlier
 * one. The file still loads (each has a defined meaning), but the admin most
 * likely meant something else, so each is a warning that also marks the other
 * statement:
 *
 * - a grant to everyone over a reserved port: it does not open that port
 *   (compile.ts keeps EVERYONE off reserved ports, since 31cce13);
 * - a statement that says again what an earlier one says (same action, user
 *   or group and addresses): the later one adds nothing.
 *
 * A port reserved for two owners is not among them: it is an error
 * (owners.ts), which the parser reports.
 *
 * Pure, like the parser: the caller decides where the warnings go.
 */
import { diagnostic, related, type Diagnostic } from '../diagnostic.js';
import { portsSpan } from './parse.js';
import { PortSet } from './ports.js';
import { samePrincipal } from './principal.js';
import { formatPrincipal } from './print.js';
import type { PolicyDocument, Rule } from './types.js';

/** The warnings of a parsed document, in line order, at most one per statement. */
export function policyWarnings(doc: PolicyDocument): Diagnostic[] {
  const out: Diagnostic[] = [];
  const ports = new Map(doc.rules.map((r) => [r, PortSet.fromItems(r.ports)]));
  const portsOf = (r: Rule): PortSet => ports.get(r) ?? PortSet.EMPTY;
  doc.rules.forEach((rule, i) => {
    const earlier = doc.rules.slice(0, i);
    const found = repeated(rule, earlier, portsOf) ?? everyoneOverReserved(rule, doc.rules, portsOf);
    if (found === undefined) return;
    out.push(diagnostic('warning', portsSpan(doc, rule), found.message, { related: [related(portsSpan(doc, found.other), found.label)] }));
  });
  return out;
}

interface Clash {
  message: string;
  other: Rule;
  label: string;
}

/** Ports that an earlier statement of the same action, principal and addresses has already. */
function repeated(rule: Rule, earlier: readonly Rule[], portsOf: (r: Rule) => PortSet): Clash | undefined {
  for (const other of earlier) {
    if (other.action !== rule.action || !samePrincipal(other.principal, rule.principal) || !sameAddresses(other.addrs, rule.addrs))
      continue;
    const overlap = portsOf(rule).intersect(portsOf(other));
    if (overlap.isEmpty()) continue;
    const whole = portsOf(rule).subtract(overlap).isEmpty();
    const verb =
      rule.action === 'grant' ? `granted to ${formatPrincipal(rule.principal)}` : `reserved for ${formatPrincipal(rule.principal)}`;
    const message = whole
      ? `this statement repeats line ${other.line}: ${overlap.toString()} is already ${verb} there; remove one of them`
      : `${overlap.toString()} is already ${verb} on line ${other.line}: remove ${overlap.toString()} from one of them`;
    return { message, other, label: 'first here' };
  }
  return undefined;
}

/** A grant to everyone over a port that some reservation, anywhere in the file, keeps for its owner. */
function everyoneOverReserved(rule: Rule, all: readonly Rule[], portsOf: (r: Rule) => PortSet): Clash | undefined {
  if (rule.action !== 'grant' || rule.principal.kind !== 'everyone') return undefined;
  for (const other of all) {
    if (other.action !== 'reserve') continue;
    const overlap = portsOf(rule).intersect(portsOf(other));
    if (overlap.isEmpty()) continue;
    return {
      message:
        `the grant to everyone does not open ${overlap.toString()}: line ${other.line} reserves it for ${formatPrincipal(other.principal)}, ` +
        'and a reservation refuses everyone it does not name; grant it by name, or remove it from this list',
      other,
      label: 'reserved here',
    };
  }
  return undefined;
}

function sameAddresses(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
