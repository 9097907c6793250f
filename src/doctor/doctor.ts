/**
 * `lowport doctor`: why can't this user bind this port, and what is the
 * simplest safe fix on this machine? Works without root (what only root can
 * see is marked as such), on any Linux, in well under a second.
 */
import { fileURLToPath } from 'node:url';
import { compileDocument } from '../grants/document.js';
import { list, type ListResult } from '../ops/list.js';
import { Kind } from '../grants/map-format.js';
import { addressKey } from '../grants/compile.js';
import type { ResolvedRule } from '../grants/resolve.js';
import { bindHookByVersion, DEFAULT_PIN_DIR, policyPath, probeText, unsupportedMessage, type LowportOptions } from '../grants/target.js';
import { LowportError } from '../errors.js';
import { CAP_NET_BIND_SERVICE, fileCapabilities, hasCap, parseStatusCaps } from '../os/capabilities.js';
import { findCgroup2Root } from '../os/cgroup.js';
import { fileOwnership } from '../os/files.js';
import { shebang } from '../os/program-place.js';
import { mountOf } from '../os/mounts.js';
import { socketOwners, socketsOnPort } from '../os/netstat.js';
import { lookupUsers, userByNameOrUid, type PasswdEntry } from '../os/nss.js';
import { effectiveUid, pathExists, pathState, processStatus, realPath, systemTool, which } from '../os/process.js';
import { findNft } from '../os/nft.js';
import { checkIdentity, LAUNCH_FAILED, launchSync, userEnvironment } from '../os/launch.js';
import { probeCoarseTime, probeFeatures, probeRingbuf, probeSetRetval, probeTaskBtf, type FeatureResult } from '../bpf/probes.js';
import {
  detectContainer,
  initNetNamespace,
  isWsl,
  kernelRelease,
  kernelVersion,
  netNamespace,
  readSysctl,
  systemdRunning,
} from '../os/system.js';
import { lineRef, originOf } from '../policy/origin.js';
import { readPolicy } from '../policy-file/policy-file.js';
import { fileKind, readPolicyFile } from '../policy-file/trust.js';
import { formatPrincipal } from '../policy/print.js';
import { formatPorts } from '../policy/ports.js';
import { shellQuote } from '../text.js';
import { byportName, mayExecute, nssNames } from '../integrate/authbind.js';
import { bindTest, UNAVAILABLE, type BindAttempt } from './bind-test.js';
import { recommend, type PortVerdict, type Recommendation } from './recommend.js';

export type CheckStatus = 'ok' | 'fail' | 'info';

export interface Check {
  id: string;
  status: CheckStatus;
  detail: string;
}

type Combo = 'tcp4' | 'tcp6' | 'udp4' | 'udp6';

export interface PortReport {
  port: number;
  /** Per protocol and family: every address (wildcard, loopback) bound; null when the family is not available here. */
  canBind: Record<Combo, boolean | null>;
  /** Per protocol and family: the first error, or null. */
  error: Record<Combo, string | null>;
  attempts: BindAttempt[];
  heldBy: { protocol: string; family: number; uid: number; pid?: number; command?: string }[];
}

export interface DoctorReport {
  user: { name: string; uid: number; gid: number };
  ports: PortReport[];
  checks: Check[];
  recommendation: Recommendation;
  alternatives: Recommendation[];
  /** Every asked port can be bound now by the user. */
  ok: boolean;
}

export interface DoctorOptions extends LowportOptions {
  ports?: number[];
  /** Test as this user (root only); default the caller. */
  user?: string;
  /** A program the user wants to run, to check its setuid bit, file capabilities and shebang. */
  program?: string;
  /** How the lowport command is spelled in the recommendation. */
  lowportCommand?: string;
}

const PROBE = fileURLToPath(new URL('./probe-main.js', import.meta.url));

export function doctor(options: DoctorOptions = {}): DoctorReport {
  const ports = options.ports ?? [80, 443];
  const asRoot = effectiveUid() === 0;
  const user = resolveUser(options.user, asRoot);
  const checks: Check[] = [];

  // The real bind test, as the user.
  const self = user.uid === effectiveUid();
  const tested: { port: number; attempts: BindAttempt[] }[] = self
    ? ports.map((port) => ({ port, attempts: bindTest(port) }))
    : probeAs(user, ports);
  const portReports = tested.map(({ port, attempts }) => portReport(port, attempts));

  // The machine.
  const machine = machineChecks(asRoot);
  checks.push(...machine.checks);

  // lowport: the policy file, and (root) what is live.
  const path = policyPath(options);
  const live = asRoot ? tryList(options) : undefined;
  // The ids the bind hook sees for the test: this process's real ids, or the user's passwd ids (probeAs).
  const caller = self ? { uid: user.uid, gid: realGid(), groups: supplementaryGroups() } : { uid: user.uid, gid: user.gid, groups: [] };
  const program = options.program === undefined ? undefined : describeProgram(options.program);
  const policy = policyChecks(path, user, caller, portReports, live, options, program);
  checks.push(...policy.checks);
  checks.push(...unheldChecks(portReports, policy.reservations));

  checks.push(sysctlCheck(), capabilityCheck(self, user));
  if (options.program !== undefined) checks.push(...programChecks(options.program, user));
  checks.push(authbindCheck(user, ports));

  const verdicts: PortVerdict[] = portReports.map((r) => ({
    port: r.port,
    canBind: Object.values(r.canBind).every((v) => v !== false),
    errors: [...new Set(r.attempts.flatMap((a) => (a.error === undefined || UNAVAILABLE.has(a.error) ? [] : [a.error])))],
    heldBy: r.heldBy,
    ...(policy.reservations.get(r.port) === undefined ? {} : { reservedFor: policy.reservations.get(r.port) }),
    grantedBy: policy.grants.get(r.port) ?? [],
    ...(policy.notLive.has(r.port) ? { notLive: policy.notLive.get(r.port) } : {}),
    boundOn: [...new Set(r.attempts.filter((a) => a.error === undefined).map((a) => a.address))],
    ...(policy.jvmWildcard.has(r.port) ? { jvmWildcardOnly: policy.jvmWildcard.get(r.port) } : {}),
  }));
  const { recommendation, alternatives } = recommend({
    user: user.name,
    uid: user.uid,
    ports: verdicts,
    policyFile: path,
    bpfGrantPossible: machine.bpfMissing.length === 0,
    bpfMissing: machine.bpfMissing,
    // Root sees what is live; others only whether lowport's pins are there at all.
    policyNotApplied:
      live !== undefined ? !live.live || live.file !== 'in-sync' : pathState(options.pinDir ?? DEFAULT_PIN_DIR) === 'absent',
    systemd: systemdRunning(),
    nft: findNft() !== undefined,
    ...(program === undefined ? {} : { program }),
    sysctlStart: Number(readSysctl('net.ipv4.ip_unprivileged_port_start') ?? 1024),
    lowport: options.lowportCommand ?? 'lowport',
  });
  return {
    user: { name: user.name, uid: user.uid, gid: user.gid },
    ports: portReports,
    checks,
    recommendation,
    alternatives,
    ok: verdicts.every((v) => v.canBind),
  };
}

