/**
 * `lowport run`: one command, as one user, with low ports for it alone.
 *
 * Three ways, for three kinds of machine:
 *  - scoped grant (default): a child cgroup of the attach cgroup, the ports
 *    granted to that cgroup's id only (grants/scopes.ts), the command started
 *    inside it. Everything it starts is covered, nothing else is; the grant
 *    and the cgroup go when the cgroup empties.
 *  - sockets: lowport binds the ports itself and passes them as fds 3, 4, ...
 *    with systemd's socket-activation variables (sd_listen_fds(3)). Needs no
 *    BPF.
 *  - caps: the command keeps CAP_NET_BIND_SERVICE in its ambient set: every
 *    low port, for the whole process tree. Needs no BPF either.
 *  - accept: lowport binds TCP ports and the command runs once per
 *    connection, as tcpserver and inetd run it (accept.ts).
 * In every mode the command runs as the user with nothing else: uid and gid
 * (real, effective, saved), the user's groups, no other capability,
 * no_new_privs, a fresh session keyring, no fd of lowport's but those it is
 * given (os/launch.ts); and on a terminal of its own when lowport has one
 * (os/pty.ts), so that nothing it leaves behind keeps the admin's.
 *
 * In every mode the whole process tree is tracked: in a cgroup of its own
 * (cgroup v2), else by its session, and stopped as systemd stops a service
 * (stop.ts): a stop signal to lowport goes to every process of the command,
 * SIGKILL follows after the stop timeout, and when the main process ends,
 * what it left is stopped the same way. lowport's exit status is the main
 * process's.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { isatty } from 'node:tty';
import { refreshLive } from '../ops/apply.js';
import { forgetScope, saveScope, type Scope } from '../grants/scopes.js';
import { attachCgroup, kernelTarget, requireRoot, type LowportOptions } from '../grants/target.js';
import { UsageError } from '../errors.js';
import { readSysctl } from '../os/system.js';
import { escapeControl } from '../text.js';
import { cgroupId, cgroupPopulated, createNewCgroup, removeCgroup } from '../os/cgroup.js';
import { checkIdentity, launch, userEnvironment, type Identity, type LaunchOptions } from '../os/launch.js';
import { exitStatus, processStartTime } from '../os/process.js';
import { closeRawFd } from '../os/libc.js';
import { openListener } from '../os/listen.js';
import { relaySignals } from '../os/signals.js';
import { userByNameOrUid } from '../os/nss.js';
import { openPtyRelay } from '../os/pty.js';
import { PortSet } from '../policy/ports.js';
import { ACCEPT_DEFAULT_SETTINGS, runAccept, type AcceptSettings } from './accept.js';
import { cgroupTree, sessionTree, Stopper, STOP_TIMEOUT_MS } from './stop.js';
import type { PortItem } from '../policy/types.js';

export type RunMode = 'scope' | 'sockets' | 'caps' | 'accept';

export interface RunOptions extends LowportOptions {
  mode: RunMode;
  command: string[];
  /** User name or uid to run as. */
  user: string;
  ports: PortItem[];
  /** Scope: the addresses granted (empty: any). Sockets: the addresses bound (empty: `::`, dual-stack). */
  addrs: string[];
  /** Sockets: listen(2) backlog. */
  backlog?: number;
  /** Sockets: IPv6 sockets only take IPv6. */
  v6Only?: boolean;
  /** Sockets: no LISTEN_PID, for a server that a wrapper (a shell script, make, cargo watch) starts as its child. */
  noPid?: boolean;
  /** Sockets: start the command again whenever it exits, with the same sockets, until lowport gets a signal or ^C. */
  restart?: boolean;
  /**
   * How long the command's processes get between a stop (a stop signal to lowport, or the main process's exit
   * with others left) and SIGKILL; 0: SIGKILL at once. Default STOP_TIMEOUT_MS. Not for accept (its drain timeout).
   */
  stopTimeoutMs?: number;
  /** Accept: the limits and the drain of the per-connection server (accept.ts). */
  accept?: AcceptSettings;
  /** For warnings and notes. */
  note?: (text: string) => void;
}

