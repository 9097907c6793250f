/**
 * Text that lowport shows or generates but did not write itself: process
 * names and command lines from /proc, user and group names from NSS, file
 * names, paths a user gave. Any of it may hold bytes that a terminal obeys
 * (ESC sequences that rewrite the screen, a newline that fakes the next line of
 * a command) or that a shell reads as syntax. Pure, and importable from every
 * layer, as errors.ts is.
 */

/**
 * Characters a terminal or a reader must not get raw:
 * - C0 controls (U+0000-U+001F, newline and tab included) and DEL;
 * - C1 controls (U+0080-U+009F): U+009B is CSI to terminals that take 8-bit controls;
 * - the Unicode bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E,
 *   U+2066-U+2069), which reorder what follows them on the line (CVE-2021-42574,
 *   "Trojan Source");
 * - the line and paragraph separators U+2028 and U+2029, which some
 *   terminals and viewers break lines at.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
// eslint-disable-next-line no-control-regex
const UNSAFE_OR_BACKSLASH = /[\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r', '\\': '\\\\' };

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Whether the text holds a character that escapeControl would escape (backslash aside). */
export function hasControl(text: string): boolean {
  return UNSAFE.test(text);
}

/**
 * The text as one safe line for a terminal: every character above as a C-style
 * escape (`\n`, `\t`, `\x1b`, `\u202e`), and a backslash as `\\` so an escape
 * shown can always be told from the same characters in the text, as
 * systemd-escape and `ls -b` do.
 */
export function escapeControl(text: string): string {
  return text.replace(UNSAFE_OR_BACKSLASH, escapeOne);
}

/** Characters a POSIX shell reads as themselves in a word. */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * One word of a command shown to the user to copy into a shell: bare when it
 * holds nothing the shell reads specially, else in single quotes (`'\''` for a
 * quote inside). A word with control characters is written in $'…' quoting
 * (bash, zsh, ksh, busybox sh and POSIX.1-2024 sh) with the characters
 * escaped, so that even then nothing raw reaches the terminal and the line
 * stays one line.
 */
export function shellQuote(word: string): string {
  if (PLAIN_WORD.test(word)) return word;
  if (!hasControl(word)) return `'${word.replace(/'/g, `'\\''`)}'`;
  return `$'${escapeControl(word).replace(/'/g, "\\'")}'`;
}

/** A command line shown to the user, from its words, each quoted as needed. */
export function shellCommand(words: readonly string[]): string {
  return words.map(shellQuote).join(' ');
}

/**
 * The last guard before a terminal: text from others is escaped where it is
 * put into a message, and whatever still holds a control character other than
 * a line break or a tab (lowport writes no escape sequences of its own) is
 * escaped here, so no terminal sequence reaches root's screen: the CLI's
 * output, and what the forwarder (another user) writes through lowport.
 */
export function terminalText(text: string): string {
  return text
    .split('\n')
    .map((line) =>
      line
        .split('\t')
        .map((part) =>
          /[^\x20-\x7e\u00a0-\u061b\u061d-\u200d\u2010-\u2027\u202f-\u2065\u206a-\uffff]/.test(part) ? escapeControl(part) : part,
        )
        .join('\t'),
    )
    .join('\n');
}
