/**
 * Edits of a policy document for `lowport grant/revoke/reserve/unreserve`.
 *
 * The admin's file is theirs: every comment, blank line and statement that an
 * edit does not concern stays byte for byte. A statement that changes is
 * rewritten in canonical form (formatRule) but keeps its indentation and its
 * trailing comment. New statements go after the last non-blank line.
 * Functions never mutate their input; line numbers in notes are those of the
 * document that was passed in.
 */
import { diagnostic } from '../diagnostic.js';
import { LowportError, UsageError } from '../errors.js';
import { normalizeAddress } from './address.js';
import { ONE_OWNER, otherOwner } from './owners.js';
import { portsSpan } from './parse.js';
import { PortSet } from './ports.js';
import { normalizePrincipal, samePrincipal } from './principal.js';
import { formatForward, formatLog, formatPrincipal, formatRule } from './print.js';
import type { Action, ForwardRule, LogStatement, LogWhat, PolicyDocument, PortItem, Principal, Protocol, Rule } from './types.js';

export interface EditResult {
  doc: PolicyDocument;
  /** False when the document already said what was asked; `doc` is then an equal copy. */
  changed: boolean;
  /** What was done or why nothing was, one sentence each, for the CLI to print. */
  notes: string[];
}

export interface GrantRequest {
  ports: readonly PortItem[];
  principal: Principal;
  /** Empty means any address. */
  addrs: readonly string[];
}

export type RevokeRequest = GrantRequest;

export interface ReserveRequest {
  ports: readonly PortItem[];
  principal: Principal;
}

export interface UnreserveRequest {
  ports: readonly PortItem[];
}

/** One line of the document being edited, with the statement it holds. */
interface Entry {
  text: string;
  rule: Rule | undefined;
  forward?: ForwardRule | undefined;
  log?: LogStatement | undefined;
  /** Line number in the input document; undefined for new lines. */
  origin: number | undefined;
  removed: boolean;
  /** New lines that go right after this one. */
  after: Entry[];
}

/**
 * Grants `ports` to exactly this principal on exactly this address set. Ports
 * already granted by such rules are skipped; the rest extend the first such
 * rule, or else become a new statement.
 */
export function grant(doc: PolicyDocument, request: GrantRequest): EditResult {
  const principal = normalizePrincipal(request.principal);
  return add(doc, 'grant', portsOf(request.ports), principal, normalizeAddrs(request.addrs));
}

/**
 * Reserves `ports` for this principal, like grant without addresses. A port
 * already reserved for another owner is refused (owners.ts), at that
 * reservation's line: the file stays as it is.
 */
export function reserve(doc: PolicyDocument, request: ReserveRequest): EditResult {
  const principal = normalizePrincipal(request.principal);
  if (principal.kind === 'everyone') {
    throw new UsageError("a reservation for 'everyone' reserves nothing", 'Name the user or group that alone may bind these ports.');
  }
  const wanted = portsOf(request.ports);
  const clash = otherOwner(principal, wanted, doc.rules);
  if (clash !== undefined) {
    const { other, shared } = clash;
    const message =
      `${shared.toString()} is reserved for ${formatPrincipal(other.principal)} on line ${other.line}, ` +
      `so reserving it for ${formatPrincipal(principal)} too would let both bind it; ${ONE_OWNER}`;
    throw new LowportError('E_POLICY_CLASH', message, {
      hint: `Nothing was changed. \`lowport unreserve ${shared.toString()}\` ends the reservation of line ${other.line}.`,
      diagnostics: [diagnostic('error', portsSpan(doc, other), message)],
    });
  }
  return add(doc, 'reserve', wanted, principal, []);
}

/**
 * Takes `ports` away from the grant rules of exactly this principal: from all
 * of them when `addrs` is empty, else only for those addresses, splitting a
 * rule whose other addresses keep their ports.
 */
