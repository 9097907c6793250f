/**
 * Capabilities: a process's sets from /proc/PID/status (proc(5)), and a
 * file's from its security.capability xattr (struct vfs_cap_data,
 * linux/capability.h).
 */
import { getXattr } from './libc.js';

export const CAP_NET_BIND_SERVICE = 10;

export interface ProcessCaps {
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
}

export function parseStatusCaps(status: string): ProcessCaps {
  const field = (name: string): bigint => {
    const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status);
    return m?.[1] === undefined ? 0n : BigInt(`0x${m[1]}`);
  };
  return {
    inheritable: field('CapInh'),
    permitted: field('CapPrm'),
    effective: field('CapEff'),
    bounding: field('CapBnd'),
    ambient: field('CapAmb'),
  };
}

export function hasCap(set: bigint, cap: number): boolean {
  return ((set >> BigInt(cap)) & 1n) === 1n;
}

export interface FileCaps {
  permitted: bigint;
  inheritable: bigint;
  /** The effective bit: the permitted set becomes effective at exec. */
  effective: boolean;
  /** VFS_CAP_REVISION_3 files carry the root uid of the user namespace they apply to. */
  rootUid?: number;
}

const VFS_CAP_REVISION_MASK = 0xff000000;
const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;

/** Decodes vfs_cap_data (revision 1, 2 or 3); undefined for anything else. */
export function decodeFileCaps(b: Buffer): FileCaps | undefined {
  if (b.length < 12) return undefined;
  const magic = b.readUInt32LE(0);
  const revision = (magic & VFS_CAP_REVISION_MASK) >>> 24;
  const effective = (magic & VFS_CAP_FLAGS_EFFECTIVE) !== 0;
  const permitted0 = BigInt(b.readUInt32LE(4));
  const inheritable0 = BigInt(b.readUInt32LE(8));
  if (revision === 1) return { permitted: permitted0, inheritable: inheritable0, effective };
  if ((revision === 2 && b.length >= 20) || (revision === 3 && b.length >= 24)) {
    const permitted = permitted0 | (BigInt(b.readUInt32LE(12)) << 32n);
    const inheritable = inheritable0 | (BigInt(b.readUInt32LE(16)) << 32n);
    return revision === 3 ? { permitted, inheritable, effective, rootUid: b.readUInt32LE(20) } : { permitted, inheritable, effective };
  }
  return undefined;
}

/** A file's capabilities, or undefined when it has none. */
export function fileCapabilities(path: string): FileCaps | undefined {
  const raw = getXattr(path, 'security.capability');
  return raw === undefined ? undefined : decodeFileCaps(raw);
}
