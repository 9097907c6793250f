/** `lowport import-authbind`: authbind's byport/, byaddr/ and byuid/ as policy rules. */
import { LowportError, UsageError } from '../errors.js';
import { grantAll } from '../ops/edits.js';
import { checkAuthbindTree, convertAuthbind, formatImport, readAuthbindTree } from '../integrate/authbind.js';
import { escapeControl } from '../text.js';
import { printJson, type Command } from './command.js';
import { reportEdit } from './grant.js';

export const importAuthbindCommand: Command = {
  name: 'import-authbind',
  help: `Usage: lowport import-authbind [--dir DIR] [--apply]

Reads DIR (default /etc/authbind): byport/PORT files (whoever may execute the
file may bind the port, as access(2) decides: the owner by the owner's bits,
the group's members by the group's), byaddr/ADDR,PORT files and byuid/UID
lines, in authbind's order (the first file that exists decides; names for
ports 512-1023 start with '!'), and prints the equivalent policy rules. What
lowport cannot say exactly ("everyone but group G", address ranges, networks)
is not imported but named in a comment: the result never allows more than
authbind did. Symlinks in the tree are not followed (skipped, with a note).
With --apply, adds the rules to the policy and makes them live (root); DIR,
every directory above it and its byport/, byaddr/ and byuid/ must then be
root's alone, as for the policy (files in them may be users'). Without
--apply, such a tree is only warned about on stderr.`,
  options: { dir: { type: 'string' }, apply: { type: 'boolean' } },
  needsRoot: (values) => values.apply === true,
  prepare: (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError('lowport import-authbind takes no arguments (use --dir DIR)');
    const dir = (ctx.values.dir as string | undefined) ?? '/etc/authbind';
    return () => {
      if (ctx.values.apply === true) checkAuthbindTree(dir);
      else {
        try {
          checkAuthbindTree(dir);
        } catch (e) {
          // Printing grants nothing: say that --apply would refuse it, so no one pastes the rules unawares. Other
          // errors (a missing directory, one a non-root user cannot search) show up as before, in the reading.
          if (e instanceof LowportError && e.code === 'E_POLICY_UNSAFE') ctx.io.stderr(`warning: ${escapeControl(e.message)} (with --apply). ${escapeControl(e.hint ?? '')}\n`);
        }
      }
      const result = convertAuthbind(readAuthbindTree(dir));
      if (ctx.values.apply !== true) {
        if (ctx.json) printJson(ctx.io, result);
        else ctx.io.stdout(formatImport(result, dir));
        return 0;
      }
      for (const n of result.notes) ctx.io.stderr(`note: ${escapeControl(n)}\n`);
      return reportEdit(ctx, grantAll(ctx.options, result.rules.map((r) => ({ ports: r.ports, principal: r.principal, addrs: r.addrs }))));
    };
  },
};