export function revoke(doc: PolicyDocument, request: RevokeRequest): EditResult {
  const principal = normalizePrincipal(request.principal);
  const target = portsOf(request.ports);
  const only = normalizeAddrs(request.addrs);
  const who = formatPrincipal(principal);
  const entries = entriesOf(doc);
  const notes: string[] = [];
  let revoked = PortSet.EMPTY;

  for (const entry of entries) {
    const rule = entry.rule;
    if (rule?.action !== 'grant' || !samePrincipal(rule.principal, principal)) continue;
    const have = PortSet.fromItems(rule.ports);
    const hit = have.intersect(target);
    if (hit.isEmpty()) continue;
    const remaining = have.subtract(target);

    if (only.length === 0) {
      shrink(entry, rule, remaining, `no longer grants ${hit.toString()} to ${who}${on(rule.addrs)}`, notes);
    } else {
      if (rule.addrs.length === 0) {
        throw new UsageError(
          `line ${entry.origin ?? rule.line} grants ${hit.toString()} to ${who} on every address, ` +
            `so it cannot be revoked for ${only.join(',')} alone`,
          'Revoke without --addr, then grant the addresses you want.',
        );
      }
      const hitAddrs = rule.addrs.filter((a) => only.includes(a));
      if (hitAddrs.length === 0) continue;
      const keepAddrs = rule.addrs.filter((a) => !only.includes(a));
      const change = `no longer grants ${hit.toString()} to ${who}${on(hitAddrs)}`;
      if (keepAddrs.length === 0) {
        shrink(entry, rule, remaining, change, notes);
      } else {
        // The other addresses keep every port; the revoked ones keep what is left, on a line of their own.
        rewrite(entry, { ...rule, addrs: keepAddrs });
        notes.push(`line ${entry.origin ?? rule.line} ${change}`);
        if (!remaining.isEmpty()) {
          const split = canonicalRule('grant', remaining, rule.principal, hitAddrs);
          const text = indentOf(entry.text) + formatRule(split);
          entry.after.push(newEntry(text, split));
          notes.push(`added '${formatRule(split)}' after line ${entry.origin ?? rule.line} for the ports left`);
        }
      }
    }
    revoked = revoked.union(hit);
  }

  if (revoked.isEmpty()) {
    notes.push(`nothing to revoke: ${who} has no grant of ${target.toString()}${on(only)}`);
    return finish(doc, entries, [], false, notes);
  }
  const missed = target.subtract(revoked);
  if (!missed.isEmpty()) notes.push(`${who} had no grant of ${missed.toString()}${on(only)}`);
  return finish(doc, entries, [], true, notes);
}

/** Removes every grant and reservation of exactly this principal. */
export function revokeAll(doc: PolicyDocument, principal: Principal): EditResult {
  const wanted = normalizePrincipal(principal);
  const entries = entriesOf(doc);
  const notes: string[] = [];
  for (const entry of entries) {
    const rule = entry.rule;
    if (rule === undefined || !samePrincipal(rule.principal, wanted)) continue;
    entry.removed = true;
    notes.push(`removed line ${entry.origin ?? rule.line}: ${formatRule(rule)}`);
  }
  if (notes.length === 0) {
    notes.push(`nothing to revoke: ${formatPrincipal(wanted)} has no grants or reservations`);
    return finish(doc, entries, [], false, notes);
  }
  return finish(doc, entries, [], true, notes);
}

/** Takes `ports` out of every reservation, whoever it is for. */
export function unreserve(doc: PolicyDocument, request: UnreserveRequest): EditResult {
  const target = portsOf(request.ports);
  const entries = entriesOf(doc);
  const notes: string[] = [];
  let released = PortSet.EMPTY;
  for (const entry of entries) {
    const rule = entry.rule;
    if (rule?.action !== 'reserve') continue;
    const have = PortSet.fromItems(rule.ports);
    const hit = have.intersect(target);
    if (hit.isEmpty()) continue;
    const change = `no longer reserves ${hit.toString()} for ${formatPrincipal(rule.principal)}`;
    shrink(entry, rule, have.subtract(target), change, notes);
    released = released.union(hit);
  }
  if (released.isEmpty()) {
    notes.push(`nothing to unreserve: none of ${target.toString()} is reserved`);
    return finish(doc, entries, [], false, notes);
  }
  const missed = target.subtract(released);
  if (!missed.isEmpty()) notes.push(`${missed.toString()} was not reserved`);
  return finish(doc, entries, [], true, notes);
}

