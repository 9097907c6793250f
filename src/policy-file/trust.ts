/**
 * The trusted read and write of files root uses at paths an admin gives (the
 * policy, its lock, generated units, authbind's tree): the checks are
 * os/files.ts's (facts: what was found), the refusal is here, worded for
 * what the file is for. `the policy file X is owned by uid 1000, not root, so
 * that user could grant themselves any port; lowport refuses to use it`, and
 * what to run about it.
 */
import { dirname, join } from 'node:path';
import { LowportError } from '../errors.js';
import { errnoCode, UnsafeFileError, type FileFacts, type FileType, type Finding } from '../os/dirfd.js';
import {
  assertRootControlled as checkRootControlled,
  ensureRootControlledDir,
  lockFile,
  makeDirs,
  ownershipFinding,
  readRegularFile,
  readRootControlledDirFiles,
  readRootControlledFile,
  removeRootControlledDirIfEmpty,
  removeRootControlledFile,
  writeFileAtomic as writeAtomic,
  type WriteOptions as FileWriteOptions,
} from '../os/files.js';
import { effectiveUid } from '../os/process.js';

/** What a file is for, in the refusal: `the policy file X ... so that user could grant themselves any port`. */
export interface Role {
  noun: string;
  risk: string;
}

export const POLICY: Role = { noun: 'policy', risk: 'grant themselves any port' };
/** A file of the policy's drop-in directory (policy/sources.ts), and that directory. */
export const DROPIN: Role = { noun: 'policy drop-in', risk: 'grant themselves any port' };
const LOCK: Role = { noun: 'lock', risk: 'stall lowport or make root write where they point' };
/** Files lowport generates for root (units): a planted link would make root overwrite the file it points at. */
export const GENERATED: Role = { noun: 'output', risk: 'plant a link there and make root overwrite any file' };

/** What a non-regular file is, for a refusal. */
export function fileKind(type: FileType): string {
  switch (type) {
    case 'fifo':
      return 'a FIFO (named pipe): reading it could block lowport forever';
    case 'directory':
      return 'a directory';
    case 'socket':
      return 'a socket';
    case 'device':
      return 'a device';
    case 'symlink':
      return 'a symlink';
    default:
      return 'not a regular file';
  }
}

/** A refusal: E_POLICY_UNSAFE, with the cause of os/ kept. */
export function unsafe(message: string, hint: string, cause?: unknown): LowportError {
  return new LowportError('E_POLICY_UNSAFE', `${message}; lowport refuses to use it`, { hint, ...(cause === undefined ? {} : { cause }) });
}

/** A file error a user can act on (permissions, a missing directory), not a stack trace. */
function fileError(path: string, code: string, cause?: unknown): LowportError {
  const hint =
    code === 'EACCES'
      ? `Run it as root (sudo), or make ${path} readable.`
      : code === 'ENOENT'
        ? `Create it, or give another path.`
        : code === 'ELOOP'
          ? 'Replace the symlink loop with the file.'
          : 'Check the path.';
  return new LowportError('E_STATE', `cannot use ${path}: ${code}`, { hint, ...(cause === undefined ? {} : { cause }) });
}

/**
 * Why a file or directory is not root's alone, worded for its role, or
 * undefined when it is. Pure (the ACL passed in), for tests.
 */
export function ownershipProblem(
  path: string,
  st: { uid: number; gid: number; mode: number },
  what: 'file' | 'directory',
  acl: Buffer | undefined,
  role: Role = POLICY,
): { message: string; fix: string } | undefined {
  const finding = ownershipFinding(st, acl);
  return finding === undefined ? undefined : ownershipWording(path, what, finding, role);
}

