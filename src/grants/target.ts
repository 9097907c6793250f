/**
 * Which lowport instance a call works on: the policy file, the cgroup the
 * hooks attach to, and the pin directory. The defaults are the machine's
 * (/etc/lowport/policy, the cgroup-v2 root, /sys/fs/bpf/lowport); tests and
 * isolated setups pass their own.
 */
import { isAbsolute, resolve } from 'node:path';
import { LowportError, UsageError } from '../errors.js';
import { findCgroup2Root, isCgroup2Dir, NoCgroup2Error } from '../os/cgroup.js';
import type { MountEntry } from '../os/mounts.js';
import { effectiveUid } from '../os/process.js';
import { missingFeature, probeRingbuf, type FeatureResult } from '../bpf/probes.js';
import { kernelRelease } from '../os/system.js';
import type { Target } from './live.js';
import { HOST_IS_LITTLE_ENDIAN } from './map-format.js';

export const DEFAULT_POLICY = '/etc/lowport/policy';
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/lowport';

export interface LowportOptions {
  /** Policy file; default /etc/lowport/policy. */
  policy?: string;
  /** cgroup-v2 directory to attach to; default the root of the hierarchy. */
  cgroup?: string;
  /** bpffs directory for lowport's pins; default /sys/fs/bpf/lowport. */
  pinDir?: string;
}

export function policyPath(options: LowportOptions): string {
  return resolve(options.policy ?? DEFAULT_POLICY);
}

/** The kernel-side target, after checking that this machine and user can use the BPF grant. */
export function kernelTarget(options: LowportOptions): Target {
  requireRoot();
  requireBpfFeatures();
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new LowportError('E_UNSUPPORTED', 'lowport builds its BPF program for little-endian CPUs, and this one is big-endian', {
      hint: 'Use a fallback: `lowport run --sockets`, an nftables redirect, or the ip_unprivileged_port_start sysctl.',
    });
  }
  return liveTarget(options);
}

/**
 * The target of what may already be live, for taking it down (`off`): root,
 * the cgroup and the pin dir, without the feature probes. A probe that fails
 * now (a seccomp filter, ENOMEM, a capability dropped since) must not make
 * `off` believe nothing is there and leave the grants live.
 */
export function liveTarget(options: LowportOptions): Target {
  requireRoot();
  return { cgroup: attachCgroup(options), pinDir: resolve(options.pinDir ?? DEFAULT_PIN_DIR) };
}

/** The cgroup-v2 directory this instance works on (--cgroup, else the hierarchy's root); needs no BPF. */
export function attachCgroup(options: LowportOptions): string {
  if (options.cgroup === undefined) return cgroup2Root();
  const cgroup = resolve(options.cgroup);
  if (!isAbsolute(cgroup) || !isCgroup2Dir(cgroup)) {
    throw new UsageError(
      `--cgroup ${options.cgroup} is not a cgroup-v2 directory`,
      `Create it under the cgroup-v2 mount (${safeCgroupRoot() ?? 'see /proc/self/mountinfo'}), e.g. mkdir ${safeCgroupRoot() ?? '/sys/fs/cgroup'}/mytest`,
    );
  }
  return cgroup;
}

/** The cgroup-v2 mount, or an error that says how to get one and what works without it. */
export function cgroup2Root(mounts?: MountEntry[]): string {
  try {
    return findCgroup2Root(mounts);
  } catch (e) {
    if (!(e instanceof NoCgroup2Error)) throw e;
    throw new LowportError('E_UNSUPPORTED', 'no cgroup v2 hierarchy is mounted, and the bind hook attaches to one', {
      hint:
        'Mount it (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with systemd.unified_cgroup_hierarchy=1; ' +
        'without it, use `lowport run --sockets` or an nftables redirect (`lowport forward add`).',
      cause: e,
    });
  }
}

function safeCgroupRoot(): string | undefined {
  try {
    return findCgroup2Root();
  } catch {
    return undefined;
  }
}

export function requireRoot(): void {
  if (effectiveUid() !== 0) {
    throw new LowportError('E_NOT_ROOT', 'this needs root: loading BPF programs and pinning them is reserved to root', {
      hint: 'Run it with sudo.',
    });
  }
}

