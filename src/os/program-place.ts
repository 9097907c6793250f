/**
 * Where a program lives, as facts for a root unit that must find it again at
 * every boot: a temporary place (gone at reboot or to a tmp cleaner), a source
 * checkout (rebuilt, pulled or cleaned in place), a package directory that
 * npm linked rather than copied, and paths resolved inside an image's root.
 */
import { lstatSync, readlinkSync, statfsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { readFileHead } from './files.js';

// statfs(2) f_type values, linux/magic.h.
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const S_IWOTH = 0o002;
const S_ISVTX = 0o1000;

/** Directories that the FHS and systemd-tmpfiles empty at boot or clean by age. */
const TEMPORARY_DIRS = ['/tmp', '/var/tmp', '/run', '/var/run', '/dev/shm'];

/** Why a path does not last: under one of TEMPORARY_DIRS, on a tmpfs/ramfs, or in a world-writable sticky directory. */
export interface TemporaryPlace {
  path: string;
  why: 'temporary-dir' | 'tmpfs' | 'sticky';
  /** The directory that makes it so. */
  at: string;
}

/** Whether `path` (absolute, symlinks already resolved) lies in a place that does not survive a reboot or a tmp cleaner. */
export function temporaryPlace(path: string, fileSystems = true): TemporaryPlace | undefined {
  const abs = resolve(path);
  for (const dir of TEMPORARY_DIRS) if (abs === dir || abs.startsWith(`${dir}/`)) return { path: abs, why: 'temporary-dir', at: dir };
  if (!fileSystems) return undefined;
  const parts = abs.split(sep).filter((p) => p !== '');
  for (let i = parts.length; i >= 0; i--) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    let st;
    try {
      st = statSync(dir);
    } catch {
      continue;
    }
    if (st.isDirectory() && (st.mode & S_IWOTH) !== 0 && (st.mode & S_ISVTX) !== 0) return { path: abs, why: 'sticky', at: dir };
  }
  try {
    const type = statfsSync(abs).type;
    if (type === TMPFS_MAGIC || type === RAMFS_MAGIC) return { path: abs, why: 'tmpfs', at: abs };
  } catch {
    // Not there: the caller's tree check reports it.
  }
  return undefined;
}

/** The entry that makes `dir` a source checkout (`.git`, `tsconfig.json`): what `npm pack` and the Debian package never ship. */
export function checkoutMarker(dir: string): string | undefined {
  for (const name of ['.git', 'tsconfig.json']) {
    try {
      lstatSync(join(dir, name));
      return join(dir, name);
    } catch {
      // absent
    }
  }
  return undefined;
}

/**
 * The npm link on the way to `path`, if any: a symlink named PACKAGE directly
 * in a `node_modules` directory that points at a directory, as `npm install -g
 * .` and `npm link` make (a copying install makes a real directory there).
 * Symlinks are followed as the kernel would, one component at a time.
 */
export function npmLinkOnPath(path: string, pkg: string): { link: string; target: string } | undefined {
  let pending = resolve(path)
    .split(sep)
    .filter((p) => p !== '');
  let cur = '/';
  for (let hops = 0; pending.length > 0 && hops < 64;) {
    const part = pending.shift() as string;
    const next = join(cur, part);
    let st;
    try {
      st = lstatSync(next);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      cur = next;
      continue;
    }
    hops++;
    const to = readlinkSync(next);
    const target = resolve(cur, to);
    let isDir = false;
    try {
      isDir = statSync(next).isDirectory();
    } catch {
      return undefined;
    }
    if (isDir && part === pkg && cur.endsWith('/node_modules')) return { link: next, target };
    pending = [...target.split(sep).filter((p) => p !== ''), ...pending];
    cur = '/';
  }
  return undefined;
}

/**
 * `path` as the system inside `root` would resolve it (an image for
 * `systemctl --root`): symlinks, absolute ones included, are followed inside
 * `root`, never into the machine that looks at it. Returns the path inside
 * the image (absolute, no symlinks) or undefined when nothing is there.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  let pending = path.split(sep).filter((p) => p !== '');
  const done: string[] = [];
  for (let hops = 0; pending.length > 0;) {
    const part = pending.shift() as string;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const inside = `/${[...done, part].join('/')}`;
    let st;
    try {
      st = lstatSync(join(root, inside));
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++hops > 40) return undefined;
    const to = readlinkSync(join(root, inside));
    pending = [...to.split(sep).filter((p) => p !== ''), ...pending];
    if (isAbsolute(to)) done.length = 0;
  }
  return `/${done.join('/')}`;
}

/**
 * A script's `#!` line without the `#!`, or undefined. Reads at most 256
 * bytes, of a regular file only (readFileHead): a FIFO or device planted
 * there is never opened, so it cannot hang or feed the caller.
 */
export function shebang(path: string): string | undefined {
  const line = readFileHead(path, 256)?.toString('utf8').split('\n')[0] ?? '';
  return line.startsWith('#!') ? line.slice(2).trim() : undefined;
}

/** The directory of a script's package (package-dir.ts): above dist/ in dist/src/cli/main.js and dist/bundle/main.js alike. */
export { packageDirOf } from './package-dir.js';
