/**
 * Which lowport instance a call works on: the policy file, the cgroup the
 * hooks attach to, and the pin directory. The defaults are the machine's
 * (/etc/lowport/policy, the cgroup-v2 root, /sys/fs/bpf/lowport); tests and
 * isolated setups pass their own.
 */
import { isAbsolute, resolve } from 'node:path';
import { LowportError, UsageError } from '../errors.js';
import { findCgroup2Root, isCgroup2Dir } from '../os/cgroup.js';
import { effectiveUid } from '../os/process.js';
import { kernelRelease, kernelVersion } from '../os/system.js';
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
  requireKernel();
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new LowportError('E_UNSUPPORTED', 'lowport builds its BPF program for little-endian CPUs, and this one is big-endian', {
      hint: 'Use a fallback: `lowport run --sockets`, an nftables redirect, or the ip_unprivileged_port_start sysctl.',
    });
  }
  const pinDir = resolve(options.pinDir ?? DEFAULT_PIN_DIR);
  if (options.cgroup === undefined) return { cgroup: findCgroup2Root(), pinDir };
  const cgroup = resolve(options.cgroup);
  if (!isAbsolute(cgroup) || !isCgroup2Dir(cgroup)) {
    throw new UsageError(`--cgroup ${options.cgroup} is not a cgroup-v2 directory`, `Create it under the cgroup-v2 mount (${safeCgroupRoot() ?? 'see /proc/self/mountinfo'}), e.g. mkdir ${safeCgroupRoot() ?? '/sys/fs/cgroup'}/mytest`);
  }
  return { cgroup, pinDir };
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

/** BPF_CGROUP_INET{4,6}_BIND may return 3 (bypass CAP_NET_BIND_SERVICE) since Linux 5.12 (commit 772412176fb9). */
export function requireKernel(version: [number, number] = kernelVersion(), release: string = kernelRelease()): void {
  const [major, minor] = version;
  if (major < 5 || (major === 5 && minor < 12)) {
    throw new LowportError('E_UNSUPPORTED', `Linux ${release} cannot grant ports from a bind hook: that needs Linux 5.12 or later`, {
      hint: 'Upgrade the kernel, or use a fallback: `lowport run --sockets`, an nftables redirect, or the ip_unprivileged_port_start sysctl (`lowport doctor` picks one).',
    });
  }
}
