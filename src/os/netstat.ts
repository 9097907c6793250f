/**
 * Who holds a port: /proc/net/{tcp,tcp6,udp,udp6} (proc(5)) give the socket's
 * inode and owner uid; /proc/PID/fd links (`socket:[INODE]`) give the process,
 * for processes this user may inspect.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface SocketEntry {
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  port: number;
  /** TCP state in hex: 0A is LISTEN. */
  state: string;
  uid: number;
  inode: number;
}

export function parseProcNet(text: string, protocol: 'tcp' | 'udp', family: 4 | 6): SocketEntry[] {
  const out: SocketEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    if (local === undefined || f.length < 10) continue;
    const port = parseInt(local.split(':')[1] ?? '', 16);
    out.push({ protocol, family, port, state: f[3] ?? '', uid: Number(f[7]), inode: Number(f[9]) });
  }
  return out;
}

/** Sockets bound to `port` (any address) in this network namespace. */
export function socketsOnPort(port: number): SocketEntry[] {
  const out: SocketEntry[] = [];
  for (const [file, protocol, family] of [
    ['tcp', 'tcp', 4],
    ['tcp6', 'tcp', 6],
    ['udp', 'udp', 4],
    ['udp6', 'udp', 6],
  ] as const) {
    try {
      out.push(...parseProcNet(readFileSync(`/proc/net/${file}`, 'utf8'), protocol, family).filter((e) => e.port === port));
    } catch {
      // IPv6 may be off: no such file.
    }
  }
  return out;
}

export interface SocketOwner {
  pid: number;
  command: string;
}

/** The processes that hold these socket inodes, among those whose fds this user can read. */
export function socketOwners(inodes: number[]): Map<number, SocketOwner> {
  const wanted = new Set(inodes.map((i) => `socket:[${i}]`));
  const found = new Map<number, SocketOwner>();
  if (wanted.size === 0) return found;
  for (const pidText of readdirSync('/proc')) {
    if (!/^\d+$/.test(pidText)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pidText}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pidText}/fd/${fd}`);
      } catch {
        continue;
      }
      if (!wanted.has(link)) continue;
      const inode = Number(link.slice(8, -1));
      let command = '?';
      try {
        command = readFileSync(`/proc/${pidText}/comm`, 'utf8').trim();
      } catch {
        // exited meanwhile
      }
      found.set(inode, { pid: Number(pidText), command });
    }
  }
  return found;
}
