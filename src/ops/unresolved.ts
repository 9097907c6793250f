/**
 * Rules whose user or group does not resolve: each with the exact command
 * that removes it, and, in a file with syntax errors, reported with them.
 */
import { diagnostic, type Diagnostic } from '../diagnostic.js';
import { PolicyError } from '../errors.js';
import { PolicySyntaxError } from '../policy/parse.js';
import { formatPorts } from '../policy/ports.js';
import type { Rule } from '../policy/types.js';
import { shellCommand } from '../text.js';
import { resolvePolicy, type UnresolvedRule } from '../grants/resolve.js';
import { policyPath, type LowportOptions } from '../grants/target.js';
import { dropinDirOf, dropinOptionName } from '../policy/sources.js';

/** A rule left out (or, a reservation, kept for root alone) because its name does not resolve. */
export interface UnresolvedReport extends UnresolvedRule {
  /** The command that removes the line, quoted for a shell. */
  fix: string;
}

/** The unresolved rules with the command that removes each. */
export function unresolvedReport(options: LowportOptions, unresolved: readonly UnresolvedRule[]): UnresolvedReport[] {
  return unresolved.map((u) => ({ ...u, fix: removeCommand(options, u.rule, u.diagnostic.file) }));
}

/**
 * The `lowport` command that removes a rule of a user or group: `revoke
 * PORTS` for a grant, `revoke --all` for a reservation (`unreserve` would end
 * other owners' reservations of the ports too). With this instance's options.
 */
export function removeCommand(options: LowportOptions, rule: Rule, file?: string): string {
  const who = rule.principal.kind === 'everyone' ? ['--everyone'] : [`--${rule.principal.kind}`, rule.principal.name];
  const global = [
    ...(options.policy === undefined ? [] : ['--policy', options.policy]),
    ...(options.cgroup === undefined ? [] : ['--cgroup', options.cgroup]),
    ...(options.pinDir === undefined ? [] : ['--pin-dir', options.pinDir]),
  ];
  const what =
    rule.action === 'reserve' ? ['--all'] : [formatPorts(rule.ports), ...(rule.addrs.length > 0 ? ['--addr', rule.addrs.join(',')] : [])];
  // A drop-in's line is removed from that file (`--file NAME`), as only `--file` edits it.
  const dir = `${dropinDirOf(policyPath(options))}/`;
  const name = file?.startsWith(dir) === true ? dropinOptionName(file.slice(dir.length)) : undefined;
  return shellCommand(['lowport', 'revoke', ...what, ...who, ...(name === undefined ? [] : ['--file', name]), ...global]);
}

/**
 * Runs `read` (which parses the policy file); when the file has syntax
 * errors, the statements that did parse are resolved too, and their unknown
 * users and groups are reported in the same error, in line order: every
 * problem of the file at once, not the names in a second round. Nothing is
 * live from a file with syntax errors, so these say only what is wrong.
 */
export function withUnknownNames<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (!(e instanceof PolicySyntaxError)) throw e;
    const names = resolvePolicy(e.parsed).unresolved.map((u) => unknownName(u));
    if (names.length === 0) throw e;
    // In the order the files are read, then by line.
    const files = (e.parsed.parts ?? []).map((p) => p.file);
    const order = (d: Diagnostic): number => Math.max(0, files.indexOf(d.file));
    const all = [...e.diagnostics, ...names].sort((a, b) => order(a) - order(b) || a.line - b.line || a.column - b.column);
    throw new PolicyError(all, e.hint);
  }
}

/** An unknown name in a file that is rejected anyway: what is wrong, without what would be live. */
function unknownName(u: UnresolvedRule): Diagnostic {
  const p = u.rule.principal;
  const name = p.kind === 'everyone' ? '' : p.name;
  const database = p.kind === 'user' ? 'passwd' : 'group';
  return diagnostic(
    'error',
    u.diagnostic,
    `unknown ${p.kind} '${name}': no such ${p.kind} in the ${database} database (getent ${database} ${name})`,
  );
}