const FALLBACKS =
  'use a fallback: `lowport run --sockets`, an nftables redirect (`lowport forward add`), or the ip_unprivileged_port_start sysctl (`lowport doctor` picks one)';

/**
 * Whether this kernel, here, lets lowport load and attach its bind hook: found
 * out by trying (bpf/probes.ts), not from the version, which says little on
 * distributions that backport (RHEL 8) and nothing about lockdown or a
 * container without CAP_BPF. Root only (kernelTarget checks that first).
 */
export function requireBpfFeatures(missing: FeatureResult | undefined = missingFeature(), release: string = kernelRelease()): void {
  if (missing === undefined) return;
  throw new LowportError('E_UNSUPPORTED', unsupportedMessage(missing, release), {
    hint:
      missing.errno === 'EPERM' || missing.errno === 'EACCES'
        ? `Run \`lowport doctor\` to see what is refused, then ${FALLBACKS}.`
        : `Upgrade the kernel, or ${FALLBACKS}.`,
  });
}

/**
 * A policy with `log` needs the ring buffer (bpf/probes.ts probeRingbuf):
 * refused before anything changes, naming the kernel requirement and the
 * line to remove. Grants alone do not need it.
 */
export function requireRingbuf(
  /** Where the `log` statements are: `line 3`, `line 2 of policy.d/audit.policy` (policy/origin.ts lineRef). */
  logLines: readonly string[],
  probed: FeatureResult = probeRingbuf(),
  release: string = kernelRelease(),
): void {
  if (probed.ok) return;
  const where = logLines.join(', ');
  throw new LowportError(
    'E_UNSUPPORTED',
    `the policy asks for an audit trail ('log', ${where}), but ${unsupportedMessage(probed, release)}`,
    {
      hint: `Remove the 'log' statement (${where}) and apply again (grants work without it), or upgrade to Linux 5.8 or later. Nothing was changed.`,
    },
  );
}

/** One probe as tried and answered: `load ...: EINVAL (verifier: ...)`, `...: works`. */
export function probeText(r: FeatureResult): string {
  const answer = r.ok ? 'works' : (r.errno ?? `not tried, ${r.skipped ?? 'refused'}`);
  return `${r.tried}: ${answer}${r.verifier === undefined ? '' : ` (verifier: ${r.verifier})`}`;
}

/** What a failed probe means, in a sentence. */
export function unsupportedMessage(r: FeatureResult, release: string): string {
  const how = probeText(r);
  if (r.errno === 'EPERM' || r.errno === 'EACCES') {
    return `the kernel does not let this process use BPF (${how}): kernel lockdown, a container without CAP_BPF and CAP_SYS_ADMIN, or a seccomp filter`;
  }
  const feature: Record<FeatureResult['name'], string> = {
    'bind-return-3': 'cannot grant ports from a bind hook (a return value of 3, Linux 5.12)',
    'cgroup-link': 'has no BPF links for cgroups (Linux 5.7)',
    'hash-map': 'cannot create the BPF hash map lowport keeps its rules in',
    'array-of-maps': 'cannot create the BPF array of maps lowport swaps its rules through',
    'port-filter': 'cannot read a BPF array in place (Linux 5.2), as lowport reads its port filter',
    'set-retval': 'does not let a bind hook choose its errno (bpf_set_retval, Linux 6.1)',
    'coarse-time': "has no coarse clock for BPF (bpf_ktime_get_coarse_ns, Linux 5.11): the 'log' statement's events read the precise one",
    'task-btf':
      "does not let a bind hook read the current task through BTF (bpf_get_current_task_btf, Linux 5.11, and vmlinux BTF): the 'log' statement's events use the pid, comm and cgroup helpers",
    ringbuf: "has no BPF ring buffer for the 'log' statement's events (BPF_MAP_TYPE_RINGBUF and its helpers in a bind hook, Linux 5.8)",
  };
  return `Linux ${release} ${feature[r.name]}: ${how}`;
}

/**
 * The version, for where the probes cannot run (doctor without root): bind
 * hooks may return 3 (bypass CAP_NET_BIND_SERVICE) since Linux 5.12 (commit
 * 772412176fb9). Backported kernels may have it earlier; only the probes know.
 */
export function bindHookByVersion([major, minor]: [number, number]): boolean {
  return major > 5 || (major === 5 && minor >= 12);
}