/**
 * The bind test as another user (doctor run by root): probe-main.js started
 * as the user the way `lowport run` starts commands (os/launch.ts): every
 * privilege dropped, the user's minimal environment (not root's, which the
 * user could read in /proc), a fresh session keyring, no fd of root's.
 */
function probeAs(user: PasswdEntry & { known: boolean }, ports: number[]): { port: number; attempts: BindAttempt[] }[] {
  const identity = { uid: user.uid, gid: user.gid, ...(user.known ? { name: user.name } : {}) };
  checkIdentity(
    identity,
    'Give --user a normal user (a name from `getent passwd`, or its uid); a user whose primary group is root (gid 0) is refused too.',
  );
  const r = launchSync([process.execPath, PROBE, ports.join(',')], { identity, env: userEnvironment(user) }, 30_000);
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status ?? r.signal}`).trim().split('\n')[0];
    throw new LowportError('E_STATE', `could not run the bind test as uid ${user.uid}: ${why}`, {
      hint:
        r.status === LAUNCH_FAILED
          ? 'The privilege drop did not give the expected ids; check setpriv(1) (util-linux) on this machine.'
          : 'The user must be able to read Node and lowport (install lowport where every user can read it), or run doctor as that user.',
    });
  }
  return JSON.parse(r.stdout) as { port: number; attempts: BindAttempt[] }[];
}

function resolveUser(name: string | undefined, asRoot: boolean): PasswdEntry & { known: boolean } {
  const key = name ?? String(effectiveUid());
  if (name !== undefined && !asRoot) {
    const me = lookupUsers([String(effectiveUid())]).get(String(effectiveUid()));
    if (me === undefined || (me.name !== name && String(me.uid) !== name)) {
      throw new LowportError('E_NOT_ROOT', `testing binds as another user (${name}) needs root`, {
        hint: `Run \`sudo lowport doctor --user ${shellQuote(name)}\`, or run doctor as ${name}.`,
      });
    }
  }
  return userByNameOrUid(key, 'Give a user name or uid that `getent passwd` knows.');
}

function portReport(port: number, attempts: BindAttempt[]): PortReport {
  const canBind = {} as Record<Combo, boolean | null>;
  const error = {} as Record<Combo, string | null>;
  for (const combo of ['tcp4', 'tcp6', 'udp4', 'udp6'] as const) {
    const mine = attempts.filter((a) => `${a.protocol}${a.family}` === combo);
    const failures = mine.filter((a) => a.error !== undefined);
    const unavailable = mine.length > 0 && failures.length === mine.length && failures.every((a) => UNAVAILABLE.has(a.error ?? ''));
    canBind[combo] = unavailable ? null : failures.length === 0;
    error[combo] = failures[0]?.error ?? null;
  }
  const heldBy: PortReport['heldBy'] = [];
  if (attempts.some((a) => a.error === 'EADDRINUSE')) {
    const sockets = socketsOnPort(port).filter((s) => s.protocol === 'udp' || s.state === '0A');
    const owners = socketOwners(sockets.map((s) => s.inode));
    for (const s of sockets) {
      const owner = owners.get(s.inode);
      heldBy.push({
        protocol: s.protocol,
        family: s.family,
        uid: s.uid,
        ...(owner === undefined ? {} : { pid: owner.pid, command: owner.command }),
      });
    }
  }
  return { port, canBind, error, attempts, heldBy };
}

/**
 * What a user refused by a reservation gets: EPERM, or, where the bind hook
 * sets its errno (bpf_set_retval), EADDRINUSE, as from a port in use. The
 * hook runs before the kernel looks for a socket on the port, so the errno
 * is the reservation's either way; /proc/net says whether a socket holds the
 * port as well.
 */
