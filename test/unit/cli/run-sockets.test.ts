/**
 * `lowport run --no-pid` and `--restart` are for socket passing only: given
 * without --sockets they are refused before anything runs, with the fix.
 * (What they do is tested for real in test/kernel/run-sockets.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandName, leaves } from '../../../src/cli/command.js';
import { COMMANDS } from '../../../src/cli/commands.js';
import { UsageError } from '../../../src/errors.js';

describe('lowport run --no-pid and --restart', () => {
  const base = {
    io: { stdout: () => undefined, stderr: () => undefined, interactive: false, env: {}, confirm: () => Promise.resolve(false) },
    callerName: 'root',
    note: () => undefined,
  };

  for (const option of ['--no-pid', '--restart']) {
    it(`refuses ${option} without --sockets, and says to add it`, async () => {
      const run = leaves(COMMANDS).find((c) => commandName(c) === 'run');
      assert.ok(run !== undefined);
      const implementation = await run.load();
      for (const mode of [[], ['--caps']]) {
        const ports = mode.length === 0 ? ['--port', '80'] : [];
        assert.throws(
          () => implementation.start([...mode, option, ...ports, '--user', 'nobody', '--', 'true'], base),
          (e: unknown) =>
            e instanceof UsageError && e.message === `${option} goes with --sockets` && (e.hint ?? '').includes(`--sockets ${option}`),
        );
      }
      // With --sockets, the same words pass the checks (start returns the run, not yet called).
      assert.equal(
        typeof implementation.start(['--sockets', option, '--port', '80', '--user', 'nobody', '--', 'true'], base).run,
        'function',
      );
    });
  }
});
