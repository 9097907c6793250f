/**
 * Whether only root can change what a root process will load from a tree of
 * files (the program a boot unit runs as root): every file and directory in
 * it, every directory above it up to /, and every symlink's target, checked
 * the same way. Nothing is followed blindly: entries are lstat'ed, and a
 * symlink counts for its own directory entry and for what it points at.
 */
import { lstatSync, readdirSync, realpathSync, type Stats } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import type { Finding } from './dirfd.js';
import { aclWriters } from './files.js';
import { getXattr } from './libc.js';

const S_IWGRP = 0o020;
const S_IWOTH = 0o002;
const S_ISVTX = 0o1000;

/** The first path that a user other than root could change, what it is and what was found; undefined when there is none. */
export interface TreeFault {
  path: string;
  kind: 'file' | 'directory' | 'symlink';
  finding: Finding;
}

/** A path of the tree could not be read (lstat, readdir, realpath failed): the error, and the path given. */
export class TreeCheckError extends Error {
  constructor(
    readonly path: string,
    readonly errno: string,
    options: { cause: unknown },
  ) {
    super(`cannot check ${path} (or a path in it): ${errno}`, options);
  }
}

class Walk {
  private readonly seen = new Set<string>();

  /** `base`: where the walk starts (an image's root, whose own parents do not matter inside it). */
  constructor(private readonly base = '/') {}

  /** The path and every directory above it; symlinks on the way are checked and followed to their (checked) targets. */
  path(path: string): TreeFault | undefined {
    const abs = resolve(path);
    const base = abs === this.base || abs.startsWith(`${this.base}/`) ? this.base : '/';
    let fault = this.entry(base, lstatSync(base), 'above');
    if (fault !== undefined) return fault;
    let cur = base;
    const parts = abs
      .slice(base === '/' ? 0 : base.length)
      .split(sep)
      .filter((p) => p !== '');
    for (const [i, part] of parts.entries()) {
      cur = join(cur, part);
      const st = lstatSync(cur);
      fault = this.entry(cur, st, i === parts.length - 1 ? 'inside' : 'above');
      if (fault !== undefined) return fault;
      if (st.isSymbolicLink()) {
        const target = realpathSync(cur);
        fault = this.path(target);
        if (fault !== undefined) return fault;
        cur = target;
      }
    }
    return undefined;
  }

  /** A directory and everything below it. */
  tree(dir: string): TreeFault | undefined {
    const real = realpathSync(dir);
    if (this.seen.has(real)) return undefined;
    this.seen.add(real);
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      let fault = this.entry(p, st, 'inside');
      if (fault !== undefined) return fault;
      if (st.isSymbolicLink()) {
        const target = realpathSync(p);
        fault = this.path(target);
        if (fault === undefined && lstatSync(target).isDirectory()) fault = this.tree(target);
      } else if (st.isDirectory()) {
        fault = this.tree(p);
      }
      if (fault !== undefined) return fault;
    }
    return undefined;
  }

  /**
   * One entry. Inside the tree: root's, and no write bit for group or others
   * (a sticky directory still lets anyone add a file, such as a node_modules
   * that Node would then load). Above it, where only the one name on the path
   * matters: a sticky directory (/tmp) is fine, as is group root's write bit.
   */
  private entry(path: string, st: Stats, where: 'inside' | 'above'): TreeFault | undefined {
    const kind = st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'file';
    if (st.uid !== 0) return { path, kind, finding: { problem: 'owner', uid: st.uid } };
    if (kind === 'symlink') return undefined;
    const writers = aclWriters(getXattr(path, 'system.posix_acl_access'), st.gid);
    if (writers.length > 0) return { path, kind, finding: { problem: 'acl', writers } };
    const sticky = kind === 'directory' && (st.mode & S_ISVTX) !== 0;
    if (st.mode & S_IWOTH && (where === 'inside' || !sticky)) return { path, kind, finding: { problem: 'world-writable', sticky } };
    if (st.mode & S_IWGRP && (where === 'inside' || st.gid !== 0))
      return { path, kind, finding: { problem: 'group-writable', gid: st.gid } };
    return undefined;
  }
}

/**
 * The first fault in `paths` (each checked with the directories above it)
 * and in `trees` (each walked whole): what lowport refuses to run as root.
 * `base` (absolute, no symlinks): the directories above it are not checked,
 * for the files of an image whose root it is.
 */
export function findTreeFault(paths: string[], trees: string[], base = '/'): TreeFault | undefined {
  const walk = new Walk(resolve(base));
  for (const p of [...paths, ...trees]) {
    let fault: TreeFault | undefined;
    try {
      fault = walk.path(p);
      if (fault === undefined && trees.includes(p) && lstatSync(realpathSync(p)).isDirectory()) fault = walk.tree(realpathSync(p));
    } catch (e) {
      throw new TreeCheckError(p, (e as NodeJS.ErrnoException).code ?? 'EIO', { cause: e });
    }
    if (fault !== undefined) return fault;
  }
  return undefined;
}
