/**
 * `lowport run --accept`: a per-connection server, as inetd, xinetd and
 * tcpserver run them. lowport (root) binds the TCP ports itself (default
 * `::`, dual-stack, as `run --sockets`), then starts ONE accept loop
 * (accept-main.ts) as --user with every privilege dropped, exactly as `run`
 * starts a command (os/launch.ts: uid, gid and groups, no capability,
 * no_new_privs, a fresh keyring, none of root's fds, the user's clean
 * environment), with the listening sockets as fds 3, 4, ... The loop accepts
 * and starts COMMAND per connection, with the connection as fds 0 and 1.
 *
 * Why one loop as the user, not root accepting and dropping privileges per
 * connection (as inetd does, and tcpserver with -u/-g): nothing that touches
 * a client's connection runs as root, not even accept(2) and the parsing of
 * its addresses, and a connection costs one fork and exec of COMMAND, not a
 * setpriv chain. What the loop could do with the sockets, the command could
 * too (it runs as the same user), so it gains nothing by being separate from
 * them but the limits. This process keeps no socket: it waits, relays
 * signals (as a drain), copies the loop's stderr to a terminal with control
 * characters escaped (the programs' stderr is the loop's: text a client may
 * have chosen), and, in a cgroup of its own where there is cgroup v2, ends
 * whatever the programs left behind once the loop is gone.
 *
 * TCP only: tcpserver is TCP, and inetd's UDP "wait" services hand the
 * socket itself to one program, which is `run --sockets`.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isatty } from 'node:tty';
import type { Readable } from 'node:stream';
import { LowportError, UsageError } from '../errors.js';
import { escapeControl, shellCommand, terminalText } from '../text.js';
import { cgroupPids, cgroupPopulated, killCgroup, removeCgroup } from '../os/cgroup.js';
import { waitUntilEmpty } from '../os/cgroup-watch.js';
import { launch, requireRunsAs, type Identity } from '../os/launch.js';
import { SyscallError } from '../os/libc.js';
import { closeListeners, listenerName, openListener, type Listener } from '../os/listen.js';
import { exited } from '../os/process.js';
import { relaySignals } from '../os/signals.js';
import { PortSet } from '../policy/ports.js';
import type { PortItem } from '../policy/types.js';
import { ACCEPT_CONFIG_ENV, ACCEPT_DEFAULTS, type AcceptConfig } from './ucspi.js';

const ACCEPT_MAIN = fileURLToPath(new URL('./accept-main.js', import.meta.url));

/** What `run --accept` adds to `run`'s options. */
export interface AcceptSettings {
  maxConns: number;
  maxPerIp: number;
  drainTimeoutMs: number;
  log: boolean;
}

export const ACCEPT_DEFAULT_SETTINGS: AcceptSettings = { ...ACCEPT_DEFAULTS, log: false };

export interface AcceptOptions {
  command: string[];
  ports: PortItem[];
  /** Addresses to bind; empty: `::` (IPv4 and IPv6 unless v6Only). */
  addrs: string[];
  backlog?: number;
  v6Only?: boolean;
  accept: AcceptSettings;
  note?: (text: string) => void;
}

/** The signals lowport passes on to the loop as a drain (a second one, a moment later, ends the programs). */
const DRAIN_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** Binds every port on every address, or nothing (what was bound is closed before the error). */
function bindAll(o: AcceptOptions): Listener[] {
  const out: Listener[] = [];
  try {
    for (const { protocol, port } of PortSet.fromItems(o.ports).entries()) {
      if (protocol !== 'tcp') throw new UsageError(`run --accept serves TCP only, not ${protocol} port ${port}`, 'Give --port PORT/tcp.');
      for (const addr of o.addrs.length === 0 ? ['::'] : o.addrs) {
        const what = listenerName(protocol, addr, port);
        try {
          out.push(openListener(protocol, addr, port, { backlog: o.backlog ?? 4096, v6Only: o.v6Only === true }));
        } catch (e) {
          throw bindError(e, what, port);
        }
      }
    }
    return out;
  } catch (e) {
    closeListeners(out);
    throw e;
  }
}

function bindError(e: unknown, what: string, port: number): unknown {
  if (!(e instanceof SyscallError) || e.errnoName !== 'EADDRINUSE') return e;
  return new LowportError('E_STATE', `cannot bind ${what}: something already listens there`, {
    hint: `\`lowport doctor --port ${port}\` shows which process holds it; stop it, or give another --port.`,
    cause: e,
  });
}

/** The loop's stderr (the programs' too): lowport's own, but a terminal only through a pipe this process escapes. */
function stderrTarget(): 'pipe' | 'inherit' {
  return isatty(2) ? 'pipe' : 'inherit';
}

