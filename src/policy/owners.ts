/**
 * A reserved port has one owner. Two reservations of one port (and protocol)
 * for different owners compile to one marker that lets both owners through
 * and refuses everyone else (grants/compile.ts): each line says "nobody else
 * takes it", and each owner finds the other on its port; `doctor` names only
 * the first. So it is an error, at every entry: the parser reports it for a
 * file (apply, apply --check, list, doctor), and the `reserve` edit refuses
 * to write it (edit.ts).
 *
 * A reservation carries no addresses (the parser refuses `addr` on it, and
 * its marker covers every address of the port), so any overlap of ports with
 * the same protocol is a clash. Owners are compared as written
 * (principal.ts): `user alice` and `user 1000` are different here even when
 * they are one account, since resolving names is not the policy layer's job.
 *
 * Pure, like the parser.
 */
import { diagnostic, related, type Diagnostic, type Span } from '../diagnostic.js';
import { PortSet } from './ports.js';
import { samePrincipal } from './principal.js';
import { formatPrincipal } from './print.js';
import type { Principal, Rule } from './types.js';

/** An earlier reservation of some of `ports` for another owner than `owner`, and the ports they share. */
export function otherOwner(owner: Principal, ports: PortSet, reservations: readonly Rule[]): { other: Rule; shared: PortSet } | undefined {
  for (const other of reservations) {
    if (other.action !== 'reserve' || samePrincipal(other.principal, owner)) continue;
    const shared = ports.intersect(PortSet.fromItems(other.ports));
    if (!shared.isEmpty()) return { other, shared };
  }
  return undefined;
}

/** The advice both the file's error and the refused edit give. */
export const ONE_OWNER =
  'a reserved port has one owner: reserve it for a group both are in (several users may share a group), or take it out of one reservation';

/**
 * One error per reservation that shares a port with an earlier reservation
 * for another owner, at its ports, with a note at the earlier one's.
 * `portsAt` gives where a statement's ports are on its line, `lineOf` how
 * the message names the earlier one's line (`line 3 of policy.d/web.policy`
 * in another file).
 *
 * The parser runs this on every read of the file, so it looks each port up
 * in one table of first owners (two protocols × 65536 ports) rather than
 * comparing every pair of reservations: linear in the ports reserved, as
 * compiling them is.
 */
export function ownerClashes(
  rules: readonly Rule[],
  portsAt: (rule: Rule) => Span,
  lineOf: (other: Rule, rule: Rule) => string = (other) => `line ${other.line}`,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  // (protocol, port) -> index in `rules` of its first reservation, or -1.
  const first = new Int32Array(2 * 65536).fill(-1);
  rules.forEach((rule, i) => {
    if (rule.action !== 'reserve') return;
    let earliest = -1;
    for (const item of rule.ports) {
      for (const protocol of item.protocols) {
        const base = protocol === 'tcp' ? 0 : 65536;
        for (let port = item.from; port <= item.to; port++) {
          const at = first[base + port] ?? -1;
          if (at < 0) first[base + port] = i;
          else if ((earliest < 0 || at < earliest) && !samePrincipal(rules[at]?.principal ?? rule.principal, rule.principal)) earliest = at;
        }
      }
    }
    const other = rules[earliest];
    if (other === undefined) return;
    const shared = PortSet.fromItems(rule.ports).intersect(PortSet.fromItems(other.ports));
    out.push(
      diagnostic(
        'error',
        portsAt(rule),
        `${shared.toString()} is already reserved for ${formatPrincipal(other.principal)} on ${lineOf(other, rule)}, ` +
          `so ${formatPrincipal(rule.principal)} and ${formatPrincipal(other.principal)} would both bind it; ${ONE_OWNER}`,
        { related: [related(portsAt(other), 'first reserved here')] },
      ),
    );
  });
  return out;
}
