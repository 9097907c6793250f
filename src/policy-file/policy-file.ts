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
import {
  dropinDirOf,
  dropinOptionName,
  joinPolicyTexts,
  parsePolicyFiles,
  sortDropinNames,
  type DropinText,
  type PolicyTexts,
} from '../policy/sources.js';
import { serializePolicy } from '../policy/print.js';
import type { EditResult } from '../policy/edit.js';
import type { PolicyDocument } from '../policy/types.js';
import {
  DROPIN,
  ensureTrustedDir,
  lockDirectory,
  preparePolicyDir,
  readPolicyDropins,
  readPolicyFile,
  readTextFile,
  writeFileAtomic,
} from './trust.js';

/** What a file lowport creates starts with: every statement of the parser's table, in short. */
export const NEW_FILE_HEADER = [
  '# lowport policy: who may bind which ports below 1024 (and above).',
  ...STATEMENTS.map((s) => `#   ${s.keyword.padEnd(7)} ${s.form}`),
  '# PORTS: 80  80,443  8000-8100  53/udp  443/tcp (no suffix: tcp and udp).',
  '# Edit by hand or with `lowport grant/revoke/reserve/forward add`; apply with `lowport apply`.',
  '',
].join('\n');

export interface PolicyText {
  /**
   * The texts of the file and its drop-ins as one string (policy/sources.ts,
   * joinPolicyTexts): what the fingerprint in the kernel covers and the
   * applied state keeps. The file's own text when it has no drop-ins; '' when
   * there is no file yet and no drop-in.
   */
  text: string;
  /** The file and its drop-ins as one document (sources.ts). */
  doc: PolicyDocument;
  /** Each file's text; `main` is '' when there is no file yet. */
  texts: PolicyTexts;
  /** There is no policy file yet (readPolicy with allowMissing). */
  missing?: true;
}

/**
 * The policy file and its drop-ins (`PATH.d/*.policy`, policy/sources.ts),
 * each read only if root alone controls it (trust.ts), as one document; with
 * `allowMissing`, a missing file is an empty one with the header. Every
 * file's problems are thrown together.
 */
export function readPolicy(path: string, allowMissing: boolean): PolicyText {
  const main = allowMissing ? readPolicyFile(path) : readPolicyText(path);
  const texts = { main: main ?? '', dropins: readDropins(path) };
  const missing = main === undefined ? { missing: true as const } : {};
  if (main === undefined && texts.dropins.length === 0) return { text: '', doc: parsePolicy(NEW_FILE_HEADER, path), texts, ...missing };
  return { text: joinPolicyTexts(texts), doc: parsePolicyFiles(texts, path), texts, ...missing };
}

/** The drop-ins of the policy at `path`, in the order they are read (none when its directory does not exist). */
export function readDropins(path: string): DropinText[] {
  return readPolicyDropins(dropinDirOf(path), sortDropinNames) ?? [];
}

/**
 * The policy as it would be with the text of file `candidate` as its drop-in
 * `dropin` (`web.policy`), in place of the one there or added: what Ansible's
 * `validate` (or visudo -cf) checks before a file is put in place. The
 * candidate is read as a regular file (never a FIFO or a device) wherever it
 * is; its ownership is checked when it is in place and applied. Its
 * diagnostics name it by its own path.
 */
export function readPolicyWithCandidate(path: string, dropin: string, candidate: string): PolicyText {
  const texts = {
    main: readPolicyText(path),
    dropins: withDropin(readDropins(path), dropin, readTextFile(candidate)).map((d) => (d.name === dropin ? { ...d, from: candidate } : d)),
  };
  return { text: joinPolicyTexts(texts), doc: parsePolicyFiles(texts, path), texts };
}

/** The policy's texts, joined (sources.ts), when its file exists; undefined otherwise. Checked as readPolicy does, not parsed. */
export function readPolicyTexts(path: string): string | undefined {
  const main = readPolicyFile(path);
  return main === undefined ? undefined : joinPolicyTexts({ main, dropins: readDropins(path) });
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
  /** The file edited: the policy, or one of its drop-ins. */
  path: string;
  /** The text now in that file. */
  text: string;
  /** The policy and its drop-ins after the edit, as one. */
  all: PolicyText;
  live: T;
}

export interface EditOptions {
  /** Edit drop-in NAME (`web.policy`, policy/sources.ts dropinFileName) instead of the policy file. */
  dropin?: string | undefined;
  /**
   * When the other files of the policy hold some of what the edit would
   * change (a revoke of a grant that lives in a drop-in), say where, with
   * how to edit them: an edit changes one file.
   */
  elsewhere?: boolean;
  /**
   * Chooses the file to edit from the policy as read under the lock (a
   * drop-in's name, or undefined for the policy file), in place of
   * `dropin`; may throw to refuse the edit, and nothing changes. For an edit
   * whose file depends on what the files hold (`lowport log disable` edits
   * the one with the `log` statement).
   */
  choose?: (before: PolicyText) => string | undefined;
}

