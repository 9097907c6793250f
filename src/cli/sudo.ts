/**
 * A normal user ran a command that needs root. Offer to run the very same
 * command through sudo, with absolute paths: sudo resets PATH, and a Node
 * installed with nvm (or a lowport from npx) is not on root's PATH. Without a
 * terminal, never prompt: print the command and fail.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runInheriting, which } from '../os/process.js';
import { shellQuote } from '../text.js';
import type { CliIo } from './io.js';

/**
 * The CLI's entry script, absolute and without symlinks (an npm bin link points
 * at it): main.js beside this file, tsc's dist/src/cli/main.js or the bundle's
 * dist/bundle/main.js (entries and chunks side by side). Found when first
 * needed, not at every start.
 */
let cliScript: string | undefined;
function cliScriptPath(): string {
  return (cliScript ??= realpathSync(fileURLToPath(new URL('./main.js', import.meta.url))));
}

/** argv for running lowport as root: node, the CLI script, and the arguments. */
export function sudoArgv(args: string[]): string[] {
  return [process.execPath, cliScriptPath(), ...args];
}

/**
 * How to write "lowport" in a command for sudo: the bare name when it is
 * installed where root's PATH finds it, else node and the script, absolute.
 */
export function lowportForSudo(): string {
  const installed = which('lowport', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  if (installed !== undefined && realpathSync(installed) === cliScriptPath()) return 'lowport';
  return sudoArgv([]).map(shellQuote).join(' ');
}

/** `why`: the sentence that says why the command needs root (command.ts, rootReason). */
export async function offerSudo(io: CliIo, why: string, args: string[]): Promise<number> {
  const argv = sudoArgv(args);
  const sudo = which('sudo');
  const printable = ['sudo', ...argv].map(shellQuote).join(' ');
  if (sudo === undefined) {
    io.stderr(`lowport: error: ${why}\nsudo is not installed; run this as root (e.g. with su -c):\n  ${argv.map(shellQuote).join(' ')}\n`);
    return 1;
  }
  if (!io.interactive) {
    io.stderr(`lowport: error: ${why}\nRun it through sudo:\n  ${printable}\n`);
    return 1;
  }
  io.stderr(`${why}\n  ${printable}\n`);
  if (!(await io.confirm('Run this through sudo?'))) {
    io.stderr('lowport: nothing was changed.\n');
    return 1;
  }
  return runInheriting(sudo, argv);
}