function reservedRefusal(port: number, name: string, failed: BindAttempt[], heldBy: PortReport['heldBy']): string {
  // The hook did not run for the bind test (doctor outside the cgroup lowport attaches to).
  if (failed.length === 0) return `everyone else is refused, but the bind test as ${name} was not`;
  const errnos = [...new Set(failed.map((a) => a.error ?? ''))].join(', ');
  if (!failed.some((a) => a.error === 'EADDRINUSE')) return `${name} gets ${errnos}`;
  const holders = heldBy.map((h) =>
    h.pid === undefined ? `a process of uid ${h.uid}` : `${h.command ?? '?'} (pid ${h.pid}, uid ${h.uid})`,
  );
  return (
    `${name} gets ${errnos}: the reservation's refusal, as port-probing programs expect of a port in use` +
    (holders.length === 0
      ? `; no socket holds port ${port} here`
      : `; and ${[...new Set(holders)].join(', ')} ${holders.length === 1 ? 'holds' : 'hold'} it too`)
  );
}

/**
 * EADDRINUSE where no socket in this network namespace holds the port and
 * the file reserves it for nobody doctor knows of: a bind hook refused it (a
 * reservation doctor cannot read, or another BPF program), not a server.
 */
function unheldChecks(reports: PortReport[], reservations: Map<number, unknown>): Check[] {
  const out: Check[] = [];
  for (const r of reports) {
    if (reservations.has(r.port)) continue;
    const unheld = r.attempts.filter((a) => a.error === 'EADDRINUSE' && !r.heldBy.some((h) => h.protocol === a.protocol));
    if (unheld.length === 0) continue;
    out.push({
      id: `unheld-${r.port}`,
      status: 'fail',
      detail:
        `port ${r.port}: EADDRINUSE on ${unheld.map((a) => `${a.protocol.toUpperCase()} ${a.address}`).join(', ')}, but no socket in this network namespace holds it: ` +
        'a bind hook refused it (a reservation: `lowport list` as root shows them; or another BPF program on the bind hooks)',
    });
  }
  return out;
}

/**
 * As root, the kernel is asked (bpf/probes.ts: a bind hook returning 3, a
 * cgroup link, the map types), so a backported kernel passes and a locked-down
 * one fails whatever its version. Without root the probes cannot run, and the
 * version stands in for them, said as such.
 */
function kernelChecks(asRoot: boolean, missing: string[]): Check[] {
  if (!asRoot) {
    const newEnough = bindHookByVersion(kernelVersion());
    if (!newEnough) missing.push('Linux 5.12 or later');
    const by = 'by version alone: run doctor as root to probe the kernel itself';
    const [major, minor] = kernelVersion();
    const setRetval = major > 6 || (major === 6 && minor >= 1);
    return [
      {
        id: 'kernel',
        status: newEnough ? 'ok' : 'fail',
        detail: newEnough
          ? `Linux ${kernelRelease()}: bind hooks may grant ports (5.12+; ${by})`
          : `Linux ${kernelRelease()}: bind hooks cannot grant ports before 5.12 (${by}; backported kernels may)`,
      },
      { id: 'reserve-errno', status: 'info', detail: `${reserveErrnoText(setRetval)} (6.1+; ${by})` },
      { id: 'audit-trail', status: 'info', detail: `${auditTrailText(major > 5 || (major === 5 && minor >= 8))} (5.8+; ${by})` },
    ];
  }
  const results = probeFeatures();
  const setRetval = probeSetRetval();
  const ringbuf = probeRingbuf();
  const failed = results.find((r) => !r.ok);
  if (failed !== undefined)
    missing.push(
      failed.errno === 'EPERM' || failed.errno === 'EACCES'
        ? 'BPF, which this kernel refuses to this process'
        : `a kernel that passes the ${failed.name} probe`,
    );
  return [
    {
      id: 'kernel',
      status: failed === undefined ? 'ok' : 'fail',
      detail:
        failed === undefined
          ? `Linux ${kernelRelease()}: loads and links lowport's bind hook (probed)`
          : unsupportedMessage(failed, kernelRelease()),
    },
    ...results.map((r): Check => ({
      id: `probe:${r.name}`,
      status: r.ok ? 'ok' : 'fail',
      detail: probeText(r),
    })),
    // Optional: without it reservations refuse with EPERM, and nothing else changes.
    {
      id: `probe:${setRetval.name}`,
      status: setRetval.ok ? 'ok' : 'info',
      detail: `${probeText(setRetval)}: ${reserveErrnoText(setRetval.ok)}`,
    },
    // Optional too: only a policy with a `log` statement needs it.
    {
      id: `probe:${ringbuf.name}`,
      status: ringbuf.ok ? 'ok' : 'info',
      detail: `${probeText(ringbuf)}: ${auditTrailText(ringbuf.ok)}`,
    },
    ...(ringbuf.ok ? [coarseTimeCheck(), taskBtfCheck()] : []),
  ];
}

/** Which clock the audit trail's events read: it changes what an event costs, nothing else. */
function coarseTimeCheck(): Check {
  return costCheck(
    probeCoarseTime(),
    "the audit trail's events take their time from the coarse clock (to the last tick), the cheaper one",
    "the audit trail's events read the precise clock, which costs a logged bind more on some VMs (the coarse one came in Linux 5.11); nothing else changes",
  );
}

/** How the audit trail's events read the task's pid, comm and cgroup id: it changes what an event costs, nothing else. */
function taskBtfCheck(): Check {
  return costCheck(
    probeTaskBtf().result,
    "the audit trail's events read the task's pid, comm and cgroup id in place, the cheaper way",
    "the audit trail's events call a helper for each of the task's pid, comm and cgroup id, which costs a logged bind more; nothing else changes",
  );
}

