/**
 * Every command of lowport, declared once: what `lowport --help`, each
 * command's --help, the man page and the shell completions say, and the
 * types of the values each command gets. Light on purpose: the work of a
 * command is loaded only when it runs (`load`).
 */
import { UsageError } from '../errors.js';
import { DEFAULTS } from '../forward/userspace.js';
import { ACCEPT_DEFAULTS } from '../run/ucspi.js';
import { STOP_TIMEOUT_MS } from '../run/stop.js';
import { LOG_WHATS } from '../policy/types.js';
import { defineCommand, defineGroup, firstWordIndex, GLOBAL_OPTIONS, valueOptionWords, type Entry } from './command.js';

const PORTS = { name: 'PORTS', description: '80  80,443  8000-8100  53/udp  443/tcp  (no suffix: TCP and UDP)' } as const;

const WHO_OPTIONS = {
  user: { type: 'string', short: 'u', value: 'U', description: 'a user name or uid', complete: 'user' },
  group: {
    type: 'string',
    short: 'g',
    value: 'G',
    description: 'a group name or gid (members by primary or supplementary group)',
    complete: 'group',
  },
  everyone: { type: 'boolean', description: 'every user' },
  addr: {
    type: 'string',
    multiple: true,
    value: 'IP',
    description: 'only on this address (IPv4 or IPv6; repeat or comma-separate);\ndefault: any address',
  },
} as const;

/** `--file NAME`: the edits of grant, revoke, reserve and unreserve go to a drop-in (policy/sources.ts). */
const FILE_OPTION = {
  file: {
    type: 'string',
    value: 'NAME',
    description: 'edit the drop-in policy.d/NAME.policy (made if missing)\ninstead of the policy file; all files go live together',
  },
} as const;

export const doctor = defineCommand({
  path: ['doctor'],
  summary: 'why a port cannot be bound, and the best fix here',
  usage: ['[--port N]... [--user U] [--program PATH] [--json]'],
  description: `Tries real binds of each port (TCP and UDP, IPv4 and IPv6, wildcard and
loopback; nothing stays bound) as you, or as U when run as root; shows what
grants or blocks them (lowport's rules and reservations, the
ip_unprivileged_port_start sysctl, capabilities, setcap and setuid on
PROGRAM, authbind, other BPF programs) and what this machine supports; and
recommends one command to run next, with the alternatives. Needs no root.

Exit status: 0 when every port can be bound now, 1 when not, 2 on usage errors.`,
  options: {
    port: { type: 'string', short: 'p', multiple: true, value: 'N', description: 'a port to check (repeat; default 80 and 443)' },
    user: { type: 'string', short: 'u', value: 'U', description: 'test as this user (root only; default: you)', complete: 'user' },
    program: {
      type: 'string',
      value: 'PATH',
      description: 'the program you want to run: checks its file\ncapabilities, setuid bit and whether it is a script',
      complete: 'file',
    },
  },
  examples: ['lowport doctor', 'lowport doctor --port 443 --program /usr/sbin/nginx'],
  needsRoot: () => false,
  load: async () => (await import('./doctor.js')).doctor,
});

export const grant = defineCommand({
  path: ['grant'],
  summary: 'let a user or group bind ports',
  usage: ['PORTS [--user U | --group G | --everyone] [--addr IP]... [--file NAME]'],
  description: `Lets U (or every member of G, or everyone) bind PORTS, with any program, from
now on: the grant is written to the policy file (with --file, to the drop-in
policy.d/NAME.policy) and made live in the kernel.
Without --user/--group/--everyone: the invoking user (SUDO_USER under sudo).`,
  positionals: [PORTS],
  options: { ...WHO_OPTIONS, ...FILE_OPTION },
  examples: [
    'sudo lowport grant 80,443 --user alice',
    'sudo lowport grant 53/udp --group dns --addr 127.0.0.1 --addr ::1',
    'sudo lowport grant 80,443 --user www-data --file web',
  ],
  needsRoot: () => true,
  load: async () => (await import('./grant.js')).grant,
});

