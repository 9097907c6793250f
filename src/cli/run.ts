/** `lowport run`: one command with low ports, as one user. */
import { UsageError } from '../errors.js';
import { ACCEPT_DEFAULTS } from '../run/ucspi.js';
import type { AcceptSettings } from '../run/accept.js';
import { run as runCommand, type RunMode } from '../run/run.js';
import type { PortItem } from '../policy/types.js';
import { invokingUser, nameFromArgumentAsync, parseAddrArgs, parsePortsArg, parsePrincipalArgs } from './args.js';
import { implement, type Implementation, type Values } from './command.js';
import * as commands from './commands.js';

type RunValues = Values<typeof commands.run.options>;

/** Node's timers take at most 2^31-1 ms. */
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

function whole(v: RunValues, key: 'max-conns' | 'max-per-ip', fallback: number): number {
  const text = v[key];
  if (text === undefined) return fallback;
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 1_000_000)) throw new UsageError(`--${key} takes a whole number from 1 to 1000000, not '${text}'`);
  return n;
}

/** --accept's limits and drain; each of its options refused without it. */
function acceptSettings(v: RunValues, mode: RunMode): AcceptSettings | undefined {
  const given = (['max-conns', 'max-per-ip', 'drain-timeout', 'log'] as const).filter((k) => v[k] !== undefined && v[k] !== false);
  if (mode !== 'accept') {
    if (given.length > 0) throw new UsageError(`--${given[0]} goes with --accept: lowport run --accept --port PORT -- COMMAND`);
    return undefined;
  }
  const drain = v['drain-timeout'];
  let drainTimeoutMs: number = ACCEPT_DEFAULTS.drainTimeoutMs;
  if (drain !== undefined) {
    const n = /^[0-9]+(\.[0-9]+)?$/.test(drain) ? Number(drain) : NaN;
    if (!(n >= 0 && n <= MAX_SECONDS))
      throw new UsageError(`--drain-timeout takes seconds, up to ${MAX_SECONDS} (0: at once), not '${drain}'`);
    drainTimeoutMs = Math.round(n * 1000);
  }
  return {
    maxConns: whole(v, 'max-conns', ACCEPT_DEFAULTS.maxConns),
    maxPerIp: whole(v, 'max-per-ip', ACCEPT_DEFAULTS.maxPerIp),
    drainTimeoutMs,
    log: v.log === true,
  };
}

/** --stop-timeout S, in ms; refused with --accept, whose programs end after --drain-timeout. */
function stopTimeout(v: RunValues, mode: RunMode): number | undefined {
  const text = v['stop-timeout'];
  if (text === undefined) return undefined;
  if (mode === 'accept')
    throw new UsageError(
      '--stop-timeout does not go with --accept',
      'With --accept, --drain-timeout S says how long running COMMANDs get after SIGTERM to lowport.',
    );
  const n = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= MAX_SECONDS))
    throw new UsageError(`--stop-timeout takes seconds, up to ${MAX_SECONDS} (0: SIGKILL at once), not '${text}'`);
  return Math.round(n * 1000);
}

/** --accept's ports: TCP; a port without /tcp or /udp is TCP, an explicit /udp is refused. */
function tcpPorts(items: PortItem[]): PortItem[] {
  for (const item of items) {
    if (item.protocols.length === 1 && item.protocols[0] === 'udp') {
      const port = item.from === item.to ? String(item.from) : `${item.from}-${item.to}`;
      throw new UsageError(
        `run --accept serves TCP only, not ${port}/udp: it starts COMMAND per TCP connection, as tcpserver does`,
        `Give --port ${port}/tcp; for a UDP server, bind the socket for it with \`lowport run --sockets --port ${port}/udp\`.`,
      );
    }
  }
  return items.map((item) => ({ ...item, protocols: ['tcp'] }));
}

export const run: Implementation = implement(commands.run, (ctx) => {
  const command = ctx.positionals;
  if (command.length === 0) throw new UsageError('lowport run needs a command, after --: lowport run --port 80 -- COMMAND [ARGS...]');
  const modes = (['sockets', 'caps', 'accept'] as const).filter((m) => ctx.values[m] === true);
  if (modes.length > 1)
    throw new UsageError(
      `give one of --sockets, --caps and --accept, not ${modes.map((m) => `--${m}`).join(' and ')}`,
      '--sockets hands the bound ports to one COMMAND, --accept starts COMMAND per connection, --caps gives every low port.',
    );
  const mode: RunMode = modes[0] ?? 'scope';
  const portTexts = ctx.values.port ?? [];
  if (mode !== 'caps' && portTexts.length === 0)
    throw new UsageError(
      `lowport run${mode === 'scope' ? '' : ` --${mode}`} needs --port PORTS`,
      mode === 'accept' ? 'Give the TCP port to accept on, e.g. --port 79.' : undefined,
    );
  if (mode === 'caps' && (portTexts.length > 0 || ctx.values.addr !== undefined)) {
    throw new UsageError('--caps gives every low port: it takes no --port or --addr (use the default mode to give only some)');
  }
  const parsed = portTexts.length === 0 ? [] : parsePortsArg(portTexts.join(','), 'run');
  const ports = mode === 'accept' ? tcpPorts(parsed) : parsed;
  for (const option of ['no-pid', 'restart'] as const) {
    if (ctx.values[option] === true && mode !== 'sockets')
      throw new UsageError(
        `--${option} goes with --sockets`,
        `Add --sockets: lowport run --sockets --${option} --port PORTS -- COMMAND...`,
      );
  }
  const backlogText = ctx.values.backlog;
  if (backlogText !== undefined && ((mode !== 'sockets' && mode !== 'accept') || !/^\d+$/.test(backlogText)))
    throw new UsageError('--backlog N goes with --sockets or --accept, N a number');
  const accept = acceptSettings(ctx.values, mode);
  const stopTimeoutMs = stopTimeout(ctx.values, mode);
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
        ...(accept === undefined ? {} : { accept }),
        ...(stopTimeoutMs === undefined ? {} : { stopTimeoutMs }),
        note: ctx.note,
      }),
    );
});
