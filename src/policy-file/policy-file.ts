/**
 * The policy file as one owner sees it: the trusted read (only a file root
 * alone controls, trust.ts), the header of a new file, the lock beside it,
 * and the one edit transaction every change goes through. What "making live"
 * means is the caller's (grants swap BPF maps, forwards change nftables): it
 * comes in as a step that can be undone.
 */
import { dirname } from 'node:path';
import { LowportError } from '../errors.js';
import { pathExists } from '../os/process.js';
import { parsePolicy, STATEMENTS } from '../policy/parse.js';
import { serializePolicy } from '../policy/print.js';
import type { EditResult } from '../policy/edit.js';
import type { PolicyDocument } from '../policy/types.js';
import { lockDirectory, preparePolicyDir, readPolicyFile, writeFileAtomic } from './trust.js';

/** What a file lowport creates starts with: every statement of the parser's table, in short. */
export const NEW_FILE_HEADER = [
  '# lowport policy: who may bind which ports below 1024 (and above).',
  ...STATEMENTS.map((s) => `#   ${s.keyword.padEnd(7)} ${s.form}`),
  '# PORTS: 80  80,443  8000-8100  53/udp  443/tcp (no suffix: tcp and udp).',
  '# Edit by hand or with `lowport grant/revoke/reserve/forward add`; apply with `lowport apply`.',
  '',
].join('\n');

export interface PolicyText {
  /** The file's text; '' when there is no file yet. */
  text: string;
  doc: PolicyDocument;
}

/**
 * The policy file's text and document; with `allowMissing`, an empty document
 * (with the header) when the file does not exist yet.
 */
export function readPolicy(path: string, allowMissing: boolean): PolicyText {
  const text = allowMissing ? readPolicyFile(path) : readPolicyText(path);
  if (text === undefined) return { text: '', doc: parsePolicy(NEW_FILE_HEADER, path) };
  return { text, doc: parsePolicy(text, path) };
}

/** The policy file's text, checked for ownership; an error that says how to create it when there is none. */
export function readPolicyText(path: string): string {
  const text = readPolicyFile(path);
  if (text === undefined) {
    throw new LowportError('E_POLICY_MISSING', `there is no policy file at ${path}`, {
      hint: 'Create it with `lowport grant PORTS --user NAME`, or write it by hand (see `lowport --help`).',
    });
  }
  return text;
}

/**
 * Runs `fn` under the lock of the policy's directory (root's alone, beside
 * the file), which every change to the file or to what is live from it takes.
 * With `create`, the directory is made (root-owned, 0755) when missing;
 * without it, and with no directory, `fn` runs unlocked: there is nothing an
 * edit could be doing.
 */
export function withPolicyLock<T>(path: string, { create }: { create: boolean }, fn: () => T): T {
  const dir = dirname(path);
  if (create) preparePolicyDir(dir);
  else if (!pathExists(dir)) return fn();
  const lock = lockDirectory(dir);
  try {
    return fn();
  } finally {
    lock.release();
  }
}

/** A make-live step: what it returns, how to put back what was live before, and what to record once the file is written. */
export interface Live<T> {
  result: T;
  /** Puts back what was live before the step (called when the file cannot be written). */
  undo: () => void;
  /** Runs once the file holds the new text (or kept its old one, unchanged). */
  commit?: () => void;
}

export interface EditTransaction<T> extends EditResult {
  path: string;
  /** The text now in the file. */
  text: string;
  live: T;
}

/**
 * The one edit transaction of the policy file: under its lock, read (a
 * missing file is an empty one), edit, make the result live, then write the
 * file. Nothing changes when the edit or the make-live step throws; if the
 * file cannot be written after that, the step is undone. An unchanged
 * document is made live again (names may resolve differently now) and the
 * file is left alone.
 */
export function editPolicyFile<T>(
  path: string,
  edit: (doc: PolicyDocument) => EditResult,
  makeLive: (after: PolicyText, before: PolicyText) => Live<T>,
): EditTransaction<T> {
  return withPolicyLock(path, { create: true }, () => {
    const before = readPolicy(path, true);
    const { doc, changed, notes } = edit(before.doc);
    const after = changed ? { doc, text: serializePolicy(doc) } : before;
    const live = makeLive(after, before);
    if (changed) {
      try {
        writeFileAtomic(path, after.text);
      } catch (e) {
        try {
          live.undo();
        } catch (undoFailed) {
          // The write's error stays the one reported; the failed undo is said with it.
          throw new LowportError(
            'E_STATE',
            `${(e as Error).message}; putting back what was live failed too: ${(undoFailed as Error).message}`,
            {
              hint: 'The kernel may now hold the edit the file lacks: fix the cause, then run `lowport apply`.',
              cause: e,
            },
          );
        }
        throw e;
      }
    }
    live.commit?.();
    return { path, doc, changed, notes, text: after.text, live: live.result };
  });
}