export const revoke = defineCommand({
  path: ['revoke'],
  summary: 'take back a grant',
  usage: [
    'PORTS [--user U | --group G | --everyone] [--addr IP]... [--file NAME]',
    '--all (--user U | --group G | --everyone) [--file NAME]',
  ],
  description: `Removes PORTS from the grants of exactly that user, group or everyone (a
group grant is revoked with --group, not per member). Without --addr, on
every address; with it, only there. Binds already made stay bound; new binds
are refused at once. --all removes every grant and reservation of U or G
(with --everyone: every grant to everyone). One file is edited: the policy
file, or with --file the drop-in policy.d/NAME.policy; what the other files
hold is said, not changed.`,
  positionals: [PORTS],
  options: { ...WHO_OPTIONS, all: { type: 'boolean', description: 'every rule of the user or group' }, ...FILE_OPTION },
  examples: ['sudo lowport revoke 443 --user alice', 'sudo lowport revoke --all --group dns'],
  needsRoot: () => true,
  load: async () => (await import('./grant.js')).revoke,
});

export const reserve = defineCommand({
  path: ['reserve'],
  summary: 'keep ports for one user or group',
  usage: ['PORTS (--user U | --group G) [--file NAME]'],
  description: `Keeps PORTS for U or G: they may bind them (as with grant), and so may root
and anyone the policy grants the port to by name; every other bind of those
ports fails with EPERM, even with CAP_NET_BIND_SERVICE or a lowered
net.ipv4.ip_unprivileged_port_start. Works on ports above 1024 too, so
another program cannot take your port while yours is down.`,
  positionals: [PORTS],
  options: {
    user: WHO_OPTIONS.user,
    group: { type: 'string', short: 'g', value: 'G', description: 'a group name or gid', complete: 'group' },
    everyone: { type: 'boolean', description: 'refused: a reservation for everyone reserves nothing' },
    ...FILE_OPTION,
  },
  examples: ['sudo lowport reserve 8443 --user www-data'],
  needsRoot: () => true,
  load: async () => (await import('./reserve.js')).reserve,
});

export const unreserve = defineCommand({
  path: ['unreserve'],
  summary: 'end a reservation',
  usage: ['PORTS [--file NAME]'],
  description: 'Ends every reservation of PORTS, whoever it was for, in the policy file (with --file, in that drop-in).',
  positionals: [PORTS],
  options: { ...FILE_OPTION },
  needsRoot: () => true,
  load: async () => (await import('./reserve.js')).unreserve,
});

export const list = defineCommand({
  path: ['list'],
  summary: 'show the rules live in the kernel',
  usage: ['[--json]'],
  description: `Shows the rules as they are live in the kernel (read back from lowport's map,
not from the file), how many binds each has granted (a reservation: also how
many it refused), whether they match the policy file, and any other BPF
programs on the bind hooks.`,
  options: {},
  whyRoot:
    "it reads lowport's BPF map, pinned in /sys/fs/bpf, which only root may open, " +
    'and the programs on the bind hooks, which the kernel shows only to root (CAP_NET_ADMIN)',
  needsRoot: () => true,
  load: async () => (await import('./list.js')).list,
});

export const logShow = defineCommand({
  path: ['log'],
  summary: 'show who used a grant and who was refused (the audit trail)',
  usage: ['[--follow [--journal]] [--json]'],
  description: `Prints the events of the audit trail that a 'log grants', 'log refusals' or
'log all' statement of the policy turns on: for each bind granted or refused
by a reservation, the time, verdict, protocol, address and port, the process
(pid and its name, escaped: the process chose it), the user and group, the
cgroup id and the policy line. The events pass through a BPF ring buffer
(Linux 5.8), which has one reader. Without --follow, lowport log shows what
is in the ring and takes nothing from it; the lowport-log service (installed
by 'lowport install') is the reader that takes them, and what it took is in
the journal: journalctl -u lowport-log. Each event names the statement that
decided as 'lowport list' names rules: its line in the policy file, or
policy.d/NAME.policy:LINE in a drop-in. 'lowport log enable' and 'lowport log
disable' turn the audit trail on and off.`,
  options: {
    follow: { type: 'boolean', short: 'f', description: 'be the reader: print each event as it comes, until interrupted' },
    journal: {
      type: 'boolean',
      description: 'with --follow: write each event to the journal with structured fields (syslog without journald)',
    },
  },
  examples: ['sudo lowport log', 'sudo lowport log --follow --json', 'journalctl -u lowport-log -o verbose'],
  whyRoot: "it reads lowport's ring buffer, pinned in /sys/fs/bpf, which only root may open",
  needsRoot: () => true,
  load: async () => (await import('./log.js')).log,
});

