/** `lowport unit`: print (or write) a hardened systemd service for a server that needs low ports. */
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { checkServiceUser, checkUnitName, serviceUnits } from '../integrate/unit.js';
import { writeUnitFile } from '../policy-file/trust.js';
import { lookupUsers } from '../os/nss.js';
import { which } from '../os/process.js';
import { escapeControl } from '../text.js';
import { parsePortsArg } from './args.js';
import { implement, type Implementation } from './command.js';
import * as commands from './commands.js';

/** systemd's ExecStart= prefixes: `+` runs the command with full privileges, whatever User= says. */
const PREFIXES = ['+', '-', '@', ':', '!'];

/**
 * The command's first word as an absolute path: systemd needs one, and a
 * unit should run the file the admin saw, not whatever PATH finds at boot.
 */
function executable(word: string, note: (text: string) => void): string {
  if (PREFIXES.some((p) => word.startsWith(p))) {
    throw new UsageError(
      `'${escapeControl(word)}' starts with '${word[0] ?? ''}', a systemd prefix ('+' would run it with full privileges): lowport unit writes no prefixes`,
      'Give the program as an absolute path, e.g. /usr/bin/server.',
    );
  }
  if (isAbsolute(word)) return word;
  if (word.includes('/')) {
    const abs = resolve(word);
    note(`using ${escapeControl(abs)} for ${escapeControl(word)}`);
    return abs;
  }
  const found = which(word);
  if (found === undefined || !isAbsolute(found))
    throw new UsageError(`'${escapeControl(word)}' is not on PATH: give the command's absolute path`);
  note(`using ${escapeControl(found)} for ${escapeControl(word)} (from PATH)`);
  return found;
}

/** --user as User= will hold it: an existing account (by NSS), not root, by its own name or, if that name is not plain, its uid. */
function serviceUser(given: string): string {
  const refusal = checkServiceUser(given);
  if (refusal !== undefined) throw new UsageError(`--user ${escapeControl(given)}: ${refusal}`);
  const entry = lookupUsers([given]).get(given);
  if (entry === undefined)
    throw new UsageError(
      `--user ${escapeControl(given)}: no such user`,
      'Create the account first (useradd --system), or give an existing one.',
    );
  if (entry.uid === 0) throw new UsageError(`--user ${escapeControl(given)}: that is root (uid 0); the service must not run as root`);
  return checkServiceUser(entry.name) === undefined ? entry.name : String(entry.uid);
}

export const unit: Implementation = implement(commands.unit, (ctx) => {
  const [name, ...command] = ctx.positionals;
  if (name === undefined) throw new UsageError('lowport unit needs a NAME: lowport unit web --user www --port 80 -- /usr/bin/server');
  const bad = checkUnitName(name);
  if (bad !== undefined) throw new UsageError(bad);
  if (command.length === 0 || command[0] === undefined) throw new UsageError('lowport unit needs the command, after --');
  const given = ctx.values.user;
  if (given === undefined) throw new UsageError('lowport unit needs --user U: the service should not run as root');
  const user = serviceUser(given);
  const ports = parsePortsArg((ctx.values.port ?? []).join(','), 'unit');
  const exe = executable(command[0], ctx.note);
  const files = serviceUnits({ name, user, ports, command: [exe, ...command.slice(1)], socket: ctx.values.socket === true });
  const dir = ctx.values['output-dir'];
  return () => {
    if (dir !== undefined) {
      for (const f of files) {
        writeUnitFile(join(dir, f.file), f.text);
        ctx.io.stdout(`wrote ${join(dir, f.file)}\n`);
      }
    } else {
      ctx.io.stdout(files.map((f) => `# ---- ${f.file} ----\n${f.text}`).join('\n'));
    }
    return 0;
  };
});
