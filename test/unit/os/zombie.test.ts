/**
 * A zombie is dead: a process that ended and whose parent does not reap it
 * (a SIGKILLed `lowport forward` under a parent that never waits) keeps its
 * pid and its /proc entry, state Z. pidAlive and processStartTime, which
 * decide whether a redirect's or a scope's owner still runs, say it is gone.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { pidAlive, processStartTime, processState } from '../../../src/os/process.js';

/** Waits until the process's state is `state`, up to a deadline. */
async function until(pid: number, state: string): Promise<void> {
  for (let i = 0; i < 200 && processState(pid) !== state; i++) await new Promise((r) => setTimeout(r, 25));
  assert.equal(processState(pid), state, `pid ${pid} never reached state ${state}`);
}

describe('zombies count as dead', () => {
  let parent: ChildProcess | undefined;
  after(() => parent?.kill('SIGKILL'));

  it('a SIGKILLed child of a parent that never reaps: state Z, not alive, no start time; alive before the kill', async () => {
    // sh starts the child, prints its pid, and becomes `sleep`, which never waits for it.
    parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = await new Promise<number>((resolve) => parent?.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    await until(pid, 'S');
    assert.equal(pidAlive(pid), true);
    assert.equal(typeof processStartTime(pid), 'number');
    process.kill(pid, 'SIGKILL');
    await until(pid, 'Z');
    assert.equal(pidAlive(pid), false);
    assert.equal(processStartTime(pid), undefined);
  });
});