/**
 * The signals passed on to the command: to every process of it (SIGHUP: to
 * the main process while it runs). It runs in a session of its own (on a
 * terminal of its own, where ^C and ^\\ reach it directly), so these are the
 * signals sent to lowport itself.
 */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * The scoped grant belongs to the command's cgroup and the sockets of
 * --sockets to the command, but the command runs as the user with nothing
 * that keeps the user's other processes from ptrace(2)-ing it (and binding, or
 * taking a socket with pidfd_getfd, from inside it) unless Yama restricts
 * ptrace (kernel.yama.ptrace_scope 1 or more). --caps is safe from that: the
 * kernel refuses a tracer that lacks the tracee's capabilities.
 */
function warnIfPeersCanTrace(o: RunOptions, identity: Identity): void {
  const scope = readSysctl('kernel.yama.ptrace_scope');
  if (scope !== undefined && Number(scope) >= 1) return;
  const who = identity.name ?? `uid ${identity.uid}`;
  o.note?.(
    `note: other processes of ${escapeControl(who)} can ptrace the command and use its ${o.mode === 'scope' ? 'grant' : 'sockets'} (kernel.yama.ptrace_scope is ${scope ?? 'not there: no Yama'}); run it as a user of its own, or set kernel.yama.ptrace_scope=1.`,
  );
}

/** Runs the command to its end; resolves to lowport's exit status: the command's, or 128+N when signal N killed it. */
export async function run(o: RunOptions): Promise<number> {
  requireRoot();
  const { identity, env } = resolveUser(o.user);
  // Before any cgroup or grant is made (launch refuses it too).
  if (identity.uid === 0)
    throw new UsageError(
      'lowport run starts commands as a user other than root; root binds any port without it',
      'Give --user a normal user.',
    );
  checkIdentity(
    identity,
    'Give --user a normal user (a name from `getent passwd`, or its uid); a user whose primary group is root (gid 0) is refused too.',
  );
  if (o.mode !== 'caps') warnIfPeersCanTrace(o, identity);
  if (o.mode === 'scope') return runScoped(o, identity, env);
  if (o.mode === 'sockets') return runWithSockets(o, identity, env);
  if (o.mode === 'accept') return runAccept({ ...o, accept: o.accept ?? ACCEPT_DEFAULT_SETTINGS }, identity, env, () => trackingCgroup(o));
  o.note?.(`note: ${o.command[0] ?? 'the command'} and everything it starts may bind every port below 1024 (CAP_NET_BIND_SERVICE).`);
  const cgroup = trackingCgroup(o);
  try {
    return await supervise(o, { identity, ambientNetBindService: true, env, ...(cgroup === undefined ? {} : { cgroup }) });
  } finally {
    if (cgroup !== undefined && !cgroupPopulated(cgroup)) removeCgroup(cgroup);
  }
}

function resolveUser(user: string): { identity: Identity; env: NodeJS.ProcessEnv } {
  const u = userByNameOrUid(user, 'Give --user a name or uid that `getent passwd` knows.');
  return { identity: { uid: u.uid, gid: u.gid, ...(u.known ? { name: u.name } : {}) }, env: userEnvironment(u) };
}

/** Resolves to the child's exit status when it exits. */
function wait(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(exitStatus(code, signal)));
  });
}

/** Processes that end of the pty's hangup (SIGHUP) go within this time; those that remain are stopped. */
const HANGUP_GRACE_MS = 200;

/**
 * Starts the command, on a terminal of its own when lowport has one, and
 * waits for its main process; then hangs its terminal up and stops whatever
 * it left (stop.ts). SIGINT, SIGTERM and SIGQUIT to lowport go to every
 * process of the command, and SIGKILL follows after the stop timeout;
 * SIGHUP goes to the main process alone (a reload, by convention), and to
 * all once it has exited. Resolves to the main process's exit status.
 */
