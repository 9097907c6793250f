/** `lowport import-authbind`: authbind's byport/, byaddr/ and byuid/ as policy rules. */
import { LowportError, UsageError } from '../errors.js';
import { grantAll } from '../ops/edits.js';
import { checkAuthbindTree, convertAuthbind, formatImport, readAuthbindTree } from '../integrate/authbind.js';
import { escapeControl } from '../text.js';
import { implement, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';
import { reportEdit } from './grant.js';

export const importAuthbind: Implementation = implement(commands.importAuthbind, (ctx) => {
  if (ctx.positionals.length > 0) throw new UsageError('lowport import-authbind takes no arguments (use --dir DIR)');
  const dir = ctx.values.dir ?? '/etc/authbind';
  return () => {
    if (ctx.values.apply === true) checkAuthbindTree(dir);
    else {
      try {
        checkAuthbindTree(dir);
      } catch (e) {
        // Printing grants nothing: say that --apply would refuse it, so no one pastes the rules unawares. Other
        // errors (a missing directory, one a non-root user cannot search) show up as before, in the reading.
        if (e instanceof LowportError && e.code === 'E_POLICY_UNSAFE')
          ctx.io.stderr(`warning: ${escapeControl(e.message)} (with --apply). ${escapeControl(e.hint ?? '')}\n`);
      }
    }
    const result = convertAuthbind(readAuthbindTree(dir));
    if (ctx.values.apply !== true) {
      if (ctx.json) printJson(ctx.io, result);
      else ctx.io.stdout(formatImport(result, dir));
      return 0;
    }
    for (const n of result.notes) ctx.note(`note: ${escapeControl(n)}`);
    return reportEdit(
      ctx,
      grantAll(
        ctx.options,
        result.rules.map((r) => ({ ports: r.ports, principal: r.principal, addrs: r.addrs })),
      ),
    );
  };
});
