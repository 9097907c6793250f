/**
 * From what doctor found to one recommendation: the simplest safe fix that
 * works on this machine, as a command to run, and the runners-up. Pure, so
 * every verdict is unit-tested on made-up machines.
 *
 * The commands are for the admin to paste into a root shell, so nothing that
 * another user could choose goes into them raw: a process holding a port is
 * named by its pid (its name, which its owner sets, stays in the explanation,
 * escaped when shown), and user names and paths are shell-quoted.
 */
import { shellQuote } from '../text.js';

export type Method =
  | 'none'
  | 'free-port'
  | 'unreserve'
  | 'lowport-grant'
  | 'lowport-apply'
  | 'lowport-run'
  | 'lowport-run-sockets'
  | 'lowport-run-caps'
  | 'systemd-ambient'
  | 'setcap'
  | 'sysctl'
  | 'nft-redirect'
  | 'userspace-forward';

export interface Recommendation {
  method: Method;
  /** The exact command to run next (several lines for a unit drop-in). */
  command: string;
  why: string;
}

export interface PortVerdict {
  port: number;
  /** Every available bind of the port worked. */
  canBind: boolean;
  /** Errors seen (EACCES, EPERM, EADDRINUSE: a socket holds the port, or a reservation refused with it). */
  errors: string[];
  /** Who holds it, when it is in use. */
  heldBy: { pid?: number; command?: string; uid: number }[];
  /** The reservation that refuses this user, from the policy. */
  reservedFor?: { who: string; line: number };
  /** The file grants every refused bind of it to this user (its lines): the kernel should have let them through. */
  grantedBy: number[];
  /** Why the file's grant is not what the kernel has (the bind test proved it is not), when doctor can tell. */
  notLive?: string;
  /** Addresses it bound on (a grant limited to some addresses). */
  boundOn?: string[];
  /** Lines granting it on 0.0.0.0 and not on `::` (for those protocols), when the program is a JVM (which binds `::` for 0.0.0.0). */
  jvmWildcardOnly?: { lines: number[]; protocols: string[] };
}

export interface Situation {
  user: string;
  /** The user's uid, for User= when the name is not a plain one. */
  uid?: number;
  ports: PortVerdict[];
  policyFile: string;
  /** Linux >= 5.12, cgroup v2, BPF not locked down (as far as can be told). */
  bpfGrantPossible: boolean;
  /** Why not, when not. */
  bpfMissing: string[];
  /** The live rules differ from the policy file (root only knows). */
  policyNotApplied: boolean;
  systemd: boolean;
  nft: boolean;
  /** --program, when given. */
  program?: {
    path: string;
    isScript: boolean;
    interpreter?: string;
    runsScripts: boolean;
    /** A rootless container tool (podman, docker, rootlesskit, ...): setcap on it cannot help. */
    container?: string;
    jvm?: boolean;
  };
  sysctlStart: number;
  /** The lowport command as the user would type it. */
  lowport: string;
}

/** The name for User= in a unit drop-in: User= takes the rest of the line unquoted, so a name that is not plain is given as its uid. */
function unitUser(s: Situation): string {
  if (/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(s.user)) return s.user;
  return s.uid === undefined ? 'YOUR-USER' : String(s.uid);
}

function portList(ports: PortVerdict[]): string {
  return ports.map((p) => p.port).join(',');
}

/** The errno a reservation gave: EPERM, or EADDRINUSE (bpf_set_retval), which no socket caused when none holds the port. */
function refusal(p: PortVerdict): string {
  if (p.errors.includes('EPERM') || !p.errors.includes('EADDRINUSE')) return 'EPERM';
  return p.heldBy.length === 0 ? 'EADDRINUSE (the reservation’s: no socket holds the port)' : 'EADDRINUSE';
}