async function supervise(
  o: RunOptions,
  launchOptions: Omit<LaunchOptions, 'stdio' | 'controllingTerminal'>,
  started?: () => void,
  interrupted?: () => void,
): Promise<number> {
  const pty = openPtyRelay();
  let child: ChildProcess;
  try {
    child = launch(o.command, {
      ...launchOptions,
      ...(pty === undefined ? {} : { stdio: pty.stdio, controllingTerminal: pty.controllingTerminal }),
    });
  } catch (e) {
    await pty?.finish();
    throw e;
  }
  started?.();
  pty?.started();
  const pid = child.pid;
  const tree = launchOptions.cgroup !== undefined ? cgroupTree(launchOptions.cgroup) : pid === undefined ? undefined : sessionTree(pid);
  const stopper = tree === undefined ? undefined : new Stopper(tree, o.stopTimeoutMs ?? STOP_TIMEOUT_MS, (text) => o.note?.(text));
  let running = true;
  const unrelay = relaySignals(FORWARDED, (signal) => {
    if (stopper === undefined || (signal === 'SIGHUP' && running)) child.kill(signal);
    else stopper.stop(signal);
  });
  let status: number;
  try {
    status = await wait(child);
  } finally {
    running = false;
    try {
      await pty?.finish();
      if (pty?.interrupted === true) interrupted?.();
      await stopper?.settle(HANGUP_GRACE_MS);
    } finally {
      unrelay();
    }
  }
  return status;
}

/**
 * A cgroup of its own for a command run with --sockets or --caps, to track
 * its tree (below --cgroup, or the root of the cgroup-v2 hierarchy);
 * undefined where there is no cgroup v2 or it cannot be written (the
 * command's session is tracked then).
 */
function trackingCgroup(o: RunOptions): string | undefined {
  let parent: string;
  try {
    // Only the cgroup: --sockets and --caps need no BPF (and work where it is refused).
    parent = attachCgroup(o);
  } catch (e) {
    if (o.cgroup !== undefined) throw e;
    return undefined;
  }
  const cgroup = join(parent, `lowport-run-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    createNewCgroup(cgroup);
  } catch (e) {
    if (o.cgroup !== undefined) throw e;
    return undefined;
  }
  return cgroup;
}

async function runScoped(o: RunOptions, identity: Identity, env: NodeJS.ProcessEnv): Promise<number> {
  if (o.ports.length === 0) throw new UsageError('lowport run needs --port: the ports to grant to the command');
  const target = kernelTarget(o);
  // A new cgroup, never one a killed run left (its processes would get this run's ports).
  const cgroup = join(target.cgroup, `lowport-run-${process.pid}-${randomBytes(4).toString('hex')}`);
  createNewCgroup(cgroup);
  const scope: Scope = {
    cgroup,
    cgroupId: cgroupId(cgroup).toString(),
    ports: o.ports,
    addrs: o.addrs,
    owner: process.pid,
    ownerStart: processStartTime(process.pid) ?? 0,
    user: o.user,
    command: o.command,
  };
  try {
    saveScope(target, scope);
    refreshLive(o, target, { onlyIfLive: false });
    // The grant goes once the command and whatever it left have been stopped.
    return await supervise(o, { identity, cgroup, env });
  } finally {
    forgetScope(target, scope);
    try {
      // After `lowport off` meanwhile, stay off.
      refreshLive(o, target, { onlyIfLive: true });
    } catch (e) {
      // The command's status stays lowport's; the next lowport command removes the grant.
      o.note?.(`could not remove the grant of this run from the kernel: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      if (!cgroupPopulated(cgroup)) removeCgroup(cgroup);
    }
  }
}

/**
 * Runners that are Node.js programs. Node marks fds 3 and up close-on-exec as
 * it starts (libuv's uv_disable_stdio_inheritance, joyent/libuv#997), so no
 * program they start inherits the sockets, --no-pid or not.
 */
const NODE_RUNNERS = new Set(['npm', 'npx', 'pnpm', 'pnpx', 'yarn', 'nodemon']);

function warnIfNodeRunner(o: RunOptions): void {
  const [file = '', ...args] = o.command;
  const name = file.slice(file.lastIndexOf('/') + 1);
  if (!NODE_RUNNERS.has(name) && !(/^node(js)?$/.test(name) && args.some((a) => /^--watch(-path)?(=|$)/.test(a)))) return;
  o.note?.(
    `note: ${escapeControl(name)} is a Node.js program, and Node closes fds 3 and up for every program it starts: the sockets cannot reach a server it starts. Run the server itself (lowport run --sockets -- node server.js), or through sh; --restart starts it again when it exits.`,
  );
}