/** An optional probe that changes only what an event costs: ok when it works, info when not, with what that means. */
function costCheck(result: FeatureResult, works: string, without: string): Check {
  return { id: `probe:${result.name}`, status: result.ok ? 'ok' : 'info', detail: `${probeText(result)}: ${result.ok ? works : without}` };
}

/** What the audit trail (a policy's `log` statement, events through a BPF ring buffer) is on this kernel, and what to do without it. */
function auditTrailText(ringbuf: boolean): string {
  return ringbuf
    ? "a 'log grants', 'log refusals' or 'log all' statement in the policy can record who used a grant or was refused (the audit trail, `lowport log`)"
    : "no audit trail: apply refuses a policy with a 'log' statement (grants and reservations work without it); remove the 'log' statement, or use a kernel with BPF ring buffers (Linux 5.8 or later)";
}

/** What others get from a reserved port, by whether a bind hook may call bpf_set_retval. */
function reserveErrnoText(setRetval: boolean): string {
  return setRetval
    ? 'a reserved port refuses others with EADDRINUSE (bpf_set_retval), so programs that probe ports move on to the next'
    : 'a reserved port refuses others with EPERM (bind hooks cannot set their errno before Linux 6.1)';
}

function machineChecks(asRoot: boolean): { checks: Check[]; bpfMissing: string[] } {
  const checks: Check[] = [];
  const missing: string[] = [];
  checks.push(...kernelChecks(asRoot, missing));

  let cgroupRoot: string | undefined;
  try {
    cgroupRoot = findCgroup2Root();
  } catch {
    missing.push('a cgroup v2 hierarchy');
  }
  checks.push({
    id: 'cgroup2',
    status: cgroupRoot === undefined ? 'fail' : 'ok',
    detail: cgroupRoot === undefined ? 'no cgroup v2 hierarchy is mounted' : `cgroup v2 mounted at ${cgroupRoot}`,
  });

  const bpffs = mountOf('/sys/fs/bpf')?.fsType === 'bpf';
  checks.push({
    id: 'bpffs',
    status: bpffs ? 'ok' : 'info',
    detail: bpffs ? 'bpffs mounted at /sys/fs/bpf' : 'bpffs is not mounted at /sys/fs/bpf (lowport mounts it when it needs it)',
  });

  const unpriv = readSysctl('kernel.unprivileged_bpf_disabled');
  checks.push({
    id: 'bpf-access',
    status: 'info',
    detail: `kernel.unprivileged_bpf_disabled = ${unpriv ?? 'unknown'}: ${unpriv === '0' ? 'any user may load BPF' : 'loading BPF programs needs root'}${asRoot ? '' : ' (lowport asks for sudo)'}`,
  });

  const container = detectContainer();
  const wsl = isWsl();
  checks.push({
    id: 'environment',
    status: 'info',
    detail: wsl
      ? 'running under WSL'
      : container !== undefined
        ? `running in a container (${container}): BPF may be refused to it`
        : 'not in a container or WSL',
  });

  checks.push({
    id: 'systemd',
    status: 'info',
    detail: systemdRunning() ? 'systemd is the init system' : 'systemd is not running as init',
  });
  const tools = ['nft', 'iptables'].map((t) => `${t} ${systemTool(t) === undefined ? 'absent' : 'present'}`);
  checks.push({ id: 'firewall-tools', status: 'info', detail: tools.join(', ') });
  return { checks, bpfMissing: missing };
}

function tryList(options: LowportOptions): ListResult | undefined {
  try {
    // Doctor only looks: it leaves what killed runs left for a command that changes things.
    return list(options, { prune: false });
  } catch {
    return undefined;
  }
}

interface PolicyFindings {
  checks: Check[];
  /** Per port: the lines of the file that grant every refused bind (so the kernel should have let them through). */
  grants: Map<number, number[]>;
  /** Per port: why those lines are not what the kernel has, in words. */
  notLive: Map<number, string>;
  reservations: Map<number, { who: string; line: number }>;
  /** Per port: the lines granting it on 0.0.0.0 but not on `::`, when the program is a JVM. */
  jvmWildcard: Map<number, { lines: number[]; protocols: string[] }>;
}

/** The ids the bind hook sees for the tested process: uid and real gid; the supplementary groups it cannot see. */
interface Caller {
  uid: number;
  gid: number;
  groups: number[];
}

/** A rule of the file that covers a port, as it applies to the tested user. */
interface Covering {
  rule: ResolvedRule;
  /** Protocols of the port it covers. */
  protocols: string[];
  /** The user's uid, or the caller's real gid, is one of its subjects (or it is for everyone). */
  matches: boolean;
  /** Matched by the user or group's name, not by `everyone` (a reservation lets those through). */
  named: boolean;
}

function sameAddress(a: string, b: string): boolean {
  const x = addressKey(a);
  const y = addressKey(b);
  return x.family === y.family && x.bytes.equals(y.bytes);
}

function grantsAttempt(c: Covering, a: BindAttempt): boolean {
  return c.protocols.includes(a.protocol) && (c.rule.rule.addrs.length === 0 || c.rule.rule.addrs.some((x) => sameAddress(x, a.address)));
}

