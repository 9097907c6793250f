/**
 * run's stop (src/run/stop.ts) on a tree played in memory, and signalMembers
 * (src/os/process.ts) on real processes of this test's own: a stop signal goes
 * to every process, SIGKILL follows after the timeout, what the command left
 * is stopped, and a pid that left the list between the two readings is never
 * signalled.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { pidAlive, signalMembers } from '../../../src/os/process.js';
import { Stopper, type CommandTree } from '../../../src/run/stop.js';

/** Processes that end on the signals they do not ignore. */
function fakeTree(processes: Record<number, NodeJS.Signals[]>): CommandTree & { sent: string[] } {
  const alive = new Map(Object.entries(processes).map(([pid, ignored]) => [Number(pid), ignored]));
  const sent: string[] = [];
  return {
    sent,
    pids: () => [...alive.keys()],
    signal: (signal) => {
      sent.push(`${signal}:${[...alive.keys()].join(',')}`);
      for (const [pid, ignored] of alive) if (signal !== 'SIGCONT' && !ignored.includes(signal)) alive.delete(pid);
    },
    kill: () => {
      sent.push(`SIGKILL:${[...alive.keys()].join(',')}`);
      alive.clear();
    },
    empty: () => alive.size === 0,
  };
}

describe('stopping a command as systemd stops a service', () => {
  it('sends a stop signal to every process, then SIGCONT, and SIGKILL to what ignores it once the timeout passes', async () => {
    const tree = fakeTree({ 10: [], 11: ['SIGTERM'] });
    const notes: string[] = [];
    const stopper = new Stopper(tree, 300, (t) => notes.push(t));
    stopper.stop('SIGTERM');
    assert.deepEqual(tree.sent, ['SIGTERM:10,11', 'SIGCONT:11']);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(tree.empty(), false, 'no SIGKILL before the timeout');
    await stopper.settle(0);
    assert.deepEqual(tree.sent, ['SIGTERM:10,11', 'SIGCONT:11', 'SIGKILL:11']);
    assert.match(notes.join('\n'), /sending SIGKILL to 1 process of the command still running 0.3 s after the stop began/);
  });

  it('stops what the command left when it exits by itself: a note, SIGTERM, then SIGKILL', async () => {
    const tree = fakeTree({ 20: ['SIGTERM'], 21: [] });
    const notes: string[] = [];
    await new Stopper(tree, 200, (t) => notes.push(t)).settle(0);
    assert.deepEqual(tree.sent, ['SIGTERM:20,21', 'SIGCONT:20', 'SIGKILL:20']);
    assert.match(
      notes[0] ?? '',
      /^the command exited and left 2 processes running; stopping them as a service's \(SIGTERM, then SIGKILL after 0.2 s\)$/,
    );
  });

  it('says nothing and signals nothing when the command left nothing', async () => {
    const tree = fakeTree({});
    const notes: string[] = [];
    await new Stopper(tree, 200, (t) => notes.push(t)).settle(50);
    assert.deepEqual(tree.sent, []);
    assert.deepEqual(notes, []);
  });

  it('with a timeout of 0, kills at once', async () => {
    const tree = fakeTree({ 30: ['SIGTERM'] });
    const stopper = new Stopper(tree, 0, () => undefined);
    stopper.stop('SIGTERM');
    assert.deepEqual(tree.sent, ['SIGKILL:30']);
    await stopper.settle(0);
  });
});

describe('signalMembers', () => {
  function sleeper(): ChildProcess & { pid: number } {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    assert.ok(child.pid !== undefined);
    return child as ChildProcess & { pid: number };
  }
  const ended = (child: ChildProcess): Promise<NodeJS.Signals | null> =>
    new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));

  it('signals only the pids listed at both readings: one that left the list between them is spared', async () => {
    const stays = sleeper();
    const leaves = sleeper();
    const end = ended(stays);
    try {
      let reading = 0;
      const sent = signalMembers(() => (reading++ === 0 ? [stays.pid, leaves.pid] : [stays.pid]), 'SIGTERM');
      assert.deepEqual(sent, [stays.pid]);
      assert.equal(await end, 'SIGTERM');
      assert.equal(pidAlive(leaves.pid), true, 'a pid no longer listed must not be signalled');
    } finally {
      stays.kill('SIGKILL');
      leaves.kill('SIGKILL');
    }
  });

  it('passes over a pid that no process has', () => {
    const child = spawn('true');
    return new Promise<void>((resolve) =>
      child.once('exit', () => {
        assert.deepEqual(
          signalMembers(() => [child.pid ?? 0], 'SIGTERM'),
          [],
        );
        resolve();
      }),
    );
  });
});
