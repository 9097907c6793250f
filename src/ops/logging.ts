/**
 * The library calls behind `lowport log enable|disable`: the audit trail's
 * `log` statement written or removed, and made live, in the one edit
 * transaction grant and revoke go through (apply.ts editPolicy): the same
 * lock, the same "nothing live changes when it fails".
 *
 * Which file. `log` statements add up across the files of a policy (parse.ts
 * loggingOf), so two files each with one would log more than either says.
 * `enable` writes the edited file's one statement (the policy file, or the
 * drop-in of --file) and refuses when another file holds one, naming it and
 * the command that edits it there. `disable` removes the statement from the
 * file that holds it, wherever that is (or, with --file, from that drop-in
 * only); when several files hold one it refuses with a command per file, as
 * an edit changes one file.
 */
import { dirname } from 'node:path';
import { LowportError } from '../errors.js';
import * as policyEdit from '../policy/edit.js';
import { originOf } from '../policy/origin.js';
import { formatLog } from '../policy/print.js';
import { dropinDirOf, dropinFileName, dropinOptionName } from '../policy/sources.js';
import type { LogWhat, PolicyDocument } from '../policy/types.js';
import type { EditResult } from '../policy/edit.js';
import { readPolicy } from '../policy-file/policy-file.js';
import { shellCommand } from '../text.js';
import { liveLogging } from '../grants/live.js';
import { liveTarget, policyPath, type LowportOptions } from '../grants/target.js';
import { editPolicy, type EditOutcome } from './apply.js';
import { withUnknownNames } from './unresolved.js';

/** A `log` statement of the policy, in its own file. */
export interface LogHolder {
  /** Its drop-in's name (`audit.policy`); undefined in the policy file. */
  dropin: string | undefined;
  /** How messages name its file: `policy`, `policy.d/audit.policy`. */
  name: string;
  /** Its line in that file. */
  line: number;
  what: LogWhat;
}

/** The `log` statements of the policy at `path` (its document, all files), each in its own file. Pure. */
export function logHolders(doc: PolicyDocument, path: string): LogHolder[] {
  const dir = `${dropinDirOf(path)}/`;
  return (doc.logs ?? []).map((l) => {
    const at = originOf(doc, l.line);
    const dropin = at.file.startsWith(dir) ? at.file.slice(dir.length) : undefined;
    return { dropin, name: at.part?.name ?? path.slice(path.lastIndexOf('/') + 1), line: at.line, what: l.what };
  });
}

/** `policy.d/audit.policy:2 ('log all')`. */
function holderText(h: LogHolder): string {
  return `${h.name}:${h.line} ('${formatLog(h)}')`;
}

/**
 * The `lowport log ...` command that edits the file of drop-in `dropin` (the
 * policy file when undefined), with this instance's options; a drop-in
 * --file cannot name is to be edited by hand.
 */
export function logCommand(options: LowportOptions, words: readonly string[], dropin: string | undefined): string {
  const global = [
    ...(options.policy === undefined ? [] : ['--policy', options.policy]),
    ...(options.cgroup === undefined ? [] : ['--cgroup', options.cgroup]),
    ...(options.pinDir === undefined ? [] : ['--pin-dir', options.pinDir]),
  ];
  const name = dropin === undefined ? undefined : dropinOptionName(dropin);
  if (dropin !== undefined && name === undefined)
    return `edit ${dropinDirOf(policyPath(options))}/${dropin} by hand, then run \`lowport apply\``;
  return `\`${shellCommand(['lowport', 'log', ...words, ...(name === undefined ? [] : ['--file', name]), ...global])}\``;
}

/**
 * The file `lowport log enable` may edit: `dropin`'s (the policy file when
 * undefined), unless another file holds a `log` statement: then an error
 * naming it, and how to change it there or move it. Pure.
 */
export function enableTarget(
  options: LowportOptions,
  holders: readonly LogHolder[],
  dropin: string | undefined,
  what: LogWhat,
): string | undefined {
  const elsewhere = holders.filter((h) => h.dropin !== dropin);
  const [first] = elsewhere;
  if (first === undefined) return dropin;
  const where = elsewhere.map(holderText).join(', ');
  throw new LowportError(
    'E_POLICY_CLASH',
    `the audit trail's 'log' statement is in another file of the policy: ${where}; nothing was changed`,
    {
      hint:
        `Statements of several files add up, so lowport keeps one file's. To change it there: ${logCommand(options, ['enable', what], first.dropin)}; ` +
        `to move it, first ${logCommand(options, ['disable'], first.dropin)}.`,
    },
  );
}

