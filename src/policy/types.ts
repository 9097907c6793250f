/** The policy's data model: what the file says, before names are resolved to ids. */

export type Protocol = 'tcp' | 'udp';
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];

/** One item of a port spec such as `80`, `8000-8100/tcp` or `53/udp`. */
export interface PortItem {
  from: number;
  to: number;
  /** `['tcp','udp']` when the item had no suffix. */
  protocols: Protocol[];
}

/** Who a rule is for. `name` is as written: a name or a decimal id. */
export type Principal = { kind: 'user'; name: string } | { kind: 'group'; name: string } | { kind: 'everyone' };

export type Action = 'grant' | 'reserve';

/** A statement of the file: `grant 80,443 user alice addr 127.0.0.1,::1`. */
export interface Rule {
  action: Action;
  ports: PortItem[];
  principal: Principal;
  /** Normalized IP literals (IPv6 compressed, lower case). Empty means any address. */
  addrs: string[];
  /** 1-based line of the statement in its file (in a document of several files, policy/origin.ts: in all of them, one after the other). */
  line: number;
}

/**
 * A statement `forward 80/tcp to 8080 addr 127.0.0.1`: an nftables redirect
 * of a port to another one on this host, made live by `lowport apply`
 * (src/forward/). It grants nothing: the program binds the high port.
 */
export interface ForwardRule {
  port: number;
  /** `['tcp','udp']` when the port had no suffix. */
  protocols: Protocol[];
  toPort: number;
  /** Normalized destination addresses (of this host) to redirect; empty means every local address. */
  addrs: string[];
  /** 1-based line of the statement in its file. */
  line: number;
}

/** What a `log` statement turns on: events of grants used, of reservation refusals, or both. */
export type LogWhat = 'grants' | 'refusals' | 'all';
export const LOG_WHATS: readonly LogWhat[] = ['grants', 'refusals', 'all'];

/**
 * A statement `log grants`: the bind program writes an event for each bind it
 * grants (or refuses, or both) to a BPF ring buffer, read by `lowport log`.
 * Several statements add up (`log grants` and `log refusals` is `log all`).
 */
export interface LogStatement {
  what: LogWhat;
  /** 1-based line of the statement in its file. */
  line: number;
}

/**
 * A parsed file that remembers its text, so that the CLI can edit rules and
 * write the file back with every comment, blank line and untouched statement
 * exactly as the admin left them.
 */
export interface PolicyDocument {
  file: string;
  /** The source split into lines, without line terminators. */
  lines: string[];
  /** Statements in file order; `rule.line` indexes `lines` (1-based). */
  rules: Rule[];
  /**
   * `forward` statements in file order; absent when the file has none (so a
   * grant-only document is exactly what it was before forwards existed).
   */
  forwards?: ForwardRule[];
  /** `log` statements in file order; absent when the file has none (logging off). */
  logs?: LogStatement[];
  /**
   * The files, in order, when the document is the policy file and its
   * drop-ins (policy/sources.ts): `lines` holds theirs one after the other,
   * and a statement's `line` counts through them all (policy/origin.ts maps
   * it back to a file and its line). Absent for one file.
   */
  parts?: PolicyPart[];
}

/** One file of a document made of several (PolicyDocument.parts). */
export interface PolicyPart {
  /** Its path, as diagnostics name it. */
  file: string;
  /** How messages name it beside the others: `policy`, `policy.d/10-web.policy`. */
  name: string;
  /** Lines of the files before it: its line N is the document's line offset + N. */
  offset: number;
  /** Its number of lines. */
  count: number;
}