async function runWithSockets(o: RunOptions, identity: Identity, env: NodeJS.ProcessEnv): Promise<number> {
  if (o.ports.length === 0) throw new UsageError('lowport run --sockets needs --port: the ports to bind');
  warnIfNodeRunner(o);
  const fds: number[] = [];
  const names: string[] = [];
  let cgroup: string | undefined;
  try {
    for (const { protocol, port } of PortSet.fromItems(o.ports).entries()) {
      for (const addr of o.addrs.length === 0 ? ['::'] : o.addrs) {
        fds.push(openListener(protocol, addr, port, { backlog: o.backlog ?? 4096, v6Only: o.v6Only === true }).fd);
        names.push(`${protocol}-${port}`);
      }
    }
    cgroup = trackingCgroup(o);
    const launchOptions = {
      identity,
      fds: [...fds],
      listenPid: o.noPid !== true,
      env: { ...env, LISTEN_FDS: String(fds.length), LISTEN_FDNAMES: names.join(':') },
      ...(cgroup === undefined ? {} : { cgroup }),
    };
    if (o.restart === true) return await superviseRestarting(o, launchOptions);
    // Once started, the command has its copies; lowport keeps none.
    return await supervise(o, launchOptions, () => {
      for (const fd of fds.splice(0)) closeRawFd(fd);
    });
  } finally {
    for (const fd of fds) closeRawFd(fd);
    if (cgroup !== undefined && !cgroupPopulated(cgroup)) removeCgroup(cgroup);
  }
}

/** --restart: the pause before a restart; doubled (up to the longest) while the command keeps exiting within QUICK_EXIT_MS of its start. */
const RESTART_DELAY_MS = 250;
const LONGEST_RESTART_DELAY_MS = 8_000;
const QUICK_EXIT_MS = 2_000;

/**
 * --restart, a development loop (as systemfd with cargo watch): lowport keeps
 * the listening sockets open and starts the command again each time it exits,
 * whatever its status, so clients wait in the backlog instead of meeting a
 * closed port (ECONNREFUSED). A command that keeps exiting at once is started
 * again ever more slowly, never in a busy loop. A signal to lowport, or ^C or
 * ^\ on the command's terminal, ends the loop: lowport exits with the last
 * status (128+N for signal N when no command ran).
 */
async function superviseRestarting(o: RunOptions, launchOptions: Omit<LaunchOptions, 'stdio' | 'controllingTerminal'>): Promise<number> {
  // The signal that ends the loop: one to lowport, or SIGINT for ^C on the command's terminal. Read through
  // stopped(): it is set by handlers, between awaits, where a narrowed variable would not show it.
  let stop: NodeJS.Signals | undefined;
  const stopped = (): NodeJS.Signals | undefined => stop;
  let wake = (): void => undefined;
  const unrelay = relaySignals(FORWARDED, (signal) => {
    stop ??= signal;
    wake();
  });
  const name = escapeControl(o.command[0] ?? 'the command');
  const how = isatty(0) ? 'Ctrl-C ends lowport' : `SIGINT or SIGTERM to lowport (pid ${process.pid}) ends it`;
  try {
    let delay = RESTART_DELAY_MS;
    for (;;) {
      const start = Date.now();
      const status = await supervise(o, launchOptions, undefined, () => (stop ??= 'SIGINT'));
      if (stopped() !== undefined) return status;
      if (Date.now() - start >= QUICK_EXIT_MS) delay = RESTART_DELAY_MS;
      o.note?.(`${name} exited with status ${status}; --restart starts it again in ${delay / 1000} s, with the same sockets; ${how}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      const signal = stopped();
      if (signal !== undefined) return 128 + osConstants.signals[signal];
      delay = Math.min(delay * 2, LONGEST_RESTART_DELAY_MS);
    }
  } finally {
    unrelay();
  }
}
