/**
 * UDP forwarding with per-client sessions: the first datagram from a client
 * address and port opens a socket connected to the backend for that client
 * alone, so the backend's replies on it go back to that client; the session
 * ends after the UDP timeout without a datagram either way. This is what
 * conntrack does for the kernel redirect, in userspace.
 *
 * Replies leave from the listening socket; on a host with several addresses,
 * bind the forwarder to the address clients use (--addr), or a client may see
 * replies from another address of the host (a wildcard UDP socket cannot pick
 * the source without IP_PKTINFO, which Node does not expose).
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { formatEndpoint, type ForwarderConfig } from './userspace.js';

interface Session {
  upstream: dgram.Socket;
  client: { address: string; port: number };
  listener: dgram.Socket;
  timer: NodeJS.Timeout;
  ready: boolean;
  queued: Buffer[];
  up: number;
  down: number;
  started: number;
}

/** Datagrams kept per session while its backend socket is being connected. */
const MAX_QUEUED = 64;

export class UdpForwarder {
  private readonly sessions = new Map<string, Session>();
  private readonly listeners: dgram.Socket[] = [];
  private capLogged = false;

  constructor(
    private readonly config: ForwarderConfig,
    private readonly logLine: (line: string) => void,
  ) {}

  get active(): number {
    return this.sessions.size;
  }

  /** Takes datagrams from a bound socket. */
  attach(listener: dgram.Socket): void {
    this.listeners.push(listener);
    listener.on('message', (msg, rinfo) => this.receive(listener, msg, rinfo));
    listener.on('error', (e) => this.logLine(`udp listener error: ${e.message}`));
  }

  private receive(listener: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let s = this.sessions.get(key);
    if (s === undefined) {
      if (this.sessions.size >= this.config.maxConnections) {
        if (!this.capLogged && this.config.log)
          this.logLine(`udp ${formatEndpoint(rinfo.address, rinfo.port)} dropped: session cap (${this.config.maxConnections}) reached`);
        this.capLogged = true;
        return;
      }
      this.capLogged = false;
      s = this.open(key, listener, rinfo);
    }
    s.up++;
    s.timer.refresh();
    if (s.ready) s.upstream.send(msg);
    else if (s.queued.length < MAX_QUEUED) s.queued.push(msg);
  }

  private open(key: string, listener: dgram.Socket, rinfo: dgram.RemoteInfo): Session {
    const { host, port } = this.config.backend;
    const upstream = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    const s: Session = {
      upstream,
      client: { address: rinfo.address, port: rinfo.port },
      listener,
      timer: setTimeout(() => this.close(key, 'timeout'), this.config.udpTimeoutMs),
      ready: false,
      queued: [],
      up: 0,
      down: 0,
      started: Date.now(),
    };
    this.sessions.set(key, s);
    upstream.on('message', (reply) => {
      s.down++;
      s.timer.refresh();
      listener.send(reply, s.client.port, s.client.address);
    });
    // ICMP port unreachable from the backend shows as ECONNREFUSED on the next send: the session ends.
    upstream.on('error', (e: NodeJS.ErrnoException) => this.close(key, `backend error ${e.code ?? e.message}`));
    upstream.connect(port, host, () => {
      s.ready = true;
      for (const m of s.queued.splice(0)) upstream.send(m);
    });
    return s;
  }

  private close(key: string, reason: string): void {
    const s = this.sessions.get(key);
    if (s === undefined) return;
    this.sessions.delete(key);
    clearTimeout(s.timer);
    try {
      s.upstream.close();
    } catch {
      // already closed
    }
    if (this.config.log) {
      const { host, port } = this.config.backend;
      this.logLine(
        `udp ${formatEndpoint(s.client.address, s.client.port)} => ${formatEndpoint(host, port)} datagrams up=${s.up} down=${s.down} ${Date.now() - s.started}ms ${reason}`,
      );
    }
  }

  /** Stops taking datagrams and ends every session. */
  closeAll(reason = 'stopped'): void {
    for (const l of this.listeners.splice(0)) {
      try {
        l.close();
      } catch {
        // already closed
      }
    }
    for (const key of [...this.sessions.keys()]) this.close(key, reason);
  }
}
