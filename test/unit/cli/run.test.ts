/** `lowport run`'s argument checks for --accept, in-process and without root: each usage error names the fix. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandName, leaves } from '../../../src/cli/command.js';
import { COMMANDS } from '../../../src/cli/main.js';
import { UsageError } from '../../../src/errors.js';

async function refusal(args: string[]): Promise<UsageError> {
  const run = leaves(COMMANDS).find((c) => commandName(c) === 'run');
  assert.ok(run !== undefined);
  const implementation = await run.load();
  const base = {
    io: { stdout: () => undefined, stderr: () => undefined, interactive: false, env: {}, confirm: () => Promise.resolve(false) },
    callerName: 'root',
    note: () => undefined,
  };
  try {
    implementation.start(args, base);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e;
  }
  assert.fail(`run ${args.join(' ')} was not refused`);
}

describe('lowport run --accept: usage errors', () => {
  it('refuses --accept with --sockets or --caps, naming what each does', async () => {
    for (const other of ['--sockets', '--caps']) {
      const e = await refusal(['--accept', other, '--port', '79', '--user', 'nobody', '--', 'cat']);
      assert.match(e.message, new RegExp(`^give one of --sockets, --caps and --accept, not .*--accept`));
      assert.match(e.hint ?? '', /--accept starts COMMAND per connection/);
    }
  });

  it('refuses --accept without --port, with an example', async () => {
    const e = await refusal(['--accept', '--user', 'nobody', '--', 'cat']);
    assert.equal(e.message, 'lowport run --accept needs --port PORTS');
    assert.match(e.hint ?? '', /--port 79/);
  });

  it('refuses a UDP port: TCP only, and says where a UDP server goes', async () => {
    const e = await refusal(['--accept', '--port', '79/udp', '--user', 'nobody', '--', 'cat']);
    assert.match(e.message, /serves TCP only, not 79\/udp/);
    assert.match(e.hint ?? '', /--port 79\/tcp.*run --sockets --port 79\/udp/);
  });

  it('refuses --accept’s options without --accept', async () => {
    for (const [option, ...value] of [['--max-conns', '5'], ['--max-per-ip', '2'], ['--drain-timeout', '1'], ['--log']]) {
      const e = await refusal(['--sockets', '--port', '79', '--user', 'nobody', option ?? '', ...value, '--', 'cat']);
      assert.match(e.message, new RegExp(`^${option} goes with --accept`));
    }
  });

  it('refuses limits that are not whole numbers of at least 1, and a drain timeout that is not seconds', async () => {
    for (const [option, value] of [
      ['--max-conns', '0'],
      ['--max-conns', 'lots'],
      ['--max-per-ip', '1e3'],
      ['--max-per-ip', '2.5'],
    ])
      assert.match(
        (await refusal(['--accept', '--port', '79', '--user', 'nobody', option ?? '', value ?? '', '--', 'cat'])).message,
        /takes a whole number/,
      );
    const e = await refusal(['--accept', '--port', '79', '--user', 'nobody', '--drain-timeout', 'soon', '--', 'cat']);
    assert.match(e.message, /--drain-timeout takes seconds/);
  });

  it('takes --backlog with --accept, but still not in the default mode', async () => {
    const e = await refusal(['--port', '79', '--user', 'nobody', '--backlog', '10', '--', 'cat']);
    assert.equal(e.message, '--backlog N goes with --sockets or --accept, N a number');
  });
});

describe('lowport run --stop-timeout: usage errors', () => {
  it('takes seconds (0: SIGKILL at once), and refuses anything else, naming the form', async () => {
    for (const value of ['soon', '1,5', '1e3', '9999999999']) {
      const e = await refusal(['--port', '80', '--user', 'nobody', '--stop-timeout', value, '--', 'cat']);
      assert.match(e.message, new RegExp(`^--stop-timeout takes seconds, up to \\d+ \\(0: SIGKILL at once\\), not '${value}'`));
    }
  });

  it('refuses --stop-timeout with --accept, and names --drain-timeout', async () => {
    const e = await refusal(['--accept', '--port', '79', '--user', 'nobody', '--stop-timeout', '3', '--', 'cat']);
    assert.equal(e.message, '--stop-timeout does not go with --accept');
    assert.match(e.hint ?? '', /--drain-timeout S/);
  });
});