const LOG_WHAT = {
  name: 'WHAT',
  description: 'grants (each bind a grant allowed), refusals (each a reservation refused) or all (default)',
  choices: LOG_WHATS,
} as const;

export const logEnable = defineCommand({
  path: ['log', 'enable'],
  summary: "turn the audit trail on: write a 'log' statement and make it live",
  usage: ['[grants|refusals|all] [--file NAME]'],
  description: `Writes 'log WHAT' to the policy file (with --file, to the drop-in
policy.d/NAME.policy) and makes the policy live, in one locked step as
grant does: nothing live changes when the edit fails. The file's 'log'
statement is replaced; when another file of the policy already holds one,
nothing is changed and the error names that file and the command that edits
it there. Needs Linux 5.8 (a BPF ring buffer).`,
  positionals: [LOG_WHAT],
  options: { ...FILE_OPTION },
  examples: ['sudo lowport log enable', 'sudo lowport log enable refusals --file audit'],
  whyRoot: "it edits the policy file and swaps lowport's bind program in the kernel",
  needsRoot: () => true,
  load: async () => (await import('./log.js')).enable,
});

export const logDisable = defineCommand({
  path: ['log', 'disable'],
  summary: "turn the audit trail off: remove the 'log' statement and make it live",
  usage: ['[--file NAME]'],
  description: `Removes the 'log' statement from the file of the policy that holds it (it
says which) and makes the policy live, in one locked step as revoke does:
the bind program then has no logging instructions. With --file, only from
the drop-in policy.d/NAME.policy. When no file has one, nothing changes.`,
  options: { ...FILE_OPTION },
  examples: ['sudo lowport log disable'],
  whyRoot: "it edits the policy file and swaps lowport's bind program in the kernel",
  needsRoot: () => true,
  load: async () => (await import('./log.js')).disable,
});

export const log = defineGroup({
  path: ['log'],
  summary: 'show who used a grant and who was refused (the audit trail)',
  description: `The audit trail: 'lowport log' prints its events; 'lowport log enable'
and 'lowport log disable' turn it on and off, editing the policy's 'log'
statement and making it live as 'lowport grant' does.`,
  alone: logShow,
  subcommands: [logEnable, logDisable],
  examples: ['sudo lowport log enable refusals', 'sudo lowport log --follow', 'sudo lowport log disable'],
});

export const apply = defineCommand({
  path: ['apply'],
  summary: 'load the policy file into the kernel',
  usage: ['[--check]', '--check --file NAME --candidate PATH'],
  description: `Loads the policy file and its drop-ins (policy.d/*.policy beside it, in
name order) as one policy. Every file is checked first (syntax, ownership);
on such an error nothing changes and every problem is shown with its file,
line and column. A user or group that does not exist costs only its own lines: they
are reported as errors (exit status 1) and everything else goes live; a
grant to it is left out, and a reservation for it refuses everyone but root.
The switch from the old rules to the new is one step: every bind sees either
the old policy or the new one.`,
  options: {
    check: { type: 'boolean', description: 'only check the files; needs no root' },
    file: { type: 'string', value: 'NAME', description: 'with --candidate: the drop-in it would become (policy.d/NAME.policy)' },
    candidate: {
      type: 'string',
      value: 'PATH',
      description: "with --check: check the policy as it would be with\nPATH as drop-in NAME (for Ansible's validate: %s)",
      complete: 'file',
    },
  },
  examples: ['lowport apply --check', 'sudo lowport apply', 'lowport apply --check --file web --candidate /tmp/web.policy'],
  needsRoot: (values) => values.check !== true,
  load: async () => (await import('./apply.js')).apply,
});

export const off = defineCommand({
  path: ['off'],
  summary: 'remove everything lowport put in the kernel',
  usage: [''],
  description: `Ends every grant and reservation at once, then removes lowport's programs,
links, map and pins. The policy file stays; \`lowport apply\` brings it back.
Running \`lowport run\`s lose their grants too, for good (they go on without
them); off lists them.`,
  options: {},
  needsRoot: () => true,
  load: async () => (await import('./apply.js')).off,
});

