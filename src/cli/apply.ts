/** `lowport apply` and `lowport off`. */
import { apply as applyPolicy, type UnresolvedReport } from '../ops/apply.js';
import { off as turnOff, type OffResult } from '../ops/off.js';
import { formatDiagnostics } from '../diagnostic.js';
import { UsageError } from '../errors.js';
import { dropinDirOf, dropinFileName } from '../policy/sources.js';
import { escapeControl } from '../text.js';
import { implement, noArguments, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';

/**
 * Rules whose names do not resolve, nftables-style, each with what is live in
 * its place and the command that removes it.
 */
export function formatUnresolved(unresolved: readonly UnresolvedReport[], severity: 'error' | 'warning'): string {
  return formatDiagnostics(unresolved.map((u) => ({ ...u.diagnostic, severity, hint: `remove the line with: ${u.fix}` })));
}

export const apply: Implementation = implement(commands.apply, (ctx) => {
  noArguments(ctx, 'apply');
  const { file, candidate: path } = ctx.values;
  if ((file === undefined) !== (path === undefined) || (path !== undefined && ctx.values.check !== true)) {
    throw new UsageError(
      '--candidate and --file go together, with --check: the candidate file is checked as the drop-in policy.d/NAME.policy would be',
      'e.g. lowport apply --check --file web --candidate /tmp/web.policy (Ansible: validate: lowport apply --check --file web --candidate %s)',
    );
  }
  const candidate = path === undefined || file === undefined ? undefined : { path, dropin: dropinFileName(file) };
  return () => {
    const result = applyPolicy(ctx.options, { check: ctx.values.check === true, ...(candidate === undefined ? {} : { candidate }) });
    const failed = result.unresolved.length > 0 ? 1 : 0;
    if (ctx.json) {
      printJson(ctx.io, result);
      return failed;
    }
    ctx.io.stderr(formatDiagnostics(result.warnings ?? []));
    if (failed) {
      const n = result.unresolved.length;
      const live = result.checkOnly ? 'would be live' : 'is live';
      ctx.io.stderr(
        `${formatUnresolved(result.unresolved, 'error')}lowport: ${n} rule${n === 1 ? '' : 's'} name${n === 1 ? 's' : ''} a user or group that does not exist; ` +
          `everything else ${live}. Create the user or group and run \`lowport apply\` again, or remove the line.\n`,
      );
    }
    if (result.checkOnly) {
      const what = candidate === undefined ? result.policy : `${candidate.path} as ${dropinDirOf(result.policy)}/${candidate.dropin}`;
      ctx.io.stdout(`${escapeControl(what)}: OK, ${result.rules} rule${result.rules === 1 ? '' : 's'} (${result.entries} map entries)\n`);
    } else {
      const forwards =
        result.forwards === undefined || result.forwards === 0
          ? ''
          : `; ${result.forwards} forward${result.forwards === 1 ? '' : 's'} redirected (nftables)`;
      ctx.io.stdout(
        `${result.policy}: ${result.rules} rule${result.rules === 1 ? '' : 's'} live (${result.entries} map entries)${result.installed ? '; bind hooks attached' : ''}${forwards}\n`,
      );
      for (const note of result.notes ?? []) ctx.note(note);
    }
    return failed;
  };
});

/**
 * What off says of the rules the policy keeps, which the next edit or apply
 * makes live again: of the one file that holds them (the main file, or a
 * drop-in), or of each of the policy files (the main file and its drop-ins,
 * PATH.d/*.policy) with its count. Undefined when they keep none.
 */
export function policyKept(result: Pick<OffResult, 'policy' | 'policyRules' | 'policyFiles'>): string | undefined {
  const n = result.policyRules ?? 0;
  if (n === 0) return undefined;
  const files = result.policyFiles ?? [{ file: result.policy, rules: n }];
  const rules = `${n} rule${n === 1 ? '' : 's'}`;
  const dropin = files.some((f) => f.file !== result.policy);
  const stays =
    files.length === 1
      ? `The policy file ${escapeControl(files[0]?.file ?? result.policy)} stays as it is, with its ${rules}`
      : `The policy files stay as they are, with their ${rules} (${files.map((f) => `${f.rules} in ${escapeControl(f.file)}`).join(', ')})`;
  return (
    `${stays}: the next \`lowport apply\`, \`grant\`, \`revoke\`, \`reserve\` or \`unreserve\` makes ${n === 1 ? 'it' : 'all of them'} live again. ` +
    `To drop a rule for good, \`lowport revoke\` or \`lowport unreserve\` it${dropin ? ` (with --file NAME for one in ${escapeControl(dropinDirOf(result.policy))}/NAME.policy)` : ''}, or edit ${files.length === 1 ? 'the file' : 'its file'}.`
  );
}

export const off: Implementation = implement(commands.off, (ctx) => {
  noArguments(ctx, 'off');
  return () => {
    const result = turnOff(ctx.options);
    if (ctx.json) printJson(ctx.io, result);
    else
      ctx.io.stdout(
        result.removed
          ? `lowport is off: removed everything at ${result.pinDir}\n`
          : `lowport was already off (nothing at ${result.pinDir})\n`,
      );
    const kept = policyKept(result);
    if (!ctx.json && kept !== undefined) ctx.io.stdout(`${kept}\n`);
    if (!ctx.json) for (const note of result.notes ?? []) ctx.note(note);
    if (!ctx.json && result.forwards !== undefined)
      ctx.io.stdout(
        `removed ${result.forwards} persisted forward${result.forwards === 1 ? '' : 's'} (nftables); \`lowport apply\` restores them\n`,
      );
    if (!ctx.json && result.endedRuns.length > 0) {
      const n = result.endedRuns.length;
      ctx.io.stdout(
        `ended the grant${n === 1 ? '' : 's'} of ${n} running \`lowport run\`${n === 1 ? '' : 's'} (${n === 1 ? 'it goes' : 'they go'} on without ${n === 1 ? 'it' : 'them'}):\n`,
      );
      for (const r of result.endedRuns) ctx.io.stdout(`  pid ${r.pid} (${escapeControl(r.user)}): ${escapeControl(r.command.join(' '))}\n`);
    }
    return 0;
  };
});
