import { LowportError } from '../errors.js';

/**
 * A bad piece of policy text on its own: a port spec (`80,,443`), an address
 * (`fe80::1%eth0`) or a user/group name. It says where in `spec` the problem
 * is, so that the file parser can turn it into a Diagnostic with a line and
 * column, and the CLI (`lowport grant 80,443/tcp`) into a UsageError with a
 * caret under the culprit. Its code is E_USAGE because, when nobody converts
 * it, the text came from the command line.
 */
export class PolicySpecError extends LowportError {
  /** The text that was being parsed. */
  readonly spec: string;
  /** 0-based offset of the culprit within `spec`. */
  readonly offset: number;
  /** How many characters to underline (at least 1). */
  readonly length: number;

  constructor(spec: string, offset: number, length: number, message: string) {
    super('E_USAGE', message);
    this.spec = spec;
    this.offset = offset;
    this.length = Math.max(1, length);
  }

  /** The spec and a line of carets under the culprit, as formatDiagnostic draws them for files. */
  caret(): string {
    return `${this.spec}\n${' '.repeat(this.offset)}${'^'.repeat(this.length)}`;
  }
}