function policyChecks(
  path: string,
  user: PasswdEntry,
  caller: Caller,
  tested: Pick<PortReport, 'port' | 'attempts' | 'heldBy'>[],
  live: ListResult | undefined,
  options: LowportOptions,
  program: ProgramFacts | undefined,
): PolicyFindings {
  const grants = new Map<number, number[]>();
  const notLive = new Map<number, string>();
  const reservations = new Map<number, { who: string; line: number }>();
  const jvmWildcard = new Map<number, { lines: number[]; protocols: string[] }>();
  const findings = { grants, notLive, reservations, jvmWildcard };
  const checks: Check[] = [];
  const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
  if (live !== undefined) {
    checks.push({
      id: 'lowport-live',
      status: live.live ? 'ok' : 'info',
      detail: live.live ? `lowport is on: ${live.rules.length} rules live at ${live.pinDir}` : `lowport is off (nothing at ${live.pinDir})`,
    });
    const others = live.programs.filter((p) => !p.ours);
    checks.push({
      id: 'other-bpf',
      status: others.length === 0 ? 'ok' : 'info',
      detail:
        others.length === 0
          ? 'no other BPF programs on the bind hooks'
          : `other BPF programs on the bind hooks (they can grant or refuse too): ${others.map((p) => `${p.hook} id ${p.id} ${p.name}`).join(', ')}`,
    });
    // Live rules whose user or group has since gone or moved (a deleted user's uid given to
    // another), and ids in someone's subordinate range.
    for (const w of live.warnings)
      checks.push({
        id: w.kind === 'name' ? 'live-names' : 'live-subordinate',
        status: w.kind === 'name' ? 'fail' : 'info',
        detail: `line ${w.line} of ${live.policy}: ${w.message}`,
      });
  } else {
    const state = pathState(pinDir);
    checks.push({
      id: 'lowport-live',
      status: 'info',
      detail:
        state === 'exists'
          ? `lowport is installed at ${pinDir} (root can show its live rules)`
          : state === 'absent'
            ? `lowport is off (nothing at ${pinDir})`
            : `only root can tell whether lowport is on (${pinDir} is not visible to you)`,
    });
    checks.push({ id: 'other-bpf', status: 'info', detail: 'other BPF programs on the bind hooks: only root can see them' });
  }

  let text: string | undefined;
  try {
    text = readPolicyFile(path);
  } catch (e) {
    checks.push({ id: 'policy', status: 'fail', detail: e instanceof Error ? e.message : String(e) });
    return { checks, ...findings };
  }
  if (text === undefined) {
    checks.push({ id: 'policy', status: 'info', detail: `no policy file at ${path}` });
    return { checks, ...findings };
  }
  let rules: ResolvedRule[];
  // The file's lines, and those of its drop-ins (policy/origin.ts): `line 3 of /etc/lowport/policy.d/web.policy`.
  let lineIn = (line: number): string => `line ${line}`;
  let lineOf = (line: number): string => `line ${line} of ${path}`;
  try {
    const compiled = compileDocument(readPolicy(path, false).doc);
    rules = compiled.rules;
    lineIn = (line) => lineRef(compiled.doc, line, 1);
    lineOf = (line) => {
      const at = originOf(compiled.doc, line);
      return `line ${at.line} of ${at.file}`;
    };
    for (const u of compiled.unresolved)
      checks.push({ id: 'policy-names', status: 'fail', detail: `${u.diagnostic.file}:${u.diagnostic.line}: ${u.diagnostic.message}` });
  } catch (e) {
    checks.push({
      id: 'policy',
      status: 'fail',
      detail: `${path} has errors (lowport apply --check shows them): ${e instanceof Error ? e.message : String(e)}`,
    });
    return { checks, ...findings };
  }
  // As the bind hook matches: the uid, the real gid, everyone. Group rules list their members' uids
  // (listed and passwd-primary) as the file resolves now.
  const isSubject = (s: { kind: number; id: bigint }) =>
    (s.kind === Kind.UID && s.id === BigInt(caller.uid)) || (s.kind === Kind.GID && s.id === BigInt(caller.gid));
  for (const { port, attempts, heldBy } of tested) {
    const covering: Covering[] = [];
    for (const r of rules) {
      const items = r.rule.ports.filter((i) => port >= i.from && port <= i.to);
      if (items.length === 0) continue;
      const named = r.subjects.some(isSubject);
      covering.push({
        rule: r,
        protocols: [...new Set(items.flatMap((i) => i.protocols))],
        matches: named || r.subjects.some((s) => s.kind === Kind.EVERYONE),
        named,
      });
    }
    const reservation = covering.find((c) => c.rule.rule.action === 'reserve' && !c.matches);
    // A reservation refuses all but root, its owners and users the policy names (not `everyone`).
    const owner = covering.some((c) => c.rule.rule.action === 'reserve' && c.matches);
    const counted = covering.filter((c) => c.matches && (reservation === undefined || owner || c.named));
    const res = reservation !== undefined && counted.length === 0 ? reservation : undefined;
    if (res !== undefined) reservations.set(port, { who: formatPrincipal(res.rule.rule.principal), line: res.rule.rule.line });

    // The binds the file grants and the kernel refused: the kernel does not have the file's rules.
    const failed = attempts.filter((a) => a.error !== undefined && !UNAVAILABLE.has(a.error));
    const refusedButGranted = failed.filter((a) => a.error === 'EACCES' && counted.some((c) => grantsAttempt(c, a)));
    if (failed.length > 0 && refusedButGranted.length === failed.length) {
      grants.set(port, [...new Set(counted.filter((c) => failed.some((a) => grantsAttempt(c, a))).map((c) => c.rule.rule.line))]);
    }
    let detail: string;
    let status: CheckStatus;
    if (res !== undefined) {
      status = 'fail';
      detail = `port ${port} is reserved for ${formatPrincipal(res.rule.rule.principal)} (${lineOf(res.rule.rule.line)}): ${reservedRefusal(port, user.name, failed, heldBy)}`;
    } else if (counted.length === 0) {
      status = 'info';
      detail = `${path} does not give port ${port} to ${user.name}`;
    } else {
      const lines = counted.map((c) => `${lineIn(c.rule.rule.line)}${scopeText(c)}${viaText(c, user, caller)}`).join('; ');
      const stale = live !== undefined && live.file !== 'in-sync' ? `, but the file is not what is live (${live.file})` : '';
      if (refusedButGranted.length > 0) {
        const why = notLiveReason(counted, user, caller, live);
        notLive.set(port, why);
        status = 'fail';
        const which =
          refusedButGranted.length === attempts.length ? 'EACCES on every protocol and address' : attemptList(refusedButGranted);
        detail = `${path} gives port ${port} to ${user.name} (${lines}), but the kernel refuses it (${which}): ${why}`;
      } else {
        status = 'ok';
        detail = `${path} gives port ${port} to ${user.name} (${lines})${stale}`;
      }
    }
    checks.push({ id: `policy-${port}`, status, detail });
    checks.push(...runtimeGroupChecks(port, covering, user, caller));
    if (program?.jvm === true) {
      // Only where a bind of `::` was refused here: a port above ip_unprivileged_port_start needs no grant.
      const refusedV6 = new Set(
        attempts.filter((a) => a.address === '::' && (a.error === 'EACCES' || a.error === 'EPERM')).map((a) => a.protocol),
      );
      const only = jvmWildcardOnly(counted, [...refusedV6]);
      if (only.lines.length > 0) {
        jvmWildcard.set(port, only);
        checks.push({
          id: `program-jvm-${port}`,
          status: 'fail',
          detail:
            `${program.path} is a JVM: told to listen on 0.0.0.0 it binds \`::\` (and ::ffff:a.b.c.d for an IPv4 literal), ` +
            `but ${only.lines.length === 1 ? 'line' : 'lines'} ${only.lines.join(', ')} of ${path} ${only.lines.length === 1 ? 'grants' : 'grant'} port ${port} on 0.0.0.0 and not on \`::\`, so its bind is refused: ` +
            `grant \`::\` too, or start it with -Djava.net.preferIPv4Stack=true`,
        });
      }
    }
  }
  return { checks, ...findings };
}

