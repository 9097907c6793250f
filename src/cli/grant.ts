/** `lowport grant` and `lowport revoke`. */
import { UsageError } from '../errors.js';
import type { EditOutcome } from '../ops/apply.js';
import { grant as grantRules, revoke as revokeRules, revokeAll } from '../ops/edits.js';
import type { PortItem } from '../policy/types.js';
import { formatDiagnostics } from '../diagnostic.js';
import { escapeControl } from '../text.js';
import { formatUnresolved } from './apply.js';
import { nameFromArgument, parseAddrArgs, parsePortsArg, parsePrincipalArgs } from './args.js';
import { implement, printJson, type CommandContext, type Implementation } from './command.js';
import * as commands from './commands.js';
import { ruleText, ruleWhere } from './list.js';

type WhoContext = Pick<CommandContext<typeof commands.grant.options>, 'values' | 'io' | 'callerName'>;

function who(ctx: WhoContext) {
  return parsePrincipalArgs(ctx.values, ctx.io.env, ctx.callerName);
}

/** The one positional argument: the ports. */
export function portsOnly(ctx: { positionals: string[] }, command: string): PortItem[] {
  if (ctx.positionals.length > 1) throw new UsageError(`unexpected '${ctx.positionals[1]}': give the ports as one list, e.g. 80,443`);
  return parsePortsArg(ctx.positionals[0], command);
}

export function reportEdit(ctx: Pick<CommandContext, 'json' | 'io' | 'note'>, outcome: EditOutcome): number {
  if (ctx.json) {
    printJson(ctx.io, outcome);
    return 0;
  }
  for (const note of outcome.notes) ctx.note(note);
  // What apply would warn about, for the statements this edit wrote.
  ctx.io.stderr(formatDiagnostics(outcome.warnings ?? []));
  // Lines of the file whose names are gone did not stop this edit; say so, and how to remove them.
  if (outcome.unresolved.length > 0) ctx.io.stderr(formatUnresolved(outcome.unresolved, 'warning'));
  // After `lowport off` the file stayed: this edit made its other rules live again, which is easy to miss.
  if (outcome.revived.length > 0) {
    const n = outcome.revived.length;
    // Each rule below names its file; the heading says "the file" only when they are all the main one's.
    const mainOnly = outcome.revived.every((rule) => rule.file === undefined || rule.file === outcome.policy);
    const files = mainOnly ? 'file' : 'policy files';
    ctx.note(
      `lowport was off, and this edit made ${n === 1 ? 'another rule' : `${n} other rules`} of the ${files} live again too ` +
        `(\`lowport off\` keeps the ${files}; \`lowport revoke\` or \`unreserve\` what should stay off):`,
    );
    for (const rule of outcome.revived) {
      // `line 3` in the policy file, as before drop-ins; `policy.d/web.policy:3` in a drop-in.
      const where = rule.file === undefined || rule.file === outcome.policy ? `line ${rule.line}` : ruleWhere(rule, outcome.policy);
      ctx.note(`  ${where}: ${escapeControl(ruleText(rule))}`);
    }
  }
  const state = outcome.installed ? 'loaded into the kernel' : 'live';
  const n = `${outcome.rules} rule${outcome.rules === 1 ? '' : 's'}`;
  // With --file: the drop-in edited, and the rules of every file, which went live together.
  const what = outcome.file === undefined ? `${outcome.policy}: ${n}` : `${outcome.file}: ${n} in the policy and its drop-ins`;
  ctx.io.stdout(`${what}, ${state} (${outcome.entries} map entries)\n`);
  return 0;
}

/**
 * An unknown --user/--group given on the command line is the argument's
 * fault, not a line of the file's: shown against the word given.
 */
export function fromArgument<T>(values: { user?: string | undefined; group?: string | undefined }, edit: () => T): T {
  return values.user !== undefined ? nameFromArgument('--user', values.user, edit) : nameFromArgument('--group', values.group, edit);
}

export const grant: Implementation = implement(commands.grant, (ctx) => {
  const spec = { ports: portsOnly(ctx, 'grant'), principal: who(ctx), addrs: parseAddrArgs(ctx.values.addr) };
  return () =>
    reportEdit(
      ctx,
      fromArgument(ctx.values, () => grantRules(ctx.options, spec, ctx.values.file)),
    );
});

export const revoke: Implementation = implement(commands.revoke, (ctx) => {
  if (ctx.values.all === true) {
    if (ctx.positionals.length > 0) throw new UsageError('give either PORTS or --all, not both');
    if (ctx.values.addr !== undefined) throw new UsageError('--all removes rules on every address; drop --addr');
    if (ctx.values.user === undefined && ctx.values.group === undefined && ctx.values.everyone !== true) {
      throw new UsageError('revoke --all needs --user U, --group G or --everyone');
    }
    const principal = who(ctx);
    // With nothing to revoke, the edit's note says so (once).
    return () => reportEdit(ctx, revokeAll(ctx.options, principal, ctx.values.file));
  }
  const spec = { ports: portsOnly(ctx, 'revoke'), principal: who(ctx), addrs: parseAddrArgs(ctx.values.addr) };
  return () => reportEdit(ctx, revokeRules(ctx.options, spec, ctx.values.file));
});
