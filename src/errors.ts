/**
 * Every error lowport throws on purpose is a LowportError: a stable `code` for
 * scripts (`--json` prints it), a message that says what happened, and a `hint`
 * that says what to do next. Only cli/main.ts prints errors and picks exit
 * codes; everything else throws.
 */
import type { Diagnostic } from './diagnostic.js';

export type ErrorCode =
  | 'E_USAGE'
  | 'E_POLICY_SYNTAX'
  | 'E_POLICY_UNSAFE'
  | 'E_POLICY_MISSING'
  | 'E_POLICY_CLASH'
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
  /** Where in a source (a policy file, a command-line word) the problem is, for the caret display; often none. */
  readonly diagnostics: readonly Diagnostic[];

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown; diagnostics?: readonly Diagnostic[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
    this.diagnostics = options.diagnostics ?? [];
  }
}

/** Bad command line: exit code 2. `diagnostics` point at the culprit in the word given. */
export class UsageError extends LowportError {
  constructor(message: string, hint?: string, diagnostics?: readonly Diagnostic[]) {
    super('E_USAGE', message, { ...(hint === undefined ? {} : { hint }), ...(diagnostics === undefined ? {} : { diagnostics }) });
  }
}

/** A policy file was rejected; `diagnostics` holds every problem found, not just the first. */
export class PolicyError extends LowportError {
  constructor(
    diagnostics: readonly Diagnostic[],
    hint = 'Fix the lines above; nothing was changed.',
    code: 'E_POLICY_SYNTAX' | 'E_UNKNOWN_USER' | 'E_UNKNOWN_GROUP' = 'E_POLICY_SYNTAX',
  ) {
    const first = diagnostics[0];
    const summary =
      first === undefined
        ? 'invalid policy'
        : `${first.file}:${first.line}:${first.column}: ${first.message}` +
          (diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : '');
    super(code, summary, { hint, diagnostics });
  }
}