export const run = defineCommand({
  path: ['run'],
  summary: 'run one command with low ports, for it alone',
  usage: [
    '--port PORTS [--user U] [--addr IP]... [--stop-timeout S] -- COMMAND [ARGS...]',
    `--sockets --port PORTS [--addr IP]... [--backlog N] [--v6-only] [--no-pid] [--restart]
      [--stop-timeout S] [--user U] -- COMMAND...`,
    '--caps [--stop-timeout S] [--user U] -- COMMAND [ARGS...]',
    `--accept --port PORTS [--addr IP]... [--max-conns N] [--max-per-ip N]
      [--drain-timeout S] [--log] [--backlog N] [--v6-only] [--user U] -- COMMAND...`,
  ],
  description: `Runs COMMAND as U (default: the user who ran sudo) with every privilege
dropped: U's uid and gid (real, effective, saved) and groups, no
capabilities, no_new_privs, a fresh session keyring, none of lowport's open
fds; HOME, USER and LOGNAME are U's. On a terminal, it runs on a pty of its
own that lowport relays (closed when it ends: what it leaves behind cannot
read the terminal). lowport exits with its status (128+N when signal N
killed it). It is stopped as systemd stops a service (KillMode=control-group):
SIGINT, SIGTERM and SIGQUIT to lowport go to every process of COMMAND (a
wrapper's server too: npm run, sh -c), SIGHUP to COMMAND alone; what is still
running --stop-timeout later gets SIGKILL. When COMMAND exits, what it left
running is stopped the same way.

Default: PORTS are granted to a cgroup made for the command, so the command
and everything it starts may bind them, and nothing else may (other programs
of U included, unless they may ptrace the command: kernel.yama.ptrace_scope
0). Not written to the policy file; gone when the command's cgroup empties.

--accept: a per-connection server (tcpserver, inetd): lowport binds the TCP
PORTS, then an accept loop runs as U and starts COMMAND once per connection,
with the connection as stdin and stdout, and PROTO, TCPLOCALIP, TCPLOCALPORT,
TCPREMOTEIP and TCPREMOTEPORT set (tcp-environ(5); PROTO=TCP6 for IPv6).`,
  positionals: [{ name: 'COMMAND', description: 'the program to run, and its arguments, after --', complete: 'command' }],
  options: {
    port: {
      type: 'string',
      short: 'p',
      multiple: true,
      value: 'PORTS',
      description: `the ports (repeat or comma-separate):\n${PORTS.description}`,
    },
    user: {
      type: 'string',
      short: 'u',
      value: 'U',
      description: 'run COMMAND as this user (default: the user who ran sudo)',
      complete: 'user',
    },
    addr: { type: 'string', multiple: true, value: 'IP', description: 'only on this address (repeat or comma-separate)' },
    sockets: {
      type: 'boolean',
      description: `lowport binds PORTS itself and passes them as fds 3, 4, ... with
LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (tcp-80, udp-53, ...):
systemd socket activation (sd_listen_fds(3)); for programs that
take sockets that way. Needs no BPF. Default address: ::
(dual-stack); --addr picks others.`,
    },
    backlog: { type: 'string', value: 'N', description: 'with --sockets or --accept: the listen(2) backlog (4096)' },
    'v6-only': { type: 'boolean', description: 'with --sockets or --accept: keep IPv6 sockets IPv6-only' },
    'no-pid': {
      type: 'boolean',
      description: `with --sockets: leave LISTEN_PID out (as systemfd --no-pid), for a
server that a wrapper starts as its child (a shell script, make,
cargo watch), if it takes the fds without checking LISTEN_PID
(Node's listen({ fd: 3 }), Rust's listenfd; not libsystemd's
sd_listen_fds, which wants LISTEN_PID to be its own pid). npm,
nodemon and other Node.js runners pass no fd on at all.`,
    },
    restart: {
      type: 'boolean',
      description: `with --sockets: when COMMAND exits, start it again with the same
sockets, which lowport keeps open (clients wait in the backlog);
slower and slower while it exits within 2 s. A signal to lowport,
or ^C on COMMAND's terminal, ends it.`,
    },
    caps: {
      type: 'boolean',
      description: `COMMAND keeps CAP_NET_BIND_SERVICE (ambient): it and every
process it starts may bind EVERY port below 1024. Needs no BPF;
prefer the default where the kernel allows it.`,
    },
    accept: {
      type: 'boolean',
      description: `lowport binds the TCP PORTS (default address :: for IPv4
and IPv6) and starts COMMAND once per connection, with the
connection as fds 0 and 1 and the UCSPI-TCP variables, as
tcpserver does; the accept loop and every COMMAND run as U. TCP
only. SIGTERM drains: no new connections, running ones finish.`,
    },
    'max-conns': {
      type: 'string',
      value: 'N',
      description: `with --accept: COMMANDs running at once (${ACCEPT_DEFAULTS.maxConns}); a connection
over it is closed at once and logged`,
    },
    'max-per-ip': {
      type: 'string',
      value: 'N',
      description: `with --accept: COMMANDs running at once for one client address
(${ACCEPT_DEFAULTS.maxPerIp}); a connection over it is closed at once and logged`,
    },
    'drain-timeout': {
      type: 'string',
      value: 'S',
      description: `with --accept: on SIGTERM, running COMMANDs get this long before
SIGTERM and then SIGKILL (${ACCEPT_DEFAULTS.drainTimeoutMs / 1000}; 0: at once; a second SIGTERM: now)`,
    },
    log: { type: 'boolean', description: 'with --accept: one line per connection on stderr (refusals are always logged)' },
    'stop-timeout': {
      type: 'string',
      value: 'S',
      description: `on a stop (SIGINT, SIGTERM or SIGQUIT to lowport, or COMMAND's exit with
processes left), COMMAND's processes get this long after the signal
before SIGKILL (${STOP_TIMEOUT_MS / 1000}; 0: SIGKILL at once), as systemd's TimeoutStopSec`,
    },
  },
  examples: [
    'sudo lowport run --port 80 --user www -- python3 -m http.server 80',
    'sudo lowport run --sockets --port 80/tcp -- node server.js',
    'sudo lowport run --sockets --no-pid --port 80/tcp -- ./dev.sh',
    'sudo lowport run --sockets --restart --port 80/tcp -- node server.js',
    'sudo lowport run --accept --port 79 --user nobody -- /usr/local/bin/finger.sh',
  ],
  misses: {
    group: 'it runs COMMAND as one user, given with --user U (a group is for `lowport grant PORTS --group G`)',
    everyone: 'it runs COMMAND as one user, given with --user U (everyone is for `lowport grant PORTS --everyone`)',
  },
  whyRoot: 'it starts COMMAND as another user, with ports only root can give',
  needsRoot: () => true,
  load: async () => (await import('./run.js')).run,
});

