/**
 * The README's command table against the declarations (src/cli/commands.ts):
 * every command has a row, every option a row names is the command's, and
 * what a row writes as required (outside [...]) is what some synopsis of the
 * declaration requires. The README once showed `run [--port PORTS]`, which
 * run refuses.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { commandName, GLOBAL_OPTIONS, leaves, type AnyCommand } from '../../../src/cli/command.js';
import { COMMANDS } from '../../../src/cli/commands.js';

const README = fileURLToPath(new URL('../../../../README.md', import.meta.url));

/** One synopsis of the README's table: the command it names and the options written in it. */
interface Synopsis {
  command: AnyCommand;
  text: string;
}

/** The first cells of the table under `| command | what it does |`, `\|` unescaped. */
export function tableCells(markdown: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => /^\| command \| what it does \|/.test(l));
  assert.ok(start >= 0, 'the README has no command table');
  const rows = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const cell = /^\|((?:[^|\\]|\\.)*)\|/.exec(line)?.[1] ?? '';
    rows.push(cell.replace(/\\\|/g, '|').trim());
  }
  return rows;
}

/**
 * The synopses of a cell: each code span; one that does not start with
 * `lowport` continues the group of the one before (`lowport forward list` /
 * `gc`). `lowport --help` and `lowport COMMAND --help` name no command.
 */
export function synopses(cell: string): Synopsis[] {
  const out: Synopsis[] = [];
  let group: string[] = [];
  for (const [, code = ''] of cell.matchAll(/`([^`]+)`/g)) {
    const words = code.split(/\s+/);
    const path = words[0] === 'lowport' ? words.slice(1) : [...group, ...words];
    const command = leaves(COMMANDS)
      .filter((c) => c.path.every((w, i) => path[i] === w))
      .sort((a, b) => b.path.length - a.path.length)[0];
    if (command === undefined) continue;
    group = command.path.slice(0, -1);
    out.push({ command, text: path.slice(command.path.length).join(' ') });
  }
  return out;
}

/** Each `--option` of a synopsis, required when it is outside [...], optional inside. */
export function optionsOf(synopsis: string): Map<string, 'required' | 'optional'> {
  const out = new Map<string, 'required' | 'optional'>();
  let depth = 0;
  for (const m of synopsis.matchAll(/\[|\]|--([a-z][a-z0-9-]*)/g)) {
    if (m[0] === '[') depth++;
    else if (m[0] === ']') depth--;
    else if (m[1] !== undefined && !out.has(m[1])) out.set(m[1], depth > 0 ? 'optional' : 'required');
  }
  return out;
}

const required = (text: string): string[] =>
  [...optionsOf(text)]
    .filter(([, how]) => how === 'required')
    .map(([o]) => o)
    .sort();

describe("the README's command table", () => {
  const rows = tableCells(readFileSync(README, 'utf8')).flatMap(synopses);

  it('has a row for every command', () => {
    const shown = new Set(rows.map((r) => commandName(r.command)));
    for (const command of leaves(COMMANDS)) assert.ok(shown.has(commandName(command)), `no row for lowport ${commandName(command)}`);
  });

  it('names only options the command has', () => {
    for (const { command, text } of rows) {
      const declared = new Set(Object.keys({ ...command.options, ...GLOBAL_OPTIONS }));
      for (const option of optionsOf(text).keys())
        assert.ok(declared.has(option), `the row of lowport ${commandName(command)} names --${option}, which it does not take`);
    }
  });

  it('requires exactly the options one synopsis of the declaration requires', () => {
    for (const { command, text } of rows) {
      const forms = command.usage.map(required);
      const mine = required(text);
      assert.ok(
        forms.some((f) => f.join(' ') === mine.join(' ')),
        `lowport ${commandName(command)} ${text}: requires [${mine.join(', ')}], but its synopses require ${forms.map((f) => `[${f.join(', ')}]`).join(' or ')}`,
      );
    }
  });

  it('catches a required option shown as optional (the old run row)', () => {
    const [old] = synopses('`lowport run [--port PORTS] [--user U] [--addr IP]... [--sockets | --caps] -- COMMAND...`');
    assert.ok(old !== undefined);
    assert.ok(!old.command.usage.map(required).some((f) => f.join(' ') === required(old.text).join(' ')));
  });

  it('reads the shapes of the table: groups continued, escaped bars, brackets', () => {
    assert.deepEqual(
      synopses('`lowport forward list` / `gc` / `remove PORT`').map((s) => [commandName(s.command), s.text]),
      [
        ['forward list', ''],
        ['forward gc', ''],
        ['forward remove', 'PORT'],
      ],
    );
    assert.deepEqual(tableCells('| command | what it does |\n|---|---|\n| `lowport a [--x \\| --y]` | z |\n\nafter'), [
      '`lowport a [--x | --y]`',
    ]);
    assert.deepEqual(
      [...optionsOf('--all (--user U | --group G) [--addr IP]...')],
      [
        ['all', 'required'],
        ['user', 'required'],
        ['group', 'required'],
        ['addr', 'optional'],
      ],
    );
  });
});
