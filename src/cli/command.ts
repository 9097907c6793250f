/**
 * One declaration per command (in the manner of citty's defineCommand): its
 * name, summary, synopsis, description, examples, positional arguments and
 * options, each option with its type, short name, value name, description and
 * what a shell completes for it. --help, the man page and the completion
 * scripts are generated from these declarations (help.ts, manpage.ts,
 * completion.ts), and the values a command gets are typed from its options:
 * a string option is `string | undefined`, a boolean `boolean | undefined`, a
 * repeatable string `string[] | undefined`.
 *
 * The declarations (commands.ts) load nothing heavy; each command's work is
 * in its own module, loaded only when it runs (`load`), which binds it to its
 * declaration with `implement` so that its values are typed.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { didYouMean } from '../diagnostic.js';
import { UsageError } from '../errors.js';
import type { LowportOptions } from '../grants/target.js';
import { lowportOptions } from './args.js';
import type { CliIo } from './io.js';

/** What a shell offers for an option's value or a positional argument. */
export type Completion = 'none' | 'user' | 'group' | 'file' | 'directory' | 'command';

export interface OptionDef {
  readonly type: 'string' | 'boolean';
  /** A string option that may be repeated: its values come as an array. */
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's name in help and the man page (`--user U`); string options only. */
  readonly value?: string;
  /** For help: may hold line breaks, which continue under the first line. */
  readonly description: string;
  /** What a shell completes for the value (default: nothing). */
  readonly complete?: Completion;
  /** The values a shell offers (`--proxy-protocol v1|v2`). */
  readonly choices?: readonly string[];
}

export type OptionDefs = Readonly<Record<string, OptionDef>>;

export interface PositionalDef {
  /** As in the synopsis: `PORTS`, `NAME`, `COMMAND`. */
  readonly name: string;
  readonly description: string;
  readonly complete?: Completion;
  /** The words a shell offers (`bash`, `zsh`). */
  readonly choices?: readonly string[];
}

type ValueOf<D extends OptionDef> = D extends { type: 'boolean' } ? boolean : D extends { multiple: true } ? string[] : string;

/** The parsed values of options `O`, typed from their declaration. */
export type Values<O extends OptionDefs> = { [K in keyof O]?: ValueOf<O[K]> | undefined };

export const GLOBAL_OPTIONS = {
  policy: { type: 'string', value: 'FILE', description: 'policy file (default /etc/lowport/policy)', complete: 'file' },
  cgroup: {
    type: 'string',
    value: 'DIR',
    description: "attach to this cgroup-v2 directory instead of the hierarchy's root",
    complete: 'directory',
  },
  'pin-dir': {
    type: 'string',
    value: 'DIR',
    description: "bpffs directory for lowport's pins (default /sys/fs/bpf/lowport)",
    complete: 'directory',
  },
  json: { type: 'boolean', description: 'machine-readable output' },
  help: { type: 'boolean', short: 'h', description: 'this help' },
} as const satisfies OptionDefs;

export type GlobalValues = Values<typeof GLOBAL_OPTIONS>;

/** Only `lowport --version`, before any command. */
export const VERSION_OPTION = { version: { type: 'boolean', description: 'print the version' } } as const satisfies OptionDefs;

export interface CommandContext<O extends OptionDefs = OptionDefs> {
  values: Values<O> & GlobalValues;
  positionals: string[];
  options: LowportOptions;
  json: boolean;
  io: CliIo;
  /** The calling user's name, for the default principal. */
  callerName: string;
  /** Every note of every command: on stderr, after `lowport: `. */
  note: (text: string) => void;
}

/**
 * Checks the arguments (throwing UsageError) and returns the step that does
 * the work: a typo is reported at once, before any offer to re-run as root.
 */
export type Prepare<O extends OptionDefs> = (ctx: CommandContext<O>) => () => number | Promise<number>;

/** A command's work bound to its declaration (see `implement`). */
export interface Implementation {
  readonly command: AnyCommand;
  readonly start: (args: string[], ctx: Omit<CommandContext, 'values' | 'positionals' | 'options' | 'json'>) => Started;
}

/** The outcome of parsing a command line: the values, and the step that runs the command. */
export interface Started {
  values: Values<OptionDefs> & GlobalValues;
  json: boolean;
  /** --help was given: print the help, run nothing. */
  help: boolean;
  needsRoot: boolean;
  run: () => number | Promise<number>;
}

