/**
 * --help, the man page and the completion scripts come from one declaration
 * per command (src/cli/commands.ts): every option of every command must show
 * up in all four, the man page must render cleanly, and the scripts must
 * really complete in bash and zsh.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { commandName, GLOBAL_OPTIONS, leaves, type AnyCommand, type OptionDefs } from '../../../src/cli/command.js';
import { COMMANDS } from '../../../src/cli/commands.js';
import { bashCompletion, zshCompletion } from '../../../src/cli/completion.js';
import { manPage, roffText } from '../../../src/cli/manpage.js';
import { runMain } from '../../run-main.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const ZSH_COMPLETE = join(ROOT, 'test', 'fixtures', 'zsh-complete.zsh');

const has = (program: string): boolean => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;

/** Every (command, option) pair, global options included. */
const CASES: { command: AnyCommand; name: string; option: OptionDefs[string] }[] = leaves(COMMANDS).flatMap((command) =>
  Object.entries({ ...command.options, ...GLOBAL_OPTIONS }).map(([name, option]) => ({ command, name, option })),
);

/** The part of the man page about one command: from its .SS heading to the next heading. */
function manSection(page: string, command: AnyCommand): string {
  const start = page.indexOf(`.SS "lowport ${commandName(command)}"\n`);
  assert.ok(start >= 0, `no section for ${commandName(command)}`);
  const next = page.slice(start + 1).search(/^\.S[SH] /m);
  return next < 0 ? page.slice(start) : page.slice(start, start + 1 + next);
}

