/** A parsed policy document to what the kernel holds: names resolved, entries compiled, and the fingerprint that ties the two. */
import { createHash } from 'node:crypto';
import type { PolicyDocument } from '../policy/types.js';
import { compileTable } from './compile.js';
import { VALUE_SIZE, type EntryTable } from './map-format.js';
import { resolvePolicy, type Directory, type NameBindings, type ResolvedRule, type UnresolvedRule } from './resolve.js';

export interface CompiledPolicy {
  doc: PolicyDocument;
  /** The rules made live (reservations of unknown owners included: they keep their ports for root). */
  rules: ResolvedRule[];
  /** Rules whose user or group does not resolve. */
  unresolved: UnresolvedRule[];
  /** name -> id as resolved now, recorded with the applied state. */
  bindings: NameBindings;
  table: EntryTable;
}

/** Resolves and compiles a parsed document. Names that do not resolve are in `unresolved`, not thrown: they cost only their lines. */
export function compileDocument(doc: PolicyDocument, directory?: Directory): CompiledPolicy {
  const { rules, unresolved, bindings } = resolvePolicy(doc, directory);
  return { doc, rules, unresolved, bindings, table: compileTable(rules) };
}

/** What identifies a policy text in the kernel (map-format.ts, META): a SHA-256 prefix. */
export function policyFingerprint(text: string): Buffer {
  return createHash('sha256').update(text).digest().subarray(0, VALUE_SIZE);
}
