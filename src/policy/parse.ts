/**
 * The policy file parser. The format is line oriented, like sudoers:
 *
 *     grant   80,443     user alice   addr 127.0.0.1,::1   # comment
 *     reserve 5432       user postgres
 *     forward 80/tcp     to 8080      addr 127.0.0.1       # a kernel redirect
 *     log     all                                          # events for `lowport log`
 *
 * Every problem of the file is collected (nftables style) before the whole
 * file is rejected with one PolicyError, so an admin fixes them in one pass.
 * A line whose structure is broken (unknown keyword, missing part) yields one
 * diagnostic and parsing resumes on the next line; bad values within a
 * well-formed line (each port, the name, each address) are all reported.
 */
import { diagnostic, didYouMean, related, span, type Diagnostic, type Span } from '../diagnostic.js';
import { PolicyError } from '../errors.js';
import { scanAddressList } from './address.js';
import { lineRef, originOf } from './origin.js';
import { ownerClashes } from './owners.js';
import { scanPortSpec } from './ports.js';
import { parsePrincipalName } from './principal.js';
import { PolicySpecError } from './spec-error.js';
import {
  LOG_WHATS,
  type Action,
  type ForwardRule,
  type LogStatement,
  type LogWhat,
  type PolicyDocument,
  type Principal,
  type Rule,
} from './types.js';

/**
 * Every statement of the policy language, in the order the docs list them:
 * the one table the parser dispatches on, its "unknown statement" message
 * names, and a new file's header (policy-file.ts) prints.
 */
export const STATEMENTS = [
  { keyword: 'grant', form: 'PORTS  user NAME | group NAME | everyone  [addr IP,IP...]' },
  { keyword: 'reserve', form: 'PORTS  user NAME | group NAME' },
  { keyword: 'forward', form: 'PORT[/tcp|/udp] to PORT  [addr IP,IP...]   (a kernel redirect)' },
  { keyword: 'log', form: "grants | refusals | all   (an event per bind, for 'lowport log')" },
] as const;

const KEYWORDS: readonly string[] = STATEMENTS.map((s) => s.keyword);

/** `'grant', 'reserve', 'forward' or 'log'`. */
function alternatives(words: readonly string[]): string {
  const quoted = words.map((w) => `'${w}'`);
  return quoted.length <= 1 ? quoted.join('') : `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1] ?? ''}`;
}

/**
 * A file with syntax errors: every problem, and the statements that did
 * parse, so that a caller can add what it finds in them (names that do not
 * resolve) to the same report.
 */
export class PolicySyntaxError extends PolicyError {
  constructor(
    diagnostics: readonly Diagnostic[],
    /** The file's statements that parsed; the broken lines are not in it. */
    readonly parsed: PolicyDocument,
  ) {
    super(diagnostics);
  }
}

interface Token {
  text: string;
  /** 0-based offset in the line. */
  start: number;
}

/**
 * Parses a policy file. `file` is only used in diagnostics. Accepts LF and
 * CRLF line ends and a last line without one; an empty text has no rules.
 * Throws PolicyError listing every problem.
 */
export function parsePolicy(text: string, file: string): PolicyDocument {
  const { doc, diagnostics } = parseStatements(text, file);
  diagnostics.push(...checkAcross(doc));
  if (diagnostics.length > 0) throw new PolicySyntaxError(diagnostics, doc);
  return doc;
}

/**
 * One file's statements and the problems of each line, without the checks
 * that compare statements (checkAcross): a policy of several files
 * (sources.ts) runs those once over all of them.
 */
export function parseStatements(text: string, file: string): { doc: PolicyDocument; diagnostics: Diagnostic[] } {
  const lines = splitLines(text);
  const rules: Rule[] = [];
  const forwards: ForwardRule[] = [];
  const logs: LogStatement[] = [];
  const diagnostics: Diagnostic[] = [];
  lines.forEach((source, index) => {
    const rule = parseLine(source, index + 1, file, diagnostics, forwards, logs);
    if (rule !== undefined) rules.push(rule);
  });
  const doc: PolicyDocument = forwards.length === 0 ? { file, lines, rules } : { file, lines, rules, forwards };
  if (logs.length > 0) doc.logs = logs;
  return { doc, diagnostics };
}

