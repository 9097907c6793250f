/**
 * `lowport forward serve`: binds the low port (as root, or as a user
 * the policy grants it to), then hands the sockets to forwarder processes
 * (worker-main.ts) and waits for them. As root, the forwarders run as --user
 * (default: lowport's own system user, forwarder-user.ts) with every privilege dropped by setpriv, right after the
 * bind: uid and gid (real, effective, saved), groups, no capability,
 * no_new_privs (os/launch.ts) — the code that touches client bytes never
 * runs as root. This process keeps no socket; it relays signals and exits
 * with the forwarder.
 *
 * The forwarder is one process: `--workers` threads share the TCP listening
 * sockets (the kernel wakes one of them per connection), so it uses more
 * than one CPU; UDP is served by its main thread, so that a client's
 * datagrams all meet the same session. The backend's name is looked up here,
 * before anything starts, so that a name that does not resolve is an error
 * at once rather than a log line per connection.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { LowportError, UsageError } from '../errors.js';
import { terminalText } from '../text.js';
import { checkIdentity, isolateChildren, launch, requireRunsAs, userEnvironment, type Identity } from '../os/launch.js';
import { SyscallError } from '../os/libc.js';
import { closeListeners, listenerName, openListener, type Listener } from '../os/listen.js';
import { userByNameOrUid } from '../os/nss.js';
import { effectiveUid, exited } from '../os/process.js';
import { relaySignals } from '../os/signals.js';
import type { Protocol } from '../policy/types.js';
import { forwarderIdentity } from './forwarder-user.js';
import { CONFIG_ENV, type ForwarderConfig, type WorkerConfig, type WorkerListener } from './userspace.js';

export interface UserspaceOptions extends ForwarderConfig {
  port: number;
  protocols: Protocol[];
  /** Addresses to bind; empty: `::`, dual-stack (IPv4 and IPv6). */
  addrs: string[];
  /** Run the forwarders as this user (root only); default: the `lowport` system user (forwarder-user.ts). */
  user?: string;
  /** TCP forwarding threads. */
  workers: number;
  backlog?: number;
  note?: (text: string) => void;
}

const WORKER = fileURLToPath(new URL('./worker-main.js', import.meta.url));

const USER_HINT =
  'Give --user a normal user (a name from `getent passwd`, or its uid); a user whose primary group is root (gid 0) is refused too.';

/** The signals relayed to the forwarder as a drain. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function resolveIdentity(user: string): Identity {
  const entry = userByNameOrUid(user, 'Give --user a name or uid that `getent passwd` knows (default: the lowport system user).');
  if (entry.uid === 0) {
    throw new UsageError(
      `the forwarder does not run as root (--user ${user})`,
      'It binds the port as root and then drops to --user: give a normal user, or leave --user out for the lowport system user.',
    );
  }
  const identity = { uid: entry.uid, gid: entry.gid, ...(entry.known ? { name: entry.name } : {}) };
  // Before any port is bound: the same check launch makes.
  checkIdentity(identity, USER_HINT);
  return identity;
}

/**
 * The forwarder's stdout and stderr: this process's own, but never a
 * terminal (it runs as another user, and a terminal fd is also one to read
 * the admin's keys from): a pipe that this process copies to the terminal.
 */
function outputWithoutTerminal(): ['ignore', 'pipe' | 'inherit', 'pipe' | 'inherit'] {
  return ['ignore', isatty(1) ? 'pipe' : 'inherit', isatty(2) ? 'pipe' : 'inherit'];
}

/** Copies a forwarder's output pipe to this process's terminal, control characters escaped (text.ts terminalText). */
function copyToTerminal(from: Readable | null, to: NodeJS.WriteStream): void {
  if (from === null) return;
  from.setEncoding('utf8');
  from.on('data', (text: string) => to.write(terminalText(text)));
}

