#!/usr/bin/env node
/**
 * The lowport command: parses arguments, runs one command, prints, and picks
 * the exit code (0 success, 1 failure, 2 usage). The only module that prints.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMMAND_LINE, formatDiagnostics } from '../diagnostic.js';
import { LowportError, PolicyError, UsageError } from '../errors.js';
import { ownPackageDir } from '../os/package-dir.js';
import { effectiveUid, MissingToolError } from '../os/process.js';
import {
  commandName,
  firstWordIndex,
  GLOBAL_OPTIONS,
  isGroup,
  jsonText,
  rootReason,
  valueOptionWords,
  type AnyCommand,
  type CommandGroup,
} from './command.js';
import { COMMANDS } from './commands.js';
import { entryHelp, mainHelp } from './help.js';
import { processIo, type CliIo } from './io.js';
import { offerSudo } from './sudo.js';
import { escapeControl } from '../text.js';

/** The declarations (commands.ts); each command's work is loaded only when it runs. */
export { COMMANDS };

export function version(): string {
  // From the package directory, not a path relative to this file: bundled, this code sits in dist/bundle/ (package-dir.ts).
  const pkg = JSON.parse(readFileSync(join(ownPackageDir(), 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function callerName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(effectiveUid());
  }
}

/** 2 for a usage error: a bad command line, or a problem in a word of it (an unknown --user); else 1. */
function exitCodeOf(e: LowportError): number {
  const aboutArguments = e.diagnostics.length > 0 && e.diagnostics.every((d) => d.file === COMMAND_LINE);
  return e instanceof UsageError || e.code === 'E_USAGE' || aboutArguments ? 2 : 1;
}

/**
 * Messages and hints quote paths, names and words a user gave, so every
 * control character in them is escaped (text.ts); only their own line breaks
 * (a caret under a bad argument) stay. The code that builds a message escapes
 * the values it quotes, so those cannot add a line either.
 */
function terminalSafe(text: string): string {
  return text.split('\n').map(escapeControl).join('\n');
}

/** What to do about an error: its own hint, or, for facts os/ reports bare, the advice said here. */
function hintOf(e: LowportError): string | undefined {
  if (e instanceof MissingToolError) return `Install ${e.debianPackage} (apt-get install ${e.debianPackage}).`;
  return e.hint;
}

export function formatError(e: unknown): string {
  if (e instanceof PolicyError) {
    const count = e.diagnostics.filter((d) => d.severity === 'error').length;
    return `${formatDiagnostics(e.diagnostics)}lowport: ${count} error${count === 1 ? '' : 's'} in the policy. ${e.hint ?? 'Nothing was changed.'}\n`;
  }
  if (e instanceof LowportError) {
    const advice = hintOf(e);
    const hint = advice === undefined ? '' : `${terminalSafe(advice)}\n`;
    // The diagnostics say the message, with the culprit marked.
    if (e.diagnostics.length > 0) return `${formatDiagnostics(e.diagnostics)}${hint}`;
    return `lowport: error: ${terminalSafe(e.message)}\n${hint}`;
  }
  const err = e as Error;
  return `lowport: internal error: ${escapeControl(err.message ?? String(e))}\nThis is a bug in lowport; please report it with the output of LOWPORT_DEBUG=1 lowport ...\n${process.env.LOWPORT_DEBUG ? `${err.stack ?? ''}\n` : ''}`;
}

/** Runs the CLI on `args` (without node and the script); returns the exit code. */
export async function main(args: string[], io: CliIo = processIo()): Promise<number> {
  const { name, rest } = splitCommand(args);
  if (name === undefined && rest.includes('--version')) {
    io.stdout(`${version()}\n`);
    return 0;
  }
  const asksHelp = rest.includes('--help') || rest.includes('-h');
  if (name === undefined || name === 'help') {
    io.stdout(mainHelp(version()));
    // Bare `lowport` is a usage error; asking for help is not.
    return name === 'help' || asksHelp ? 0 : 2;
  }
  const entry = COMMANDS.find((c) => commandName(c) === name);
  if (entry === undefined) {
    io.stderr(`lowport: error: unknown command '${escapeControl(name)}'\nRun \`lowport --help\` for the list of commands.\n`);
    return 2;
  }
  const note = (text: string): void => io.stderr(`lowport: ${text}\n`);
  let shown = name;
  let json = false;
  try {
    let command: AnyCommand;
    let words = rest;
    // `lowport log --help`: the group's help, which shows what its name alone does too.
    let helpOf: AnyCommand | CommandGroup | undefined;
    if (isGroup(entry)) {
      const found = subcommand(entry, rest, note);
      if (found === undefined) {
        io.stdout(entryHelp(entry));
        return asksHelp ? 0 : 2;
      }
      ({ command, words } = found);
      shown = commandName(command);
      if (command === entry.alone) helpOf = entry;
    } else {
      command = entry;
    }
    const implementation = await command.load();
    if (implementation.command !== command)
      throw new Error(`lowport ${shown}: its module implements 'lowport ${commandName(implementation.command)}'`);
    const started = implementation.start(words, { io, callerName: callerName(), note });
    json = started.json;
    if (started.help) {
      io.stdout(entryHelp(helpOf ?? command));
      return 0;
    }
    if (started.needsRoot && effectiveUid() !== 0)
      return await offerSudo(io, rootReason(command), withDefaultUser(command, words, started.values));
    return await started.run();
  } catch (e) {
    if (json && e instanceof LowportError) {
      io.stdout(
        `${jsonText({ error: { code: e.code, message: e.message, hint: hintOf(e), diagnostics: e.diagnostics.length > 0 ? e.diagnostics : undefined } })}\n`,
      );
    } else {
      io.stderr(formatError(e));
    }
    return e instanceof LowportError ? exitCodeOf(e) : 1;
  }
}

/**
 * `lowport forward add ...`: the subcommand and the words after it; the old
 * spellings (`lowport forward --list`) turned into the new ones, with a note.
 * Undefined when the words name no subcommand: the group's help is shown.
 */
function subcommand(
  group: CommandGroup,
  words: string[],
  note: (text: string) => void,
): { command: AnyCommand; words: string[] } | undefined {
  const { name, rest } = splitCommand(words);
  const sub = group.subcommands.find((s) => s.path[s.path.length - 1] === name);
  if (sub !== undefined) return { command: sub, words: rest };
  // No subcommand named: what the group's name alone runs, with every word (its options).
  if (name === undefined && group.alone !== undefined) return { command: group.alone, words };
  const old = group.legacy?.(words, name);
  if (old === undefined) {
    if (name !== undefined)
      throw new UsageError(
        `unknown command 'lowport ${commandName(group)} ${escapeControl(name)}'`,
        `Run \`lowport ${commandName(group)} --help\` for its commands.`,
      );
    return undefined;
  }
  note(old.note);
  return subcommand(group, old.args, () => undefined);
}

/**
 * Global options may come before the command (`lowport --policy F list`): the command is the first
 * word that is not an option or its value.
 */
function splitCommand(args: string[]): { name: string | undefined; rest: string[] } {
  const i = firstWordIndex(args, new Set(valueOptionWords(GLOBAL_OPTIONS)));
  return i < 0 ? { name: undefined, rest: args } : { name: args[i], rest: [...args.slice(0, i), ...args.slice(i + 1)] };
}

/**
 * Under sudo, the default principal would still be found (SUDO_USER), but
 * naming it makes the printed command say exactly what it will do.
 */
function withDefaultUser(command: AnyCommand, args: string[], values: Record<string, unknown>): string[] {
  // forward's --user is who the forwarder runs as (default lowport), not whom a grant is for.
  const takesWho = 'user' in command.options && command.path[0] !== 'reserve' && command.path[0] !== 'forward';
  const named = values.user !== undefined || values.group !== undefined || values.everyone === true || values.all === true;
  if (!takesWho || named) return [...command.path, ...args];
  // Before a `--` (lowport run ... -- COMMAND): what follows it is the command's.
  const end = args.indexOf('--');
  return end < 0
    ? [...command.path, ...args, '--user', callerName()]
    : [...command.path, ...args.slice(0, end), '--user', callerName(), ...args.slice(end)];
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `lowport list | head`: a closed pipe ends the output, not in a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  process.exitCode = await main(process.argv.slice(2));
}
