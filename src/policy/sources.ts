/**
 * The policy as several files: the main file, then the drop-ins of the
 * directory beside it (`/etc/lowport/policy` reads `/etc/lowport/policy.d/`),
 * as sudoers.d, sysctl.d and nginx's conf.d are read, so that a package or a
 * configuration-management role ships its own file and no tool edits a
 * shared one.
 *
 * - Which names: `NAME.policy`, NAME not starting with a dot. Everything else
 *   is skipped: dotfiles (editor swap files, `.#x` locks), editor backups
 *   (`x.policy~`), dpkg's and ucf's leftovers (`x.policy.dpkg-old`,
 *   `.dpkg-new`, `.dpkg-dist`, `.ucf-dist`...), README files.
 * - Order: the main file first, then the drop-ins by name in byte order (the
 *   C locale, as `ls` under LC_ALL=C and systemd sort them), whatever the
 *   locale: `10-web.policy` before `20-db.policy` before `Z.policy` before
 *   `a.policy`. The order matters where statements do: the first of two
 *   grants credits the binds, and clash warnings point at the later one.
 * - All files are one policy: one parse (every file's problems in one
 *   report, each at its own file:line:col), one set of checks across them
 *   (two owners of one reserved port in two files is an error), one apply.
 *
 * The texts of all files travel as one string (joinPolicyTexts): it is what
 * the fingerprint in the kernel covers and what the applied state keeps, so
 * a changed drop-in shows as a changed policy. For a policy without drop-ins
 * it is the main file's text itself, as before drop-ins existed.
 *
 * Pure, like the parser.
 */
import { UsageError } from '../errors.js';
import { checkAcross, parsePolicy, parseStatements, PolicySyntaxError } from './parse.js';
import type { Diagnostic } from '../diagnostic.js';
import type { ForwardRule, LogStatement, PolicyDocument, PolicyPart, Rule } from './types.js';

/** The suffix a drop-in's name ends with. */
export const DROPIN_SUFFIX = '.policy';

/** The drop-in directory of a policy path: `/etc/lowport/policy.d` for `/etc/lowport/policy`. */
export function dropinDirOf(policy: string): string {
  return `${policy}.d`;
}

/** Whether a name in the drop-in directory is read (see the top of this file). */
export function isDropinName(name: string): boolean {
  return name.length > DROPIN_SUFFIX.length && name.endsWith(DROPIN_SUFFIX) && !name.startsWith('.');
}