function add(doc: PolicyDocument, action: Action, wanted: PortSet, principal: Principal, addrs: readonly string[]): EditResult {
  const entries = entriesOf(doc);
  const notes: string[] = [];
  const verb = action === 'grant' ? 'grants' : 'reserves';
  const to = `${action === 'grant' ? 'to' : 'for'} ${formatPrincipal(principal)}${on(addrs)}`;
  const matching = entries.filter(
    (e): e is Entry & { rule: Rule } =>
      e.rule?.action === action && samePrincipal(e.rule.principal, principal) && sameAddressSet(e.rule.addrs, addrs),
  );
  let covered = PortSet.EMPTY;
  for (const entry of matching) {
    const have = PortSet.fromItems(entry.rule.ports);
    const overlap = wanted.intersect(have);
    if (!overlap.isEmpty()) notes.push(`line ${entry.origin ?? entry.rule.line} already ${verb} ${overlap.toString()} ${to}`);
    covered = covered.union(have);
  }
  const missing = wanted.subtract(covered);
  if (action === 'grant' && addrs.length > 0) {
    // Not merged (the address lists differ), but the admin should know the new line adds nothing.
    for (const entry of entries) {
      const rule = entry.rule;
      if (rule?.action !== 'grant' || rule.addrs.length > 0 || !samePrincipal(rule.principal, principal)) continue;
      const overlap = missing.intersect(PortSet.fromItems(rule.ports));
      if (overlap.isEmpty()) continue;
      notes.push(
        `line ${entry.origin ?? rule.line} already grants ${overlap.toString()} to ${formatPrincipal(principal)} on every address`,
      );
    }
  }
  if (missing.isEmpty()) return finish(doc, entries, [], false, notes);

  const [first] = matching;
  if (first !== undefined) {
    const ports = PortSet.fromItems(first.rule.ports).union(missing);
    rewrite(first, { ...first.rule, ports: ports.toItems() });
    notes.push(`line ${first.origin ?? first.rule.line} now also ${verb} ${missing.toString()} ${to}`);
    return finish(doc, entries, [], true, notes);
  }
  const rule = canonicalRule(action, missing, principal, addrs);
  notes.push(`added '${formatRule(rule)}'`);
  return finish(doc, entries, [newEntry(formatRule(rule), rule)], true, notes);
}

/** Leaves `remaining` in the rule, or removes its line (and its comment) when nothing is left. */
function shrink(entry: Entry, rule: Rule, remaining: PortSet, change: string, notes: string[]): void {
  const line = entry.origin ?? rule.line;
  if (remaining.isEmpty()) {
    entry.removed = true;
    notes.push(`removed line ${line}: ${formatRule(rule)}`);
  } else {
    rewrite(entry, { ...rule, ports: remaining.toItems() });
    notes.push(`line ${line} ${change}`);
  }
}

/** A line's trailing comment, with the two spaces a rewritten statement puts before it; '' when it has none. */
function commentOf(text: string): string {
  const hash = text.indexOf('#');
  return hash < 0 ? '' : `  ${text.slice(hash)}`;
}

/** Replaces the statement of a line, keeping its indentation and trailing comment. */
function rewrite(entry: Entry, rule: Rule): void {
  const comment = commentOf(entry.text);
  // formatRule writes ports canonically; the rule must say what a parse of that text says.
  const written = { ...rule, ports: PortSet.fromItems(rule.ports).toItems() };
  entry.text = indentOf(entry.text) + formatRule(written) + comment;
  entry.rule = written;
}

function indentOf(line: string): string {
  return /^[ \t]*/.exec(line)?.[0] ?? '';
}

function canonicalRule(action: Action, ports: PortSet, principal: Principal, addrs: readonly string[]): Rule {
  return { action, ports: ports.toItems(), principal: { ...principal }, addrs: [...addrs], line: 0 };
}

function newEntry(text: string, rule: Rule): Entry {
  return { text, rule, origin: undefined, removed: false, after: [] };
}

