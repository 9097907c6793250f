/**
 * bpffs, where lowport pins its link and map so the grant outlives the command.
 * It is not mounted at boot everywhere (it is not on these machines): mount it
 * at /sys/fs/bpf when the pin directory lives there.
 */
import { lstatSync, mkdirSync, readdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { LowportError } from '../errors.js';
import { mount } from './libc.js';
import { mountOf, readMounts } from './mounts.js';

export const DEFAULT_BPFFS = '/sys/fs/bpf';

/** Makes sure `pinDir` is on a bpf filesystem, mounting /sys/fs/bpf if needed, and creates it. */
export function ensurePinDir(pinDir: string): void {
  if (mountOf(pinDir)?.fsType !== 'bpf') {
    const standard = pinDir === DEFAULT_BPFFS || pinDir.startsWith(`${DEFAULT_BPFFS}/`);
    if (standard && mountOf(DEFAULT_BPFFS)?.fsType !== 'bpf') {
      mkdirSync(DEFAULT_BPFFS, { recursive: true });
      // As systemd mounts it: only root may create pins or directories there.
      mount('bpf', DEFAULT_BPFFS, 'bpf', 0, 'mode=0700');
    }
    if (mountOf(pinDir, readMounts())?.fsType !== 'bpf') {
      throw new LowportError('E_UNSUPPORTED', `the pin directory ${pinDir} is not on a bpf filesystem`, {
        hint: `Choose a --pin-dir under ${DEFAULT_BPFFS}, or mount one: mount -t bpf bpf <dir>`,
      });
    }
  }
  mkdirSync(pinDir, { recursive: true, mode: 0o700 });
  assertRootOwnedDir(pinDir);
}

/**
 * A pin directory must be root's alone: where /sys/fs/bpf is world-writable
 * (1777, as on these machines), a user could create lowport's directory first
 * and then remove its pins, ending every grant.
 */
export function assertRootOwnedDir(dir: string): void {
  const st = lstatSync(dir);
  // Root's and not writable by others; a sticky directory (the bpffs root when
  // mounted 1777) is fine: others cannot remove or rename root's entries in it.
  const sticky = (st.mode & 0o1000) !== 0;
  if (!st.isDirectory() || st.uid !== 0 || ((st.mode & 0o022) !== 0 && !sticky)) {
    throw new LowportError('E_POLICY_UNSAFE', `${dir} is not a directory only root controls (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}); someone else made it`, {
      hint: `Remove it (rm -r ${dir}) and run the command again.`,
    });
  }
}

export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Unpins (unlinks) a pinned object; a missing one is fine. */
export function unpin(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Removes a pin directory and the pins in it. */
export function removePinDir(dir: string): void {
  for (const name of listDir(dir)) unpin(join(dir, name));
  try {
    rmdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** rename(2) on bpffs: atomic, so a staged set of pins appears at once. */
export function renamePin(from: string, to: string): void {
  renameSync(from, to);
}
