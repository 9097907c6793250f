import { UsageError } from '../errors.js';

/**
 * A bad piece of policy text on its own: a port spec (`80,,443`), an address
 * (`fe80::1%eth0`) or a user/group name. It says where in `spec` the problem
 * is, so that the file parser can turn it into a Diagnostic with a line and
 * column, and the CLI (`lowport grant 80,443/tcp`) into one on the command
 * line. A UsageError because, when nobody converts it, the text came from the
 * command line or a library call.
 */
export class PolicySpecError extends UsageError {
  /** The text that was being parsed. */
  readonly spec: string;
  /** 0-based offset of the culprit within `spec`. */
  readonly offset: number;
  /** How many characters to underline (at least 1). */
  readonly length: number;

  constructor(spec: string, offset: number, length: number, message: string) {
    super(message);
    this.spec = spec;
    this.offset = offset;
    this.length = Math.max(1, length);
  }
}

/** A part of a comma-separated list: an item, or a run of commas too many. */
export type ListPart =
  | { kind: 'item'; text: string; offset: number }
  /**
   * Commas too many, as one run: at the `start` of the list (`,80`), in the
   * `middle` (`80,,443`), at the `end` (`80,` or `80,,`: cut short, often by a
   * space in a file), or `all` of it (`,`).
   */
  | { kind: 'extra'; where: 'start' | 'middle' | 'end' | 'all'; offset: number; length: number };

/**
 * Splits a comma-separated list (ports, addresses). A run of empty items is
 * one problem, reported once over all its commas: `80,,` is one list cut
 * short, not an empty item and a short list at the same comma.
 */
export function splitList(text: string): ListPart[] {
  const items = text.split(',');
  const out: ListPart[] = [];
  let offset = 0;
  for (let i = 0; i < items.length;) {
    const item = items[i] ?? '';
    if (item !== '') {
      out.push({ kind: 'item', text: item, offset });
      offset += item.length + 1;
      i++;
      continue;
    }
    let j = i;
    while (j < items.length && items[j] === '') j++;
    const atEnd = j === items.length;
    if (i === 0 && atEnd) out.push({ kind: 'extra', where: 'all', offset: 0, length: Math.max(1, text.length) });
    // The commas after the list's last item; the ones before its first; else the ones after the empty items.
    else if (atEnd) out.push({ kind: 'extra', where: 'end', offset: offset - 1, length: j - i });
    else out.push({ kind: 'extra', where: i === 0 ? 'start' : 'middle', offset, length: j - i });
    offset += j - i;
    i = j;
  }
  return out;
}
