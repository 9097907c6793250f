/** `lowport grant` and `lowport revoke`. */
import { LowportError, UsageError } from '../errors.js';
import type { EditOutcome } from '../ops/apply.js';
import { grant, revoke, revokeAll } from '../ops/edits.js';
import { formatPrincipal } from '../policy/print.js';
import type { PortItem } from '../policy/types.js';
import { formatUnresolved } from './apply.js';
import { parseAddrArgs, parsePortsArg, parsePrincipalArgs } from './args.js';
import { printJson, type Command, type CommandContext } from './command.js';

const WHO_OPTIONS = {
  user: { type: 'string', short: 'u' },
  group: { type: 'string', short: 'g' },
  everyone: { type: 'boolean' },
  addr: { type: 'string', multiple: true },
} as const;

const PORTS_HELP = `PORTS: 80  80,443  8000-8100  53/udp  443/tcp  (no suffix: TCP and UDP)`;

function who(ctx: CommandContext) {
  return parsePrincipalArgs(
    { user: ctx.values.user as string | undefined, group: ctx.values.group as string | undefined, everyone: ctx.values.everyone as boolean | undefined },
    ctx.io.env,
    ctx.callerName,
  );
}

/** The one positional argument: the ports. */
export function portsOnly(ctx: CommandContext, command: string): PortItem[] {
  if (ctx.positionals.length > 1) throw new UsageError(`unexpected '${ctx.positionals[1]}': give the ports as one list, e.g. 80,443`);
  return parsePortsArg(ctx.positionals[0], command);
}

export function reportEdit(ctx: CommandContext, outcome: EditOutcome): number {
  if (ctx.json) {
    printJson(ctx.io, outcome);
    return 0;
  }
  for (const note of outcome.notes) ctx.io.stdout(`${note}\n`);
  // Lines of the file whose names are gone did not stop this edit; say so, and how to remove them.
  if (outcome.unresolved.length > 0) ctx.io.stderr(formatUnresolved(outcome.unresolved, 'warning'));
  const state = outcome.installed ? 'loaded into the kernel' : 'live';
  ctx.io.stdout(`${outcome.policy}: ${outcome.rules} rule${outcome.rules === 1 ? '' : 's'}, ${state} (${outcome.entries} map entries)\n`);
  return 0;
}

/**
 * An unknown --user/--group given on the command line is the argument's
 * fault, not a line of the file's: say which option.
 */
export function fromArgument<T>(edit: () => T): T {
  try {
    return edit();
  } catch (e) {
    if (e instanceof LowportError && (e.code === 'E_UNKNOWN_USER' || e.code === 'E_UNKNOWN_GROUP')) {
      const option = e.code === 'E_UNKNOWN_USER' ? '--user' : '--group';
      throw new LowportError(e.code, `${option}: ${e.message}`, { hint: e.hint, cause: e });
    }
    throw e;
  }
}

export const grantCommand: Command = {
  name: 'grant',
  help: `Usage: lowport grant PORTS [--user U | --group G | --everyone] [--addr IP]...

Lets U (or every member of G, or everyone) bind PORTS, with any program, from
now on: the grant is written to the policy file and made live in the kernel.
Without --user/--group/--everyone: the invoking user (SUDO_USER under sudo).

${PORTS_HELP}
  -u, --user U      a user name or uid
  -g, --group G     a group name or gid (members by primary or supplementary group)
      --everyone    every user
      --addr IP     only on this address (IPv4 or IPv6; repeat or comma-separate);
                    default: any address

Examples:
  sudo lowport grant 80,443 --user alice
  sudo lowport grant 53/udp --group dns --addr 127.0.0.1 --addr ::1`,
  options: WHO_OPTIONS,
  needsRoot: () => true,
  prepare: (ctx) => {
    const spec = { ports: portsOnly(ctx, 'grant'), principal: who(ctx), addrs: parseAddrArgs(ctx.values.addr as string[] | undefined) };
    return () => reportEdit(ctx, fromArgument(() => grant(ctx.options, spec)));
  },
};

export const revokeCommand: Command = {
  name: 'revoke',
  help: `Usage: lowport revoke PORTS [--user U | --group G | --everyone] [--addr IP]...
       lowport revoke --all --user U | --group G

Removes PORTS from the grants of exactly that user, group or everyone (a
group grant is revoked with --group, not per member). Without --addr, on
every address; with it, only there. Binds already made stay bound; new binds
are refused at once. --all removes every grant and reservation of U or G.

${PORTS_HELP}
  -u, --user U  -g, --group G  --everyone  --addr IP   as for grant
      --all     every rule of the user or group`,
  options: { ...WHO_OPTIONS, all: { type: 'boolean' } },
  needsRoot: () => true,
  prepare: (ctx) => {
    if (ctx.values.all === true) {
      if (ctx.positionals.length > 0) throw new UsageError('give either PORTS or --all, not both');
      if (ctx.values.addr !== undefined) throw new UsageError('--all removes rules on every address; drop --addr');
      if (ctx.values.user === undefined && ctx.values.group === undefined && ctx.values.everyone !== true) {
        throw new UsageError('revoke --all needs --user U, --group G or --everyone');
      }
      const principal = who(ctx);
      return () => {
        const outcome = revokeAll(ctx.options, principal);
        if (!outcome.changed && !ctx.json) ctx.io.stdout(`nothing to revoke: the policy has no rule for ${formatPrincipal(principal)}\n`);
        return reportEdit(ctx, outcome);
      };
    }
    const spec = { ports: portsOnly(ctx, 'revoke'), principal: who(ctx), addrs: parseAddrArgs(ctx.values.addr as string[] | undefined) };
    return () => reportEdit(ctx, revoke(ctx.options, spec));
  },
};
