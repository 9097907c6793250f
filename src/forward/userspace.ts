/**
 * The userspace TCP forwarder: every accepted connection gets its own
 * connection to the backend, optionally opened with a PROXY protocol header
 * (so the backend learns the client's address), and bytes are copied both
 * ways.
 *
 * What a proxy must get right, and how:
 *  - backpressure, both ways: a write that fills the peer's buffer pauses the
 *    reading side until 'drain', so a slow reader never makes the forwarder
 *    buffer without bound;
 *  - half-close: sockets are allowHalfOpen; a FIN from one side becomes
 *    end() on the other after what is queued is written, and the other
 *    direction carries on (`shutdown(SHUT_WR)` clients, HTTP/1.0 bodies);
 *  - the backend refusing, resetting or not answering within the connect
 *    timeout: the client's connection is closed cleanly (FIN, not a reset)
 *    and the reason logged; an error once connected resets the other side
 *    too, so neither end waits forever;
 *  - idle connections (no byte either way for the idle timeout) are closed;
 *  - a cap on connections per process: the ones over it are closed at once;
 *  - drain: stop accepting, let open connections finish, then close what is
 *    left at the drain deadline.
 * Node's `pipe()` does the first two as well, but with the stream machinery
 * on every chunk; these few listeners cost less per request (bench/forward.ts).
 */
import net from 'node:net';
import { encodeHeader, unmapAddress, type ProxyProtocolVersion } from './proxy-protocol.js';

export interface Backend {
  host: string;
  port: number;
}

export interface ForwarderConfig {
  backend: Backend;
  proxyProtocol?: ProxyProtocolVersion;
  /** Connecting to the backend may take this long (ms). */
  connectTimeoutMs: number;
  /** A connection with no traffic either way for this long is closed (ms); 0: never. */
  idleTimeoutMs: number;
  /** Connections (TCP) or sessions (UDP) at once, per process. */
  maxConnections: number;
  /** On SIGTERM, open connections get this long to finish (ms). */
  drainTimeoutMs: number;
  /** A UDP session without traffic for this long ends (ms). */
  udpTimeoutMs: number;
  /** One line per connection. */
  log: boolean;
}

/** A listening socket handed to a forwarder process (worker-main.ts) as an fd. */
export interface WorkerListener {
  fd: number;
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
}

export interface WorkerConfig extends ForwarderConfig {
  listeners: WorkerListener[];
}

/** The environment variable that carries a WorkerConfig to a forwarder process. */
export const CONFIG_ENV = 'LOWPORT_FORWARD_CONFIG';

export const DEFAULTS = {
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 300_000,
  maxConnections: 10_000,
  drainTimeoutMs: 30_000,
  udpTimeoutMs: 30_000,
} as const;

/** `1.2.3.4:80` or `[::1]:80`. */
export function formatEndpoint(address: string | undefined, port: number | undefined): string {
  const a = unmapAddress(address ?? '?');
  return `${a.includes(':') ? `[${a}]` : a}:${port ?? '?'}`;
}

interface Flow {
  /** `client -> local` as accepted, only when logging (a closed socket no longer knows its addresses). */
  ends: string;
  client: net.Socket;
  backend: net.Socket;
  started: number;
  /** Why it ended, for the log; the first reason wins. */
  reason: string | undefined;
  connected: boolean;
  closed: number;
}