/** The errors between statements, across every file of the document: a port forwarded twice, a reserved port with two owners. */
export function checkAcross(doc: PolicyDocument): Diagnostic[] {
  return [
    ...checkForwardOverlaps(doc),
    ...ownerClashes(
      doc.rules,
      (rule) => portsSpan(doc, rule),
      (other, rule) => lineRef(doc, other.line, rule.line),
    ),
  ];
}

/** The text's lines without their terminators; a final line end does not start another line. */
function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/** The part of a line before its comment: names, ports and addresses never contain '#'. */
function statementPart(line: string): string {
  const hash = line.indexOf('#');
  return hash < 0 ? line : line.slice(0, hash);
}

function tokenize(content: string): Token[] {
  return [...content.matchAll(/[^ \t]+/g)].map((m) => ({ text: m[0], start: m.index }));
}

/**
 * Appends " (keywords are lower case)" when `word` is a keyword in the wrong
 * case, else " (did you mean 'grant'?)" when it is one typo away from one.
 */
function caseHint(word: string, keywords: readonly string[]): string {
  if (word !== word.toLowerCase() && keywords.includes(word.toLowerCase())) return ' (keywords are lower case)';
  return didYouMean(word, keywords);
}

function parseLine(
  source: string,
  line: number,
  file: string,
  diagnostics: Diagnostic[],
  forwards: ForwardRule[],
  logs: LogStatement[],
): Rule | undefined {
  const content = statementPart(source);
  const tokens = tokenize(content);
  const reported = diagnostics.length;
  const report = (start: number, length: number, message: string): void => {
    diagnostics.push(diagnostic('error', span(file, line, source, start, length), message));
  };
  const reportAt = (token: Token, message: string): void => {
    report(token.start, token.text.length, message);
  };
  const reportSpec = (token: Token, error: PolicySpecError): void => {
    report(token.start + error.offset, error.length, error.message);
  };
  // A missing part is reported just after the last token, where it should have been.
  const last = tokens[tokens.length - 1];
  const end = last === undefined ? 0 : last.start + last.text.length;
  const reportMissing = (message: string): void => {
    report(end, 1, message);
  };

  const [actionToken, portsToken, whoToken] = tokens;
  if (actionToken === undefined) return undefined;
  const actionText = actionToken.text;
  const statement = STATEMENTS.find((s) => s.keyword === actionText);
  if (statement === undefined) {
    reportAt(actionToken, `unknown statement '${actionText}': expected ${alternatives(KEYWORDS)}${caseHint(actionText, KEYWORDS)}`);
    return undefined;
  }
  if (statement.keyword === 'forward') {
    const forward = parseForward(tokens, line, { report, reportAt, reportSpec, reportMissing });
    if (forward !== undefined && diagnostics.length === reported) forwards.push(forward);
    return undefined;
  }
  if (statement.keyword === 'log') {
    const what = parseLog(tokens, { report, reportAt, reportSpec, reportMissing });
    if (what !== undefined && diagnostics.length === reported) logs.push({ what, line });
    return undefined;
  }
  // A keyword added to STATEMENTS without a case here does not compile.
  const action: Action = statement.keyword;

  if (portsToken === undefined) {
    reportMissing(`expected ports after '${action}', e.g. '${action} 80,443 user alice'`);
    return undefined;
  }
  const { items: ports, errors: portErrors } = scanPortSpec(portsToken.text);
  for (const error of portErrors) reportSpec(portsToken, error);
  // `80, 443`: the rest of the line is the rest of the list, not a principal.
  if (portsToken.text.endsWith(',')) return undefined;

  const whoExpected = "expected 'user NAME', 'group NAME' or 'everyone' after the ports";
  if (whoToken === undefined) {
    reportMissing(whoExpected);
    return undefined;
  }
  let principal: Principal;
  let next = 3;
  const who = whoToken.text;
  if (who === 'user' || who === 'group') {
    const nameToken = tokens[3];
    if (nameToken === undefined) {
      reportMissing(`expected a ${who} name or id after '${who}'`);
      return undefined;
    }
    let name = nameToken.text;
    try {
      name = parsePrincipalName(who, nameToken.text);
    } catch (error) {
      if (!(error instanceof PolicySpecError)) throw error;
      reportSpec(nameToken, error);
    }
    principal = { kind: who, name };
    next = 4;
  } else if (who === 'everyone') {
    principal = { kind: 'everyone' };
    if (action === 'reserve') {
      reportAt(whoToken, "a reservation for 'everyone' reserves nothing: name the user or group that alone may bind these ports");
    }
  } else {
    reportAt(whoToken, `${whoExpected}, found '${who}'${caseHint(who, ['user', 'group', 'everyone'])}`);
    return undefined;
  }

  let addrs: string[] = [];
  let hasAddr = false;
  const addrToken = tokens[next];
  if (addrToken?.text === 'addr') {
    hasAddr = true;
    const listToken = tokens[next + 1];
    if (action === 'reserve') {
      reportAt(addrToken, "'addr' is not allowed on 'reserve': a reservation covers every address");
    } else if (listToken === undefined) {
      reportMissing("expected addresses after 'addr', e.g. 'addr 127.0.0.1,::1'");
      return undefined;
    }
    if (listToken !== undefined && action === 'grant') {
      const scanned = scanAddressList(listToken.text);
      for (const error of scanned.errors) reportSpec(listToken, error);
      if (listToken.text.endsWith(',')) return undefined;
      addrs = scanned.addrs;
    }
    next += listToken === undefined ? 1 : 2;
  }

  const extra = tokens[next];
  if (extra !== undefined) {
    if (extra.text === 'addr' && hasAddr) {
      reportAt(extra, "'addr' is given twice: put all addresses in one list, e.g. 'addr 127.0.0.1,::1'");
    } else {
      const expected = hasAddr || action === 'reserve' ? "the end of the line ('#' starts a comment)" : "'addr' or the end of the line";
      reportAt(extra, `unexpected '${extra.text}' after the statement: expected ${expected}${caseHint(extra.text, ['addr'])}`);
    }
  }

  if (diagnostics.length > reported) return undefined;
  return { action, ports, principal, addrs, line };
}

