/** The shape of a subcommand, and the options every command takes. */
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
import type { LowportOptions } from '../grants/target.js';
import type { CliIo } from './io.js';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

export const GLOBAL_OPTIONS = {
  policy: { type: 'string' },
  cgroup: { type: 'string' },
  'pin-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs;

export const GLOBAL_HELP = `Options for every command:
  --policy FILE    policy file (default /etc/lowport/policy)
  --cgroup DIR     attach to this cgroup-v2 directory instead of the hierarchy's root
  --pin-dir DIR    bpffs directory for lowport's pins (default /sys/fs/bpf/lowport)
  --json           machine-readable output
  -h, --help       this help`;

export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  options: LowportOptions;
  json: boolean;
  io: CliIo;
  /** The calling user's name, for the default principal. */
  callerName: string;
}

export interface Command {
  name: string;

  /** Full help: usage line, description, options, examples. */
  help: string;
  options: OptionSpecs;
  /** Whether this invocation needs root (apply --check does not). */
  needsRoot: (values: CommandContext['values']) => boolean;
  /**
   * Checks the arguments (throwing UsageError) and returns the step that does
   * the work: a typo is reported at once, before any offer to re-run as root.
   */
  prepare: (ctx: CommandContext) => () => number | Promise<number>;
}

export function printJson(io: CliIo, value: unknown): void {
  io.stdout(`${jsonText(value)}\n`);
}

/**
 * JSON.stringify escapes C0 controls but writes DEL, C1 controls (U+009B is
 * CSI to some terminals) and the bidi and line-separator characters raw; a
 * process name or path from another user may hold them, and --json output
 * often lands on a terminal. They only occur inside strings, where \uXXXX
 * means the same character, so the JSON is unchanged for a parser.
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2).replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** For commands that take no positional arguments. */
export function noArguments(ctx: CommandContext, command: string): void {
  if (ctx.positionals.length > 0) throw new UsageError(`lowport ${command} takes no arguments, but got '${ctx.positionals.join(' ')}'`, `See \`lowport ${command} --help\`.`);
}
