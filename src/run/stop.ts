/**
 * Stopping a command run by `lowport run` as systemd stops a service with
 * KillMode=control-group: a stop signal goes to every process of the command
 * (its cgroup; its session where there is no cgroup v2), not only to the main
 * process, which is often a wrapper (`npm run start`, `sh -c`, nodemon) whose
 * server would otherwise keep running and keep its port. What is still there
 * after the stop timeout (systemd's TimeoutStopSec) gets SIGKILL, as what
 * the command left running when it exited by itself does: systemd stops the
 * rest of a service's cgroup once its main process is gone, and so does
 * lowport (SIGTERM, then SIGKILL after the timeout). Nothing is signalled
 * that is not the command's (os/process.ts signalMembers).
 */
import { cgroupPopulated, cgroupTreePids, killCgroup, signalCgroup } from '../os/cgroup.js';
import { sessionMembers, signalMembers } from '../os/process.js';

/** The processes of one command: its cgroup, or its session. */
export interface CommandTree {
  /** The command's processes that still run. */
  pids(): number[];
  /** `signal` to each of them and to nothing else. */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL to each of them; called again while any is left. */
  kill(): void;
  /** Whether none is left. */
  empty(): boolean;
}

/** The command's cgroup, and the cgroups below it. */
export function cgroupTree(dir: string): CommandTree {
  return {
    pids: () => cgroupTreePids(dir),
    signal: (signal) => void signalCgroup(dir, signal),
    kill: () => killCgroup(dir),
    empty: () => !cgroupPopulated(dir),
  };
}

/** Without cgroup v2: the command leads a session of its own (setsid); what is in it is the command's (not what calls setsid again). */
export function sessionTree(sid: number): CommandTree {
  const pids = (): number[] => sessionMembers(sid);
  return {
    pids,
    signal: (signal) => void signalMembers(pids, signal),
    kill: () => void signalMembers(pids, 'SIGKILL'),
    empty: () => pids().length === 0,
  };
}

/** Default stop timeout: docker stop's (systemd's TimeoutStopSec is 90 s, for a whole machine's shutdown). */
export const STOP_TIMEOUT_MS = 10_000;

/**
 * After SIGKILL, the longest wait for the kernel to end the processes (one in
 * uninterruptible sleep, on a dead NFS server) before lowport gives up on them.
 */
const KILL_WAIT_MS = 5_000;

const POLL_MS = 50;

const plural = (n: number): string => `${n} process${n === 1 ? '' : 'es'}`;

/**
 * The stop of one command: `stop(signal)` passes a stop signal to all of it
 * and arms the timeout; `settle()`, once the main process has exited, stops
 * what is left and resolves when nothing is (or, after SIGKILL, when waiting
 * longer would not help).
 */
export class Stopper {
  private deadline: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private killed = false;

  constructor(
    private readonly tree: CommandTree,
    private readonly timeoutMs: number,
    private readonly note: (text: string) => void,
  ) {}

  /** Whether a stop has begun (a stop signal, or the main process's end with others left). */
  get stopping(): boolean {
    return this.deadline !== undefined;
  }

  /**
   * `signal` to every process of the command, then SIGCONT (so that a stopped
   * one gets to handle it, as systemd does); the first call arms SIGKILL for
   * what is still there after the timeout.
   */
  stop(signal: NodeJS.Signals): void {
    if (this.timeoutMs === 0) {
      this.killNow();
      return;
    }
    this.tree.signal(signal);
    if (signal !== 'SIGKILL' && signal !== 'SIGCONT') this.tree.signal('SIGCONT');
    if (this.deadline !== undefined) return;
    this.deadline = Date.now() + this.timeoutMs;
    this.timer = setTimeout(() => this.killNow(), this.timeoutMs);
  }

  private killNow(): void {
    clearTimeout(this.timer);
    this.deadline ??= Date.now();
    if (this.killed) return;
    this.killed = true;
    const n = this.tree.pids().length;
    if (n === 0) return;
    const after = this.timeoutMs === 0 ? '(--stop-timeout 0)' : `still running ${this.timeoutMs / 1000} s after the stop began`;
    this.note(`sending SIGKILL to ${plural(n)} of the command ${after}`);
    this.tree.kill();
  }

  /**
   * After the main process's end: what the command left (the pty's hangup
   * given `graceMs` to end what it ends) gets SIGTERM, unless a stop signal
   * went to it already, then SIGKILL at the deadline. Resolves once none is
   * left, or KILL_WAIT_MS after SIGKILL with a note naming what remains.
   */
  async settle(graceMs: number): Promise<void> {
    try {
      for (let waited = 0; waited < graceMs && !this.tree.empty(); waited += 20) await sleep(20);
      if (this.tree.empty()) return;
      if (!this.stopping) {
        const n = this.tree.pids().length;
        const then = this.timeoutMs === 0 ? 'SIGKILL' : `SIGTERM, then SIGKILL after ${this.timeoutMs / 1000} s`;
        this.note(`the command exited and left ${plural(n)} running; stopping ${n === 1 ? 'it' : 'them'} as a service's (${then})`);
        this.stop('SIGTERM');
      }
      while (!this.tree.empty() && Date.now() < (this.deadline ?? 0)) await sleep(POLL_MS);
      if (this.tree.empty()) return;
      this.killNow();
      const end = Date.now() + KILL_WAIT_MS;
      while (!this.tree.empty() && Date.now() < end) {
        await sleep(POLL_MS);
        // Without cgroup.kill, each pass kills what forked since the last one.
        this.tree.kill();
      }
      const left = this.tree.pids();
      if (left.length > 0)
        this.note(`${plural(left.length)} of the command did not end on SIGKILL (pids ${left.join(', ')}); lowport leaves them`);
    } finally {
      clearTimeout(this.timer);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