const ADDR_REDIRECT = {
  type: 'string',
  multiple: true,
  value: 'IP',
  description: 'only packets to this address of the host (repeat, or a comma list)',
} as const;

export const forwardAdd = defineCommand({
  path: ['forward', 'add'],
  summary: 'redirect a low port to a high one of this host (nftables)',
  usage: ['PORT[/tcp|/udp] TO [--addr IP]... [--persist]'],
  description: `Kernel redirect: nftables rules in lowport's own table (inet
lowport: IPv4 and IPv6, never anyone else's table) send packets for PORT that
are addressed to this host, from other hosts and from this one, to port TO.
The server sees the client's real address; nothing is copied in userspace.
The rules last as long as this command: Ctrl-C, SIGTERM or SIGHUP removes
them, and rules left by a killed lowport are removed by the next
\`lowport forward add\` (or \`lowport forward gc\`). Without /tcp or /udp, both
are forwarded.`,
  positionals: [
    { name: 'PORT', description: 'the low port, with /tcp or /udp or neither for both' },
    { name: 'TO', description: 'the port of this host it goes to' },
  ],
  options: {
    addr: ADDR_REDIRECT,
    persist: {
      type: 'boolean',
      description: `write 'forward PORT to TO' to the policy file and return: the
redirect stays, and \`lowport apply\` restores it (after a reboot)`,
    },
  },
  examples: ['sudo lowport forward add 80/tcp 8080', 'sudo lowport forward add 443/tcp 8443 --persist'],
  whyRoot: 'it adds nftables rules, which only root may change',
  needsRoot: () => true,
  load: async () => (await import('./forward.js')).add,
});

