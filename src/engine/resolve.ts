/**
 * From names to the ids the bind program sees. The helper it calls,
 * bpf_get_current_uid_gid(), reports the caller's uid and *primary* gid only,
 * so a group rule becomes a GID entry (members by primary group) plus a UID
 * entry for every listed member (members by supplementary group).
 */
import { PolicyError, type Diagnostic } from '../errors.js';
import { lookupGroups, lookupUsers, type GroupEntry, type PasswdEntry } from '../kernel/nss.js';
import type { PolicyDocument, Principal, Rule } from '../policy/types.js';
import { Kind } from './map-format.js';

export type SubjectKind = typeof Kind.UID | typeof Kind.GID | typeof Kind.CGROUP | typeof Kind.EVERYONE;

/** One id the program matches a caller against. */
export interface Subject {
  kind: SubjectKind;
  id: bigint;
}

export interface ResolvedRule {
  rule: Rule;
  subjects: Subject[];
  /** `user alice (uid 1000)`, `group dev (gid 1001, members uid 1000, 1002)`, `everyone`. */
  label: string;
}

/** How names are looked up; NSS by default, a table in unit tests. */
export interface Directory {
  users(keys: string[]): Map<string, PasswdEntry>;
  groups(keys: string[]): Map<string, GroupEntry>;
}

export const nssDirectory: Directory = { users: lookupUsers, groups: lookupGroups };

const NUMERIC = /^\d+$/;

/**
 * Resolves every rule of a document. Unknown users and groups are reported
 * together, each at its line and column, and nothing is returned: a policy
 * that names someone who does not exist is a mistake to fix, not to skip.
 */
export function resolvePolicy(doc: PolicyDocument, directory: Directory = nssDirectory): ResolvedRule[] {
  // A number needs no lookup to become a uid; names do.
  const userNames = doc.rules.flatMap((r) => (r.principal.kind === 'user' && !NUMERIC.test(r.principal.name) ? [r.principal.name] : []));
  const groupNames = doc.rules.flatMap((r) => (r.principal.kind === 'group' ? [r.principal.name] : []));
  const users = directory.users(userNames);
  const groups = directory.groups(groupNames);
  const memberNames = [...new Set([...groups.values()].flatMap((g) => g.members))];
  const members = directory.users(memberNames);

  const diagnostics: Diagnostic[] = [];
  const out: ResolvedRule[] = [];
  for (const rule of doc.rules) {
    const p = rule.principal;
    if (p.kind === 'everyone') {
      out.push({ rule, subjects: [{ kind: Kind.EVERYONE, id: 0n }], label: 'everyone' });
    } else if (p.kind === 'user') {
      const entry = users.get(p.name);
      if (entry !== undefined) {
        out.push({ rule, subjects: [{ kind: Kind.UID, id: BigInt(entry.uid) }], label: `user ${entry.name} (uid ${entry.uid})` });
      } else if (NUMERIC.test(p.name)) {
        // A uid needs no passwd entry, as chown(1) accepts: bind() checks numbers, not names.
        out.push({ rule, subjects: [{ kind: Kind.UID, id: BigInt(p.name) }], label: `uid ${p.name}` });
      } else {
        diagnostics.push(unknown(doc, rule, p, `unknown user '${p.name}': no such user in the passwd database (getent passwd ${p.name}); create it or fix the name`));
      }
    } else {
      const entry = groups.get(p.name);
      if (entry !== undefined) {
        const uids = [...new Set(entry.members.flatMap((m) => { const u = members.get(m); return u === undefined ? [] : [u.uid]; }))].sort((a, b) => a - b);
        out.push({
          rule,
          subjects: [{ kind: Kind.GID, id: BigInt(entry.gid) }, ...uids.map((uid): Subject => ({ kind: Kind.UID, id: BigInt(uid) }))],
          label: `group ${entry.name} (gid ${entry.gid}${uids.length > 0 ? `, members uid ${uids.join(', ')}` : ''})`,
        });
      } else if (NUMERIC.test(p.name)) {
        out.push({ rule, subjects: [{ kind: Kind.GID, id: BigInt(p.name) }], label: `gid ${p.name}` });
      } else {
        diagnostics.push(unknown(doc, rule, p, `unknown group '${p.name}': no such group in the group database (getent group ${p.name}); create it or fix the name`));
      }
    }
  }
  if (diagnostics.length > 0) {
    throw new PolicyError(diagnostics, 'Fix the names above; nothing was changed.', diagnostics.some((d) => d.message.startsWith('unknown user')) ? 'E_UNKNOWN_USER' : 'E_UNKNOWN_GROUP');
  }
  return out;
}

/** A diagnostic pointing at the name after `user`/`group` on the rule's line. */
function unknown(doc: PolicyDocument, rule: Rule, p: Principal & { name: string }, message: string): Diagnostic {
  const source = doc.lines[rule.line - 1] ?? '';
  const match = new RegExp(`\\b${p.kind}\\s+(${p.name.replace(/[.$]/g, '\\$&')})(?=\\s|#|$)`).exec(source);
  const column = match === null ? 1 : match.index + match[0].length - p.name.length + 1;
  return { file: doc.file, line: rule.line, column, length: p.name.length, message, source };
}
