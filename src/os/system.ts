/** Facts about the running kernel that decide whether the BPF grant can work here. */
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { LowportError } from '../errors.js';
import { pathExists } from './process.js';
import { release } from 'node:os';

/** [major, minor] of the running kernel, from uname(2). */
export function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release());
  return m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
}

export function kernelRelease(): string {
  return release();
}

/** A /proc/sys value as text, or undefined when it cannot be read. */
export function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Writes a /proc/sys value of this process's namespaces (network sysctls are
 * per network namespace). A refusal (a read-only /proc/sys in a container,
 * no root) is an E_STATE error naming the sysctl and the errno (its callers say what it means).
 */
export function writeSysctl(name: string, value: string): void {
  try {
    writeFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, `${value}\n`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    throw new LowportError('E_STATE', `cannot set ${name}: ${code}`, { cause: e });
  }
}

/**
 * The container runtime this process seems to run in, or undefined (systemd-detect-virt's container
 * checks, the ones readable without root).
 */
export function detectContainer(): string | undefined {
  if (pathExists('/.dockerenv')) return 'docker';
  if (pathExists('/run/.containerenv')) return 'podman';
  const env = process.env.container;
  if (env !== undefined && env !== '') return env;
  try {
    const cgroup = readFileSync('/proc/1/cgroup', 'utf8');
    for (const name of ['docker', 'kubepods', 'lxc', 'containerd']) if (cgroup.includes(name)) return name;
  } catch {
    // not readable
  }
  return undefined;
}

/** Windows Subsystem for Linux: its kernel says so in /proc/version. */
export function isWsl(): boolean {
  try {
    return /microsoft/i.test(readFileSync('/proc/version', 'utf8'));
  } catch {
    return false;
  }
}

/** systemd is the init system (sd_booted(3): /run/systemd/system exists). */
export function systemdRunning(): boolean {
  return pathExists('/run/systemd/system');
}

/** The network namespace of this process, as `net:[4026531833]`. */
export function netNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/net');
  } catch {
    return undefined;
  }
}

/** The init network namespace's id is fixed; comparing with PID 1's tells whether this is a private one. */
export function initNetNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/1/ns/net');
  } catch {
    return undefined;
  }
}
