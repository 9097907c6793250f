/** defineCommand and implement: values typed from the declaration (checked by tsc), parsed by node:util's parseArgs. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defineCommand, implement, type Implementation } from '../../../src/cli/command.js';
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

  it('refuses an undeclared option, as parseArgs does', () => {
    assert.throws(
      () => example.start(['--other'], base),
      (e: unknown) => e instanceof TypeError && /'--other'/.test(e.message),
    );
  });

  it('exits 2 with the command and its help named, through the CLI', async () => {
    const r = await runMain(['forward', 'add', '80', '8080', '--frob']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^lowport forward add: error: .*'--frob'.*\nRun `lowport forward add --help` for its usage\.\n$/);
  });
});