function copyToTerminal(from: Readable | null | undefined): void {
  if (from === null || from === undefined) return;
  from.setEncoding('utf8');
  from.on('data', (text: string) => process.stderr.write(terminalText(text)));
}

/**
 * Binds, starts the loop as the user, waits for it; resolves to its exit
 * status (0 after a drain). `identity` and `env` are checked by run.ts's
 * run(); `makeCgroup` gives a cgroup of its own to track the programs (or
 * undefined: none).
 */
export async function runAccept(
  o: AcceptOptions,
  identity: Identity,
  env: NodeJS.ProcessEnv,
  makeCgroup: () => string | undefined,
): Promise<number> {
  if (o.ports.length === 0) throw new UsageError('lowport run --accept needs --port: the TCP ports to accept on');
  const bound = bindAll(o);
  let cgroup: string | undefined;
  let child: ChildProcess;
  try {
    cgroup = makeCgroup();
    const programEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) if (v !== undefined) programEnv[k] = v;
    const config: AcceptConfig = {
      command: o.command,
      env: programEnv,
      listeners: bound.map((b, i) => ({ fd: 3 + i, what: b.what })),
      backlog: o.backlog ?? 4096,
      readyFd: 3 + bound.length,
      maxConns: o.accept.maxConns,
      maxPerIp: o.accept.maxPerIp,
      drainTimeoutMs: o.accept.drainTimeoutMs,
      log: o.accept.log,
    };
    child = launch([process.execPath, ACCEPT_MAIN], {
      identity,
      fds: [...bound.map((b) => b.fd), 'pipe'],
      // No terminal, no stdin: the programs' fds 0 and 1 are their connections.
      stdio: ['ignore', 'ignore', stderrTarget()],
      env: { ...env, [ACCEPT_CONFIG_ENV]: JSON.stringify(config) },
      ...(cgroup === undefined ? {} : { cgroup }),
    });
    copyToTerminal(child.stderr);
  } catch (e) {
    if (cgroup !== undefined && !cgroupPopulated(cgroup)) removeCgroup(cgroup);
    throw e;
  } finally {
    // The loop has its copies; this process keeps none.
    closeListeners(bound);
  }
  const stop = relaySignals(DRAIN_SIGNALS, () => child.kill('SIGTERM'));
  try {
    await started(child, child.stdio[3 + bound.length], identity, o.command);
    requireRunsAs(child, identity, 'the accept loop');
    const who = identity.name ?? `uid ${identity.uid}`;
    o.note?.(
      `accepting on ${bound.map((b) => b.what).join(', ')} as ${escapeControl(who)} (pid ${child.pid ?? '?'}): ` +
        `${escapeControl(shellCommand(o.command))} per connection, at most ${o.accept.maxConns} at once and ${o.accept.maxPerIp} per client address; ` +
        'stop with Ctrl-C or SIGTERM',
    );
    return await exited(child);
  } finally {
    stop();
    if (cgroup !== undefined) await endLeftovers(cgroup, o);
  }
}

/** What the programs left running once the loop is gone (a background job holding a connection): ended. */
async function endLeftovers(cgroup: string, o: AcceptOptions): Promise<void> {
  if (cgroupPopulated(cgroup)) {
    const n = cgroupPids(cgroup).length;
    o.note?.(`ending ${n} process${n === 1 ? '' : 'es'} the programs left running`);
    killCgroup(cgroup);
    await waitUntilEmpty(cgroup);
  }
  removeCgroup(cgroup);
}

/**
 * Resolves once the loop says it accepts (a line on its ready pipe); rejects
 * with what to do when it exits before that: a COMMAND the user cannot run
 * (127), or Node.js or lowport unreadable by the user.
 */
function started(child: ChildProcess, ready: ChildProcess['stdio'][number], identity: Identity, command: string[]): Promise<void> {
  const who = identity.name ?? String(identity.uid);
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      const how = code === null ? `was killed by ${signal ?? 'a signal'}` : `exited with status ${code}`;
      const hint =
        code === 127
          ? `Give COMMAND as a program ${who} may run: a full path, or a name in /usr/local/bin, /usr/bin or /bin (the PATH it gets); e.g. -- /usr/bin/env ${escapeControl(command[0] ?? 'cat')}.`
          : `It runs ${process.execPath} and ${ACCEPT_MAIN} as ${who}: both, and every directory above them, must be readable by that user` +
            ' (not under /root, where nvm installs Node.js). Install Node.js and lowport system-wide, or pick a --user that can read them.';
      reject(
        new LowportError('E_STATE', `the accept loop (as ${escapeControl(who)}) ${how} before it started (its error is above)`, { hint }),
      );
    };
    child.once('exit', onExit);
    child.once('error', reject);
    ready?.once('data', () => {
      child.off('exit', onExit);
      resolve();
    });
  });
}
