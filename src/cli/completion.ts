/**
 * The bash and zsh completion scripts, generated from the declarations
 * (commands.ts): commands, subcommands, options, user and group names for
 * --user and --group, files and directories where an option takes one.
 * `lowport completion bash|zsh` prints them; the build writes them to
 * dist/share (share.ts).
 */
import { UsageError } from '../errors.js';
import {
  commandName,
  GLOBAL_OPTIONS,
  implement,
  isGroup,
  leaves,
  VERSION_OPTION,
  type AnyCommand,
  type Completion,
  type Entry,
  type Implementation,
  type OptionDef,
  type OptionDefs,
  type PositionalDef,
} from './command.js';
import * as commands from './commands.js';

const HEADER = 'generated from its command declarations (src/cli/commands.ts) by `lowport completion`; do not edit';

/** `-u --user`: how an option is written, short first. */
function spellings(name: string, o: OptionDef): string[] {
  return [...(o.short === undefined ? [] : [`-${o.short}`]), `--${name}`];
}

function bashQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** What bash completes for a value or an argument, as _lowport_complete reads it: `user`, `file`, `words v1 v2`. */
function bashKind(kind: Completion | undefined, choices: readonly string[] | undefined): string {
  return choices === undefined ? (kind ?? 'none') : `words ${choices.join(' ')}`;
}

function bashCase(pattern: string, body: string): string {
  return `        ${pattern}) ${body} ;;`;
}

export function bashCompletion(entries: readonly Entry[] = commands.COMMANDS): string {
  const specs: string[] = [];
  const values: string[] = [];
  const optionWords = (options: OptionDefs): string =>
    Object.entries(options)
      .flatMap(([n, o]) => spellings(n, o))
      .join(' ');
  specs.push(bashCase("''", `subs=${bashQuote(entries.map(commandName).join(' '))}; opts=${bashQuote(optionWords(VERSION_OPTION))}`));
  const argsOf = (c: AnyCommand): string => {
    const arg = c.positionals?.find((p) => p.complete !== undefined || p.choices !== undefined);
    return arg === undefined ? '' : bashKind(arg.complete, arg.choices);
  };
  for (const e of entries) {
    if (!isGroup(e)) continue;
    const subs = `subs=${bashQuote(e.subcommands.map((s) => s.path[s.path.length - 1] ?? '').join(' '))}`;
    // `lowport log --follow`: the options of what the name alone runs, with the subcommands.
    const alone = e.alone === undefined ? '' : `; opts=${bashQuote(optionWords(e.alone.options))}; args=${bashQuote(argsOf(e.alone))}`;
    specs.push(bashCase(bashQuote(commandName(e)), `${subs}${alone}`));
  }
  for (const c of leaves(entries)) {
    const path = commandName(c);
    if (!entries.some((e) => isGroup(e) && e.alone === c))
      specs.push(bashCase(bashQuote(path), `opts=${bashQuote(optionWords(c.options))}; args=${bashQuote(argsOf(c))}`));
    for (const [name, o] of Object.entries(c.options)) {
      if (o.type === 'string')
        values.push(
          bashCase(
            spellings(name, o)
              .map((s) => bashQuote(`${path} ${s}`))
              .join('|'),
            `kind=${bashQuote(bashKind(o.complete, o.choices))}`,
          ),
        );
    }
  }
  // Global options, whatever the command (and before it).
  for (const [name, o] of Object.entries(GLOBAL_OPTIONS)) {
    if (o.type === 'string')
      values.push(
        bashCase(
          spellings(name, o)
            .map((s) => `*${bashQuote(` ${s}`)}`)
            .join('|'),
          `kind=${bashQuote(bashKind(o.complete, undefined))}`,
        ),
      );
  }
  return `# bash completion for lowport(8), ${HEADER}.

# Sets subs (its subcommands), opts (its options) and args (what its arguments complete to) for the command path $1.
_lowport_spec() {
    subs='' opts='' args=''
    case $1 in
${specs.join('\n')}
    esac
    opts="$opts ${optionWords(GLOBAL_OPTIONS)}"
}

# Sets kind to what the value of option $2 of command path $1 completes to; fails when $2 takes no value.
_lowport_kind() {
    case "$1 $2" in
${values.join('\n')}
        *) return 1 ;;
    esac
}

# Completes $cur as a $1.
_lowport_complete() {
    case $1 in
        user) COMPREPLY=($(compgen -u -- "$cur")) ;;
        group) COMPREPLY=($(compgen -g -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        directory) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        command) COMPREPLY=($(compgen -c -- "$cur")) ;;
        words\\ *) COMPREPLY=($(compgen -W "\${1#words }" -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
}

_lowport() {
    local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
    local path='' word i subs opts args kind option='' dashdash=0
    # The command path: the words that name a command or subcommand, skipping
    # options and their values (bash splits --user=alice into --user = alice).
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=\${COMP_WORDS[i]}
        if [[ $word == -- ]]; then dashdash=1; break; fi
        if [[ $word == -* ]]; then
            if _lowport_kind "$path" "$word"; then
                if [[ \${COMP_WORDS[i+1]} == = ]]; then ((i += 2)); else ((i += 1)); fi
            fi
            continue
        fi
        _lowport_spec "$path"
        if [[ " $subs " == *" $word "* ]]; then path=\${path:+$path }$word; fi
    done
    COMPREPLY=()
    if ((!dashdash)); then
        if [[ $cur == = ]]; then option=$prev; cur=''
        elif [[ $prev == = ]]; then option=\${COMP_WORDS[COMP_CWORD-2]}
        elif [[ $prev == -* ]]; then option=$prev
        fi
    fi
    if [[ -n $option ]] && _lowport_kind "$path" "$option"; then
        _lowport_complete "$kind"
        return 0
    fi
    _lowport_spec "$path"
    # A COMMAND to run (lowport run ... -- COMMAND) comes after --; other arguments before it.
    if ((dashdash)); then
        [[ $args == command ]] && _lowport_complete command
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $subs ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    elif [[ $args != command ]]; then
        _lowport_complete "$args"
    fi
    return 0
}

complete -F _lowport lowport
`;
}