export const forwardRemove = defineCommand({
  path: ['forward', 'remove'],
  summary: 'take a persisted forward out of the policy file and the kernel',
  usage: ['PORT[/tcp|/udp]'],
  description: 'Takes a persisted forward (`lowport forward add --persist`) out of the policy file and the kernel.',
  positionals: [{ name: 'PORT', description: 'the forwarded port, as it was added' }],
  options: {},
  examples: ['sudo lowport forward remove 443/tcp'],
  whyRoot: 'it edits the policy file and removes nftables rules, which only root may change',
  needsRoot: () => true,
  load: async () => (await import('./forward.js')).remove,
});

export const forwardList = defineCommand({
  path: ['forward', 'list'],
  summary: "every redirect of lowport's, with its owner",
  usage: ['[--json]'],
  description:
    "Shows every redirect of lowport's, with its owner: the lowport process that holds it, or the policy file it was persisted to.",
  options: {},
  whyRoot: "it reads lowport's nftables table, and the kernel shows nftables rules only to root (CAP_NET_ADMIN)",
  needsRoot: () => true,
  load: async () => (await import('./forward.js')).list,
});

export const forwardGc = defineCommand({
  path: ['forward', 'gc'],
  summary: 'remove the redirects whose lowport process died',
  usage: [''],
  description: 'Removes the redirects whose lowport process died, and the persisted ones whose policy file is gone.',
  options: {},
  whyRoot: 'it removes nftables rules, which only root may change',
  needsRoot: () => true,
  load: async () => (await import('./forward.js')).gc,
});

export const forwardServe = defineCommand({
  path: ['forward', 'serve'],
  summary: 'forward a low port in userspace, to this host or another',
  usage: [
    `PORT[/tcp|/udp] [HOST:]TO [--addr IP]... [--user U]
      [--proxy-protocol v1|v2] [--log] [--workers N] [--max-conns N]
      [--connect-timeout S] [--idle-timeout S] [--drain-timeout S] [--udp-timeout S]`,
  ],
  description: `Userspace forwarder: binds PORT (default on :: for IPv4 and
IPv6; --addr for others), then copies each connection to HOST:TO (default
host 127.0.0.1). Started as root, it binds and then runs as --user (default
lowport, a system user of its own, created on first use) with every
privilege dropped. Without /tcp or /udp, both are forwarded.`,
  positionals: [
    { name: 'PORT', description: 'the low port, with /tcp or /udp or neither for both' },
    { name: '[HOST:]TO', description: 'the backend (default host 127.0.0.1; [::1]:8080 for IPv6)' },
  ],
  options: {
    addr: { type: 'string', multiple: true, value: 'IP', description: 'bind on this address instead of :: (repeat, or a comma list)' },
    user: { type: 'string', short: 'u', value: 'U', description: 'run as this user (default lowport)', complete: 'user' },
    'proxy-protocol': {
      type: 'string',
      value: 'v1|v2',
      choices: ['v1', 'v2'],
      description: `send a PROXY protocol header first, so the backend
sees the client's address (nginx: listen ... proxy_protocol)`,
    },
    log: { type: 'boolean', description: 'one line per connection on stderr' },
    workers: { type: 'string', value: 'N', description: 'threads sharing the TCP port (default: half the CPUs, 1 to 4)' },
    'max-conns': { type: 'string', value: 'N', description: `TCP connections (and UDP sessions) at once (${DEFAULTS.maxConnections})` },
    'connect-timeout': { type: 'string', value: 'S', description: `to the backend (${DEFAULTS.connectTimeoutMs / 1000})` },
    'idle-timeout': {
      type: 'string',
      value: 'S',
      description: `close a connection silent both ways this long (${DEFAULTS.idleTimeoutMs / 1000}; 0: never)`,
    },
    'drain-timeout': {
      type: 'string',
      value: 'S',
      description: `on SIGTERM, open connections get this long to finish (${DEFAULTS.drainTimeoutMs / 1000}; 0: close them at once)`,
    },
    'udp-timeout': {
      type: 'string',
      value: 'S',
      description: `a UDP client's session ends after this long without traffic (${DEFAULTS.udpTimeoutMs / 1000})`,
    },
  },
  examples: [
    'sudo lowport forward serve 80/tcp 8080 --proxy-protocol v2 --log',
    'sudo lowport forward serve 443/tcp 10.0.0.5:8443 --user www-data',
  ],
  // A user granted the port may run the userspace forwarder without root.
  whyRoot: 'it runs as --user, and only root may switch to another user',
  needsRoot: (values) => values.user !== undefined,
  load: async () => (await import('./forward.js')).serve,
});