function bindAll(o: UserspaceOptions): Listener[] {
  const out: Listener[] = [];
  try {
    for (const protocol of o.protocols) {
      for (const addr of o.addrs.length === 0 ? ['::'] : o.addrs) {
        try {
          out.push(openListener(protocol, addr, o.port, { backlog: o.backlog ?? 4096, v6Only: false }));
        } catch (e) {
          throw bindError(e, listenerName(protocol, addr, o.port), o.port);
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
  if (!(e instanceof SyscallError)) return e;
  if (e.errnoName === 'EACCES' || e.errnoName === 'EPERM') {
    return new LowportError('E_NOT_ROOT', `cannot bind ${what}: ${e.errnoName}`, {
      hint: `Run it with sudo (it drops to --user right after binding), or get the port granted first: sudo lowport grant ${port} --user $USER.`,
      cause: e,
    });
  }
  if (e.errnoName === 'EADDRINUSE') {
    return new LowportError('E_STATE', `cannot bind ${what}: something already listens there`, {
      hint: `\`lowport doctor --port ${port}\` shows which process holds it.`,
      cause: e,
    });
  }
  return e;
}

/** Runs the forwarders to their end; resolves to the exit status (0 after a drain). */
export async function runUserspace(o: UserspaceOptions): Promise<number> {
  const root = effectiveUid() === 0;
  if (!root && o.user !== undefined) {
    throw new LowportError('E_NOT_ROOT', '--user needs root: only root can start the forwarder as another user', {
      hint: 'Leave out --user to forward as yourself, or run it with sudo.',
    });
  }
  const identity = root ? (o.user === undefined ? forwarderIdentity() : resolveIdentity(o.user)) : undefined;
  const addresses = await resolveBackend(o.backend.host);
  const threads = Math.max(1, o.workers);
  const bound = bindAll(o);
  let child: ChildProcess;
  try {
    const listeners: WorkerListener[] = bound.map((b, j) => ({ fd: 3 + j, protocol: b.protocol, family: b.family }));
    const config: WorkerConfig = {
      backend: o.backend,
      ...(o.proxyProtocol === undefined ? {} : { proxyProtocol: o.proxyProtocol }),
      connectTimeoutMs: o.connectTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs,
      maxConnections: o.maxConnections,
      drainTimeoutMs: o.drainTimeoutMs,
      udpTimeoutMs: o.udpTimeoutMs,
      log: o.log,
      listeners,
      readyFd: 3 + bound.length,
      addresses,
      threads,
    };
    const env = { [CONFIG_ENV]: JSON.stringify(config) };
    const fds: (number | 'pipe')[] = [...bound.map((b) => b.fd), 'pipe'];
    if (identity === undefined) {
      // Only the listening sockets and the ready pipe, not whatever fds the caller left open.
      isolateChildren();
      // A session of its own here too: ^C on the terminal reaches lowport alone, which relays it once.
      child = spawn(process.execPath, [WORKER], {
        stdio: ['ignore', 'inherit', 'inherit', ...fds],
        env: { ...process.env, ...env },
        detached: true,
      });
    } else {
      // Root's environment, terminal, keyring and fds stay with root: the
      // forwarder gets a clean environment (locale, its config), no stdin, and
      // its output through pipes where lowport's is a terminal.
      child = launch([process.execPath, WORKER], {
        identity,
        // A daemon: in /, as systemd starts services, never in the admin's directory.
        cwd: '/',
        fds,
        stdio: outputWithoutTerminal(),
        env: { ...userEnvironment({ name: identity.name ?? String(identity.uid), home: '/', shell: '/usr/sbin/nologin' }), ...env },
      });
      // Escaped on the way: another user's process (or one that took the
      // forwarder's fd 2 with pidfd_getfd) must not write terminal sequences to root's screen.
      copyToTerminal(child.stdout, process.stdout);
      copyToTerminal(child.stderr, process.stderr);
    }
  } finally {
    // The forwarder has its copies; this process keeps none.
    closeListeners(bound);
  }
  // ^C on the terminal reaches only this process (the forwarder runs in a
  // session of its own, os/launch.ts), which passes it on as a drain (a
  // second ^C: close everything).
  const stop = relaySignals(FORWARDED, () => child.kill('SIGTERM'));
  try {
    await started(child, child.stdio[3 + bound.length], identity);
    if (identity !== undefined) requireRunsAs(child, identity, 'the forwarder');
  } catch (e) {
    stop();
    throw e;
  }
  const as = identity === undefined ? '' : ` as ${identity.name ?? identity.uid}`;
  const tcp = o.protocols.includes('tcp') ? `, ${threads} TCP thread${threads === 1 ? '' : 's'}` : '';
  o.note?.(
    `forwarding ${o.protocols.join(',')} port ${o.port} on ${o.addrs.length === 0 ? 'every address' : o.addrs.join(', ')} to ${o.backend.host}:${o.backend.port}` +
      `${o.proxyProtocol === undefined ? '' : ` with PROXY protocol ${o.proxyProtocol}`} (pid ${child.pid ?? '?'}${as}${tcp}); stop with Ctrl-C or SIGTERM`,
  );
  const status = await exited(child);
  stop();
  return status;
}

/** The backend's addresses: an IP as it is, a name looked up (every address, in the resolver's order). */
async function resolveBackend(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  try {
    const found = await lookup(host, { all: true });
    if (found.length > 0) return found.map((a) => a.address);
  } catch (e) {
    throw new UsageError(
      `cannot resolve the backend host '${host}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      'Check the name (getent ahosts NAME), or give the backend as an IP address: lowport forward serve 80 10.0.0.5:8080.',
    );
  }
  throw new UsageError(`the backend host '${host}' has no address`, 'Give the backend as an IP address.');
}

/**
 * Resolves once the forwarder says it is serving (a line on its ready pipe);
 * rejects with an error a person can act on when it exits before that (Node
 * or lowport unreadable by --user is the usual reason: Node.js installed
 * under /root by nvm, say).
 */
function started(child: ChildProcess, ready: ChildProcess['stdio'][number], identity: Identity | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      const how = code === null ? `was killed by ${signal ?? 'a signal'}` : `exited with status ${code}`;
      const who = identity === undefined ? '' : ` as ${identity.name ?? identity.uid}`;
      reject(
        new LowportError('E_STATE', `the forwarder${who} ${how} before it started (its error is above)`, {
          hint:
            identity === undefined
              ? 'Fix what its error names, then run it again.'
              : `It runs ${process.execPath} and ${WORKER} as ${identity.name ?? identity.uid}: both, and every directory above them, must be readable by that user` +
                ' (not under /root, where nvm installs Node.js). Install Node.js and lowport system-wide, or pick a --user that can read them.',
        }),
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