/** The recommendation and the runners-up, best first. */
export function recommend(s: Situation): { recommendation: Recommendation; alternatives: Recommendation[] } {
  const blocked = s.ports.filter((p) => !p.canBind);
  if (blocked.length === 0) {
    return {
      recommendation: { method: 'none', command: '', why: `${s.user} can bind ${portList(s.ports)} now: nothing to do.` },
      alternatives: [],
    };
  }

  // A reservation refuses with EPERM, or with EADDRINUSE where the hook sets its errno: the hook runs
  // before the kernel looks for a socket on the port, so a reserved port's EADDRINUSE is the reservation's.
  const inUse = blocked.filter(
    (p) => p.errors.includes('EADDRINUSE') && p.reservedFor === undefined && !p.errors.some((e) => e === 'EACCES' || e === 'EPERM'),
  );
  const reserved = blocked.filter((p) => p.reservedFor !== undefined);
  const refused = blocked.filter((p) => p.reservedFor !== undefined || p.errors.some((e) => e === 'EACCES' || e === 'EPERM'));
  const list = portList(refused.length > 0 ? refused : blocked);
  const options: Recommendation[] = [];
  const user = shellQuote(s.user);

  for (const p of inUse) {
    const holder = p.heldBy[0];
    const who =
      holder?.pid !== undefined
        ? `${holder.command ?? 'a process'} (pid ${holder.pid}, uid ${holder.uid})`
        : holder !== undefined
          ? `a process of uid ${holder.uid}`
          : 'another socket';
    options.push({
      method: 'free-port',
      command:
        holder?.pid !== undefined
          ? `kill ${holder.pid}   # or stop the service that runs pid ${holder.pid}`
          : `sudo ss -ltnup 'sport = :${p.port}'   # shows the process that holds it`,
      why: `port ${p.port} is not refused but taken: ${who} has it bound. Stop it, or pick another port.`,
    });
  }
  for (const p of reserved) {
    options.push({
      method: 'unreserve',
      command: `sudo ${s.lowport} unreserve ${p.port}   # or: sudo ${s.lowport} grant ${p.port} --user ${user}`,
      why: `port ${p.port} is reserved for ${p.reservedFor?.who ?? 'someone else'} (line ${p.reservedFor?.line ?? '?'} of ${s.policyFile}); everyone else gets ${refusal(p)}, whatever privilege they have.`,
    });
  }
  // apply only helps where the kernel takes the grant: elsewhere the fallbacks below. The file
  // granting a bind that the kernel refused (EACCES) is proof enough that the live rules are not
  // the file's (a user who joined a group since the last apply), even where only root could see them.
  if (
    refused.length > 0 &&
    refused.every((p) => p.grantedBy.length > 0) &&
    (s.policyNotApplied || refused.every((p) => p.notLive !== undefined)) &&
    s.bpfGrantPossible
  ) {
    const reasons = [...new Set(refused.flatMap((p) => (p.notLive === undefined ? [] : [p.notLive])))];
    options.push({
      method: 'lowport-apply',
      command: `sudo ${s.lowport} apply`,
      why: `${s.policyFile} already grants ${list} to ${s.user}, but it is not what the kernel has loaded${reasons.length > 0 ? `: ${reasons.join('; ')}` : '.'}`,
    });
  }
  // A JVM told 0.0.0.0 binds `::`: a grant of 0.0.0.0 alone refuses it.
  for (const p of refused.length > 0 ? refused : s.ports) {
    const jvm = p.jvmWildcardOnly;
    if (jvm === undefined || jvm.lines.length === 0 || p.reservedFor !== undefined || !s.bpfGrantPossible) continue;
    const ports = jvm.protocols.length === 1 ? `${p.port}/${jvm.protocols[0] ?? ''}` : `${p.port}`;
    options.push({
      method: 'lowport-grant',
      command: `sudo ${s.lowport} grant ${ports} --user ${user} --addr ::`,
      why: `a JVM told to listen on 0.0.0.0 binds \`::\` (and ::ffff:a.b.c.d for an IPv4 literal), and line ${jvm.lines.join(', ')} of ${s.policyFile} grants ${p.port} on 0.0.0.0 only: grant \`::\` too, or start the JVM with -Djava.net.preferIPv4Stack=true.`,
    });
  }

  const grantable = refused.filter((p) => p.reservedFor === undefined);
  const grantList = portList(grantable);
  if (grantable.length > 0) {
    const server = s.program === undefined ? 'YOUR-SERVER' : shellQuote(s.program.path);
    if (s.bpfGrantPossible) {
      const partly = grantable.filter((p) => (p.boundOn ?? []).length > 0);
      options.push({
        method: 'lowport-grant',
        command: `sudo ${s.lowport} grant ${grantList} --user ${user}`,
        why:
          `lets ${s.user}'s programs (any of them: scripts, JVMs, static binaries) bind ${grantList} and nothing else; nobody else gains anything; no wrapper, no proxy.` +
          (s.program?.container !== undefined
            ? ` It works for rootless containers' published ports too (${s.program.container} run -p ${grantable[0]?.port ?? 80}:8080): they are bound by a helper running as ${s.user} (podman's rootlessport, rootlesskit), which the grant covers.`
            : '') +
          partly
            .map(
              (p) =>
                ` Port ${p.port} already binds on ${(p.boundOn ?? []).join(', ')} (the grant there is for those addresses only); this grant covers every address.`,
            )
            .join(''),
      });
      options.push({
        method: 'lowport-run',
        command: `sudo ${s.lowport} run --port ${grantList} --user ${user} -- ${server}`,
        why: `grants ${grantList} to that one command and what it starts, only while it runs; nothing is written to the policy.`,
      });
    }
    if (s.systemd) {
      options.push({
        method: 'systemd-ambient',
        command:
          `sudo systemctl edit YOUR.service   # then add:\n[Service]\nUser=${unitUser(s)}\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nNoNewPrivileges=yes\n` +
          `SocketBindAllow=${grantable.map((p) => `tcp:${p.port}`).join(' ')}\nSocketBindDeny=any`,
        why: `for a server run by systemd: the service gets CAP_NET_BIND_SERVICE (which alone would allow every low port; SocketBindAllow/Deny narrow it to ${grantList}).`,
      });
    }
    if (!s.bpfGrantPossible) {
      options.push({
        method: 'lowport-run-sockets',
        command: `sudo ${s.lowport} run --sockets --port ${grantList} --user ${user} -- ${server}`,
        why: `lowport binds ${grantList} and hands the sockets over as systemd does (LISTEN_FDS); for servers that accept sockets that way. Needs no BPF.`,
      });
    }
    const first = grantable[0]?.port ?? 80;
    if (s.nft) {
      options.push({
        method: 'nft-redirect',
        command: `sudo ${s.lowport} forward add ${first} ${first + 8000}`,
        why: `run the server on ${first + 8000} and let the kernel redirect ${first} to it (IPv4 and IPv6, local clients too, client addresses kept); the redirect ends with the command (--persist keeps it in the policy).`,
      });
    }
    options.push({
      method: 'userspace-forward',
      command: `sudo ${s.lowport} forward serve ${first} ${first + 8000}`,
      why: `run the server on ${first + 8000} (or on another host: HOST:PORT); lowport binds ${first} and passes each connection on, as an unprivileged user of its own. The server sees 127.0.0.1 unless it reads a PROXY protocol header (--proxy-protocol v2). Needs neither BPF nor nftables.`,
    });
    if (!s.bpfGrantPossible) {
      options.push({
        method: 'lowport-run-caps',
        command: `sudo ${s.lowport} run --caps --user ${user} -- ${server}`,
        why: `runs the server with CAP_NET_BIND_SERVICE in its ambient set: it and every process it starts may bind EVERY port below 1024, not just ${grantList}. Needs no BPF.`,
      });
    }
    // Not on a container tool: the port is bound by rootlessport/rootlesskit as the user, never by the tool.
    if (s.program !== undefined && !s.program.isScript && s.program.container === undefined) {
      options.push({
        method: 'setcap',
        command: `sudo setcap cap_net_bind_service=+ep ${shellQuote(s.program.path)}`,
        why:
          `gives ${s.program.path} every low port, for every user who runs it; lost when the file is replaced (an upgrade)` +
          (s.program.runsScripts ? `; and ${s.program.path} runs scripts, so every script of every user would get it too.` : '.'),
      });
    }
    const lowest = Math.min(...grantable.map((p) => p.port));
    if (lowest < s.sysctlStart) {
      options.push({
        method: 'sysctl',
        command: `sudo sysctl -w net.ipv4.ip_unprivileged_port_start=${lowest}`,
        why: `every user and every program may then bind every port from ${lowest} up, in this network namespace; it does not last a reboot unless put in /etc/sysctl.d.${s.bpfGrantPossible ? ` Pair it with \`sudo ${s.lowport} reserve\` to keep your ports yours.` : ''}`,
      });
    }
  }

  const [recommendation, ...alternatives] = options;
  if (recommendation === undefined) {
    return {
      recommendation: { method: 'none', command: '', why: `${list} cannot be bound, and none of the fixes lowport knows applies here.` },
      alternatives: [],
    };
  }
  return { recommendation, alternatives };
}
