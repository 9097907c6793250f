/** Rules whose user or group does not resolve, each with the exact command that removes it. */
import { formatPorts } from '../policy/ports.js';
import type { Rule } from '../policy/types.js';
import { shellCommand } from '../text.js';
import type { UnresolvedRule } from '../grants/resolve.js';
import type { LowportOptions } from '../grants/target.js';

/** A rule left out (or, a reservation, kept for root alone) because its name does not resolve. */
export interface UnresolvedReport extends UnresolvedRule {
  /** The command that removes the line, quoted for a shell. */
  fix: string;
}

/** The unresolved rules with the command that removes each. */
export function unresolvedReport(options: LowportOptions, unresolved: readonly UnresolvedRule[]): UnresolvedReport[] {
  return unresolved.map((u) => ({ ...u, fix: removeCommand(options, u.rule) }));
}

/**
 * The `lowport` command that removes a rule of a user or group: `revoke
 * PORTS` for a grant, `revoke --all` for a reservation (`unreserve` would end
 * other owners' reservations of the ports too). With this instance's options.
 */
export function removeCommand(options: LowportOptions, rule: Rule): string {
  const who = rule.principal.kind === 'everyone' ? ['--everyone'] : [`--${rule.principal.kind}`, rule.principal.name];
  const global = [
    ...(options.policy === undefined ? [] : ['--policy', options.policy]),
    ...(options.cgroup === undefined ? [] : ['--cgroup', options.cgroup]),
    ...(options.pinDir === undefined ? [] : ['--pin-dir', options.pinDir]),
  ];
  const what =
    rule.action === 'reserve' ? ['--all'] : [formatPorts(rule.ports), ...(rule.addrs.length > 0 ? ['--addr', rule.addrs.join(',')] : [])];
  return shellCommand(['lowport', 'revoke', ...what, ...who, ...global]);
}