/**
 * The file `lowport log disable` edits: with `dropin`, that one; else the one
 * file holding `log` statements. Undefined `file` when none holds one (then
 * nothing is to change); an error naming each file when several do. Pure.
 */
export function disableTarget(
  options: LowportOptions,
  holders: readonly LogHolder[],
  dropin: string | undefined,
): { found: false } | { found: true; dropin: string | undefined } {
  const mine = dropin === undefined ? holders : holders.filter((h) => h.dropin === dropin);
  const files = [...new Set(mine.map((h) => h.dropin))];
  if (files.length === 0) return { found: false };
  if (files.length > 1) {
    throw new LowportError(
      'E_POLICY_CLASH',
      `'log' statements are in ${files.length} files of the policy: ${mine.map(holderText).join(', ')}; nothing was changed`,
      { hint: `An edit changes one file: run ${files.map((f) => logCommand(options, ['disable'], f)).join(', then ')}.` },
    );
  }
  return { found: true, dropin: files[0] };
}

/** `lowport log disable` when no file has what it would remove: nothing was edited, and nothing live changed. */
export interface LoggingUnchanged {
  policy: string;
  changed: false;
  notes: string[];
}

/** Names the edited file in each of the edit's notes (`policy.d/audit.policy: removed line 2: log all`). */
function inItsFile(path: string, edit: (doc: PolicyDocument) => EditResult): (doc: PolicyDocument) => EditResult {
  const dir = `${dirname(path)}/`;
  return (doc) => {
    const r = edit(doc);
    const name = doc.file.startsWith(dir) ? doc.file.slice(dir.length) : doc.file;
    return { ...r, notes: r.notes.map((n) => `${name}: ${n}`) };
  };
}

const LOGS: Record<LogWhat, string> = {
  grants: 'each bind a grant allows',
  refusals: 'each bind a reservation refuses',
  all: 'each bind a grant allows and each a reservation refuses',
};

/** `lowport log enable [WHAT] [--file NAME]`. */
export function enableLogging(options: LowportOptions, what: LogWhat, file?: string): EditOutcome {
  const path = policyPath(options);
  const dropin = file === undefined ? undefined : dropinFileName(file);
  const outcome = editPolicy(
    options,
    inItsFile(path, (doc) => policyEdit.setLogging(doc, what)),
    undefined,
    {
      choose: (before) => enableTarget(options, logHolders(before.doc, path), dropin, what),
    },
  );
  outcome.notes.push(`the audit trail is on: an event for ${LOGS[what]}; read them with \`lowport log\``);
  return outcome;
}

/** `lowport log disable [--file NAME]`. */
export function disableLogging(options: LowportOptions, file?: string): EditOutcome | LoggingUnchanged {
  const path = policyPath(options);
  const dropin = file === undefined ? undefined : dropinFileName(file);
  // A file with syntax errors stops the edit, as it stops grant's: all its problems at once.
  const holders = logHolders(withUnknownNames(() => readPolicy(path, true)).doc, path);
  if (!disableTarget(options, holders, dropin).found) return unchanged(options, holders, dropin);
  const outcome = editPolicy(options, inItsFile(path, policyEdit.removeLogging), undefined, {
    // Under the lock, from the files as they are now.
    choose: (before) => {
      const target = disableTarget(options, logHolders(before.doc, path), dropin);
      return target.found ? target.dropin : dropin;
    },
  });
  outcome.notes.push(
    dropin === undefined || holders.every((h) => h.dropin === dropin)
      ? 'the audit trail is off: the bind program has no logging instructions now'
      : `the audit trail stays on by ${holders
          .filter((h) => h.dropin !== dropin)
          .map(holderText)
          .join(', ')}`,
  );
  return outcome;
}

function unchanged(options: LowportOptions, holders: readonly LogHolder[], dropin: string | undefined): LoggingUnchanged {
  const notes: string[] = [];
  if (holders.length > 0) {
    // --file named a drop-in without one; another file has it.
    notes.push(
      `${dropinDirOf(policyPath(options)).replace(/^.*\//, '')}/${dropin ?? ''} has no 'log' statement: nothing was changed; ` +
        `the audit trail is on by ${holders.map(holderText).join(', ')}: to turn it off, ${logCommand(options, ['disable'], undefined)}`,
    );
  } else {
    notes.push("the audit trail is already off: no file of the policy has a 'log' statement; nothing was changed");
    const live = liveLogging(liveTarget(options).pinDir);
    if (live !== undefined && (live.grants || live.refusals))
      notes.push(
        "but the live program still logs: it was made from an earlier text of the policy. Run `lowport apply` to make the files' text live",
      );
  }
  return { policy: policyPath(options), changed: false, notes };
}