function entriesOf(doc: PolicyDocument): Entry[] {
  const byLine = new Map(doc.rules.map((rule) => [rule.line, rule]));
  const forwardByLine = new Map((doc.forwards ?? []).map((f) => [f.line, f]));
  const logByLine = new Map((doc.logs ?? []).map((l) => [l.line, l]));
  return doc.lines.map((text, index) => {
    const rule = byLine.get(index + 1);
    const forward = forwardByLine.get(index + 1);
    const log = logByLine.get(index + 1);
    return {
      text,
      rule: rule === undefined ? undefined : cloneRule(rule),
      forward: forward === undefined ? undefined : { ...forward, protocols: [...forward.protocols], addrs: [...forward.addrs] },
      ...(log === undefined ? {} : { log: { ...log } }),
      origin: index + 1,
      removed: false,
      after: [],
    };
  });
}

/**
 * Lays out the edited lines and numbers the rules again. `appended` lines go
 * after the last non-blank line, so a file's trailing blank lines stay at its
 * end instead of separating the new statement from the others.
 */
function finish(doc: PolicyDocument, entries: readonly Entry[], appended: readonly Entry[], changed: boolean, notes: string[]): EditResult {
  const flat: Entry[] = [];
  for (const entry of entries) {
    if (!entry.removed) flat.push(entry);
    flat.push(...entry.after);
  }
  let at = flat.length;
  while (at > 0 && (flat[at - 1]?.text.trim() ?? '') === '') at--;
  flat.splice(at, 0, ...appended);
  const rules: Rule[] = [];
  const forwards: ForwardRule[] = [];
  const logs: LogStatement[] = [];
  flat.forEach((entry, index) => {
    if (entry.rule !== undefined) rules.push({ ...entry.rule, line: index + 1 });
    if (entry.forward !== undefined) forwards.push({ ...entry.forward, line: index + 1 });
    if (entry.log !== undefined) logs.push({ ...entry.log, line: index + 1 });
  });
  const lines = flat.map((e) => e.text);
  const edited: PolicyDocument = forwards.length === 0 ? { file: doc.file, lines, rules } : { file: doc.file, lines, rules, forwards };
  // The `log` statements stay as they were (an edit of grants must not turn logging off).
  if (logs.length > 0) edited.logs = logs;
  return { doc: edited, changed, notes };
}

export interface ForwardRequest {
  port: number;
  protocols: readonly Protocol[];
  toPort: number;
  /** Empty means every local address. */
  addrs: readonly string[];
}

/**
 * Adds `forward PORT to TO`: an existing forward of the same port and
 * protocol is replaced (it would conflict), the others stay; saying what is
 * already there changes nothing.
 */
export function addForward(doc: PolicyDocument, request: ForwardRequest): EditResult {
  const wanted: ForwardRule = {
    port: request.port,
    protocols: [...request.protocols],
    toPort: request.toPort,
    addrs: normalizeAddrs(request.addrs),
    line: 0,
  };
  const entries = entriesOf(doc);
  const same = entries.find((e) => e.forward !== undefined && sameForward(e.forward, wanted));
  if (same !== undefined) return finish(doc, entries, [], false, [`line ${same.origin ?? 0} already says '${formatForward(wanted)}'`]);
  const notes = dropForwardProtocols(entries, wanted.port, wanted.protocols, () => `replaced by '${formatForward(wanted)}'`);
  notes.push(`added '${formatForward(wanted)}'`);
  return finish(
    doc,
    entries,
    [{ text: formatForward(wanted), rule: undefined, forward: wanted, origin: undefined, removed: false, after: [] }],
    true,
    notes,
  );
}

/** Removes the forwards of `port` for these protocols (splitting a tcp+udp statement when only one goes). */
export function removeForward(doc: PolicyDocument, request: { port: number; protocols: readonly Protocol[] }): EditResult {
  const entries = entriesOf(doc);
  const notes = dropForwardProtocols(entries, request.port, request.protocols, () => 'removed');
  if (notes.length === 0) {
    const what = `${request.port}${request.protocols.length === 1 ? `/${request.protocols[0]}` : ''}`;
    return finish(doc, entries, [], false, [`nothing to remove: the policy forwards no ${what}`]);
  }
  return finish(doc, entries, [], true, notes);
}

