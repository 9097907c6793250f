/**
 * Where a statement of a document is, when the document is several files
 * (the policy and its drop-ins, PolicyDocument.parts): the file and its line
 * there. A document of one file is its own origin, so everything that names
 * a line says what it said before drop-ins existed.
 *
 * Pure, like the parser.
 */
import type { PolicyDocument, PolicyPart } from './types.js';

export interface Origin {
  /** The file's path, as diagnostics name it. */
  file: string;
  /** The line in that file. */
  line: number;
  /** The file's part, in a document of several files. */
  part: PolicyPart | undefined;
}

/** The part holding the document's `line`; undefined for a document of one file. */
export function partOf(doc: Pick<PolicyDocument, 'parts'>, line: number): PolicyPart | undefined {
  const parts = doc.parts;
  if (parts === undefined) return undefined;
  // Few files: the last one that starts before the line.
  let found = parts[0];
  for (const p of parts) if (p.offset < line) found = p;
  return found;
}

/** The file and line of the document's `line`. */
export function originOf(doc: Pick<PolicyDocument, 'file' | 'parts'>, line: number): Origin {
  const part = partOf(doc, line);
  return part === undefined ? { file: doc.file, line, part } : { file: part.file, line: line - part.offset, part };
}

/**
 * `line 3` when `line` is in the same file as `from` (or there is one file),
 * `line 3 of policy.d/10-web.policy` when it is in another: how a message
 * about one statement points at another.
 */
export function lineRef(doc: Pick<PolicyDocument, 'file' | 'parts'>, line: number, from?: number): string {
  const at = originOf(doc, line);
  if (at.part === undefined || (from !== undefined && partOf(doc, from) === at.part)) return `line ${at.line}`;
  return `line ${at.line} of ${at.part.name}`;
}
