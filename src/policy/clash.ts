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
import { lineRef } from './origin.js';
import { portsSpan } from './parse.js';
import { PortSet } from './ports.js';
import { principalKey } from './principal.js';
import { formatPrincipal } from './print.js';
import type { PolicyDocument, Rule } from './types.js';

/** The warnings of a parsed document, in line order, at most one per statement. */
export function policyWarnings(doc: PolicyDocument): Diagnostic[] {
  const out: Diagnostic[] = [];
  const ports = new Map<Rule, PortSet>();
  const portsOf = (r: Rule): PortSet => {
    let set = ports.get(r);
    if (set === undefined) ports.set(r, (set = PortSet.fromItems(r.ports)));
    return set;
  };
  const reservations = doc.rules.filter((r) => r.action === 'reserve');
  // Every apply and edit runs this, on files of 10,000 rules and more: statements are compared only with those
  // of the same action, principal and addresses, through the ports each such group has claimed so far.
  const claims = new Map<string, FirstClaims>();
  for (const rule of doc.rules) {
    const key = `${rule.action} ${principalKey(rule.principal)} ${[...new Set(rule.addrs)].sort().join(',')}`;
    let group = claims.get(key);
    if (group === undefined) claims.set(key, (group = new FirstClaims()));
    const earlier = group.claim(rule);
    const found =
      (earlier === undefined ? undefined : repeated(doc, rule, earlier, portsOf)) ?? everyoneOverReserved(doc, rule, reservations, portsOf);
    if (found === undefined) continue;
    out.push(diagnostic('warning', portsSpan(doc, rule), found.message, { related: [related(portsSpan(doc, found.other), found.label)] }));
  }
  return out;
}

interface Clash {
  message: string;
  other: Rule;
  label: string;
}

/**
 * For each protocol, the ports claimed so far as sorted, disjoint ranges, each
 * with the first statement (in line order) that claimed it. The earliest
 * statement that shares a port with a new one is then the earliest owner
 * among the ranges it overlaps, found by binary search.
 */
class FirstClaims {
  private readonly ranges = { tcp: [] as Claim[], udp: [] as Claim[] };

  /** Claims `rule`'s ports still free; returns the earliest other statement that had claimed any of them. */
  claim(rule: Rule): Rule | undefined {
    let earliest: Rule | undefined;
    for (const item of rule.ports) {
      for (const protocol of item.protocols) {
        const found = this.claimRange(this.ranges[protocol], item.from, item.to, rule);
        if (found !== undefined && (earliest === undefined || found.line < earliest.line)) earliest = found;
      }
    }
    return earliest;
  }

  private claimRange(list: Claim[], from: number, to: number, rule: Rule): Rule | undefined {
    // The first range that ends at or after `from`.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((list[mid]?.to ?? Infinity) < from) lo = mid + 1;
      else hi = mid;
    }
    let earliest: Rule | undefined;
    const added: Claim[] = [];
    let next = from;
    let end = lo;
    for (; end < list.length; end++) {
      const range = list[end];
      if (range === undefined || range.from > to) break;
      // A statement may name a port twice (`21-22,21`): only other statements count.
      if (range.rule !== rule && (earliest === undefined || range.rule.line < earliest.line)) earliest = range.rule;
      if (range.from > next) added.push({ from: next, to: range.from - 1, rule });
      next = range.to + 1;
    }
    if (next <= to) added.push({ from: next, to, rule });
    // The overlapped ranges stay (their first claimant is earlier); the gaps between them become `rule`'s.
    const merged = [...list.slice(lo, end), ...added].sort((a, b) => a.from - b.from);
    list.splice(lo, end - lo, ...merged);
    return earliest;
  }
}

interface Claim {
  from: number;
  to: number;
  rule: Rule;
}

/** Ports that `other`, an earlier statement of the same action, principal and addresses, has already. */
function repeated(doc: PolicyDocument, rule: Rule, other: Rule, portsOf: (r: Rule) => PortSet): Clash | undefined {
  const overlap = portsOf(rule).intersect(portsOf(other));
  if (overlap.isEmpty()) return undefined;
  const whole = portsOf(rule).subtract(overlap).isEmpty();
  const verb =
    rule.action === 'grant' ? `granted to ${formatPrincipal(rule.principal)}` : `reserved for ${formatPrincipal(rule.principal)}`;
  const at = lineRef(doc, other.line, rule.line);
  const message = whole
    ? `this statement repeats ${at}: ${overlap.toString()} is already ${verb} there; remove one of them`
    : `${overlap.toString()} is already ${verb} on ${at}: remove ${overlap.toString()} from one of them`;
  return { message, other, label: 'first here' };
}

/** A grant to everyone over a port that some reservation, anywhere in the file, keeps for its owner. */
function everyoneOverReserved(
  doc: PolicyDocument,
  rule: Rule,
  reservations: readonly Rule[],
  portsOf: (r: Rule) => PortSet,
): Clash | undefined {
  if (rule.action !== 'grant' || rule.principal.kind !== 'everyone') return undefined;
  for (const other of reservations) {
    const overlap = portsOf(rule).intersect(portsOf(other));
    if (overlap.isEmpty()) continue;
    return {
      message:
        `the grant to everyone does not open ${overlap.toString()}: ${lineRef(doc, other.line, rule.line)} reserves it for ${formatPrincipal(other.principal)}, ` +
        'and a reservation refuses everyone it does not name; grant it by name, or remove it from this list',
      other,
      label: 'reserved here',
    };
  }
  return undefined;
}