/** The old spellings (`lowport forward 80 8080`, `--list`, `--gc`, `--remove P`, `--userspace`): kept for one release. */
const LEGACY_MODES: Record<string, string> = { '--list': 'list', '--gc': 'gc', '--remove': 'remove', '--userspace': 'serve' };

/**
 * The first word of an old-style `forward` line that is neither an option nor an option's value (`lowport forward --addr
 * fd00::1 80 8080` is the add of port 80): the value-taking options of every forward subcommand and the global ones.
 */
function firstPortWord(args: string[]): string | undefined {
  const commands = [forwardAdd, forwardRemove, forwardList, forwardGc, forwardServe];
  const takesValue = new Set([GLOBAL_OPTIONS, ...commands.map((c) => c.options ?? {})].flatMap(valueOptionWords));
  const i = firstWordIndex(args, takesValue);
  return i < 0 ? undefined : args[i];
}

export const forward = defineGroup({
  path: ['forward'],
  summary: 'redirect a low port to a high one (nftables), or forward it in userspace',
  description: `For servers that cannot bind the low port themselves: a kernel redirect
(nftables) to a port of this host, or a userspace forwarder to this host or
another.

The spellings of lowport 0.1 still work until the next release, with a note:
\`lowport forward PORT TO\` (add), --remove PORT, --list, --gc and
--userspace (serve).`,
  subcommands: [forwardAdd, forwardRemove, forwardList, forwardGc, forwardServe],
  examples: ['sudo lowport forward add 80/tcp 8080', 'sudo lowport forward list'],
  legacy: (args, first) => {
    const modes = args.filter((a) => LEGACY_MODES[a.split('=')[0] ?? ''] !== undefined);
    const flags = [...new Set(modes.map((m) => m.split('=')[0] ?? ''))];
    if (flags.length > 1) throw new UsageError(`give only one of ${flags.join(', ')}`);
    const mode = modes[0];
    if (mode === undefined) {
      const port = firstPortWord(args) ?? first;
      if (port === undefined || !/^[0-9]/.test(port)) return undefined;
      return {
        args: ['add', ...args],
        note: 'note: `lowport forward PORT TO` is now `lowport forward add PORT TO`; the old spelling goes away in the next release',
      };
    }
    const flag = flags[0] ?? '';
    const sub = LEGACY_MODES[flag] ?? '';
    const value = mode.includes('=') ? [mode.slice(mode.indexOf('=') + 1)] : [];
    return {
      args: [sub, ...value, ...args.filter((a) => a !== mode)],
      note: `note: \`lowport forward ${flag}\` is now \`lowport forward ${sub}\`; the old spelling goes away in the next release`,
    };
  },
});

export const importAuthbind = defineCommand({
  path: ['import-authbind'],
  summary: 'turn authbind configuration into policy rules',
  usage: ['[--dir DIR] [--apply]'],
  description: `Reads DIR (default /etc/authbind): byport/PORT files (whoever may execute the
file may bind the port, as access(2) decides: the owner by the owner's bits,
the group's members by the group's), byaddr/ADDR,PORT files and byuid/UID
lines, in authbind's order (the first file that exists decides; names for
ports 512-1023 start with '!'), and prints the equivalent policy rules. What
lowport cannot say exactly ("everyone but group G", address ranges, networks)
is not imported but named in a comment: the result never allows more than
authbind did. Symlinks in the tree are not followed (skipped, with a note).
With --apply, adds the rules to the policy and makes them live (root); DIR,
every directory above it and its byport/, byaddr/ and byuid/ must then be
root's alone, as for the policy (files in them may be users'). Without
--apply, such a tree is only warned about on stderr.`,
  options: {
    dir: { type: 'string', value: 'DIR', description: "authbind's configuration (default /etc/authbind)", complete: 'directory' },
    apply: { type: 'boolean', description: 'add the rules to the policy and make them live (root)' },
  },
  examples: ['lowport import-authbind', 'sudo lowport import-authbind --apply'],
  needsRoot: (values) => values.apply === true,
  load: async () => (await import('./import-authbind.js')).importAuthbind,
});

const ROOT_OPTION = {
  root: { type: 'string', value: 'DIR', description: 'install into an image or another root (systemctl --root)', complete: 'directory' },
} as const;