/** ` (udp only, on 127.0.0.1 only)`-style limits of a rule on a port; empty when it covers both protocols on every address. */
function scopeText(c: Covering): string {
  const parts = [
    ...(c.protocols.length === 2 ? [] : [`${c.protocols[0] ?? ''} only`]),
    ...(c.rule.rule.addrs.length === 0 ? [] : [`on ${c.rule.rule.addrs.join(', ')} only`]),
  ];
  return parts.length === 0 ? '' : `: ${parts.join(', ')}`;
}

/** How the user gets a group rule: ` (group dns: by ...)`; empty for a user or everyone rule. */
function viaText(c: Covering, user: PasswdEntry, caller: Caller): string {
  const p = c.rule.rule.principal;
  if (p.kind !== 'group') return '';
  const gid = c.rule.subjects.find((s) => s.kind === Kind.GID)?.id;
  if (gid === BigInt(caller.gid)) return `, group ${p.name}: the process's gid`;
  if (user.gid === Number(gid)) return `, group ${p.name}: ${user.name}'s passwd group`;
  return `, group ${p.name}: ${user.name} is a listed member`;
}

/** Why the kernel refuses what the file grants, as far as doctor can tell. */
function notLiveReason(counted: Covering[], user: PasswdEntry, caller: Caller, live: ListResult | undefined): string {
  const groups = counted
    .filter(
      (c) => c.rule.rule.principal.kind === 'group' && !c.rule.subjects.some((s) => s.kind === Kind.GID && s.id === BigInt(caller.gid)),
    )
    .map((c) => (c.rule.rule.principal.kind === 'group' ? c.rule.rule.principal.name : ''));
  const membership =
    groups.length > 0
      ? `group membership is expanded when the policy is applied, so the kernel has the members of ${groups.map((g) => `group ${g}`).join(', ')} as of the last \`lowport apply\``
      : undefined;
  if (live !== undefined) {
    if (!live.live) return 'lowport is off: run `lowport apply` to make the file live';
    if (live.file === 'names-changed' && membership !== undefined)
      return `${user.name} became a member after the last apply (${membership}): run \`lowport apply\``;
    if (live.file === 'differs') return 'the file was changed after the last apply: run `lowport apply`';
    if (membership !== undefined) return `${membership}: run \`lowport apply\``;
    return "the live rules are not the file's: run `lowport apply`";
  }
  if (membership !== undefined) return `${membership}; if ${user.name} joined since, or the file changed, run \`lowport apply\``;
  return 'the file was changed after the last apply, or lowport is off: run `lowport apply`';
}

function attemptList(attempts: BindAttempt[]): string {
  return attempts.map((a) => `${a.protocol.toUpperCase()} ${a.address} ${a.error ?? ''}`).join(', ');
}

/**
 * The lines that grant a port on 0.0.0.0 and not on `::` (for some protocol): a JVM told 0.0.0.0
 * binds `::`, which such a grant does not cover.
 */
