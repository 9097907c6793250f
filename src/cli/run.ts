/** `lowport run`: one command with low ports, as one user. */
import { UsageError } from '../errors.js';
import { run as runCommand, type RunMode } from '../run/run.js';
import { invokingUser, nameFromArgumentAsync, parseAddrArgs, parsePortsArg, parsePrincipalArgs } from './args.js';
import { implement, type Implementation } from './command.js';
import * as commands from './commands.js';

export const run: Implementation = implement(commands.run, (ctx) => {
  const command = ctx.positionals;
  if (command.length === 0) throw new UsageError('lowport run needs a command, after --: lowport run --port 80 -- COMMAND [ARGS...]');
  if (ctx.values.sockets === true && ctx.values.caps === true) throw new UsageError('give --sockets or --caps, not both');
  const mode: RunMode = ctx.values.sockets === true ? 'sockets' : ctx.values.caps === true ? 'caps' : 'scope';
  const portTexts = ctx.values.port ?? [];
  if (mode !== 'caps' && portTexts.length === 0)
    throw new UsageError(`lowport run${mode === 'sockets' ? ' --sockets' : ''} needs --port PORTS`);
  if (mode === 'caps' && (portTexts.length > 0 || ctx.values.addr !== undefined)) {
    throw new UsageError('--caps gives every low port: it takes no --port or --addr (use the default mode to give only some)');
  }
  const ports = portTexts.length === 0 ? [] : parsePortsArg(portTexts.join(','), 'run');
  for (const option of ['no-pid', 'restart'] as const) {
    if (ctx.values[option] === true && mode !== 'sockets')
      throw new UsageError(
        `--${option} goes with --sockets`,
        `Add --sockets: lowport run --sockets --${option} --port PORTS -- COMMAND...`,
      );
  }
  const backlogText = ctx.values.backlog;
  if (backlogText !== undefined && (mode !== 'sockets' || !/^\d+$/.test(backlogText)))
    throw new UsageError('--backlog N goes with --sockets, N a number');
  // run takes --user alone: whom COMMAND runs as (there is no --group or --everyone to suggest).
  const user = ctx.values.user ?? invokingUser(ctx.io.env, ctx.callerName);
  if (user === undefined)
    throw new UsageError(
      'lowport run needs --user U: the user COMMAND runs as',
      'Root binds any port without lowport; give the user the command should run as, e.g. --user www-data.',
    );
  const principal = parsePrincipalArgs({ user }, ctx.io.env, ctx.callerName);
  if (principal.kind !== 'user') throw new UsageError('lowport run needs --user U');
  const addrs = parseAddrArgs(ctx.values.addr);
  return () =>
    nameFromArgumentAsync('--user', ctx.values.user, async () =>
      runCommand({
        ...ctx.options,
        mode,
        command,
        user: principal.name,
        ports,
        addrs,
        ...(backlogText === undefined ? {} : { backlog: Number(backlogText) }),
        v6Only: ctx.values['v6-only'] === true,
        noPid: ctx.values['no-pid'] === true,
        restart: ctx.values.restart === true,
        note: ctx.note,
      }),
    );
});