/** The drop-in names in the order they are read: bytes of their UTF-8, as the C locale sorts. */
export function sortDropinNames(names: readonly string[]): string[] {
  return names
    .filter(isDropinName)
    .map((name) => ({ name, bytes: Buffer.from(name) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((n) => n.name);
}

/** A name `--file` accepts: a letter, digit or `_` first, then those and `.`, `-`, `+`, `@`. */
const DROPIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+@-]{0,127}$/;

/**
 * The file name of drop-in NAME as `--file` gives it (`web` -> `web.policy`;
 * `web.policy` is the same file). Refuses paths and names a shell or a tool
 * could misread, saying what to give instead.
 */
export function dropinFileName(name: string): string {
  const base = name.endsWith(DROPIN_SUFFIX) ? name.slice(0, -DROPIN_SUFFIX.length) : name;
  if (DROPIN_NAME.test(base)) return `${base}${DROPIN_SUFFIX}`;
  const why = name.includes('/')
    ? 'a name, not a path: the file is policy.d/NAME.policy beside the policy file'
    : /^\.*$/.test(base)
      ? 'a name, not dots'
      : base.startsWith('.') || base.startsWith('-')
        ? 'a name that starts with a letter, a digit or _ (names starting with a dot are not read)'
        : base.length > 128
          ? 'a name of at most 128 characters'
          : 'letters, digits and _ . - + @ only';
  throw new UsageError(
    `--file ${JSON.stringify(name)} is not a drop-in name: --file takes ${why}`,
    'Give a name such as --file web (the file policy.d/web.policy).',
  );
}

/** The `--file` name of a drop-in file name (`web.policy` -> `web`), or undefined when `--file` cannot name it. */
export function dropinOptionName(fileName: string): string | undefined {
  const base = fileName.endsWith(DROPIN_SUFFIX) ? fileName.slice(0, -DROPIN_SUFFIX.length) : fileName;
  return DROPIN_NAME.test(base) ? base : undefined;
}

/** One drop-in's text, by its file name in the directory (`10-web.policy`). */
export interface DropinText {
  name: string;
  text: string;
  /** Where its text was read, when not from the drop-in directory (a candidate, `apply --check --candidate`): for diagnostics. */
  from?: string;
}

/** The texts of a policy: its main file's, then its drop-ins' in the order they are read. */
export interface PolicyTexts {
  main: string;
  dropins: DropinText[];
}

/** Marks a joined text of several files; a policy file cannot start with it and parse (NUL is no statement). */
const JOINED = '\0lowport-policy-files 1\n';

/**
 * The texts of all files as one string: the main file's text alone when there
 * are no drop-ins (so its fingerprint is what it was before drop-ins
 * existed), else a marked JSON record of every file's name and text.
 */
export function joinPolicyTexts(texts: PolicyTexts): string {
  if (texts.dropins.length === 0) return texts.main;
  return JOINED + JSON.stringify({ main: texts.main, dropins: texts.dropins.map((d) => [d.name, d.text]) });
}

/** joinPolicyTexts undone. A text that is not a joined one is the main file's alone. */
export function splitPolicyTexts(text: string): PolicyTexts {
  if (!text.startsWith(JOINED)) return { main: text, dropins: [] };
  const record = JSON.parse(text.slice(JOINED.length)) as { main: string; dropins: [string, string][] };
  return { main: record.main, dropins: record.dropins.map(([name, t]) => ({ name, text: t })) };
}

/** The name of a path's last part. */
function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Parses the policy at `path` and its drop-ins as one document: every file's
 * problems and those between files in one PolicySyntaxError, each at its own
 * file. Without drop-ins, exactly parsePolicy of the main file.
 */
export function parsePolicyFiles(texts: PolicyTexts, path: string): PolicyDocument {
  if (texts.dropins.length === 0) return parsePolicy(texts.main, path);
  const dir = dropinDirOf(path);
  const shownDir = dropinDirOf(baseName(path));
  const files = [
    { file: path, name: baseName(path), text: texts.main },
    ...texts.dropins.map((d) => ({ file: d.from ?? `${dir}/${d.name}`, name: d.from ?? `${shownDir}/${d.name}`, text: d.text })),
  ];
  const diagnostics: Diagnostic[] = [];
  const parts: PolicyPart[] = [];
  const lines: string[] = [];
  const rules: Rule[] = [];
  const forwards: ForwardRule[] = [];
  const logs: LogStatement[] = [];
  let first: PolicyDocument | undefined;
  for (const f of files) {
    const parsed = parseStatements(f.text, f.file);
    diagnostics.push(...parsed.diagnostics);
    const offset = lines.length;
    parts.push({ file: f.file, name: f.name, offset, count: parsed.doc.lines.length });
    first ??= parsed.doc;
    lines.push(...parsed.doc.lines);
    for (const r of parsed.doc.rules) rules.push(offset === 0 ? r : { ...r, line: r.line + offset });
    for (const fw of parsed.doc.forwards ?? []) forwards.push(offset === 0 ? fw : { ...fw, line: fw.line + offset });
    for (const l of parsed.doc.logs ?? []) logs.push(offset === 0 ? l : { ...l, line: l.line + offset });
  }
  // The main file's document, with every file's lines and statements (a `log` in a drop-in turns logging on as in the main file).
  const doc: PolicyDocument = {
    ...first,
    file: path,
    lines,
    rules,
    ...(forwards.length === 0 ? {} : { forwards }),
    ...(logs.length === 0 ? {} : { logs }),
    parts,
  };
  diagnostics.push(...checkAcross(doc));
  if (diagnostics.length > 0) throw new PolicySyntaxError(diagnostics, doc);
  return doc;
}

/** One file of a document of several, as a document of its own (its lines, its statements at their own lines). */
export function fileDocument(doc: PolicyDocument, part: PolicyPart): PolicyDocument {
  const end = part.offset + part.count;
  const inPart = (line: number): boolean => line > part.offset && line <= end;
  const rules = doc.rules.filter((r) => inPart(r.line)).map((r) => ({ ...r, line: r.line - part.offset }));
  const forwards = (doc.forwards ?? []).filter((f) => inPart(f.line)).map((f) => ({ ...f, line: f.line - part.offset }));
  const logs = (doc.logs ?? []).filter((l) => inPart(l.line)).map((l) => ({ ...l, line: l.line - part.offset }));
  return {
    file: part.file,
    lines: doc.lines.slice(part.offset, end),
    rules,
    ...(forwards.length === 0 ? {} : { forwards }),
    ...(logs.length === 0 ? {} : { logs }),
  };
}