export interface Command<O extends OptionDefs> {
  /** The words after `lowport`: ['grant'], ['forward', 'add']. */
  readonly path: readonly string[];
  /** One line, for the command list, the man page and the completions. */
  readonly summary: string;
  /** Synopsis lines, each after `lowport PATH `: ['PORTS [--user U | --group G | --everyone] [--addr IP]...']. */
  readonly usage: readonly string[];
  /** Paragraphs, separated by an empty line; lines are kept as written. */
  readonly description: string;
  readonly positionals?: readonly PositionalDef[];
  readonly options: O;
  readonly examples?: readonly string[];
  /**
   * Options of other commands that people give this one, each with what to
   * do instead (`run --group`: run runs COMMAND as one user); said in place
   * of a "did you mean" guess.
   */
  readonly misses?: Readonly<Record<string, string>>;
  /** Whether this invocation needs root (apply --check does not). */
  readonly needsRoot: (values: Values<O>) => boolean;
  /**
   * Why it needs root, after "lowport NAME needs root: " (default: it changes
   * what the kernel lets programs bind). A command that only reads says what
   * it reads that only root may.
   */
  readonly whyRoot?: string;
  /** The module that does the work, loaded only when the command runs. */
  readonly load: () => Promise<Implementation>;
}

/** A command with subcommands (`lowport forward add|remove|...`); it does nothing itself. */
export interface CommandGroup {
  readonly path: readonly string[];
  readonly summary: string;
  readonly description: string;
  readonly subcommands: readonly AnyCommand[];
  /**
   * What the group's name alone runs (`lowport log`, `lowport log --follow`:
   * the events; `lowport log enable` is a subcommand): its path is the
   * group's. Without it, the name alone shows the group's help.
   */
  readonly alone?: AnyCommand;
  readonly examples?: readonly string[];
  /**
   * The spellings of an earlier release, kept for one more: turns such
   * arguments into the new ones, with a note naming the new spelling; or
   * undefined when `args` are not an old spelling. `first` is the first word
   * that is not an option, which named no subcommand.
   */
  readonly legacy?: (args: string[], first: string | undefined) => { args: string[]; note: string } | undefined;
}

/** Any command, its option types forgotten: what help, man page and completions read. */
export interface AnyCommand extends Omit<Command<OptionDefs>, 'needsRoot'> {
  readonly needsRoot: (values: never) => boolean;
}

export type Entry = AnyCommand | CommandGroup;

export function isGroup(e: Entry): e is CommandGroup {
  return 'subcommands' in e;
}

/** Every command that runs, subcommands in their group's place (after what the group's name alone runs). */
export function leaves(entries: readonly Entry[]): AnyCommand[] {
  return entries.flatMap((e) => (isGroup(e) ? [...(e.alone === undefined ? [] : [e.alone]), ...e.subcommands] : [e]));
}

/** Declares a command; `const` keeps the options' literal types, from which its values are typed. */
export function defineCommand<const O extends OptionDefs>(command: Command<O>): Command<O> {
  return command;
}

export function defineGroup(group: CommandGroup): CommandGroup {
  return group;
}

/** The name of a command as typed: `forward add`. */
export function commandName(c: Pick<Entry, 'path'>): string {
  return c.path.join(' ');
}

/**
 * The one place parsed values meet their types: node:util's parseArgs, told
 * the same options, returns a string where the declaration says string, a
 * boolean where it says boolean, and an array where it says multiple. This
 * checks it, so the type a command sees is true of its values without a cast.
 */
function matchDeclaration<O extends OptionDefs>(options: O, parsed: Record<string, unknown>): parsed is Values<O> & GlobalValues {
  const all: OptionDefs = { ...GLOBAL_OPTIONS, ...options };
  return Object.entries(parsed).every(([key, value]) => {
    const def = all[key];
    if (def === undefined) return false;
    if (def.type === 'boolean') return typeof value === 'boolean';
    return def.multiple === true ? Array.isArray(value) && value.every((v) => typeof v === 'string') : typeof value === 'string';
  });
}

function parseConfig(options: OptionDefs): NonNullable<ParseArgsConfig['options']> {
  const config: NonNullable<ParseArgsConfig['options']> = {};
  const all: OptionDefs = { ...GLOBAL_OPTIONS, ...options };
  for (const [key, o] of Object.entries(all)) {
    config[key] = {
      type: o.type,
      ...(o.short === undefined ? {} : { short: o.short }),
      ...(o.multiple === true ? { multiple: true } : {}),
    };
  }
  return config;
}

/** Binds a command's work to its declaration: `prepare` gets values typed from `command.options`. */
export function implement<const O extends OptionDefs>(command: Command<O>, prepare: Prepare<O>): Implementation {
  return {
    command,
    start: (args, base) => {
      const parsed = parseOptions(command, args);
      const values = parsed.values;
      if (!matchDeclaration(command.options, values))
        throw new Error(`lowport ${commandName(command)}: parseArgs returned values its declaration does not describe`);
      const json = values.json === true;
      const ctx: CommandContext<O> = { ...base, values, positionals: parsed.positionals, options: lowportOptions(values), json };
      const help = values.help === true;
      return { values, json, help, needsRoot: !help && command.needsRoot(values), run: help ? () => 0 : prepare(ctx) };
    },
  };
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
export function jsonText(value: unknown, indent = 2): string {
  return jsonEscape(JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), indent));
}

