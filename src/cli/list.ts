/** `lowport list`: the live rules, read back from the kernel. */
import { formatDiagnostic } from '../diagnostic.js';
import { list as listLive, type ListResult, type LiveRule, type ShadowedGrant } from '../ops/list.js';
import { escapeControl } from '../text.js';
import { implement, noArguments, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';

const FILE_STATE: Record<ListResult['file'], string> = {
  'in-sync': 'the live rules are what the file says',
  differs: 'the file differs from the live rules: run `lowport apply` to load it',
  missing: 'the policy file does not exist',
  invalid: 'the policy file has errors (run `lowport apply --check`); the live rules stay as they were',
  'names-changed':
    'the live rules were made from the file, but users or groups it names have changed since (see the warnings): run `lowport apply`',
};

/** A live rule as the RULE column shows it: `grant 80,443 user alice (uid 1000) addr ::1`. Not escaped. */
export function ruleText(rule: LiveRule): string {
  const who = rule.who.length > 0 ? rule.who.join(' + ') : 'nobody but root (its owner does not exist)';
  return `${rule.action} ${rule.ports} ${who}${rule.addrs.length > 0 ? ` addr ${rule.addrs.join(',')}` : ''}`;
}

/**
 * Where a live rule came from, as the LINE column shows it: its line alone
 * in the policy file (as before drop-ins existed), `policy.d/10-web.policy:3`
 * in a drop-in (the path beside the policy file's directory). Escaped.
 */
export function ruleWhere(rule: { line: number; file?: string | undefined }, policy: string): string {
  return rule.file === undefined || rule.file === policy
    ? String(rule.line)
    : `${escapeControl(shortFile(rule.file, policy))}:${rule.line}`;
}

/** A file of the policy named from the policy's directory: `policy.d/10-web.policy`. */
function shortFile(file: string, policy: string): string {
  const dir = policy.slice(0, policy.lastIndexOf('/') + 1);
  return dir !== '' && file.startsWith(dir) ? file.slice(dir.length) : file;
}

/** `shadowed by line 3`, or `shadowed by line 3 of policy.d/10-web.policy` when the reservation is in another file. */
function shadowedText(rule: ShadowedGrant, policy: string): string {
  const other = rule.shadowedByFile !== undefined && rule.shadowedByFile !== (rule.file ?? policy);
  return `shadowed by line ${rule.shadowedBy}${other ? ` of ${escapeControl(shortFile(rule.shadowedByFile ?? '', policy))}` : ''}`;
}

export function formatList(r: ListResult): string {
  const out: string[] = [];
  if (!r.live) {
    out.push(`lowport is off: nothing is live at ${escapeControl(r.pinDir)}.`);
  } else {
    out.push(
      `lowport is on: ${r.rules.length} rule${r.rules.length === 1 ? '' : 's'} live (${r.entries} map entries), attached at ${escapeControl(r.cgroup)}, pinned at ${escapeControl(r.pinDir)}.`,
    );
  }
  out.push(`Policy ${escapeControl(r.policy)}: ${FILE_STATE[r.file]}.`);
  // Shadowed grants (ops/list.ts) sit among the live rules by line, after the line's live part.
  // By file (the order they are read in: the policy file, then the drop-ins by name), then line.
  const files = new Map<string, number>([[r.policy, 0]]);
  const fileOrder = (rule: LiveRule): number => {
    if (rule.file === undefined) return 0;
    let order = files.get(rule.file);
    if (order === undefined) files.set(rule.file, (order = files.size));
    return order;
  };
  for (const rule of r.rules) fileOrder(rule);
  const shown = [
    ...r.rules.map((rule) => ({ rule, by: undefined as ShadowedGrant | undefined })),
    ...r.shadowed.map((rule) => ({ rule, by: rule })),
  ].sort((a, b) => fileOrder(a.rule) - fileOrder(b.rule) || a.rule.line - b.rule.line || (a.by?.shadowedBy ?? 0) - (b.by?.shadowedBy ?? 0));
  if (shown.length > 0) {
    out.push('');
    const rows = shown.map(({ rule, by }) => [
      ruleWhere(rule, r.policy),
      ruleText(rule),
      by !== undefined
        ? shadowedText(by, r.policy)
        : rule.action === 'reserve'
          ? `${rule.hits} (refused ${rule.refused})`
          : String(rule.hits),
    ]);
    const table = [['LINE', 'RULE', 'BINDS'], ...rows];
    const lineWidth = table.reduce((w, row) => Math.max(w, (row[0] ?? '').length), 0);
    const ruleWidth = table.reduce((w, row) => Math.max(w, (row[1] ?? '').length), 0);
    // Rule labels of `lowport run` scopes hold the command line a user ran, and paths and names come from outside: escaped.
    // Only the RULE column can hold them; the others are numbers, fixed words and file names escaped already.
    for (const row of table)
      out.push(`${(row[0] ?? '').padStart(lineWidth)}  ${escapeControl(row[1] ?? '').padEnd(ruleWidth)}  ${row[2] ?? ''}`);
  }
  if (r.shadowed.length > 0) {
    out.push(
      '',
      'A shadowed grant does nothing where a reservation of the same port holds: its owner binds through the reservation ' +
        '(whose line counts the binds), and a grant to everyone never opens a reserved port.',
    );
  }
  if (r.warnings.length > 0) {
    out.push('');
    for (const w of r.warnings)
      out.push(
        w.diagnostic === undefined
          ? `warning: ${escapeControl(w.file ?? r.policy)}:${w.line}: ${w.message}`
          : formatDiagnostic(w.diagnostic),
      );
  }
  const others = r.programs.filter((p) => !p.ours);
  if (others.length > 0) {
    out.push('', 'Other programs on the bind hooks (they can also allow, grant or refuse binds):');
    for (const p of others) {
      out.push(
        `  ${p.hook}  prog id ${p.id}  ${escapeControl(p.name || '(no name)')}  ${p.inherited ? 'attached at an ancestor cgroup' : 'attached here'}  loaded by uid ${p.createdByUid}`,
      );
    }
    out.push('  Inspect them with `bpftool prog show id ID`.');
  }
  return `${out.join('\n')}\n`;
}

export const list: Implementation = implement(commands.list, (ctx) => {
  noArguments(ctx, 'list');
  return () => {
    const result = listLive(ctx.options);
    if (ctx.json) printJson(ctx.io, result);
    else ctx.io.stdout(formatList(result));
    return 0;
  };
});
