/** The policy back to text: canonical statements, and whole documents as they were read. */
import { formatPorts } from './ports.js';
import type { ForwardRule, LogStatement, PolicyDocument, Principal, Rule } from './types.js';

/** `user alice`, `group dns`, `everyone`. */
export function formatPrincipal(principal: Principal): string {
  return principal.kind === 'everyone' ? 'everyone' : `${principal.kind} ${principal.name}`;
}

/**
 * A statement in canonical form with single spaces:
 * `grant 80,443 user alice addr 127.0.0.1,::1`. Ports are canonicalized by
 * formatPorts; addresses keep their order.
 */
export function formatRule(rule: Pick<Rule, 'action' | 'ports' | 'principal' | 'addrs'>): string {
  const addrs = rule.addrs.length > 0 ? ` addr ${rule.addrs.join(',')}` : '';
  return `${rule.action} ${formatPorts(rule.ports)} ${formatPrincipal(rule.principal)}${addrs}`;
}

/** `forward 80/tcp to 8080 addr 127.0.0.1`; no protocol suffix when both are forwarded. */
export function formatForward(f: Pick<ForwardRule, 'port' | 'protocols' | 'toPort' | 'addrs'>): string {
  const suffix = f.protocols.length === 1 ? `/${f.protocols[0]}` : '';
  const addrs = f.addrs.length > 0 ? ` addr ${f.addrs.join(',')}` : '';
  return `forward ${f.port}${suffix} to ${f.toPort}${addrs}`;
}

/** `log all`. */
export function formatLog(l: Pick<LogStatement, 'what'>): string {
  return `log ${l.what}`;
}

/**
 * The document's text: its lines joined with '\n' and a final newline (none
 * for an empty document). A file read with CRLF line ends is written with LF,
 * and a missing final newline is added; everything else is byte for byte.
 */
export function serializePolicy(doc: PolicyDocument): string {
  return doc.lines.length === 0 ? '' : `${doc.lines.join('\n')}\n`;
}
