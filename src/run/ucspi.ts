/**
 * The pure parts of `lowport run --accept` (accept.ts, accept-main.ts): the
 * settings the accept loop gets, the UCSPI-TCP environment of a connection,
 * the connection limits and the log lines.
 *
 * The environment is tcpserver's (tcp-environ(5)): PROTO, TCPLOCALIP,
 * TCPLOCALPORT, TCPREMOTEIP, TCPREMOTEPORT. For IPv6, as the IPv6 tcpservers
 * (Felix von Leitner's patch, Debian's ucspi-tcp-ipv6, and fehQ's ucspi-tcp6)
 * do: PROTO=TCP6, the TCP* variables hold the compact IPv6 text (so qmail and
 * scripts that read TCPREMOTEIP go on working), and the TCP6* ones are set too
 * (for programs that read ${PROTO}REMOTEIP, as UCSPI says to); a link-local
 * address's interface goes to TCPINTERFACE and TCP6INTERFACE. An IPv4 client
 * of a dual-stack (`::`) socket is an IPv4 client (PROTO=TCP, dotted
 * addresses), never `::ffff:1.2.3.4`. TCPLOCALHOST, TCPREMOTEHOST and
 * TCPREMOTEINFO are never set: no DNS or ident (RFC 1413) look-up is made per
 * connection (tcpserver -H -R, with no name for the local address), which
 * keeps connections fast and never hands a program text that a remote DNS
 * server chose.
 */
import { isIPv4 } from 'node:net';

/** The accept loop's settings, from lowport (accept.ts) to accept-main.ts, as JSON in ACCEPT_CONFIG_ENV. */
export interface AcceptConfig {
  /** The program and its arguments, started once per connection. */
  command: string[];
  /** Each program's environment before the UCSPI variables: the user's (os/launch.ts userEnvironment). */
  env: Record<string, string>;
  /** The listening sockets: fds 3, 4, ... */
  listeners: { fd: number; what: string }[];
  /** listen(2) backlog (Node would otherwise set its own 511 again). */
  backlog: number;
  /** A pipe on which the loop writes a line once it accepts. */
  readyFd: number;
  maxConns: number;
  maxPerIp: number;
  /** On SIGTERM, running programs get this long before they are sent SIGTERM, then SIGKILL (ms); 0: at once. */
  drainTimeoutMs: number;
  /** One line per connection's start and end (refusals are always logged). */
  log: boolean;
}

export const ACCEPT_CONFIG_ENV = 'LOWPORT_ACCEPT_CONFIG';

/**
 * tcpserver's -c default (40) and s6-tcpserver's; per client address a
 * quarter of it, so that one address alone cannot take every slot (s6's
 * default is 40, which is no limit below the first; xinetd's per_source has
 * none): raise it where many clients share one address (NAT, a proxy).
 */
export const ACCEPT_DEFAULTS = { maxConns: 40, maxPerIp: 10, drainTimeoutMs: 30_000 } as const;

/** After SIGTERM at the end of a drain, a program that is still there is killed (SIGKILL) this much later. */
export const KILL_GRACE_MS = 2_000;

/** One end of a connection as Node's net.Socket gives it: `::ffff:1.2.3.4` on a dual-stack socket, `fe80::1%eth0` with a scope. */
export interface Endpoint {
  address: string;
  port: number;
}

/** An address without IPv4-mapping or scope, and the scope (an interface name) if it had one. */
export function plainAddress(address: string): { ip: string; scope?: string } {
  const [bare = address, scope] = address.split('%', 2);
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  const ip = m?.[1] ?? bare.toLowerCase();
  return scope === undefined || scope === '' ? { ip } : { ip, scope };
}

/** The UCSPI-TCP variables of one connection (see the header). */
export function ucspiEnvironment(local: Endpoint, remote: Endpoint): Record<string, string> {
  const l = plainAddress(local.address);
  const r = plainAddress(remote.address);
  const env: Record<string, string> = {
    PROTO: 'TCP',
    TCPLOCALIP: l.ip,
    TCPLOCALPORT: String(local.port),
    TCPREMOTEIP: r.ip,
    TCPREMOTEPORT: String(remote.port),
  };
  if (isIPv4(l.ip) && isIPv4(r.ip)) return env;
  env.PROTO = 'TCP6';
  for (const k of ['LOCALIP', 'LOCALPORT', 'REMOTEIP', 'REMOTEPORT'] as const) env[`TCP6${k}`] = env[`TCP${k}`] ?? '';
  const scope = r.scope ?? l.scope;
  if (scope !== undefined) env.TCPINTERFACE = env.TCP6INTERFACE = scope;
  return env;
}

/** `1.2.3.4:79`, `[::1]:79`. */
export function endpointText(e: Endpoint): string {
  const { ip } = plainAddress(e.address);
  return `${ip.includes(':') ? `[${ip}]` : ip}:${e.port}`;
}

/**
 * How many programs run, in all and per client address (IPv4-mapped
 * addresses counted as IPv4). `admit` counts a connection in, or says which
 * limit it is over; `release` counts it out.
 */
export class ConnectionCount {
  private readonly perIp = new Map<string, number>();
  private total = 0;

  constructor(
    readonly maxConns: number,
    readonly maxPerIp: number,
  ) {}

  get active(): number {
    return this.total;
  }

  from(address: string): number {
    return this.perIp.get(plainAddress(address).ip) ?? 0;
  }

  /** undefined when admitted (and counted); else why not, for the log. */
  admit(address: string): string | undefined {
    const ip = plainAddress(address).ip;
    const n = this.perIp.get(ip) ?? 0;
    if (this.total >= this.maxConns) return `${this.total} connection${this.total === 1 ? '' : 's'} at once (--max-conns ${this.maxConns})`;
    if (n >= this.maxPerIp) return `${n} connection${n === 1 ? '' : 's'} from ${ip} at once (--max-per-ip ${this.maxPerIp})`;
    this.perIp.set(ip, n + 1);
    this.total++;
    return undefined;
  }

  release(address: string): void {
    const ip = plainAddress(address).ip;
    const n = this.perIp.get(ip) ?? 0;
    if (n <= 1) this.perIp.delete(ip);
    else this.perIp.set(ip, n - 1);
    this.total = Math.max(0, this.total - 1);
  }
}