interface Reporter {
  report: (start: number, length: number, message: string) => void;
  reportAt: (token: Token, message: string) => void;
  reportSpec: (token: Token, error: PolicySpecError) => void;
  reportMissing: (message: string) => void;
}

const FORWARD_EXAMPLE = "e.g. 'forward 80/tcp to 8080'";

/** `forward PORT[/tcp|/udp] to PORT [addr IP,IP...]`: one port, redirected to one port of this host. */
function parseForward(tokens: Token[], line: number, r: Reporter): ForwardRule | undefined {
  const [, portToken, toToken, targetToken] = tokens;
  if (portToken === undefined) {
    r.reportMissing(`expected a port after 'forward', ${FORWARD_EXAMPLE}`);
    return undefined;
  }
  const { items, errors } = scanPortSpec(portToken.text);
  for (const error of errors) r.reportSpec(portToken, error);
  const [item] = items;
  if (errors.length === 0 && (items.length !== 1 || item === undefined || item.from !== item.to)) {
    r.reportAt(portToken, `'forward' takes one port, with /tcp or /udp or neither, ${FORWARD_EXAMPLE}`);
  }
  if (toToken === undefined) {
    r.reportMissing(`expected 'to PORT' after the port, ${FORWARD_EXAMPLE}`);
    return undefined;
  }
  if (toToken.text !== 'to') {
    r.reportAt(toToken, `expected 'to' after the port, found '${toToken.text}', ${FORWARD_EXAMPLE}`);
    return undefined;
  }
  if (targetToken === undefined) {
    r.reportMissing(`expected the port to forward to after 'to', ${FORWARD_EXAMPLE}`);
    return undefined;
  }
  const toPort = /^[0-9]{1,5}$/.test(targetToken.text) ? Number(targetToken.text) : NaN;
  if (!(toPort >= 1 && toPort <= 65535)) {
    r.reportAt(targetToken, `'${targetToken.text}' is not a port: the target is one port 1-65535 of this host, without /tcp or /udp`);
  }
  let addrs: string[] = [];
  let next = 4;
  const addrToken = tokens[next];
  if (addrToken?.text === 'addr') {
    const listToken = tokens[next + 1];
    if (listToken === undefined) {
      r.reportMissing("expected addresses after 'addr', e.g. 'addr 127.0.0.1,::1'");
      return undefined;
    }
    const scanned = scanAddressList(listToken.text);
    for (const error of scanned.errors) r.reportSpec(listToken, error);
    for (const addr of scanned.addrs) {
      // nftables sees an IPv4 packet as IPv4: an `ip6 daddr ::ffff:a.b.c.d` rule would never match.
      if (/^::ffff:[0-9.]+$/.test(addr))
        r.reportAt(listToken, `'${addr}' is an IPv4-mapped address: write the IPv4 address ${addr.slice(7)}`);
    }
    addrs = scanned.addrs;
    next += 2;
  }
  const extra = tokens[next];
  if (extra !== undefined) {
    r.reportAt(
      extra,
      `unexpected '${extra.text}' after the statement: expected ${next === 4 ? "'addr' or " : ''}the end of the line ('#' starts a comment)`,
    );
  }
  if (item === undefined) return undefined;
  return { port: item.from, protocols: [...item.protocols], toPort, addrs, line };
}

