/**
 * Every error lowport throws on purpose is a LowportError: a stable `code` for
 * scripts (`--json` prints it), a message that says what happened, and a `hint`
 * that says what to do next. Only cli/main.ts prints errors and picks exit
 * codes; everything else throws.
 */

export type ErrorCode =
  | 'E_USAGE'
  | 'E_POLICY_SYNTAX'
  | 'E_POLICY_UNSAFE'
  | 'E_POLICY_MISSING'
  | 'E_UNKNOWN_USER'
  | 'E_UNKNOWN_GROUP'
  | 'E_NOT_ROOT'
  | 'E_UNSUPPORTED'
  | 'E_SYSCALL'
  | 'E_NFT'
  | 'E_STATE';

export class LowportError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it, one or two sentences. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }
}

/** Bad command line: exit code 2. */
export class UsageError extends LowportError {
  constructor(message: string, hint?: string) {
    super('E_USAGE', message, hint === undefined ? {} : { hint });
  }
}

/** One problem in a policy file, located by 1-based line and column. */
export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  /** How many characters to underline. */
  length: number;
  message: string;
  /** The whole source line, for the caret display. */
  source: string;
}

/** A policy file was rejected; `diagnostics` holds every problem found, not just the first. */
export class PolicyError extends LowportError {
  readonly diagnostics: readonly Diagnostic[];

  constructor(diagnostics: readonly Diagnostic[], hint = 'Fix the lines above; nothing was changed.', code: 'E_POLICY_SYNTAX' | 'E_UNKNOWN_USER' | 'E_UNKNOWN_GROUP' = 'E_POLICY_SYNTAX') {
    const first = diagnostics[0];
    const summary =
      first === undefined
        ? 'invalid policy'
        : `${first.file}:${first.line}:${first.column}: ${first.message}` +
          (diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : '');
    super(code, summary, { hint });
    this.diagnostics = diagnostics;
  }
}

/** nftables-style rendering: `file:line:col: error: msg`, the line, and carets under the culprit. */
export function formatDiagnostic(d: Diagnostic): string {
  const caretLine = ' '.repeat(Math.max(0, d.column - 1)) + '^'.repeat(Math.max(1, d.length));
  return `${d.file}:${d.line}:${d.column}: error: ${d.message}\n${d.source}\n${caretLine}`;
}
