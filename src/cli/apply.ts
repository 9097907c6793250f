/** `lowport apply` and `lowport off`. */
import { apply } from '../engine/apply.js';
import { off } from '../engine/off.js';
import { noArguments, printJson, type Command } from './command.js';

export const applyCommand: Command = {
  name: 'apply',
  help: `Usage: lowport apply [--check]

Loads the policy file. The whole file is checked first (syntax, users,
groups, ownership); on any error nothing changes and every problem is shown
with its line and column. The switch from the old rules to the new is one
step: every bind sees either the old policy or the new one.

  --check   only check the file; needs no root`,
  options: { check: { type: 'boolean' } },
  needsRoot: (values) => values.check !== true,
  prepare: (ctx) => {
    noArguments(ctx, 'apply');
    return () => {
      const result = apply(ctx.options, { check: ctx.values.check === true });
      if (ctx.json) {
        printJson(ctx.io, result);
      } else if (result.checkOnly) {
        ctx.io.stdout(`${result.policy}: OK, ${result.rules} rule${result.rules === 1 ? '' : 's'} (${result.entries} map entries)\n`);
      } else {
        const forwards = result.forwards === undefined || result.forwards === 0 ? '' : `; ${result.forwards} forward${result.forwards === 1 ? '' : 's'} redirected (nftables)`;
        ctx.io.stdout(`${result.policy}: ${result.rules} rule${result.rules === 1 ? '' : 's'} live (${result.entries} map entries)${result.installed ? '; bind hooks attached' : ''}${forwards}\n`);
        for (const note of result.notes ?? []) ctx.io.stdout(`${note}\n`);
      }
      return 0;
    };
  },
};

export const offCommand: Command = {
  name: 'off',
  help: `Usage: lowport off

Ends every grant and reservation at once, then removes lowport's programs,
links, map and pins. The policy file stays; \`lowport apply\` brings it back.`,
  options: {},
  needsRoot: () => true,
  prepare: (ctx) => {
    noArguments(ctx, 'off');
    return () => {
      const result = off(ctx.options);
      if (ctx.json) printJson(ctx.io, result);
      else ctx.io.stdout(result.removed ? `lowport is off: removed everything at ${result.pinDir}\n` : `lowport was already off (nothing at ${result.pinDir})\n`);
      if (!ctx.json) for (const note of result.notes ?? []) ctx.io.stdout(`${note}\n`);
      if (!ctx.json && result.forwards !== undefined) ctx.io.stdout(`removed ${result.forwards} persisted forward${result.forwards === 1 ? '' : 's'} (nftables); \`lowport apply\` restores them\n`);
      return 0;
    };
  },
};
