/**
 * What the userspace forwarder's parts share: its settings, the
 * configuration a forwarder process gets from `lowport forward serve`
 * (serve.ts), its defaults, and how it writes endpoints and log lines. The
 * TCP path is tcp-loop.ts (in threads, tcp-thread.ts), UDP is udp.ts, the
 * process around them worker-main.ts.
 */
import { writeSync } from 'node:fs';
import { unmapAddress, type ProxyProtocolVersion } from './proxy-protocol.js';

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
  /** TCP connections at once, and UDP sessions at once. */
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
  /** A pipe on which the forwarder writes a line once it serves. */
  readyFd: number;
  /** The backend's addresses, resolved by lowport before it started the forwarder. */
  addresses: string[];
  /** TCP forwarding threads. */
  threads: number;
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

let dropped = 0;

/**
 * One line on stderr, written at once (a worker thread's process.stderr would
 * be relayed through the main thread). stderr may be a full non-blocking pipe
 * (EAGAIN) or a closed one (EPIPE): the line is dropped rather than end the
 * forwarder, and the next line that gets through says how many were.
 */
export function logLine(line: string): void {
  const note = dropped === 0 ? '' : ` (${dropped} earlier log line${dropped === 1 ? '' : 's'} dropped: stderr was full)`;
  try {
    writeSync(2, `${new Date().toISOString()} ${line}${note}\n`);
    dropped = 0;
  } catch {
    dropped++;
  }
}
