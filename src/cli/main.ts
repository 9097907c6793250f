#!/usr/bin/env node
/**
 * The lowport command: parses arguments, runs one command, prints, and picks
 * the exit code (0 success, 1 failure, 2 usage). The only module that prints.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatDiagnostics } from '../diagnostic.js';
import { LowportError, PolicyError, UsageError } from '../errors.js';
import { effectiveUid } from '../os/process.js';
import { lowportOptions } from './args.js';
import { GLOBAL_HELP, GLOBAL_OPTIONS, jsonText, type Command } from './command.js';
import { processIo, type CliIo } from './io.js';
import { offerSudo } from './sudo.js';
import { escapeControl } from '../text.js';

/**
 * The commands, each loaded only when it runs: Node reads and compiles every
 * module it imports, and a command should not pay for the others.
 */
export const COMMANDS: readonly { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'doctor', summary: 'why a port cannot be bound, and the best fix here', load: async () => (await import('./doctor.js')).doctorCommand },
  { name: 'grant', summary: 'let a user or group bind ports', load: async () => (await import('./grant.js')).grantCommand },
  { name: 'revoke', summary: 'take back a grant', load: async () => (await import('./grant.js')).revokeCommand },
  { name: 'reserve', summary: 'keep ports for one user or group', load: async () => (await import('./reserve.js')).reserveCommand },
  { name: 'unreserve', summary: 'end a reservation', load: async () => (await import('./reserve.js')).unreserveCommand },
  { name: 'list', summary: 'show the rules live in the kernel', load: async () => (await import('./list.js')).listCommand },
  { name: 'apply', summary: 'load the policy file into the kernel', load: async () => (await import('./apply.js')).applyCommand },
  { name: 'off', summary: 'remove everything lowport put in the kernel', load: async () => (await import('./apply.js')).offCommand },
  { name: 'run', summary: 'run one command with low ports, for it alone', load: async () => (await import('./run.js')).runCommand },
  { name: 'forward', summary: 'redirect a low port to a high one (nftables), or forward it in userspace', load: async () => (await import('./forward.js')).forwardCommand },
  { name: 'install', summary: 'apply the policy at every boot (systemd unit)', load: async () => (await import('./install.js')).installCommand },
  { name: 'uninstall', summary: 'undo install', load: async () => (await import('./install.js')).uninstallCommand },
  { name: 'unit', summary: 'print a hardened systemd service for a server on low ports', load: async () => (await import('./unit.js')).unitCommand },
  { name: 'import-authbind', summary: 'turn authbind configuration into policy rules', load: async () => (await import('./import-authbind.js')).importAuthbindCommand },
];

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `lowport ${version()}: let non-root programs bind ports below 1024, per user, group, port and address.

Usage: lowport COMMAND [ARGS] [OPTIONS]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

${GLOBAL_HELP}
  --version        print the version

Run \`lowport COMMAND --help\` for a command's arguments.
Example: sudo lowport grant 80,443 --user alice   (then alice's programs bind 80 and 443)
`;
}

function callerName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(effectiveUid());
  }
}

function exitCodeOf(e: LowportError): number {
  return e instanceof UsageError || e.code === 'E_USAGE' ? 2 : 1;
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

export function formatError(e: unknown): string {
  if (e instanceof PolicyError) {
    const count = e.diagnostics.filter((d) => d.severity === 'error').length;
    return `${formatDiagnostics(e.diagnostics)}lowport: ${count} error${count === 1 ? '' : 's'} in the policy. ${e.hint ?? 'Nothing was changed.'}\n`;
  }
  if (e instanceof LowportError) {
    const hint = e.hint === undefined ? '' : `${terminalSafe(e.hint)}\n`;
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
  if (name === undefined || name === 'help') {
    io.stdout(mainHelp());
    // Bare `lowport` is a usage error; asking for help is not.
    return name === 'help' || rest.includes('--help') || rest.includes('-h') ? 0 : 2;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry === undefined) {
    io.stderr(`lowport: error: unknown command '${escapeControl(name)}'\nRun \`lowport --help\` for the list of commands.\n`);
    return 2;
  }
  const command = await entry.load();
  let json = false;
  try {
    const parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true });
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    json = values.json === true;
    if (values.help === true) {
      io.stdout(`${command.help}\n\n${GLOBAL_HELP}\n`);
      return 0;
    }
    const execute = command.prepare({ values, positionals: parsed.positionals, options: lowportOptions(values), json, io, callerName: callerName() });
    if (command.needsRoot(values) && effectiveUid() !== 0) return await offerSudo(io, command.name, withDefaultUser(command, rest, values));
    return await execute();
  } catch (e) {
    const usage = e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS');
    if (usage) {
      io.stderr(`lowport ${name}: error: ${terminalSafe(e.message)}\nRun \`lowport ${name} --help\` for its usage.\n`);
      return 2;
    }
    if (json && e instanceof LowportError) {
      io.stdout(`${jsonText({ error: { code: e.code, message: e.message, hint: e.hint, diagnostics: e instanceof PolicyError ? e.diagnostics : undefined } })}\n`);
    } else {
      io.stderr(formatError(e));
    }
    return e instanceof LowportError ? exitCodeOf(e) : 1;
  }
}

/** Global options may come before the command (`lowport --policy F list`): the command is the first word that is not an option or its value. */
function splitCommand(args: string[]): { name: string | undefined; rest: string[] } {
  const takesValue = new Set(Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (takesValue.has(a)) {
      i++;
      continue;
    }
    if (a === '--') break;
    if (!a.startsWith('-')) return { name: a, rest: [...args.slice(0, i), ...args.slice(i + 1)] };
  }
  return { name: undefined, rest: args };
}

/**
 * Under sudo, the default principal would still be found (SUDO_USER), but
 * naming it makes the printed command say exactly what it will do.
 */
function withDefaultUser(command: Command, args: string[], values: Record<string, unknown>): string[] {
  // forward's --user is who the forwarder runs as (default nobody), not whom a grant is for.
  const takesWho = 'user' in command.options && command.name !== 'reserve' && command.name !== 'forward';
  const named = values.user !== undefined || values.group !== undefined || values.everyone === true || values.all === true;
  if (!takesWho || named) return [command.name, ...args];
  // Before a `--` (lowport run ... -- COMMAND): what follows it is the command's.
  const end = args.indexOf('--');
  return end < 0 ? [command.name, ...args, '--user', callerName()] : [command.name, ...args.slice(0, end), '--user', callerName(), ...args.slice(end)];
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
