/**
 * Text from others (names from NSS, which LDAP or an admin's typo can fill
 * with anything) made safe to print on a terminal, and words made safe to
 * paste into a shell. Pure.
 */

/**
 * Control characters (C0, DEL, C1) and backslash as `\xNN`, so a name with an
 * escape sequence or a newline cannot rewrite or fake lines of root's
 * terminal; everything else as it is.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** A word for a POSIX shell command line: as it is when only safe characters, else in single quotes. */
export function shellWord(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${printable(word).replace(/'/g, `'\\''`)}'`;
}

/** A command line from its words, each quoted as needed. */
export function shellCommand(words: readonly string[]): string {
  return words.map(shellWord).join(' ');
}
