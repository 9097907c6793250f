/** defineCommand and implement: values typed from the declaration (checked by tsc), parsed by node:util's parseArgs. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandName, defineCommand, implement, leaves, optionError, type Implementation } from '../../../src/cli/command.js';
import { COMMANDS } from '../../../src/cli/commands.js';
import { UsageError } from '../../../src/errors.js';
import { runMain } from '../../run-main.js';

const declared = defineCommand({
  path: ['example'],
  summary: 'an example',
  usage: ['[--name N] [--flag] [--many M]...'],
  description: 'For the test.',
  options: {
    name: { type: 'string', short: 'n', value: 'N', description: 'a string' },
    flag: { type: 'boolean', description: 'a boolean' },
    many: { type: 'string', multiple: true, value: 'M', description: 'repeated' },
  },
  needsRoot: (values) => values.flag === true,
  load: () => Promise.resolve(example),
});

let seen: unknown;
const example: Implementation = implement(declared, (ctx) => {
  // The types come from the declaration: these assignments compile without a cast...
  const name: string | undefined = ctx.values.name;
  const flag: boolean | undefined = ctx.values.flag;
  const many: string[] | undefined = ctx.values.many;
  const policy: string | undefined = ctx.values.policy;
  // ...and these do not (tsc checks the test too).
  // @ts-expect-error a string option is no array
  const wrong: string[] | undefined = ctx.values.name;
  // @ts-expect-error nor a boolean
  const wrongFlag: string | undefined = ctx.values.flag;
  // @ts-expect-error an undeclared option does not exist
  void ctx.values.other;
  seen = { name, flag, many, policy, positionals: ctx.positionals, wrong, wrongFlag };
  return () => 0;
});

const base = {
  io: { stdout: () => undefined, stderr: () => undefined, interactive: false, env: {}, confirm: () => Promise.resolve(false) },
  callerName: 'alice',
  note: () => undefined,
};

describe('defineCommand and implement', () => {
  it('parses the declared options, the global ones and the positionals', () => {
    const started = example.start(['-n', 'x', '--many', 'a', '--many=b', '--flag', 'word', '--policy', '/p'], base);
    assert.equal(started.needsRoot, true);
    assert.equal(started.help, false);
    assert.equal(started.run(), 0);
    assert.deepEqual(seen, { name: 'x', flag: true, many: ['a', 'b'], policy: '/p', positionals: ['word'], wrong: 'x', wrongFlag: true });
  });

  it('runs nothing for --help, and needs no root then', () => {
    seen = undefined;
    const started = example.start(['--flag', '--help'], base);
    assert.equal(started.help, true);
    assert.equal(started.needsRoot, false);
    assert.equal(seen, undefined);
  });

  it("refuses an undeclared option with lowport's own UsageError, naming the command and the options it takes", () => {
    assert.throws(
      () => example.start(['--other'], base),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message === "lowport example has no option '--other'" &&
        /^lowport example takes --name, --flag and --many \(and, as every command, --policy, .*--help\)\. See `lowport example --help`\.$/.test(
          e.hint ?? '',
        ),
    );
  });

  it('exits 2 with the command, its options and its help named, through the CLI, and never with parseArgs text', async () => {
    const r = await runMain(['forward', 'add', '80', '8080', '--frob']);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      "lowport: error: lowport forward add has no option '--frob'\n" +
        'lowport forward add takes --addr and --persist (and, as every command, --policy, --cgroup, --pin-dir, --json and --help). ' +
        'See `lowport forward add --help`.\n',
    );
  });

  // Every way parseArgs can refuse a word, for every command: lowport's words, never Node's ("To specify a positional argument ...").
  const refusals: [string, string[], RegExp][] = [
    ['an unknown long option', ['--frobnicate'], /has no option '--frobnicate'/],
    ['an unknown short option', ['-Z'], /has no option '-Z'/],
    ['an unknown option with a value', ['--frobnicate=1'], /has no option '--frobnicate'/],
    ['a value for a flag', ['--json=yes'], /^--json takes no value, but got '--json=yes'$/],
    ['a value option at the end', ['--policy'], /^--policy needs a value: --policy FILE$/],
    ['a value option followed by an option', ['--policy', '--json'], /^--policy needs a value, but the next word is '--json'$/],
  ];
  for (const [what, args, message] of refusals) {
    it(`says ${what} in its own words, for every command`, () => {
      for (const command of leaves(COMMANDS)) {
        const name = commandName(command);
        const e = optionError(command, args);
        assert.ok(e instanceof UsageError);
        assert.match(e.message, message, name);
        assert.match(e.hint ?? '', new RegExp(`See \`lowport ${name} --help\`\\.$`), name);
        assert.doesNotMatch(`${e.message} ${e.hint ?? ''}`, /To specify|Unknown option|argument is ambiguous/, name);
      }
    });
  }

  it('turns every parseArgs refusal through start() into that UsageError', async () => {
    for (const command of leaves(COMMANDS)) {
      const implementation = await command.load();
      for (const args of [['--frobnicate'], ['-Z'], ['--json=yes'], ['--policy'], ['--policy', '--json']])
        assert.throws(
          () => implementation.start(args, base),
          (e: unknown) => e instanceof UsageError && !/To specify|Unknown option/.test(e.message),
          `${commandName(command)} ${args.join(' ')}`,
        );
    }
  });

  it('suggests the nearest option for a typo, and what to give instead for an option of another command', () => {
    const grant = leaves(COMMANDS).find((c) => commandName(c) === 'grant');
    const run = leaves(COMMANDS).find((c) => commandName(c) === 'run');
    assert.ok(grant !== undefined && run !== undefined);
    assert.equal(optionError(grant, ['80', '--usr', 'x']).message, "lowport grant has no option '--usr' (did you mean '--user'?)");
    const group = optionError(run, ['--group', 'dns', '--', 'true']);
    assert.match(group.message, /^lowport run has no option '--group': it runs COMMAND as one user, given with --user U/);
    assert.doesNotMatch(group.message, /did you mean/);
    assert.match(optionError(run, ['--everyone']).message, /^lowport run has no option '--everyone': it runs COMMAND as one user/);
  });
});
