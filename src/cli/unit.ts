/** `lowport unit`: print (or write) a hardened systemd service for a server that needs low ports. */
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { checkUnitName, serviceUnits } from '../integrate/unit.js';
import { writeUnitFile } from '../kernel/files.js';
import { which } from '../kernel/process.js';
import { parsePortsArg } from './args.js';
import type { Command } from './command.js';

export const unitCommand: Command = {
  name: 'unit',
  help: `Usage: lowport unit NAME --user U --port PORTS [--socket] [--output-dir DIR] -- COMMAND [ARGS...]

Prints NAME.service: COMMAND runs as U with CAP_NET_BIND_SERVICE as its only
capability (ambient, and the whole bounding set), NoNewPrivileges=yes, and
SocketBindAllow=/SocketBindDeny=any so it may bind PORTS and no other port,
plus the usual sandboxing. With --socket: NAME.socket binds PORTS and passes
them to NAME.service (socket activation), which then needs no capability at
all. --output-dir writes the files there instead of printing them.`,
  options: {
    user: { type: 'string', short: 'u' },
    port: { type: 'string', short: 'p', multiple: true },
    socket: { type: 'boolean' },
    'output-dir': { type: 'string' },
  },
  needsRoot: () => false,
  prepare: (ctx) => {
    const [name, ...command] = ctx.positionals;
    if (name === undefined) throw new UsageError('lowport unit needs a NAME: lowport unit web --user www --port 80 -- /usr/bin/server');
    const bad = checkUnitName(name);
    if (bad !== undefined) throw new UsageError(bad);
    if (command.length === 0 || command[0] === undefined) throw new UsageError('lowport unit needs the command, after --');
    const user = ctx.values.user as string | undefined;
    if (user === undefined) throw new UsageError('lowport unit needs --user U: the service should not run as root');
    const ports = parsePortsArg(((ctx.values.port as string[] | undefined) ?? []).join(','), 'unit');
    const exe = command[0].includes('/') ? command[0] : which(command[0]);
    if (exe === undefined) throw new UsageError(`'${command[0]}' is not on PATH: give the command's absolute path`);
    const files = serviceUnits({ name, user, ports, command: [exe, ...command.slice(1)], socket: ctx.values.socket === true });
    const dir = ctx.values['output-dir'] as string | undefined;
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
  },
};