function jvmWildcardOnly(counted: Covering[], protocols: string[]): { lines: number[]; protocols: string[] } {
  const wildcard = (c: Covering, protocol: string, addr: string) =>
    c.protocols.includes(protocol) && (c.rule.rule.addrs.length === 0 || c.rule.rule.addrs.some((x) => sameAddress(x, addr)));
  const lines = new Set<number>();
  const uncovered: string[] = [];
  for (const protocol of protocols) {
    if (counted.some((c) => wildcard(c, protocol, '::'))) continue;
    const only = counted.filter((c) => c.rule.rule.addrs.length > 0 && wildcard(c, protocol, '0.0.0.0'));
    for (const c of only) lines.add(c.rule.rule.line);
    if (only.length > 0) uncovered.push(protocol);
  }
  return { lines: [...lines].sort((a, b) => a - b), protocols: uncovered };
}

/**
 * A process may hold a group in its supplementary list that the user
 * database does not give the user (setgroups(2), systemd
 * SupplementaryGroups=): the bind hook sees only the uid and the real gid, so
 * a group rule does not count for it. Said for each such rule on the port.
 */
function runtimeGroupChecks(port: number, covering: Covering[], user: PasswdEntry, caller: Caller): Check[] {
  if (
    caller.groups.length === 0 ||
    covering.some((c) => c.matches && c.rule.rule.action === 'grant' && c.rule.rule.principal.kind !== 'group')
  )
    return [];
  const out: Check[] = [];
  for (const c of covering) {
    if (c.matches || c.rule.rule.principal.kind !== 'group') continue;
    const gid = c.rule.subjects.find((s) => s.kind === Kind.GID)?.id;
    if (gid === undefined || !caller.groups.includes(Number(gid))) continue;
    const name = c.rule.rule.principal.name;
    out.push({
      id: `runtime-groups-${port}`,
      status: 'fail',
      detail:
        `this process has group ${name} (gid ${gid}) as a supplementary group, but the user database does not make ${user.name} a member ` +
        `(group ${name} does not list ${user.name}, and it is not ${user.name}'s passwd group), and it is not the process's real gid: ` +
        `the bind hook sees only the uid and the real gid, so a group added at run time (setgroups, systemd SupplementaryGroups=) ` +
        `does not count for line ${c.rule.rule.line} (${c.rule.rule.action} ${formatPorts(c.rule.rule.ports)} group ${name}). ` +
        `Add ${user.name} to the group (usermod -aG ${name} ${user.name}, then lowport apply), or run the program with it as its group (sg ${name}, systemd Group=${name})`,
    });
  }
  return out;
}

function realGid(): number {
  return process.getgid?.() ?? -1;
}

/** This process's supplementary groups (the Groups: line of /proc/self/status), minus its real gid. */
function supplementaryGroups(): number[] {
  const line = /^Groups:\s*(.*)$/m.exec(processStatus())?.[1] ?? '';
  const gid = realGid();
  return line
    .trim()
    .split(/\s+/)
    .filter((g) => g !== '')
    .map(Number)
    .filter((g) => g !== gid);
}

function sysctlCheck(): Check {
  const start = readSysctl('net.ipv4.ip_unprivileged_port_start');
  const ns = netNamespace();
  const init = initNetNamespace();
  const where =
    ns === undefined
      ? ''
      : ns === init
        ? ` (the host's network namespace, ${ns})`
        : init === undefined
          ? ` (network namespace ${ns})`
          : ` (a private network namespace, ${ns}; the host's may differ)`;
  return {
    id: 'sysctl',
    status: 'info',
    detail: `net.ipv4.ip_unprivileged_port_start = ${start ?? 'unknown'}${where}: ports from ${start ?? '1024'} up need no privilege`,
  };
}

function capabilityCheck(self: boolean, user: PasswdEntry): Check {
  if (!self)
    return { id: 'capabilities', status: 'info', detail: `the bind test ran as ${user.name} with no capabilities, as a login would` };
  const caps = parseStatusCaps(processStatus());
  const eff = hasCap(caps.effective, CAP_NET_BIND_SERVICE);
  const amb = hasCap(caps.ambient, CAP_NET_BIND_SERVICE);
  const bnd = hasCap(caps.bounding, CAP_NET_BIND_SERVICE);
  return {
    id: 'capabilities',
    status: eff ? 'ok' : 'info',
    detail: `CAP_NET_BIND_SERVICE: effective ${eff ? 'yes' : 'no'}, ambient ${amb ? 'yes' : 'no'}, bounding ${bnd ? 'yes' : 'no'}${eff ? ' (this process may bind any low port)' : ''}`,
  };
}

interface ProgramFacts {
  path: string;
  isScript: boolean;
  interpreter?: string;
  /** An interpreter or a JVM: a capability on it goes to everything it runs. */
  runsScripts: boolean;
  /** A rootless container tool (podman, docker, rootlesskit, rootlessport, nerdctl): its name. */
  container?: string;
  /** A JVM launcher: it binds `::` for 0.0.0.0. */
  jvm: boolean;
}

/**
 * Tools whose containers' published ports are bound, when rootless, by a
 * helper running as the user (podman's rootlessport, rootlesskit's port
 * driver for Docker and nerdctl): a grant to the user covers them; setcap on
 * the tool cannot.
 */
const CONTAINER_TOOLS = /^(podman|podman-remote|docker|dockerd-rootless(-setuptool)?\.sh|rootlesskit|rootlessport|nerdctl)$/;

/** JVM launchers by name; any other binary counts when a libjvm sits where a JDK keeps it. */
const JVM_LAUNCHERS = /^(java|javaw|jshell|jrunscript)$/;

