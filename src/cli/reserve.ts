/** `lowport reserve` and `lowport unreserve`. */
import { UsageError } from '../errors.js';
import { reserve as reservePorts, unreserve as unreservePorts } from '../ops/edits.js';
import { parsePrincipalArgs } from './args.js';
import { implement, type Implementation } from './command.js';
import * as commands from './commands.js';
import { fromArgument, portsOnly, reportEdit } from './grant.js';

export const reserve: Implementation = implement(commands.reserve, (ctx) => {
  const ports = portsOnly(ctx, 'reserve');
  if (ctx.values.user === undefined && ctx.values.group === undefined && ctx.values.everyone !== true) {
    throw new UsageError('reserve needs --user U or --group G: who the ports are kept for');
  }
  const principal = parsePrincipalArgs(ctx.values, ctx.io.env, ctx.callerName, false);
  return () =>
    reportEdit(
      ctx,
      fromArgument(ctx.values, () => reservePorts(ctx.options, { ports, principal }, ctx.values.file)),
    );
});

export const unreserve: Implementation = implement(commands.unreserve, (ctx) => {
  const ports = portsOnly(ctx, 'unreserve');
  return () => reportEdit(ctx, unreservePorts(ctx.options, { ports }, ctx.values.file));
});