/** Text inside single quotes in zsh. */
function zshQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** An _arguments explanation (inside [...]): on one line, backslashes and brackets escaped. */
function zshHelp(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/([\\[\]])/g, '\\$1');
}

/** An _arguments message (between colons): colons escaped too. */
function zshMessage(text: string): string {
  return zshHelp(text).replace(/:/g, '\\:');
}

function zshAction(kind: Completion | undefined, choices: readonly string[] | undefined): string {
  if (choices !== undefined) return `(${choices.join(' ')})`;
  switch (kind) {
    case 'user':
      return '_users';
    case 'group':
      return '_groups';
    case 'file':
      return '_files';
    case 'directory':
      return '_files -/';
    case 'command':
      return '_command_names -e';
    case 'none':
    case undefined:
      return ' ';
  }
}

/** `'(-u --user)'{-u+,--user=}'[a user name or uid]:U:_users'` */
function zshOption(name: string, o: OptionDef): string {
  const value = o.type === 'string' ? `:${zshMessage(o.value ?? name)}:${zshAction(o.complete, o.choices)}` : '';
  const rest = `[${zshHelp(o.description)}]${value}`;
  const long = `--${name}${o.type === 'string' ? '=' : ''}`;
  const repeat = o.multiple === true ? '*' : '';
  if (o.short === undefined) return zshQuote(`${repeat}${long}${rest}`);
  const short = `-${o.short}${o.type === 'string' ? '+' : ''}`;
  const exclusive = zshQuote(o.multiple === true ? '*' : `(-${o.short} --${name})`);
  return `${exclusive}{${short},${long}}${zshQuote(rest)}`;
}