function isJvm(path: string): boolean {
  const real = realPath(path) ?? path;
  if (JVM_LAUNCHERS.test(path.split('/').pop() ?? '') || JVM_LAUNCHERS.test(real.split('/').pop() ?? '')) return true;
  const home = real.slice(0, real.lastIndexOf('/bin/'));
  return real.includes('/bin/') && (pathExists(`${home}/lib/server/libjvm.so`) || pathExists(`${home}/jre/lib/amd64/server/libjvm.so`));
}

const INTERPRETERS = /^(python[\d.]*|node(js)?|java|ruby[\d.]*|perl[\d.]*|php[\d.]*|bash|sh|dash|zsh|ksh|deno|bun|lua[\d.]*|tclsh[\d.]*)$/;

function resolveProgram(program: string): string {
  if (program.includes('/')) return program;
  return which(program) ?? program;
}

function describeProgram(program: string): ProgramFacts {
  const path = resolveProgram(program);
  const interpreter = interpreterOf(path);
  const base = path.split('/').pop() ?? '';
  const runsScripts = INTERPRETERS.test(base);
  const jvm = interpreter === undefined && isJvm(path);
  const container = CONTAINER_TOOLS.test(base) ? base : undefined;
  const facts: ProgramFacts = {
    path,
    isScript: interpreter !== undefined,
    runsScripts,
    jvm,
    ...(container === undefined ? {} : { container }),
  };
  return interpreter === undefined ? facts : { ...facts, interpreter };
}

/** The interpreter a script names in its `#!` line (through /usr/bin/env), or undefined for a binary. */
function interpreterOf(path: string): string | undefined {
  const line = shebang(path);
  if (line === undefined) return undefined;
  const words = line.split(/\s+/);
  const first = words[0] ?? '';
  if (first.endsWith('/env')) {
    const name = words.slice(1).find((w) => !w.startsWith('-'));
    return name === undefined ? first : (which(name) ?? name);
  }
  return first;
}

function programChecks(program: string, user: PasswdEntry): Check[] {
  const facts = describeProgram(program);
  const st = fileOwnership(facts.path);
  if (st === undefined) return [{ id: 'program', status: 'fail', detail: `${program}: no such file (give a path, or a command on PATH)` }];
  // A device, FIFO or socket (a user's symlink may point at one) is never opened: as root, opening
  // a device acts (a tty, a watchdog, a tape).
  if (st.type !== 'file') {
    return [
      {
        id: 'program',
        status: 'fail',
        detail: `${facts.path} is ${fileKind(st.type)}, not a regular file: not a program; doctor does not open it`,
      },
    ];
  }
  const checks: Check[] = [];
  const setuidRoot = (st.mode & 0o4000) !== 0 && st.uid === 0;
  const caps = fileCapabilities(facts.path);
  const capped = caps !== undefined && hasCap(caps.permitted, CAP_NET_BIND_SERVICE);
  checks.push({
    id: 'program',
    status: setuidRoot || capped ? 'ok' : 'info',
    detail: `${facts.path}: ${setuidRoot ? 'setuid root (runs as root: any port) ' : ''}${capped ? `has file capability cap_net_bind_service${caps?.effective ? '+ep' : '+p (not effective: it must raise it itself)'}` : 'no file capabilities'}`,
  });
  if (facts.container !== undefined) {
    checks.push({
      id: 'program-container',
      status: 'info',
      detail:
        `${facts.path} runs containers: a rootless container's published port (-p 80:8080) is bound by a helper running as ${user.name} ` +
        `in the host's network namespace (podman's rootlessport, rootlesskit for Docker and nerdctl), not by ${facts.container} itself, ` +
        `so setcap on ${facts.container} cannot help; a lowport grant to ${user.name} covers those ports`,
    });
  }
  if (facts.isScript) {
    const interp = facts.interpreter ?? '?';
    const icaps = interp.startsWith('/') ? fileCapabilities(interp) : undefined;
    checks.push({
      id: 'program-script',
      status: capped ? 'fail' : 'info',
      detail:
        `${facts.path} is a script run by ${interp}: the kernel ignores file capabilities and setuid bits on scripts, so setcap on it does nothing; ` +
        `on ${interp} it would let every ${interp.split('/').pop() ?? ''} script of every user bind any low port` +
        (icaps !== undefined && hasCap(icaps.permitted, CAP_NET_BIND_SERVICE) ? ` — and ${interp} has that capability now` : ''),
    });
  }
  return checks;
}

function authbindCheck(user: PasswdEntry, ports: number[]): Check {
  if (which('authbind', `${process.env.PATH ?? ''}:/usr/bin`) === undefined)
    return { id: 'authbind', status: 'info', detail: 'authbind is not installed' };
  const usable = ports.filter((port) => {
    const name = byportName(port);
    const st = name === undefined ? undefined : fileOwnership(`/etc/authbind/byport/${name}`);
    // authbind asks access(X_OK) as the user: the owner's bit for the owner, the group's for members, else the others'.
    return st !== undefined && mayExecute(st, user.uid, st.gid === user.gid || nssNames.inGroup(user.uid, st.gid));
  });
  return {
    id: 'authbind',
    status: 'info',
    detail:
      usable.length > 0
        ? `authbind lets ${user.name} bind ${usable.join(',')} (/etc/authbind/byport) — for programs started with \`authbind --deep\`, and not for static binaries such as Go programs`
        : `authbind is installed; /etc/authbind/byport gives ${user.name} none of ${ports.join(',')}`,
  };
}