export const install = defineCommand({
  path: ['install'],
  summary: 'apply the policy at every boot (systemd unit)',
  usage: ['[--root DIR]'],
  description: `Writes and enables /etc/systemd/system/lowport.service, which runs
\`lowport apply\` at boot, after local filesystems and user lookups and before
the network comes up (so before network services bind), and \`lowport off\`
when stopped. Creates /etc/lowport/policy if it does not exist. Without
systemd, says what to add to the boot sequence instead. Refuses to point the
unit at a lowport that a user could change or that may be gone at the next
boot: a source checkout, a directory \`npm install -g .\` linked, /tmp; install
the Debian package, or \`npm install -g ./lowport-VERSION.tgz\` (from \`npm pack\`).
With --root, the unit runs the image's own lowport (/usr/bin/lowport of the
package) at the image's boots.`,
  options: ROOT_OPTION,
  whyRoot: 'it writes and enables a systemd unit and the policy file in /etc',
  needsRoot: () => true,
  load: async () => (await import('./install.js')).install,
});

export const uninstall = defineCommand({
  path: ['uninstall'],
  summary: 'undo install',
  usage: ['[--purge] [--root DIR]'],
  description: `Disables and removes lowport.service. Keeps the policy file unless --purge.
Grants live now stay until reboot or \`lowport off\`.`,
  options: { ...ROOT_OPTION, purge: { type: 'boolean', description: 'remove the policy file too' } },
  whyRoot: 'it disables and removes a systemd unit in /etc',
  needsRoot: () => true,
  load: async () => (await import('./install.js')).uninstall,
});

export const unit = defineCommand({
  path: ['unit'],
  summary: 'print a hardened systemd service for a server on low ports',
  usage: ['NAME --user U --port PORTS [--socket] [--output-dir DIR] -- COMMAND [ARGS...]'],
  description: `Prints NAME.service: COMMAND runs as U with CAP_NET_BIND_SERVICE as its only
capability (ambient, and the whole bounding set), NoNewPrivileges=yes, and
SocketBindAllow=/SocketBindDeny=any so it may bind PORTS and no other port,
plus the usual sandboxing. With --socket: NAME.socket binds PORTS and passes
them to NAME.service (socket activation), which then needs no capability at
all. --output-dir writes the files there instead of printing them.

U must be an existing account other than root. COMMAND is written as an
absolute path: a bare name is looked up in PATH (and lowport says which file
it chose), a relative path is made absolute; systemd's prefixes (+ - @ : !)
are refused. Every word is quoted for systemd, % and $ included.`,
  positionals: [
    { name: 'NAME', description: 'the unit name, without .service' },
    { name: 'COMMAND', description: 'the server and its arguments, after --', complete: 'command' },
  ],
  options: {
    user: { type: 'string', short: 'u', value: 'U', description: 'the account the service runs as (not root)', complete: 'user' },
    port: { type: 'string', short: 'p', multiple: true, value: 'PORTS', description: 'the ports it may bind (repeat or comma-separate)' },
    socket: { type: 'boolean', description: 'also write NAME.socket, which binds PORTS (socket activation)' },
    'output-dir': { type: 'string', value: 'DIR', description: 'write the files there instead of printing them', complete: 'directory' },
  },
  examples: ['lowport unit web --user www-data --port 80,443 -- /usr/sbin/nginx -g "daemon off;"'],
  needsRoot: () => false,
  load: async () => (await import('./unit.js')).unit,
});

export const completion = defineCommand({
  path: ['completion'],
  summary: 'print the bash or zsh completion script',
  usage: ['bash|zsh'],
  description: `Prints the completion script for SHELL, generated from the same declarations
as this help. Packages install them where the shells look; by hand:
\`lowport completion bash > /etc/bash_completion.d/lowport\`.`,
  positionals: [{ name: 'SHELL', description: 'bash or zsh', choices: ['bash', 'zsh'] }],
  options: {},
  examples: ['source <(lowport completion bash)'],
  needsRoot: () => false,
  load: async () => (await import('./completion.js')).completionCommand,
});

/** Every command, in the order `lowport --help` lists them. */
export const COMMANDS: readonly Entry[] = [
  doctor,
  grant,
  revoke,
  reserve,
  unreserve,
  list,
  log,
  apply,
  off,
  run,
  forward,
  install,
  uninstall,
  unit,
  importAuthbind,
  completion,
];