function ownershipWording(path: string, what: 'file' | 'directory', finding: Finding, role: Role): { message: string; fix: string } {
  const noun = `the ${role.noun} ${what}`;
  const fix = what === 'file' ? `chown root:root ${path} && chmod 644 ${path}` : `chown root:root ${path} && chmod go-w ${path}`;
  switch (finding.problem) {
    case 'acl':
      return {
        message: `${noun} ${path} has an ACL that lets ${finding.writers.join(', ')} write it, so they could ${role.risk}`,
        fix: `setfacl -b ${path}`,
      };
    case 'owner':
      return { message: `${noun} ${path} is owned by uid ${finding.uid}, not root, so that user could ${role.risk}`, fix };
    case 'world-writable':
      if (what === 'directory' && finding.sticky) {
        return {
          message: `${noun} ${path} is writable by everyone (sticky, as /tmp is: anyone can still plant a symlink or a FIFO at a name lowport is about to use), so anyone could ${role.risk}`,
          fix: `a directory that only root can write${role === POLICY ? ' (for the policy, the default /etc/lowport)' : ''}; do not share one with every user`,
        };
      }
      return { message: `${noun} ${path} is world-writable, so anyone could ${role.risk}`, fix };
    case 'group-writable':
      return { message: `${noun} ${path} is writable by group ${finding.gid}, so its members could ${role.risk}`, fix };
    default:
      return { message: `${noun} ${path} is not root's alone (${describeFacts(finding)})`, fix };
  }
}

function describeFacts(finding: Finding): string {
  return finding.problem === 'mode'
    ? `mode ${finding.mode.toString(8)}`
    : finding.problem === 'links'
      ? `${finding.nlink} links`
      : finding.problem;
}

function mode(facts: FileFacts | undefined): string {
  return ((facts?.mode ?? 0) & 0o777).toString(8);
}

/** A lock file's refusal: it must be root's own regular file, 0600, one link (DirFd.lock). */
export function lockRefusal(e: UnsafeFileError): LowportError {
  if (e.finding.problem === 'symlink') return unsafe(`the lock file ${e.path} is a symlink`, `rm -f ${e.path}`, e);
  const kind = e.facts === undefined || e.facts.type === 'file' ? '' : `, ${fileKind(e.facts.type)}`;
  return unsafe(
    `the lock file ${e.path} is not root's own (uid ${e.facts?.uid ?? '?'}, mode ${mode(e.facts)}${kind})`,
    `rm -f ${e.path}`,
    e,
  );
}

/** What os/ found, worded for the file's role; any other error as it is. */
function refusal(e: unknown, given: string, role: Role): unknown {
  if (e instanceof UnsafeFileError) {
    if (e.place === 'lock') return lockRefusal(e);
    const { finding } = e;
    if (finding.problem === 'symlink') {
      return e.place === 'file'
        ? unsafe(`the ${role.noun} ${e.path} became a symlink while lowport read it`, 'Check who else changes it, then try again.', e)
        : fileError(given, 'ELOOP', e);
    }
    if (finding.problem === 'type') {
      if (e.place !== 'file') return fileError(given, 'ENOTDIR', e);
      return unsafe(
        `the ${role.noun} ${e.path} is ${fileKind(finding.type)}, not a regular file`,
        `Point lowport at a regular file owned by root (rm ${e.path}, if it is not yours).`,
        e,
      );
    }
    const problem = ownershipWording(e.path, e.place === 'file' ? 'file' : 'directory', finding, role);
    return unsafe(problem.message, problem.fix.startsWith('a directory') ? `Use ${problem.fix}.` : `Run: ${problem.fix}`, e);
  }
  const code = errnoCode(e);
  return code === undefined ? e : fileError(given, code, e);
}

function worded<T>(given: string, role: Role, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw refusal(e, given, role);
  }
}

/**
 * Refuses a file, or any directory on the way to it from /, that a user other
 * than root could change: owned by someone else, group-writable by a group
 * other than root, world-writable (sticky or not), or with an ACL that lets
 * another user write. A symlink is followed only when the directory it sits
 * in passes the same check (only root could have made it), and the
 * directories it leads through are checked too (os/files.ts).
 */
export function assertRootControlled(path: string, role: Role = POLICY, missingOk = false): void {
  worded(path, role, () => checkRootControlled(path, missingOk));
}

/**
 * The policy file's text, or undefined when it does not exist: only a
 * regular file that root alone controls, in directories root alone
 * controls, checked and read on one open fd (os/files.ts).
 */
export function readPolicyFile(path: string): string | undefined {
  return worded(path, POLICY, () => readRootControlledFile(path));
}

/**
 * The drop-ins of the policy's drop-in directory that `pick` chooses from its
 * names (its order), each with its text; undefined when there is no such
 * directory. The directory is checked as the policy's own (root's alone,
 * every directory above it too) and read on its fd; each file is opened
 * relative to it without following a link and checked as the policy file is.
 * A symlink is refused, not followed: a drop-in is a file of its own.
 */
