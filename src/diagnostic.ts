/**
 * Diagnostics: one problem (or warning, or note) at a place in a source, and
 * the one renderer every diagnostic lowport shows goes through, after
 * nftables' erec.c: the location, a severity and the message; the source
 * line; a marker line with `^` under the start of the culprit and `~` under
 * the rest of it; then each related place (the first of two statements that
 * clash) the same way, as a note.
 *
 *     /etc/lowport/policy:2:7-11: error: port 70000 is out of range: ports are 1-65535
 *     grant 70000 user alice
 *           ^~~~~
 *
 * The location is `file:line:column` for one character and
 * `file:line:column-endColumn` for a range, as the GNU Coding Standards
 * (4.4, Formatting Error Messages) write it; nftables always writes the range.
 * A word of the command line is a source too: its name is `command line`, the
 * word is its line 1, as nftables does with `<cmdline>`.
 *
 * Plain text, pure. Sources and messages hold text others wrote (a policy line,
 * a command-line word): control characters in them are escaped here, in a way
 * that keeps the marker under its culprit.
 */
import { escapeControl, hasControl } from './text.js';

export type Severity = 'error' | 'warning' | 'note';

/** The source name of a diagnostic about a word of the command line. */
export const COMMAND_LINE = 'command line';

/** A range of characters on one line of a source. */
export interface Span {
  /** The source: a policy file's path, or `command line`. */
  file: string;
  /** 1-based line in the source. */
  line: number;
  /** 1-based column of the first character. A column past the end of the line marks where something is missing. */
  column: number;
  /** 1-based column of the last character, inclusive: `column + length - 1`. */
  endColumn: number;
  /** How many characters the range covers (at least 1); `--json` readers had it before endColumn. */
  length: number;
  /** The whole source line, without its line end. */
  source: string;
}

/** A place related to a diagnostic, e.g. the first of two statements that clash, and what it is. */
export interface RelatedMark extends Span {
  /** `first forwarded here`. */
  label: string;
}

/** One problem found in a source. */
export interface Diagnostic extends Span {
  severity: Severity;
  message: string;
  /** Other places the message is about, each shown with its own location and marker. */
  related?: RelatedMark[];
  /** What to do about it, one line (a command to run). */
  hint?: string;
}

/** The span of `length` characters at 0-based `offset` of a source line. */
export function span(file: string, line: number, source: string, offset: number, length = 1): Span {
  const size = Math.max(1, length);
  const column = Math.max(0, offset) + 1;
  return { file, line, column, endColumn: column + size - 1, length: size, source };
}

/** A diagnostic at `at`. */
export function diagnostic(
  severity: Severity,
  at: Span,
  message: string,
  more: { related?: RelatedMark[]; hint?: string } = {},
): Diagnostic {
  return {
    ...at,
    severity,
    message,
    ...(more.related === undefined || more.related.length === 0 ? {} : { related: more.related }),
    ...(more.hint === undefined ? {} : { hint: more.hint }),
  };
}

/** A related mark at `at`. */
export function related(at: Span, label: string): RelatedMark {
  return { ...at, label };
}

/**
 * One diagnostic as text, without a final newline: its location line, the
 * source line and the marker; each related mark the same way as a note; the
 * hint last, indented.
 */
export function formatDiagnostic(d: Diagnostic): string {
  const out = [...located(d, d.severity, d.message)];
  for (const mark of d.related ?? []) out.push(...located(mark, 'note', mark.label));
  if (d.hint !== undefined) out.push(`  ${oneLine(d.hint)}`);
  return out.join('\n');
}

/** Every diagnostic, each ending with a newline; empty for none. */
export function formatDiagnostics(ds: readonly Diagnostic[]): string {
  return ds.map((d) => `${formatDiagnostic(d)}\n`).join('');
}

/** The `file:line:col[-end]: severity: message` line, the source line and its marker. */
function located(at: Span, severity: Severity, message: string): string[] {
  const end = Math.max(at.column, at.endColumn);
  const where = `${oneLine(at.file)}:${at.line}:${at.column}${end > at.column ? `-${end}` : ''}`;
  const shown = displayed(at.source);
  return [`${where}: ${severity}: ${oneLine(message)}`, shown.text, marker(shown.starts, at.column, end)];
}

/** Text as one line: escaped only when it holds a control character, so text escaped already stays as it is. */
function oneLine(text: string): string {
  return hasControl(text) ? escapeControl(text) : text;
}

const TAB_STOP = 8;

/**
 * The source line as shown, and the display cell each of its characters
 * starts at (one more entry: where the line ends). Tabs become spaces to the
 * next tab stop, so the marker line lines up whatever the terminal's tab
 * width; a control character is shown escaped (`\x1b`), as escapeControl does
 * for the whole line (backslashes doubled too) when it holds one. A wide
 * character (CJK) takes two cells on most terminals but counts as one here.
 */
function displayed(source: string): { text: string; starts: number[] } {
  const escape = hasControl(source.replace(/\t/g, ''));
  const starts: number[] = [];
  let text = '';
  for (const c of source) {
    // A character outside the BMP is two UTF-16 units, and columns count units: both start here.
    for (let unit = 0; unit < c.length; unit++) starts.push(text.length);
    if (c === '\t') text += ' '.repeat(TAB_STOP - (text.length % TAB_STOP));
    else text += escape ? escapeControl(c) : c;
  }
  starts.push(text.length);
  return { text, starts };
}

/** `^` under the first column, `~` under the rest up to `end`; columns past the line's end are one cell each. */
function marker(starts: readonly number[], column: number, end: number): string {
  const lineEnd = starts[starts.length - 1] ?? 0;
  const cell = (index: number): number => starts[index] ?? lineEnd + index - (starts.length - 1);
  // A column below 1 (a diagnostic built by hand) marks the line's start rather than throw.
  const from = cell(Math.max(0, column - 1));
  const to = Math.max(from + 1, cell(end));
  return ' '.repeat(from) + '^' + '~'.repeat(to - from - 1);
}

/**
 * The candidate nearest to `word`, if it is near enough to be a typo: at
 * most one edit for short words, two for longer ones, counting a swap of two
 * neighbours as one edit (optimal string alignment), so `grnat` finds
 * `grant`. Undefined when nothing is that near, or two are equally near.
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = limit + 1;
  let tie = false;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
      tie = false;
    } else if (d === bestDistance) {
      tie = true;
    }
  }
  return best === undefined || tie || bestDistance === 0 ? undefined : best;
}

/** ` (did you mean 'grant'?)` for a near candidate, else ''. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const near = nearest(word, candidates);
  return near === undefined ? '' : ` (did you mean '${near}'?)`;
}

/** Edits (insert, delete, replace, swap of neighbours) from `a` to `b`. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => rows[i]?.[j] ?? 0;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, at(i - 2, j - 2) + 1);
      const row = rows[i];
      if (row !== undefined) row[j] = d;
    }
  }
  return at(a.length, b.length);
}
