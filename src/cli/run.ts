/** `lowport run`: one command with low ports, as one user. */
import { UsageError } from '../errors.js';
import { run, type RunMode } from '../run/run.js';
import { parseAddrArgs, parsePortsArg, parsePrincipalArgs } from './args.js';
import type { Command } from './command.js';

export const runCommand: Command = {
  name: 'run',
  help: `Usage: lowport run --port PORTS [--user U] [--addr IP]... -- COMMAND [ARGS...]
       lowport run --sockets --port PORTS [--addr IP]... [--backlog N] [--v6-only] [--user U] -- COMMAND...
       lowport run --caps [--user U] -- COMMAND [ARGS...]

Runs COMMAND as U (default: the user who ran sudo) with every privilege
dropped: U's uid and gid (real, effective, saved) and groups, no
capabilities, no_new_privs, a fresh session keyring, none of lowport's open
fds; HOME, USER and LOGNAME are U's. On a terminal, it runs on a pty of its
own that lowport relays (closed when it ends: what it leaves behind cannot
read the terminal). ^C and SIGINT, SIGTERM, SIGHUP and SIGQUIT reach it;
lowport exits with its status (128+N when signal N killed it). What it leaves
running is waited for, and Ctrl-C (or SIGTERM to lowport) ends it.

Default: PORTS are granted to a cgroup made for the command, so the command
and everything it starts may bind them, and nothing else may (other programs
of U included, unless they may ptrace the command: kernel.yama.ptrace_scope 0). Not written to the policy file; gone when the command's
cgroup empties.

  --sockets   lowport binds PORTS itself and passes them as fds 3, 4, ... with
              LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (tcp-80, udp-53, ...):
              systemd socket activation (sd_listen_fds(3)); for programs that
              take sockets that way. Needs no BPF. Default address: ::
              (dual-stack); --addr picks others, --backlog the listen(2)
              backlog (4096), --v6-only keeps IPv6 sockets IPv6-only.
  --caps      COMMAND keeps CAP_NET_BIND_SERVICE (ambient): it and every
              process it starts may bind EVERY port below 1024. Needs no BPF;
              prefer the default where the kernel allows it.

PORTS: 80  80,443  8000-8100  53/udp  443/tcp  (no suffix: TCP and UDP)

Examples:
  sudo lowport run --port 80 --user www -- python3 -m http.server 80
  sudo lowport run --sockets --port 80/tcp -- node server.js`,
  options: {
    port: { type: 'string', short: 'p', multiple: true },
    user: { type: 'string', short: 'u' },
    addr: { type: 'string', multiple: true },
    sockets: { type: 'boolean' },
    caps: { type: 'boolean' },
    backlog: { type: 'string' },
    'v6-only': { type: 'boolean' },
  },
  needsRoot: () => true,
  prepare: (ctx) => {
    const command = ctx.positionals;
    if (command.length === 0) throw new UsageError('lowport run needs a command, after --: lowport run --port 80 -- COMMAND [ARGS...]');
    if (ctx.values.sockets === true && ctx.values.caps === true) throw new UsageError('give --sockets or --caps, not both');
    const mode: RunMode = ctx.values.sockets === true ? 'sockets' : ctx.values.caps === true ? 'caps' : 'scope';
    const portTexts = (ctx.values.port as string[] | undefined) ?? [];
    if (mode !== 'caps' && portTexts.length === 0) throw new UsageError(`lowport run${mode === 'sockets' ? ' --sockets' : ''} needs --port PORTS`);
    if (mode === 'caps' && (portTexts.length > 0 || ctx.values.addr !== undefined)) {
      throw new UsageError('--caps gives every low port: it takes no --port or --addr (use the default mode to give only some)');
    }
    const ports = portTexts.length === 0 ? [] : parsePortsArg(portTexts.join(','), 'run');
    const backlogText = ctx.values.backlog as string | undefined;
    if (backlogText !== undefined && (mode !== 'sockets' || !/^\d+$/.test(backlogText))) throw new UsageError('--backlog N goes with --sockets, N a number');
    const principal = parsePrincipalArgs({ user: ctx.values.user as string | undefined }, ctx.io.env, ctx.callerName);
    if (principal.kind !== 'user') throw new UsageError('lowport run needs --user U');
    const addrs = parseAddrArgs(ctx.values.addr as string[] | undefined);
    return () =>
      run({
        ...ctx.options,
        mode,
        command,
        user: principal.name,
        ports,
        addrs,
        ...(backlogText === undefined ? {} : { backlog: Number(backlogText) }),
        v6Only: ctx.values['v6-only'] === true,
        note: (t) => ctx.io.stderr(`${t}\n`),
      });
  },
};