/** JSON text with the controls JSON.stringify leaves as they are (C1, bidi, line separators) escaped too. */
export function jsonEscape(json: string): string {
  return json.replace(
    /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** For commands that take no positional arguments. */
export function noArguments(ctx: { positionals: string[] }, command: string): void {
  if (ctx.positionals.length > 0)
    throw new UsageError(
      `lowport ${command} takes no arguments, but got '${ctx.positionals.join(' ')}'`,
      `See \`lowport ${command} --help\`.`,
    );
}

/**
 * The index of the first word of `args` that is neither an option nor the value of one in `takesValue`, or -1
 * (`--` ends the search: what follows is a command's, not ours).
 */
export function firstWordIndex(args: readonly string[], takesValue: ReadonlySet<string>): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--') return -1;
    if (takesValue.has(a)) i++;
    else if (!a.startsWith('-')) return i;
  }
  return -1;
}

/** `--name` (and `-s`) of every string option of `options`: the ones whose value is the next word. */
export function valueOptionWords(options: OptionDefs): string[] {
  return Object.entries(options).flatMap(([name, o]) =>
    o.type === 'string' ? [`--${name}`, ...(o.short === undefined ? [] : [`-${o.short}`])] : [],
  );
}

/** `lowport NAME needs root: ...`, the reason from the declaration. */
export function rootReason(command: Pick<AnyCommand, 'path' | 'whyRoot'>): string {
  return `lowport ${commandName(command)} needs root: ${command.whyRoot ?? 'it changes what the kernel lets programs bind'}.`;
}

/**
 * node:util's parseArgs, with its errors (written for a program's author:
 * "To specify a positional argument starting with a '-', place it at the
 * end of the command after '--', as in '-- "--group"') turned into lowport's
 * own UsageError, which names the command, the culprit and the options the
 * command takes.
 */
function parseOptions(command: AnyCommand, args: string[]) {
  const options = parseConfig(command.options);
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    if (!(e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS'))) throw e;
    throw optionError(command, args);
  }
}

/** The first word parseArgs refused, found again (without strict) and said in lowport's words. */
export function optionError(command: Pick<AnyCommand, 'path' | 'options' | 'misses'>, args: string[]): UsageError {
  const name = commandName(command);
  const all: OptionDefs = { ...command.options, ...GLOBAL_OPTIONS };
  const { tokens } = parseArgs({ args, options: parseConfig(command.options), allowPositionals: true, strict: false, tokens: true });
  const see = `See \`lowport ${name} --help\`.`;
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const def = Object.hasOwn(all, t.name) ? all[t.name] : undefined;
    if (def === undefined) {
      const miss = t.rawName.startsWith('--') ? command.misses?.[t.name] : undefined;
      if (miss !== undefined)
        return new UsageError(`lowport ${name} has no option '${t.rawName}': ${miss}`, `${optionList(command)} ${see}`);
      const longNames = Object.keys(all).map((o) => `--${o}`);
      const near = t.rawName.startsWith('--') ? didYouMean(t.rawName, longNames) : '';
      return new UsageError(`lowport ${name} has no option '${t.rawName}'${near}`, `${optionList(command)} ${see}`);
    }
    const label = `--${t.name}`;
    if (def.type === 'boolean' && t.value !== undefined)
      return new UsageError(`${label} takes no value, but got '${label}=${t.value}'`, see);
    if (def.type === 'string' && t.value === undefined)
      return new UsageError(`${label} needs a value: ${label} ${def.value ?? 'VALUE'}`, see);
    if (def.type === 'string' && t.inlineValue === false && t.value?.startsWith('-') === true) {
      return new UsageError(
        `${label} needs a value, but the next word is '${t.value}'`,
        `Give ${label} ${def.value ?? 'VALUE'}; for a value that starts with '-', write ${label}=${t.value}. ${see}`,
      );
    }
  }
  return new UsageError(`lowport ${name} cannot read the arguments '${args.join(' ')}'`, `${optionList(command)} ${see}`);
}

/** `lowport run takes --port, --user, ... (and, as every command, --policy, ...).` */
function optionList(command: Pick<AnyCommand, 'path' | 'options'>): string {
  const own = Object.keys(command.options).map((o) => `--${o}`);
  const global = Object.keys(GLOBAL_OPTIONS).map((o) => `--${o}`);
  const list = (words: string[]): string =>
    words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} and ${words[words.length - 1] ?? ''}`;
  return own.length === 0
    ? `lowport ${commandName(command)} takes only the options of every command: ${list(global)}.`
    : `lowport ${commandName(command)} takes ${list(own)} (and, as every command, ${list(global)}).`;
}