export class TcpForwarder {
  private readonly flows = new Set<Flow>();
  private readonly servers: net.Server[] = [];
  private draining = false;
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly config: ForwarderConfig,
    private readonly logLine: (line: string) => void,
  ) {}

  get active(): number {
    return this.flows.size;
  }

  /** A server for a listening socket (an fd passed in, or a port this process binds). */
  createServer(): net.Server {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.accept(client));
    this.servers.push(server);
    return server;
  }

  private accept(client: net.Socket): void {
    const { config } = this;
    if (this.draining || this.flows.size >= config.maxConnections) {
      if (config.log) this.logLine(`tcp ${formatEndpoint(client.remoteAddress, client.remotePort)} refused: ${this.draining ? 'draining' : `connection cap (${config.maxConnections}) reached`}`);
      client.destroy();
      return;
    }
    const { host, port } = config.backend;
    const backend = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    // The addresses cost a getpeername and a getsockname per connection,
    // with Node's objects around them: about 9% of the forwarder's CPU with a
    // new connection per request (bench/README.md). Only the log and the
    // PROXY header need them.
    const ends = config.log ? `${formatEndpoint(client.remoteAddress, client.remotePort)} -> ${formatEndpoint(client.localAddress, client.localPort)}` : '';
    const flow: Flow = { ends, client, backend, started: Date.now(), reason: undefined, connected: false, closed: 0 };
    this.flows.add(flow);
    const connectTimer = setTimeout(() => {
      flow.reason ??= `backend connect timeout (${config.connectTimeoutMs} ms)`;
      backend.destroy();
      closeCleanly(client);
    }, config.connectTimeoutMs);

    backend.once('connect', () => {
      clearTimeout(connectTimer);
      flow.connected = true;
      if (config.proxyProtocol !== undefined) {
        backend.write(
          encodeHeader(config.proxyProtocol, {
            transport: 'tcp',
            source: { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
            destination: { address: client.localAddress ?? '', port: client.localPort ?? 0 },
          }),
        );
      }
      relay(client, backend);
      relay(backend, client);
      if (config.idleTimeoutMs > 0) {
        // Reads and writes both reset a socket's timer, so the client's sees traffic either way.
        client.setTimeout(config.idleTimeoutMs, () => {
          flow.reason ??= `idle timeout (${config.idleTimeoutMs} ms)`;
          client.destroy();
          backend.destroy();
        });
      }
    });
    backend.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      flow.reason ??= `backend error ${e.code ?? e.message}`;
      // Before the connection: the client has had nothing, so a clean close.
      // After: a reset, so that it knows the stream broke midway.
      if (flow.connected) client.destroy();
      else closeCleanly(client);
    });
    client.on('error', (e: NodeJS.ErrnoException) => {
      flow.reason ??= `client error ${e.code ?? e.message}`;
      clearTimeout(connectTimer);
      backend.destroy();
    });
    const closed = (): void => {
      if (++flow.closed < 2) return;
      clearTimeout(connectTimer);
      this.flows.delete(flow);
      if (config.log) this.logFlow(flow);
      if (this.draining && this.flows.size === 0) this.onIdle?.();
    };
    client.once('close', closed);
    backend.once('close', closed);
  }

  private logFlow(f: Flow): void {
    const { host, port } = this.config.backend;
    this.logLine(
      `tcp ${f.ends} => ${formatEndpoint(host, port)}` +
        ` up=${f.client.bytesRead} down=${f.backend.bytesRead} ${Date.now() - f.started}ms ${f.reason ?? 'closed'}`,
    );
  }

  /**
   * Stops accepting, waits for open connections (up to the drain timeout,
   * then closes them) and resolves when none is left.
   */
  drain(): Promise<void> {
    this.draining = true;
    for (const s of this.servers) s.close();
    if (this.flows.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const f of this.flows) {
          f.reason ??= 'closed at the drain deadline';
          f.client.destroy();
          f.backend.destroy();
        }
      }, this.config.drainTimeoutMs);
      timer.unref();
      this.onIdle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Closes everything now. */
  closeAll(): void {
    this.draining = true;
    for (const s of this.servers) s.close();
    for (const f of this.flows) {
      f.client.destroy();
      f.backend.destroy();
    }
  }
}

/** Copies `from` to `to` with backpressure; `from`'s FIN becomes `to.end()` once queued bytes are written. */
function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

/** Ends our side (FIN) and drops whatever the client still sends; the socket goes when the client closes too, or after 10 s. */
function closeCleanly(socket: net.Socket): void {
  if (socket.destroyed) return;
  socket.resume();
  socket.end();
  setTimeout(() => socket.destroy(), 10_000).unref();
}
