/** --help, generated from the declarations (commands.ts): the command list, and each command's usage, options and examples. */
import {
  GLOBAL_OPTIONS,
  VERSION_OPTION,
  commandName,
  isGroup,
  type AnyCommand,
  type CommandGroup,
  type Entry,
  type OptionDefs,
} from './command.js';
import { COMMANDS } from './commands.js';

/** `-u, --user U` */
function optionLabel(name: string, o: OptionDefs[string]): string {
  return `${o.short === undefined ? '' : `-${o.short}, `}--${name}${o.type === 'string' && o.value !== undefined ? ` ${o.value}` : ''}`;
}

/** Rows of a two-column table, the second column's extra lines under its first. */
function rows(items: readonly (readonly [string, string])[]): string {
  const lefts = items.map(([l]) => l);
  const width = Math.max(...lefts.map((l) => l.length));
  return items
    .map(([, text], i) => {
      const [first = '', ...more] = text.split('\n');
      return [`  ${(lefts[i] ?? '').padEnd(width)}  ${first}`, ...more.map((m) => `  ${' '.repeat(width)}  ${m}`)].join('\n');
    })
    .join('\n');
}

function optionRows(options: OptionDefs): string {
  const entries = Object.entries(options);
  const anyShort = entries.some(([, o]) => o.short !== undefined);
  return rows(entries.map(([name, o]) => [`${anyShort && o.short === undefined ? '    ' : ''}${optionLabel(name, o)}`, o.description]));
}

function globalHelp(): string {
  return `Options for every command:\n${optionRows(GLOBAL_OPTIONS)}`;
}

/** `lowport grant PORTS ...`, one per synopsis line, continuation lines aligned under the arguments. */
function usageLines(c: AnyCommand): string[] {
  const head = `lowport ${commandName(c)}`;
  return c.usage.map((u) => {
    const [first = '', ...more] = u.split('\n');
    return [first === '' ? head : `${head} ${first}`, ...more.map((m) => `${' '.repeat(head.length + 1)}${m.trim()}`)].join('\n');
  });
}

function usageBlock(lines: string[]): string {
  return lines.map((l, i) => `${i === 0 ? 'Usage: ' : '       '}${l.replace(/\n/g, '\n       ')}`).join('\n');
}

function examples(list: readonly string[] | undefined): string {
  return list === undefined || list.length === 0 ? '' : `\n\nExamples:\n${list.map((e) => `  ${e}`).join('\n')}`;
}

function commandHelp(c: AnyCommand): string {
  const parts = [usageBlock(usageLines(c)), c.description];
  if (c.positionals !== undefined && c.positionals.length > 0)
    parts.push(`Arguments:\n${rows(c.positionals.map((p) => [p.name, p.description]))}`);
  if (Object.keys(c.options).length > 0) parts.push(`Options:\n${optionRows(c.options)}`);
  return `${parts.join('\n\n')}${examples(c.examples)}\n\n${globalHelp()}\n`;
}

function groupHelp(g: CommandGroup): string {
  const subs = rows(g.subcommands.map((s) => [s.path[s.path.length - 1] ?? '', s.summary]));
  // What the name alone runs: its usage first, then its description and options before the subcommands.
  const alone = g.alone === undefined ? [] : [g.alone];
  const own = alone.flatMap((c) => [
    c.description,
    ...(Object.keys(c.options).length > 0 ? [`Options of lowport ${commandName(c)}:\n${optionRows(c.options)}`] : []),
  ]);
  return `${usageBlock([...alone, ...g.subcommands].flatMap(usageLines))}

${[g.description, ...own].join('\n\n')}

Commands:
${subs}

Run \`lowport ${commandName(g)} COMMAND --help\` for a command's arguments.${examples(g.examples)}

${globalHelp()}
`;
}

export function entryHelp(e: Entry): string {
  return isGroup(e) ? groupHelp(e) : commandHelp(e);
}

export function mainHelp(version: string): string {
  return `lowport ${version}: let non-root programs bind ports below 1024, per user, group, port and address.

Usage: lowport COMMAND [ARGS] [OPTIONS]

Commands:
${rows(COMMANDS.map((c) => [commandName(c), c.summary]))}

Options:
${optionRows({ ...GLOBAL_OPTIONS, ...VERSION_OPTION })}

Run \`lowport COMMAND --help\` for a command's arguments.
Example: sudo lowport grant 80,443 --user alice   (then alice's programs bind 80 and 443)
`;
}