function zshPositionals(list: readonly PositionalDef[] | undefined): string[] {
  return (list ?? []).flatMap((p, i) =>
    // A command to run: its name, then its own arguments, completed as that command's.
    p.complete === 'command'
      ? [zshQuote(`${i + 1}:${zshMessage(p.name)}:_command_names -e`), zshQuote('*::arguments:_normal')]
      : [zshQuote(`${i + 1}:${zshMessage(p.name)}:${zshAction(p.complete, p.choices)}`)],
  );
}

function zshFunctionName(path: readonly string[]): string {
  return `_lowport_${path.map((w) => w.replace(/[^a-z0-9]/g, '_')).join('_')}`;
}

function zshDescribe(what: string, items: readonly (readonly [string, string])[]): string {
  return `local -a cmds=(\n${items.map(([n, d]) => `        ${zshQuote(`${n.replace(/:/g, '\\:')}:${d.replace(/\s*\n\s*/g, ' ')}`)}`).join('\n')}\n    )\n    _describe -t commands ${zshQuote(what)} cmds`;
}

/** A function that completes the subcommands of `words` (after the group's name), then dispatches to theirs. */
function zshDispatcher(
  name: string,
  what: string,
  items: readonly { word: string; summary: string; fn: string }[],
  extra: string[],
): string {
  return `${name}() {
    local curcontext=$curcontext state line
    typeset -A opt_args
    _arguments -C ${extra.join(' ')} '1:command:->command' '*::argument:->argument' && return
    case $state in
    command)
    ${zshDescribe(
      what,
      items.map((i) => [i.word, i.summary]),
    )}
        ;;
    argument)
        case $words[1] in
${items.map((i) => `        ${zshQuote(i.word)}) ${i.fn} ;;`).join('\n')}
        esac
        ;;
    esac
}`;
}

export function zshCompletion(entries: readonly Entry[] = commands.COMMANDS): string {
  const globals = Object.entries(GLOBAL_OPTIONS).map(([n, o]) => zshOption(n, o));
  const fns: string[] = [];
  for (const e of entries) {
    if (isGroup(e)) {
      fns.push(
        zshDispatcher(
          zshFunctionName(e.path),
          `lowport ${commandName(e)} command`,
          e.subcommands.map((s) => ({ word: s.path[s.path.length - 1] ?? '', summary: s.summary, fn: zshFunctionName(s.path) })),
          // The options of what the name alone runs (`lowport log --follow`), before a subcommand.
          ['"${_lowport_global[@]}"', ...Object.entries(e.alone?.options ?? {}).map(([n, o]) => zshOption(n, o))],
        ),
      );
    }
  }
  // What a group's name alone runs is completed by the group's function.
  for (const c of leaves(entries).filter((c) => !entries.some((e) => isGroup(e) && e.alone === c))) {
    const specs = [...Object.entries(c.options).map(([n, o]) => zshOption(n, o)), ...zshPositionals(c.positionals)];
    fns.push(`${zshFunctionName(c.path)}() {\n    _arguments -s -S "\${_lowport_global[@]}" \\\n        ${specs.join(' \\\n        ')}\n}`);
  }
  const main = zshDispatcher(
    '_lowport',
    'lowport command',
    entries.map((e) => ({ word: commandName(e), summary: e.summary, fn: zshFunctionName(e.path) })),
    ['"${_lowport_global[@]}"', ...Object.entries(VERSION_OPTION).map(([n, o]) => zshOption(n, o))],
  );
  return `#compdef lowport
# zsh completion for lowport(8), ${HEADER}.

_lowport_global=(
    ${globals.join('\n    ')}
)

${fns.join('\n\n')}

${main}

_lowport "$@"
`;
}

export const completionCommand: Implementation = implement(commands.completion, (ctx) => {
  const [shell, ...extra] = ctx.positionals;
  if (extra.length > 0) throw new UsageError(`unexpected '${extra.join(' ')}': give one shell, bash or zsh`);
  if (shell !== 'bash' && shell !== 'zsh')
    throw new UsageError(`lowport completion takes bash or zsh, not '${shell ?? ''}'`, 'See `lowport completion --help`.');
  return () => {
    ctx.io.stdout(shell === 'bash' ? bashCompletion() : zshCompletion());
    return 0;
  };
});