export function readPolicyDropins(dir: string, pick: (names: string[]) => string[]): { name: string; text: string }[] | undefined {
  try {
    return readRootControlledDirFiles(dir, pick);
  } catch (e) {
    if (e instanceof UnsafeFileError && e.place === 'file' && e.finding.problem === 'symlink') {
      throw unsafe(
        `the policy drop-in ${e.path} is a symlink, and drop-ins are opened without following links`,
        `Put the file itself there: cp --remove-destination "$(readlink -f ${e.path})" ${e.path}`,
        e,
      );
    }
    throw refusal(e, dir, DROPIN);
  }
}

/**
 * Creates a directory if needed and checks that only root controls it and
 * every directory above it: each is checked before anything is made in it,
 * and each new level is made (root's, `mode`) one at a time. Returns its
 * real path.
 */
export function ensureTrustedDir(dir: string, mode: number, role: Role = POLICY): string {
  return worded(dir, role, () => ensureRootControlledDir(dir, mode));
}

/** Creates the policy's directory if needed (root-owned, 0755) and checks that only root controls it. */
export function preparePolicyDir(dir: string): void {
  ensureTrustedDir(dir, 0o755, POLICY);
}

export interface WriteOptions extends FileWriteOptions {
  /** What the file is, in a refusal. */
  role?: Role;
}

/**
 * Replaces the file in one rename, in a directory only root controls (unless
 * `rootOnly` is false): a reader sees the old text or the new, never half of
 * one, and nothing planted at a temp name is written through (os/files.ts).
 */
export function writeFileAtomic(target: string, text: string, options: WriteOptions = {}): void {
  worded(target, options.role ?? POLICY, () => writeAtomic(target, text, options));
}

/**
 * Takes an exclusive lock on a directory until `release` is called or the
 * process exits; two lowport commands editing the same policy run one after
 * the other, and both edits land.
 */
export function lockDirectory(dir: string): { release: () => void } {
  // A root-only file, not the directory itself: flock needs only an open fd,
  // and any user can open a 0755 directory and hold its lock forever.
  const path = join(dir, '.lowport.lock');
  return worded(path, LOCK, () => lockFile(path));
}

/**
 * Writes a generated file (a unit) with mode 0644, creating its directory.
 * A link at the file's name is replaced, never followed. As root, the
 * directory and every one above it must be root's alone (a link or a
 * directory planted in a shared one would steer root's write); a non-root
 * user may write into their own directories.
 */
export function writeUnitFile(path: string, text: string): void {
  const root = effectiveUid() === 0;
  const dir = dirname(path);
  if (root) ensureTrustedDir(dir, 0o755, GENERATED);
  else worded(dir, GENERATED, () => makeDirs(dir));
  writeFileAtomic(path, text, { role: GENERATED, rootOnly: root, followLink: false });
}

/** A regular file's text (following links: authbind's own files); anything else is refused without being opened. */
export function readTextFile(path: string): string {
  try {
    return readRegularFile(path);
  } catch (e) {
    if (e instanceof UnsafeFileError && e.finding.problem === 'type') {
      throw new LowportError('E_STATE', `${path} is ${fileKind(e.finding.type)}, not a regular file`, {
        hint: 'Replace it with a regular file, or remove it.',
      });
    }
    const code = errnoCode(e);
    throw code === undefined ? e : fileError(path, code, e);
  }
}

/**
 * Removes a file root made (a unit, the policy, its lock) through directories
 * only root controls, checked from / (a symlink at the name itself goes, not
 * what it points at); a missing one is fine. With `emptyDir`, its directory
 * goes too when nothing else is left in it.
 */
export function removeTrustedFile(path: string, role: Role, { emptyDir = false }: { emptyDir?: boolean } = {}): void {
  worded(path, role, () => {
    removeRootControlledFile(path);
    if (emptyDir) removeRootControlledDirIfEmpty(dirname(path));
  });
}

/** Removes directory `dir` when it is empty, reached as removeTrustedFile reaches a file; leaves it, and says nothing, otherwise. */
export function removeTrustedDirIfEmpty(dir: string, role: Role): void {
  worded(dir, role, () => removeRootControlledDirIfEmpty(dir));
}
