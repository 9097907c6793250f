/** lowport(8) in roff (man(7) macros), generated from the declarations (commands.ts), as --help is. */
import { commandName, GLOBAL_OPTIONS, isGroup, VERSION_OPTION, type AnyCommand, type Entry, type OptionDefs } from './command.js';
import { COMMANDS } from './commands.js';

/**
 * Text for roff: backslashes written as \e, a dash that starts a word as \-
 * (an option, not a hyphen), and a line that would start with . or ' (a
 * request) guarded with \&.
 */
export function roffText(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/(^|[^\w-])(-+)(?=[\w-])/gm, (_, before: string, dashes: string) => `${before}${dashes.replace(/-/g, '\\-')}`)
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

function paragraphs(text: string): string {
  return text
    .split(/\n\s*\n/)
    .map((p) => `.PP\n${roffText(p)}`)
    .join('\n');
}

/** `.TP` items: `\fB\-u\fR, \fB\-\-user\fR \fIU\fR` and the description. */
function optionItems(options: OptionDefs): string {
  return Object.entries(options)
    .map(([name, o]) => {
      const names = [...(o.short === undefined ? [] : [`\\fB\\-${o.short}\\fR`]), `\\fB\\-\\-${name}\\fR`].join(', ');
      const value = o.type === 'string' && o.value !== undefined ? ` \\fI${roffText(o.value)}\\fR` : '';
      return `.TP\n${names}${value}\n${roffText(o.description)}`;
    })
    .join('\n');
}

function examples(list: readonly string[] | undefined): string {
  if (list === undefined || list.length === 0) return '';
  return `\n.PP\nExamples:\n.RS\n.nf\n${list.map(roffText).join('\n')}\n.fi\n.RE`;
}

function commandSection(c: AnyCommand): string {
  const head = `lowport ${commandName(c)}`;
  const synopsis = c.usage
    .map((u) => `\\fB${roffText(head)}\\fR${u === '' ? '' : ` ${roffText(u.replace(/\n\s*/g, ' '))}`}`)
    .join('\n.br\n');
  const parts = [`.SS "${head}"`, synopsis, paragraphs(c.description)];
  if (c.positionals !== undefined && c.positionals.length > 0) {
    parts.push(c.positionals.map((p) => `.TP\n\\fI${roffText(p.name)}\\fR\n${roffText(p.description)}`).join('\n'));
  }
  if (Object.keys(c.options).length > 0) parts.push(optionItems(c.options));
  return `${parts.join('\n')}${examples(c.examples)}`;
}

export function manPage(version: string, entries: readonly Entry[] = COMMANDS): string {
  // A group whose name alone runs a command (`lowport log`): that command's section is the group's.
  const sections = entries.flatMap((e) =>
    isGroup(e)
      ? [
          e.alone === undefined
            ? `.SS "lowport ${commandName(e)}"\n${paragraphs(e.description)}${examples(e.examples)}`
            : commandSection(e.alone),
          ...e.subcommands.map(commandSection),
        ]
      : [commandSection(e)],
  );
  return `.\\" lowport(8), generated from its command declarations (src/cli/commands.ts) by src/cli/share.ts; do not edit.
.TH LOWPORT 8 "" "lowport ${roffText(version)}" "System Administration"
.SH NAME
lowport \\- let non\\-root programs bind ports below 1024, per user, group, port and address
.SH SYNOPSIS
\\fBlowport\\fR \\fICOMMAND\\fR [\\fIARGS\\fR] [\\fIOPTIONS\\fR]
.SH DESCRIPTION
.PP
lowport lets programs that do not run as root bind ports below 1024: per
user, group, port and address, with a cgroup\\-BPF bind hook. The rules are
kept in a policy file (\\fI/etc/lowport/policy\\fR) and made live in the kernel
at once; \\fBlowport apply\\fR loads the file, at boot too (\\fBlowport install\\fR).
.PP
Each command below prints its own help with \\fB\\-\\-help\\fR.
.SH COMMANDS
${sections.join('\n')}
.SH OPTIONS
These options go with every command, before or after it.
${optionItems(GLOBAL_OPTIONS)}
.PP
Alone, \\fBlowport\\fR takes:
${optionItems(VERSION_OPTION)}
.SH EXIT STATUS
0 on success, 1 on failure, 2 on a usage error (\\fBlowport doctor\\fR: 1 when a port cannot be bound now; \\fBlowport run\\fR: the command's status).
.SH FILES
.TP
\\fI/etc/lowport/policy\\fR
the policy file
.TP
\\fI/sys/fs/bpf/lowport\\fR
lowport's pins in bpffs (\\fB\\-\\-pin\\-dir\\fR)
.SH SEE ALSO
\\fBnft\\fR(8), \\fBsystemd.exec\\fR(5), \\fBsd_listen_fds\\fR(3), \\fBauthbind\\fR(1)
`;
}
