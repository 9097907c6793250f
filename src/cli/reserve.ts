/** `lowport reserve` and `lowport unreserve`. */
import { UsageError } from '../errors.js';
import { reserve, unreserve } from '../ops/edits.js';
import { parsePrincipalArgs } from './args.js';
import type { Command } from './command.js';
import { fromArgument, portsOnly, reportEdit } from './grant.js';

export const reserveCommand: Command = {
  name: 'reserve',
  help: `Usage: lowport reserve PORTS (--user U | --group G)

Keeps PORTS for U or G: they may bind them (as with grant), and so may root
and anyone the policy grants the port to by name; every other bind of those
ports fails with EPERM, even with CAP_NET_BIND_SERVICE or a lowered
net.ipv4.ip_unprivileged_port_start. Works on ports above 1024 too, so
another program cannot take your port while yours is down.

PORTS: 80  80,443  8000-8100  53/udp  443/tcp  (no suffix: TCP and UDP)
  -u, --user U    a user name or uid
  -g, --group G   a group name or gid`,
  options: { user: { type: 'string', short: 'u' }, group: { type: 'string', short: 'g' }, everyone: { type: 'boolean' } },
  needsRoot: () => true,
  prepare: (ctx) => {
    const ports = portsOnly(ctx, 'reserve');
    if (ctx.values.user === undefined && ctx.values.group === undefined && ctx.values.everyone !== true) {
      throw new UsageError('reserve needs --user U or --group G: who the ports are kept for');
    }
    const principal = parsePrincipalArgs(
      { user: ctx.values.user as string | undefined, group: ctx.values.group as string | undefined, everyone: ctx.values.everyone as boolean | undefined },
      ctx.io.env,
      ctx.callerName,
      false,
    );
    return () => reportEdit(ctx, fromArgument(() => reserve(ctx.options, { ports, principal })));
  },
};

export const unreserveCommand: Command = {
  name: 'unreserve',
  help: `Usage: lowport unreserve PORTS

Ends every reservation of PORTS, whoever it was for.`,
  options: {},
  needsRoot: () => true,
  prepare: (ctx) => {
    const ports = portsOnly(ctx, 'unreserve');
    return () => reportEdit(ctx, unreserve(ctx.options, { ports }));
  },
};