/**
 * The one edit transaction of the policy: under its lock, read the file and
 * its drop-ins (a missing file is an empty one), edit one of them (the file,
 * or the drop-in `o.dropin`), make all of them live as one policy, then write
 * the edited file (a new drop-in's directory made root's, 0755, the file
 * 0644; a missing policy file gets its header, so that `apply` finds it).
 * Nothing changes when the edit or the make-live step throws (a statement
 * that clashes with another file's, too); if the file cannot be written
 * after that, the step is undone. An unchanged document is made live again
 * (names may resolve differently now) and the file is left alone.
 */
export function editPolicyFile<T>(
  path: string,
  edit: (doc: PolicyDocument) => EditResult,
  makeLive: (after: PolicyText, before: PolicyText) => Live<T>,
  o: EditOptions = {},
): EditTransaction<T> {
  return withPolicyLock(path, { create: true }, () => {
    const before = readPolicy(path, true);
    const mainMissing = before.missing === true;
    const dropin = o.choose === undefined ? o.dropin : o.choose(before);
    const edited = dropin === undefined ? path : `${dropinDirOf(path)}/${dropin}`;
    const current =
      dropin === undefined ? (mainMissing ? undefined : before.texts.main) : before.texts.dropins.find((d) => d.name === dropin)?.text;
    // The policy file alone (no drop-ins, none edited): its document is the one read, and the edit's the one made live, as before drop-ins.
    const alone = dropin === undefined && before.texts.dropins.length === 0;
    const { doc, changed, notes } = edit(alone ? before.doc : parsePolicy(current ?? NEW_FILE_HEADER, edited));
    const text = changed ? serializePolicy(doc) : (current ?? '');
    if (o.elsewhere === true) notes.push(...foundElsewhere(path, before.texts, dropin, edit));
    let after = before;
    if (changed && alone) {
      after = { text, doc, texts: { main: text, dropins: [] } };
    } else if (changed) {
      const texts =
        dropin === undefined
          ? { ...before.texts, main: text }
          : { main: mainMissing ? NEW_FILE_HEADER : before.texts.main, dropins: withDropin(before.texts.dropins, dropin, text) };
      after = { text: joinPolicyTexts(texts), doc: parsePolicyFiles(texts, path), texts };
    }
    const live = makeLive(after, before);
    if (changed) {
      try {
        if (dropin !== undefined) {
          if (mainMissing) writeFileAtomic(path, NEW_FILE_HEADER);
          ensureTrustedDir(dropinDirOf(path), 0o755, DROPIN);
          writeFileAtomic(edited, text, { role: DROPIN, followLink: false });
        } else {
          writeFileAtomic(path, text);
        }
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
    return { path: edited, doc, changed, notes, text, all: after, live: live.result };
  });
}

/** The drop-ins with NAME's text replaced, or NAME added where the order of reading puts it. */
function withDropin(dropins: readonly DropinText[], name: string, text: string): DropinText[] {
  const others = dropins.filter((d) => d.name !== name);
  const byName = new Map([...others.map((d): [string, string] => [d.name, d.text]), [name, text]]);
  return sortDropinNames([...byName.keys()]).map((n) => ({ name: n, text: byName.get(n) ?? '' }));
}

/**
 * The other files of the policy where `edit` would change something (it is
 * run on each, and nothing is written): one note each, with the lines and
 * how to edit that file.
 */
function foundElsewhere(path: string, texts: PolicyTexts, edited: string | undefined, edit: (doc: PolicyDocument) => EditResult): string[] {
  const files = [
    ...(edited === undefined ? [] : [{ file: path, name: undefined, text: texts.main }]),
    ...texts.dropins.filter((d) => d.name !== edited).map((d) => ({ file: `${dropinDirOf(path)}/${d.name}`, name: d.name, text: d.text })),
  ];
  const notes: string[] = [];
  for (const f of files) {
    const doc = parsePolicy(f.text, f.file);
    const result = edit(doc);
    if (!result.changed) continue;
    const kept = new Set(result.doc.lines);
    const lines = doc.rules.filter((r) => !kept.has(doc.lines[r.line - 1] ?? '')).map((r) => r.line);
    const where = lines.length === 0 ? f.file : `${f.file} (line${lines.length === 1 ? '' : 's'} ${lines.join(', ')})`;
    const option = f.name === undefined ? 'without --file' : optionFor(f.name);
    notes.push(`${where} has some of that too, and was left as it is: an edit changes one file; ${option}`);
  }
  return notes;
}

function optionFor(fileName: string): string {
  const name = dropinOptionName(fileName);
  return name === undefined ? `edit ${fileName} by hand` : `run the command again with --file ${name} for that file`;
}