/** Runs `words` (after `lowport`) through the bash completion function, one query a line; returns COMPREPLY per query. */
function bashComplete(script: string, queries: string[][]): string[][] {
  const lines = queries.map((words) => {
    const array = ['lowport', ...words].map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
    return `COMP_WORDS=(${array}); COMP_CWORD=${words.length}; COMPREPLY=(); _lowport; printf '%s\\n' "\${COMPREPLY[*]}"`;
  });
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `${script}\n${lines.join('\n')}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout
    .split('\n')
    .slice(0, queries.length)
    .map((l) => l.split(' ').filter((w) => w !== ''));
}

describe('one declaration per command: help, man page and completions', () => {
  const page = manPage('9.9.9');
  const bash = bashCompletion();
  const zsh = zshCompletion();

  it('declares options each with a description, and a value name for those that take one', () => {
    for (const { command, name, option } of CASES) {
      assert.ok(option.description.length > 0, `${commandName(command)} --${name}`);
      if (option.type === 'string') assert.ok(option.value !== undefined, `${commandName(command)} --${name} needs a value name`);
    }
  });

  it("shows every option in the command's --help, with its short name and value name", async () => {
    for (const command of leaves(COMMANDS)) {
      const r = await runMain([...command.path, '--help']);
      assert.equal(r.code, 0, commandName(command));
      const all: OptionDefs = { ...command.options, ...GLOBAL_OPTIONS };
      for (const [name, o] of Object.entries(all)) {
        const label = `${o.short === undefined ? '' : `-${o.short}, `}--${name}${o.type === 'string' ? ` ${o.value ?? ''}` : ''}`;
        assert.ok(r.stdout.includes(`${label} `), `${commandName(command)} --help lacks '${label}':\n${r.stdout}`);
      }
    }
  });

  it("names in a command's synopsis and description only options it has", () => {
    for (const command of leaves(COMMANDS)) {
      const declared = new Set(Object.keys({ ...command.options, ...GLOBAL_OPTIONS }));
      // `lowport forward add --persist` in another command's description is that command's option.
      const own = `${command.usage.join('\n')}\n${command.description}`.replace(/`lowport ([^`]*)`/g, (quote, inner: string) =>
        inner.startsWith(commandName(command)) ? quote : '',
      );
      for (const [, name] of own.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)) {
        assert.ok(declared.has(name ?? ''), `${commandName(command)} mentions --${name ?? ''}, which it does not declare`);
      }
    }
  });

  it("puts every option in the command's part of the man page", () => {
    for (const { command, name, option } of CASES) {
      const section = name in GLOBAL_OPTIONS ? page.slice(page.indexOf('.SH OPTIONS')) : manSection(page, command);
      assert.ok(section.includes(`\\fB\\-\\-${roffText(name)}\\fR`), `man page: ${commandName(command)} --${name}`);
      if (option.short !== undefined)
        assert.ok(section.includes(`\\fB\\-${option.short}\\fR`), `man page: ${commandName(command)} -${option.short}`);
    }
  });

  it('renders the man page without a warning', { skip: !has('groff') && 'groff is not installed (apt-get install groff-base)' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowport-man-'));
    try {
      writeFileSync(join(dir, 'lowport.8'), page);
      const r = spawnSync('groff', ['-man', '-ww', '-z', join(dir, 'lowport.8')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      // A bad escape is no warning to groff; it shows as text.
      const text = spawnSync('groff', ['-man', '-Tutf8', '-P-cbou', join(dir, 'lowport.8')], { encoding: 'utf8' }).stdout;
      assert.match(text, /lowport +forward +serve +PORT\[\/tcp\|\/udp\]/);
      assert.doesNotMatch(text, /\\f|\\e|\\-/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('completes every option of every command in bash', () => {
    const queries = CASES.map(({ command, name }) => [...command.path, `--${name}`]);
    const replies = bashComplete(bash, queries);
    CASES.forEach(({ command, name }, i) =>
      assert.ok(
        replies[i]?.includes(`--${name}`),
        `bash: lowport ${commandName(command)} --${name}<TAB> gave ${JSON.stringify(replies[i])}`,
      ),
    );
  });

  it('completes commands, subcommands, user and group names, choices and files in bash', () => {
    const user = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
    const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
    const [commands, subs, users, usersEq, groups, choices, files, afterGlobal, runCommand] = bashComplete(bash, [
      ['gr'],
      ['forward', ''],
      ['grant', '80', '--user', user.slice(0, 2)],
      ['grant', '80', '--user', '=', user.slice(0, 2)],
      ['reserve', '80', '--group', group.slice(0, 2)],
      ['forward', 'serve', '80', '8080', '--proxy-protocol', ''],
      ['--policy', `${ROOT}package.j`],
      ['--policy', '/etc/lowport/policy', 'forward', 'a'],
      ['run', '--port', '80', '--', 'sh'],
    ]);
    assert.deepEqual(commands, ['grant']);
    assert.deepEqual(subs, ['add', 'remove', 'list', 'gc', 'serve']);
    assert.ok(users?.includes(user), `users: ${JSON.stringify(users)}`);
    assert.ok(usersEq?.includes(user), `--user=: ${JSON.stringify(usersEq)}`);
    assert.ok(groups?.includes(group), `groups: ${JSON.stringify(groups)}`);
    assert.deepEqual(choices, ['v1', 'v2']);
    assert.deepEqual(files, [`${ROOT}package.json`]);
    assert.deepEqual(afterGlobal, ['add']);
    assert.ok(runCommand?.includes('sh'), `commands after --: ${JSON.stringify(runCommand)}`);
  });

  describe('zsh', { skip: !has('zsh') && 'zsh is not installed (apt-get install zsh)' }, () => {
    let dir = '';
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'lowport-zsh-'));
      writeFileSync(join(dir, '_lowport'), zsh);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('parses the script (zsh -n)', () => {
      const r = spawnSync('zsh', ['-n', join(dir, '_lowport')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    });

    it('really completes: every option of every command, commands, subcommands, users and choices', () => {
      const user = spawnSync('id', ['-un'], { encoding: 'utf8' }).stdout.trim();
      const extra: [string, (hits: string[]) => boolean][] = [
        ['gr', (h) => h.includes('grant')],
        ['forward ', (h) => ['add', 'remove', 'list', 'gc', 'serve'].every((s) => h.includes(s))],
        [`grant 80 --user ${user.slice(0, 2)}`, (h) => h.includes(user)],
        ['forward serve 80 8080 --proxy-protocol ', (h) => h.includes('v1') && h.includes('v2')],
        ['completion ', (h) => h.includes('bash') && h.includes('zsh')],
      ];
      const queries = [...CASES.map(({ command, name }) => `${commandName(command)} --${name}`), ...extra.map(([q]) => q)];
      const r = spawnSync('zsh', ['-f', ZSH_COMPLETE, dir, ...queries], { encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.split('\n');
      CASES.forEach(({ command, name }, i) =>
        assert.ok(
          lines[i]?.split(' ').includes(`--${name}`),
          `zsh: lowport ${commandName(command)} --${name}<TAB> gave '${lines[i] ?? ''}'`,
        ),
      );
      extra.forEach(([q, ok], i) =>
        assert.ok(ok(lines[CASES.length + i]?.split(' ') ?? []), `zsh: lowport ${q}<TAB> gave '${lines[CASES.length + i] ?? ''}'`),
      );
    });
  });

  it('prints both scripts with `lowport completion`, and refuses another shell', async () => {
    assert.equal((await runMain(['completion', 'bash'])).stdout, bash);
    assert.equal((await runMain(['completion', 'zsh'])).stdout, zsh);
    const r = await runMain(['completion', 'fish']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bash or zsh, not 'fish'/);
  });
});