/** `log grants | refusals | all`: what the bind program writes events for. */
function parseLog(tokens: Token[], r: Reporter): LogWhat | undefined {
  const [, whatToken, extra] = tokens;
  const expected = alternatives(LOG_WHATS);
  if (whatToken === undefined) {
    r.reportMissing(`expected ${expected} after 'log', e.g. 'log all'`);
    return undefined;
  }
  const what = LOG_WHATS.find((w) => w === whatToken.text);
  if (what === undefined) {
    r.reportAt(whatToken, `expected ${expected} after 'log', found '${whatToken.text}'${caseHint(whatToken.text, LOG_WHATS)}`);
    return undefined;
  }
  if (extra !== undefined) {
    r.reportAt(extra, `unexpected '${extra.text}' after the statement: expected the end of the line ('#' starts a comment)`);
    return undefined;
  }
  return what;
}

/** What the `log` statements of a document turn on together; both false when it has none. */
export function loggingOf(doc: Pick<PolicyDocument, 'logs'>): { grants: boolean; refusals: boolean } {
  const whats = new Set((doc.logs ?? []).map((l) => l.what));
  return { grants: whats.has('grants') || whats.has('all'), refusals: whats.has('refusals') || whats.has('all') };
}

/** A port and protocol forwarded twice would leave nftables to pick one by rule order: refuse it, pointing at both. */
function checkForwardOverlaps(doc: PolicyDocument): Diagnostic[] {
  const forwards = doc.forwards ?? [];
  const out: Diagnostic[] = [];
  forwards.forEach((f, i) => {
    const earlier = forwards.slice(0, i).find((e) => e.port === f.port && e.protocols.some((p) => f.protocols.includes(p)));
    if (earlier === undefined) return;
    const both = f.protocols.filter((p) => earlier.protocols.includes(p)).join(' and ');
    out.push(
      diagnostic(
        'error',
        tokenSpan(doc, f.line, 1),
        `port ${f.port} (${both}) is already forwarded on ${lineRef(doc, earlier.line, f.line)}: keep one statement per port and protocol`,
        {
          related: [related(tokenSpan(doc, earlier.line, 1), 'first forwarded here')],
        },
      ),
    );
  });
  return out;
}

/**
 * Where a statement's user or group name is on its line (`everyone` for
 * everyone), for diagnostics about the name; the whole line if the document's
 * line is not the rule's.
 */
export function principalSpan(doc: Pick<PolicyDocument, 'file' | 'lines' | 'parts'>, rule: Rule): Span {
  return tokenSpan(doc, rule.line, rule.principal.kind === 'everyone' ? 2 : 3);
}

/** Where a statement's ports are on its line. */
export function portsSpan(doc: Pick<PolicyDocument, 'file' | 'lines' | 'parts'>, rule: Rule): Span {
  return tokenSpan(doc, rule.line, 1);
}

/** The span of the `index`th word of a statement's line, or the whole line without it; in its own file (origin.ts). */
function tokenSpan(doc: Pick<PolicyDocument, 'file' | 'lines' | 'parts'>, line: number, index: number): Span {
  const source = doc.lines[line - 1] ?? '';
  const at = doc.parts === undefined ? { file: doc.file, line } : originOf(doc, line);
  const token = tokenize(statementPart(source))[index];
  return token === undefined
    ? span(at.file, at.line, source, 0, source.length)
    : span(at.file, at.line, source, token.start, token.text.length);
}