function dropForwardProtocols(entries: Entry[], port: number, protocols: readonly Protocol[], why: () => string): string[] {
  const notes: string[] = [];
  for (const entry of entries) {
    const f = entry.forward;
    if (f === undefined || f.port !== port || !f.protocols.some((p) => protocols.includes(p))) continue;
    const keep = f.protocols.filter((p) => !protocols.includes(p));
    const line = entry.origin ?? f.line;
    if (keep.length === 0) {
      entry.removed = true;
      notes.push(`line ${line} '${formatForward(f)}' ${why()}`);
    } else {
      const kept = { ...f, protocols: keep };
      const hash = entry.text.indexOf('#');
      entry.text = indentOf(entry.text) + formatForward(kept) + (hash < 0 ? '' : `  ${entry.text.slice(hash)}`);
      entry.forward = kept;
      notes.push(
        `line ${line} now forwards only ${port}/${keep.join(',')}: ${f.protocols.filter((p) => protocols.includes(p)).join(',')} ${why()}`,
      );
    }
  }
  return notes;
}

function sameForward(a: ForwardRule, b: ForwardRule): boolean {
  return (
    a.port === b.port &&
    a.toPort === b.toPort &&
    sameAddressSet(a.addrs, b.addrs) &&
    a.protocols.length === b.protocols.length &&
    a.protocols.every((p) => b.protocols.includes(p))
  );
}

function cloneRule(rule: Rule): Rule {
  return {
    action: rule.action,
    ports: rule.ports.map((item) => ({ from: item.from, to: item.to, protocols: [...item.protocols] })),
    principal: { ...rule.principal },
    addrs: [...rule.addrs],
    line: rule.line,
  };
}

function portsOf(items: readonly PortItem[]): PortSet {
  const set = PortSet.fromItems(items);
  if (set.isEmpty()) throw new UsageError('no ports given', 'Name the ports, e.g. 80,443 or 8000-8100/tcp.');
  return set;
}

function normalizeAddrs(addrs: readonly string[]): string[] {
  const out: string[] = [];
  for (const addr of addrs) {
    const normalized = normalizeAddress(addr);
    if (!out.includes(normalized)) out.push(normalized);
  }
  return out;
}

function sameAddressSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function on(addrs: readonly string[]): string {
  return addrs.length === 0 ? '' : ` on ${addrs.join(',')}`;
}

/**
 * `log WHAT` as the document's one `log` statement (`lowport log enable`):
 * the first `log` line says WHAT (its indentation and comment kept), any
 * other `log` line goes (statements add up, so a second one would log more
 * than asked), and a document without one gets it at its end. Saying what
 * the document already says changes nothing.
 */
export function setLogging(doc: PolicyDocument, what: LogWhat): EditResult {
  const entries = entriesOf(doc);
  const logs = entries.filter((e): e is Entry & { log: LogStatement } => e.log !== undefined);
  const wanted = formatLog({ what });
  const [first, ...others] = logs;
  if (first === undefined) return finish(doc, entries, [newLogEntry(what)], true, [`added '${wanted}'`]);
  const firstLine = first.origin ?? first.log.line;
  if (others.length === 0 && first.log.what === what)
    return finish(doc, entries, [], false, [`line ${firstLine} already says '${wanted}'`]);
  const notes: string[] = [];
  if (first.log.what !== what) {
    notes.push(`line ${firstLine}: '${formatLog(first.log)}' is now '${wanted}'`);
    first.text = indentOf(first.text) + wanted + commentOf(first.text);
    first.log = { what, line: first.log.line };
  }
  for (const e of others) {
    e.removed = true;
    notes.push(`removed line ${e.origin ?? e.log.line}: ${formatLog(e.log)} (one 'log' statement says it all)`);
  }
  return finish(doc, entries, [], true, notes);
}

/** Removes every `log` statement of the document (`lowport log disable`); without one, nothing changes. */
export function removeLogging(doc: PolicyDocument): EditResult {
  const entries = entriesOf(doc);
  const notes: string[] = [];
  for (const e of entries) {
    if (e.log === undefined) continue;
    e.removed = true;
    notes.push(`removed line ${e.origin ?? e.log.line}: ${formatLog(e.log)}`);
  }
  if (notes.length === 0) return finish(doc, entries, [], false, ["no 'log' statement here: nothing to remove"]);
  return finish(doc, entries, [], true, notes);
}

function newLogEntry(what: LogWhat): Entry {
  return { text: formatLog({ what }), rule: undefined, log: { what, line: 0 }, origin: undefined, removed: false, after: [] };
}
