/**
 * `lowport forward --userspace`: binds the low port (as root, or as a user
 * the policy grants it to), then hands the sockets to forwarder processes
 * (worker-main.ts) and waits for them. As root, the forwarders run as --user
 * (default nobody) with every privilege dropped by setpriv, right after the
 * bind: uid and gid (real, effective, saved), groups, no capability,
 * no_new_privs (kernel/launch.ts) — the code that touches client bytes never
 * runs as root. This process keeps no socket; it relays signals and exits
 * with the forwarders.
 *
 * Several forwarders share the TCP listening sockets (the kernel hands each
 * accepted connection to one of them), so the forwarder uses more than one
 * CPU; UDP goes to the first alone, so that a client's datagrams all meet the
 * same session.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { LowportError } from '../errors.js';
import { launch, userEnvironment, type Identity } from '../kernel/launch.js';
import { closeRawFd, openBoundSocket, SyscallError } from '../kernel/libc.js';
import { lookupUsers } from '../kernel/nss.js';
import { effectiveUid } from '../kernel/process.js';
import { AF_INET, AF_INET6, familyOf, SOCK_DGRAM, SOCK_STREAM, sockaddrIn, sockaddrIn6 } from '../kernel/sockaddr.js';
import { parseIPv6 } from '../policy/address.js';
import type { Protocol } from '../policy/types.js';
import { CONFIG_ENV, type ForwarderConfig, type WorkerConfig, type WorkerListener } from './userspace.js';

export interface UserspaceOptions extends ForwarderConfig {
  port: number;
  protocols: Protocol[];
  /** Addresses to bind; empty: `::`, dual-stack (IPv4 and IPv6). */
  addrs: string[];
  /** Run the forwarders as this user (root only); default nobody. */
  user?: string;
  /** Forwarder processes for TCP. */
  workers: number;
  backlog?: number;
  note?: (text: string) => void;
}

const WORKER = fileURLToPath(new URL('./worker-main.js', import.meta.url));

function resolveIdentity(user: string): Identity {
  const entry = lookupUsers([user]).get(user);
  if (entry !== undefined) return { uid: entry.uid, gid: entry.gid, name: entry.name };
  if (/^\d+$/.test(user)) return { uid: Number(user), gid: Number(user) };
  throw new LowportError('E_UNKNOWN_USER', `unknown user '${user}'`, { hint: 'Give --user a name or uid that `getent passwd` knows (default: nobody).' });
}

interface Bound {
  fd: number;
  protocol: Protocol;
  family: 4 | 6;
}

function bindAll(o: UserspaceOptions): Bound[] {
  const out: Bound[] = [];
  try {
    for (const protocol of o.protocols) {
      for (const addr of o.addrs.length === 0 ? ['::'] : o.addrs) {
        const family = familyOf(addr);
        const what = `${protocol} ${family === 4 ? addr : `[${addr}]`}:${o.port}`;
        try {
          const fd = openBoundSocket(family === 4 ? AF_INET : AF_INET6, protocol === 'tcp' ? SOCK_STREAM : SOCK_DGRAM, family === 4 ? sockaddrIn(addr, o.port) : sockaddrIn6(parseIPv6(addr), o.port), {
            backlog: o.backlog ?? 4096,
            v6Only: false,
            what,
          });
          out.push({ fd, protocol, family });
        } catch (e) {
          throw bindError(e, what, o.port);
        }
      }
    }
    return out;
  } catch (e) {
    for (const b of out) closeRawFd(b.fd);
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
    return new LowportError('E_STATE', `cannot bind ${what}: something already listens there`, { hint: `\`lowport doctor --port ${port}\` shows which process holds it.`, cause: e });
  }
  return e;
}

/** Runs the forwarders to their end; resolves to the exit status (0 after a drain). */
export async function runUserspace(o: UserspaceOptions): Promise<number> {
  const root = effectiveUid() === 0;
  if (!root && o.user !== undefined) {
    throw new LowportError('E_NOT_ROOT', '--user needs root: only root can start the forwarder as another user', { hint: 'Leave out --user to forward as yourself, or run it with sudo.' });
  }
  const identity = root ? resolveIdentity(o.user ?? 'nobody') : undefined;
  const bound = bindAll(o);
  const children: ChildProcess[] = [];
  try {
    const workers = Math.max(1, o.workers);
    for (let i = 0; i < workers; i++) {
      const mine = bound.filter((b) => b.protocol === 'tcp' || i === 0);
      if (mine.length === 0) break;
      const listeners: WorkerListener[] = mine.map((b, j) => ({ fd: 3 + j, protocol: b.protocol, family: b.family }));
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
      };
      const env = { [CONFIG_ENV]: JSON.stringify(config) };
      const fds = mine.map((b) => b.fd);
      const argv = [process.execPath, WORKER];
      const child =
        identity === undefined
          ? spawn(argv[0] ?? process.execPath, argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit', ...fds], env: { ...process.env, ...env } })
          : // Root's environment and terminal stay with root: the forwarder gets a
            // clean environment (locale, its config) and no stdin.
            launch(argv, { identity, fds, noStdin: true, env: { ...userEnvironment({ name: identity.name ?? String(identity.uid), home: '/', shell: '/usr/sbin/nologin' }), ...env } });
      children.push(child);
    }
  } catch (e) {
    for (const c of children) c.kill('SIGKILL');
    throw e;
  } finally {
    // The forwarders have their copies; this process keeps none.
    for (const b of bound) closeRawFd(b.fd);
  }
  const as = identity === undefined ? '' : ` as ${identity.name ?? identity.uid}`;
  o.note?.(
    `forwarding ${o.protocols.join(',')} port ${o.port} on ${o.addrs.length === 0 ? 'every address' : o.addrs.join(', ')} to ${o.backend.host}:${o.backend.port}` +
      `${o.proxyProtocol === undefined ? '' : ` with PROXY protocol ${o.proxyProtocol}`} (${children.length} process${children.length === 1 ? '' : 'es'}${as}); stop with Ctrl-C or SIGTERM`,
  );
  return waitAll(children);
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function waitAll(children: ChildProcess[]): Promise<number> {
  const handlers = FORWARDED.map((signal) => {
    // The forwarders run in sessions of their own (kernel/launch.ts): ^C on
    // the terminal reaches only this process, which passes it on as a drain.
    const handler = (): void => {
      for (const c of children) c.kill('SIGTERM');
    };
    process.on(signal, handler);
    return () => process.off(signal, handler);
  });
  let status = 0;
  let left = children.length;
  return new Promise((resolve, reject) => {
    for (const child of children) {
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        const s = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
        if (s !== 0 && status === 0) {
          status = s;
          // One forwarder failing takes the others down, rather than serving at a fraction.
          for (const c of children) if (c !== child) c.kill('SIGTERM');
        }
        if (--left === 0) {
          for (const off of handlers) off();
          resolve(status);
        }
      });
    }
  });
}
