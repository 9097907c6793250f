/**
 * bpffs, where lowport pins its links and map so the grant outlives the command.
 *
 * It is not mounted at boot everywhere: lowport mounts it at /sys/fs/bpf
 * (mode 0700, as systemd does) when the pin directory lives there. Where it is
 * mounted 1777 (the kernel's default for a bare `mount -t bpf`, and what some
 * container runtimes do), any user can create names in it. So the pin
 * directory is the one thing of lowport's with a name there: root's own, mode
 * 0700, checked through an fd opened without following a symlink, and every
 * step inside it goes through that fd (os/dirfd.ts). Nothing another user
 * makes can then be mistaken for lowport's, or make root act elsewhere.
 */
import { mkdirSync, statfsSync, type Stats } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { LowportError } from '../errors.js';
import { errnoCode, openDirChain, UnsafeFileError, type DirFd } from '../os/dirfd.js';
import { mount } from '../os/libc.js';
import { mountOf, readMounts } from '../os/mounts.js';

const DEFAULT_BPFFS = '/sys/fs/bpf';

// linux/magic.h
const BPF_FS_MAGIC = 0xcafe4a11;

/** Makes sure `pinDir` is on a bpf filesystem, mounting /sys/fs/bpf if it is the standard place and nothing is mounted there. */
function ensureBpffs(pinDir: string): void {
  if (mountOf(pinDir)?.fsType === 'bpf') return;
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

/** The pin directory, open: `dir` is it, `parent` the directory its name is in. Close both with close(). */
export interface PinDir {
  path: string;
  dir: DirFd;
  parent: DirFd;
  close(): void;
}

/**
 * Opens the pin directory, creating it (root's, 0700) when `create`; returns
 * undefined when it does not exist and `create` is false. Refuses, with an
 * error naming the path and the fix: a path through a symlink, a symlink or
 * anything but a directory at the pin directory, one owned by another user
 * or one others could have written into. A root-owned directory that only
 * others could read (0755, as older lowport versions could leave) is
 * tightened to 0700: no one but root could have put anything in it.
 */
export function openPinDir(pinDir: string, { create }: { create: boolean }): PinDir | undefined {
  const path = resolve(pinDir);
  if (path === '/') throw unsafe(`the pin directory cannot be /`, 'Give a --pin-dir of its own, e.g. /sys/fs/bpf/lowport.');
  if (create) ensureBpffs(path);
  const parent = openPinDirParent(dirname(path), create);
  if (parent === undefined) return undefined;
  try {
    const name = basename(path);
    if (create) parent.mkdir(name, 0o700);
    const st = parent.lstat(name);
    if (st === undefined) {
      parent.close();
      return undefined;
    }
    checkPinDirStat(path, st);
    const dir = parent.openDir(name);
    try {
      // Checked again on the open directory itself: the name may have changed hands meanwhile.
      const own = dir.stat();
      checkPinDirStat(path, own);
      if ((own.mode & 0o077) !== 0) dir.chmod(0o700);
      if (statfsSync(dir.procPath('.')).type !== BPF_FS_MAGIC) {
        throw new LowportError('E_UNSUPPORTED', `the pin directory ${path} is not on a bpf filesystem`, {
          hint: `Choose a --pin-dir under ${DEFAULT_BPFFS}, or mount one: mount -t bpf bpf <dir>`,
        });
      }
    } catch (e) {
      dir.close();
      throw e;
    }
    return {
      path,
      dir,
      parent,
      close: () => {
        dir.close();
        parent.close();
      },
    };
  } catch (e) {
    parent.close();
    throw e;
  }
}

/**
 * The directory the pin directory is in, open: every directory from / to it
 * root's and not writable by others unless sticky (os/dirfd.ts,
 * openDirChain), none a symlink; made (root's, 0755) when missing and
 * `create`.
 */
function openPinDirParent(dir: string, create: boolean): DirFd | undefined {
  try {
    return openDirChain(dir, { create });
  } catch (e) {
    if (e instanceof UnsafeFileError && e.finding.problem === 'symlink')
      throw unsafe(`${e.path} is a symlink; lowport refuses a path to the pin directory that goes through one`, 'Give the real path.');
    if (e instanceof UnsafeFileError && e.finding.problem !== 'type') {
      throw unsafe(
        `${e.path}, above the pin directory, is not root's alone (uid ${e.facts?.uid ?? '?'}, mode ${(e.facts?.mode ?? 0).toString(8)}): others could move what is in it`,
        `Use a path under directories only root controls (chown root ${e.path} && chmod go-w ${e.path}, if it should be).`,
      );
    }
    if (e instanceof UnsafeFileError || errnoCode(e) === 'ENOTDIR')
      throw unsafe(`the path of the pin directory (${dir}) is not a chain of directories`, 'Give the real path.');
    throw e;
  }
}

function checkPinDirStat(path: string, st: Stats): void {
  if (st.isSymbolicLink()) {
    throw unsafe(
      `the pin directory ${path} is a symlink, not a directory of root's`,
      `Remove it (rm ${path}; someone else made it) and run the command again.`,
    );
  }
  if (!st.isDirectory()) {
    throw unsafe(`the pin directory ${path} is not a directory`, `Remove it (rm ${path}; someone else made it) and run the command again.`);
  }
  if (st.uid !== 0) {
    throw unsafe(
      `the pin directory ${path} is owned by uid ${st.uid}, not root: that user could remove lowport's pins or plant their own`,
      `Remove it (rm -r ${path}) and run the command again.`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw unsafe(
      `the pin directory ${path} is writable by others (mode ${(st.mode & 0o7777).toString(8)}), so what is in it may not be root's`,
      `Remove it (lowport off --pin-dir ${path}, then rm -r ${path} if it is still there) and run the command again.`,
    );
  }
}

function unsafe(message: string, hint: string): LowportError {
  return new LowportError('E_POLICY_UNSAFE', `${message}; lowport refuses to use it`, { hint });
}

/** What an entry in the pin directory (or a directory below it) is: a checked subdirectory, a checked pin, or nothing. */
export type EntryKind = 'dir' | 'pin' | undefined;

/**
 * An entry of a directory lowport owns, checked without following it: a
 * symlink, or anything not root's, is refused (root made everything in a 0700
 * root directory, so such an entry means someone else got in, or a mistake).
 */
export function checkedEntry(dir: DirFd, name: string): EntryKind {
  const st = dir.lstat(name);
  if (st === undefined) return undefined;
  const path = `${dir.path}/${name}`;
  if (st.isSymbolicLink())
    throw unsafe(`${path} is a symlink, which lowport never makes`, `Remove it (rm ${path}) and run the command again.`);
  if (st.uid !== 0) throw unsafe(`${path} is owned by uid ${st.uid}, not root`, `Remove it (rm -r ${path}) and run the command again.`);
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'pin';
  throw unsafe(`${path} is neither a pin nor a directory`, `Remove it (rm ${path}) and run the command again.`);
}

/** Checks every entry of the directory (see checkedEntry) and returns the names. */
export function checkedNames(dir: DirFd): string[] {
  const names = dir.names();
  for (const name of names) checkedEntry(dir, name);
  return names;
}

/**
 * Removes a directory of pins below `dir` (a stage, or the live set): its
 * entries are unlinked through its own fd (unlinkat never follows a
 * symlink), then it goes. A missing one is fine.
 */
export function removePinSet(dir: DirFd, name: string): void {
  const kind = checkedEntry(dir, name);
  if (kind === undefined) return;
  if (kind !== 'dir') {
    dir.unlink(name);
    return;
  }
  const set = dir.openDir(name);
  try {
    for (const entry of set.names()) set.unlink(entry);
  } finally {
    set.close();
  }
  dir.rmdir(name);
}

/**
 * Removes a staging directory an older lowport left beside the pin
 * directory, in the (possibly world-writable) parent: only when it is, seen
 * without following a link, a real directory of root's; anything else there
 * under that name is someone else's and stays. Returns whether it went.
 */
export function removeOldStage(parent: DirFd, name: string): boolean {
  const st = parent.lstat(name);
  if (st === undefined || st.isSymbolicLink() || !st.isDirectory() || st.uid !== 0) return false;
  const stage = parent.openDir(name);
  try {
    const own = stage.stat();
    // The name may have changed hands between the lstat and the open.
    if (own.uid !== 0 || own.ino !== st.ino) return false;
    for (const entry of stage.names()) stage.unlink(entry);
  } finally {
    stage.close();
  }
  parent.rmdir(name);
  return true;
}
