/** Small process and filesystem facts the engine needs, kept here so that os/ stays the only code touching the OS. */
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { existsSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { LowportError } from '../errors.js';
import { ENOSYS } from './errno.js';
import { closeRawFd, pidfdOpen, pidfdSendSignal } from './libc.js';

/** An O_RDONLY fd on a directory (for a cgroup's target_fd, or flock). The caller closes it. */
export function openDir(dir: string): number {
  return openSync(dir, 'r');
}

export function pathExists(path: string): boolean {
  return existsSync(path);
}

/** Whether a path exists, is absent, or cannot be seen by this user (a directory it may not search). */
export function pathState(path: string): 'exists' | 'absent' | 'unknown' {
  try {
    statSync(path);
    return 'exists';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : 'unknown';
  }
}

/**
 * True while a process with this pid runs. A zombie (ended, not yet reaped
 * by its parent: state Z) does not: it holds nothing but its pid, and a
 * parent that never reaps keeps it for good.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return processState(pid) !== 'Z';
}

/** Fields 3 on of /proc/PID/stat (state first), or undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** A process's state letter (field 3 of /proc/PID/stat: R, S, D, Z, ...), or undefined when it is gone or unreadable. */
export function processState(pid: number): string | undefined {
  return statFields(pid)?.[0];
}

export function effectiveUid(): number {
  return process.geteuid?.() ?? -1;
}

/** A process's exit as a shell reports it: its exit code, or 128+N when signal N killed it. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  return code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
}

/** A child's exit status (exitStatus), once it has exited. */
export function exited(child: ChildProcess): Promise<number> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(exitStatus(child.exitCode, child.signalCode));
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(exitStatus(code, signal))));
}

/** Runs a command with this process's stdio and returns its exit status. */
export async function runInheriting(command: string, args: string[]): Promise<number> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolvePromise(exitStatus(code, signal)));
  });
}

/**
 * Where the programs lowport runs as root (setpriv, setsid, getent, nft,
 * systemctl, useradd) are looked for: systemd's default PATH, never the
 * caller's. A root shell may have kept a user's PATH (`su` without `-`,
 * `sudo -E`, a cron job), and a program found there would run as root, as
 * sudo's secure_path also prevents.
 */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment of those programs: the system PATH (for what they start in turn, e.g. `cat` under
 * sh), and the C locale for output lowport parses.
 */
export function systemToolEnv(): NodeJS.ProcessEnv {
  return { PATH: SYSTEM_PATH, LC_ALL: 'C' };
}

/**
 * A program lowport needs is not installed, as a fact: the tool and the
 * Debian package that has it. What to do about it is said above os/
 * (cli/main.ts turns it into an install hint).
 */
export class MissingToolError extends LowportError {
  constructor(
    readonly tools: string[],
    readonly debianPackage: string,
    why: string,
  ) {
    super('E_UNSUPPORTED', `${tools.map((t) => `${t}(1)`).join(' and ')} ${tools.length === 1 ? 'is' : 'are'} not installed: ${why}`);
  }
}

/** A program lowport runs as root, from the system's directories only; undefined when it is not installed. */
export function systemTool(name: string): string | undefined {
  return which(name, SYSTEM_PATH);
}

/** An executable's absolute path on PATH, or undefined. */
export function which(name: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(':')) {
    if (dir === '') continue;
    const candidate = `${dir}/${name}`;
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** A process's /proc/PID/status text. */
export function processStatus(pid: number | 'self' = 'self'): string {
  return readFileSync(`/proc/${pid}/status`, 'utf8');
}

/**
 * When a process started, in clock ticks since boot (field 22 of
 * /proc/PID/stat, proc(5)), or undefined when it is gone. With the pid it
 * names one process for good: a reused pid has another start time. A zombie
 * has ended (a SIGKILLed `lowport forward` whose parent does not reap it):
 * gone too, so what it owned (a redirect, a scope) is collected.
 */
export function processStartTime(pid: number): number | undefined {
  const fields = statFields(pid);
  if (fields === undefined || fields[0] === 'Z') return undefined;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : undefined;
}

/**
 * The processes of a session (field 6 of /proc/PID/stat): what lowport can
 * track of a command's tree where there is no cgroup v2. Processes that start
 * a session of their own (setsid) are not in it.
 */
export function sessionMembers(sid: number): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields[0] is the state (field 3): a zombie has ended already.
      if (Number(fields[3]) === sid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Sends `signal` to each process `members()` lists (a cgroup's, a
 * session's), and never to another process: a pid read from a list may have
 * ended, and been reused by anyone, before the signal goes. So each listed
 * pid is first pinned with a pidfd (pidfd_open, Linux 5.3), the list is read
 * again, and only a pid that is in both readings gets the signal, through its
 * pidfd: the process the pidfd holds still had that pid at the second reading
 * (a pid is freed only when its process is reaped, and then the pidfd's
 * signal fails with ESRCH), so it was the member listed. Before Linux 5.3
 * (no pidfd_open), the pid is signalled right after the second reading.
 * Returns the pids that got the signal.
 */
export function signalMembers(members: () => number[], signal: NodeJS.Signals): number[] {
  const number = constants.signals[signal];
  const pinned = new Map<number, number>();
  let unpinned: number[] = [];
  for (const pid of members()) {
    const fd = pidfdOpen(pid);
    if (fd >= 0) pinned.set(pid, fd);
    else if (fd === -ENOSYS) unpinned.push(pid);
  }
  const sent: number[] = [];
  try {
    const still = new Set(members());
    for (const [pid, fd] of pinned) if (still.has(pid) && pidfdSendSignal(fd, number) === 0) sent.push(pid);
    unpinned = unpinned.filter((pid) => still.has(pid));
    for (const pid of unpinned) {
      try {
        process.kill(pid, signal);
        sent.push(pid);
      } catch {
        // ended meanwhile
      }
    }
  } finally {
    for (const fd of pinned.values()) closeRawFd(fd);
  }
  return sent;
}

/** The initial pid namespace's inode (PROC_PID_INIT_INO, include/linux/proc_ns.h): from there every process is visible. */
export const INIT_PID_NAMESPACE = 0xeffffffc;

/** A process's pid namespace (the inode of /proc/PID/ns/pid), or undefined when it cannot be read. */
export function pidNamespace(pid: number | 'self' = 'self'): number | undefined {
  try {
    const m = /^pid:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/pid`));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * The pid, as seen from here, of the process that is `nspid` inside pid
 * namespace `ns` (the last field of its NSpid line); undefined when no such
 * process is visible from here.
 */
export function findInPidNamespace(ns: number, nspid: number): number | undefined {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name) || pidNamespace(Number(name)) !== ns) continue;
    try {
      const ids = /^NSpid:\s+(.*)$/m
        .exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]
        ?.trim()
        .split(/\s+/);
      if (ids !== undefined && Number(ids[ids.length - 1]) === nspid) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** A process's command line (arguments joined by spaces), or undefined when it is gone or has none. */
export function processCommandLine(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').split('\0').join(' ');
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

/** A path with every symlink resolved, or undefined when it does not resolve. */
export function realPath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}
