/**
 * From names to the ids the bind program sees. The helper it calls,
 * bpf_get_current_uid_gid(), reports the caller's real uid and real gid only
 * (never the supplementary groups), so a group rule becomes a GID entry
 * (processes whose real gid is the group's) plus a UID entry for every member
 * the user database knows: those /etc/group lists (supplementary members) and
 * those whose passwd entry names the group as their primary group. A user
 * whose passwd group is G is a member of G (id(1) says so) and must keep the
 * rule when a process of theirs runs with another gid (newgrp, sg, Group=).
 *
 * A name that does not resolve (a deleted user, a typo, LDAP not up yet at
 * boot) costs only its own line: a grant to it is left out, and a reservation
 * for it keeps its ports for root alone (fail closed: nobody else gets them
 * because the owner's name is gone). The rest of the policy goes live.
 */
import { diagnostic, type Diagnostic } from '../diagnostic.js';
import { LowportError } from '../errors.js';
import { lookupGroups, lookupUsers, usersByPrimaryGroup, type GroupEntry, type PasswdEntry } from '../os/nss.js';
import type { SubordinateRange } from '../os/subids.js';
import { principalSpan } from '../policy/parse.js';
import { formatPorts } from '../policy/ports.js';
import { escapeControl } from '../text.js';
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
  /** Empty for a reservation whose owner does not resolve: its ports are kept for root alone. */
  subjects: Subject[];
  /** `user alice (uid 1000)`, `group dev (gid 1001, members uid 1000, 1002)`, `everyone`. */
  label: string;
}

/** A rule whose user or group does not resolve, and what is live in its place. */
export interface UnresolvedRule {
  rule: Rule;
  /** At the name, nftables-style (file:line:col), for the error report. */
  diagnostic: Diagnostic;
  /** `left-out`: a grant, not live; `root-only`: a reservation whose ports still refuse everyone but root. */
  effect: 'left-out' | 'root-only';
}

/**
 * The name -> id bindings a policy was made live with, kept with the applied
 * state so that `list` and `doctor` can tell when a name has since moved (a
 * deleted user's uid given to someone else) or gone. `null`: did not resolve.
 */
export interface NameBindings {
  users: Record<string, number | null>;
  groups: Record<string, { gid: number; members: number[] } | null>;
}

export interface Resolution {
  /** Every rule that is live: the ones that resolve, and the reservations that fail closed. */
  rules: ResolvedRule[];
  unresolved: UnresolvedRule[];
  bindings: NameBindings;
}

/** How names are looked up; NSS by default, a table in unit tests. */
export interface Directory {
  users(keys: string[]): Map<string, PasswdEntry>;
  groups(keys: string[]): Map<string, GroupEntry>;
  /** The users whose passwd entry has one of these gids as primary group, by gid; absent: none (a table without it). */
  primaryMembers?(gids: number[]): Map<number, PasswdEntry[]>;
}

const nssDirectory: Directory = { users: lookupUsers, groups: lookupGroups, primaryMembers: usersByPrimaryGroup };

/**
 * The uids of a group's members: listed in the group entry (names that
 * resolve) and by passwd primary group, sorted, once each.
 */
function memberUids(listed: readonly string[], byName: Map<string, PasswdEntry>, primary: readonly PasswdEntry[] | undefined): number[] {
  const uids = listed.flatMap((m) => {
    const u = byName.get(m);
    return u === undefined ? [] : [u.uid];
  });
  for (const u of primary ?? []) uids.push(u.uid);
  return [...new Set(uids)].sort((a, b) => a - b);
}

/** The gids whose primary members a set of group rules needs: the groups found, and numeric gids no group entry has. */
function primaryMembersOf(directory: Directory, gids: number[]): Map<number, PasswdEntry[]> {
  const unique = [...new Set(gids)];
  if (unique.length === 0 || directory.primaryMembers === undefined) return new Map();
  return directory.primaryMembers(unique);
}

const NUMERIC = /^\d+$/;

/**
 * Resolves every rule of a document. Unknown users and groups are reported
 * together, each at its line and column, as `unresolved`; the rules that do
 * resolve are returned whatever the others do.
 */
export function resolvePolicy(doc: PolicyDocument, directory: Directory = nssDirectory): Resolution {
  // A number needs no lookup to become a uid; names do.
  const userNames = doc.rules.flatMap((r) => (r.principal.kind === 'user' && !NUMERIC.test(r.principal.name) ? [r.principal.name] : []));
  const groupNames = doc.rules.flatMap((r) => (r.principal.kind === 'group' ? [r.principal.name] : []));
  const users = directory.users(userNames);
  const groups = directory.groups(groupNames);
  const memberNames = [...new Set([...groups.values()].flatMap((g) => g.members))];
  const members = directory.users(memberNames);
  const primary = primaryMembersOf(directory, [
    ...[...groups.values()].map((g) => g.gid),
    ...groupNames.filter((n) => NUMERIC.test(n) && !groups.has(n)).map(Number),
  ]);

  const bindings: NameBindings = { users: {}, groups: {} };
  const unresolved: UnresolvedRule[] = [];
  const out: ResolvedRule[] = [];
  const notFound = (rule: Rule, p: Principal & { name: string }, database: string) => {
    const reserve = rule.action === 'reserve';
    const effect = reserve ? `the reservation of ${formatPorts(rule.ports)} still refuses everyone but root` : `this grant is not live`;
    unresolved.push({
      rule,
      diagnostic: unknown(
        doc,
        rule,
        `unknown ${p.kind} '${p.name}': no such ${p.kind} in the ${database} database (getent ${database} ${p.name}); ${effect}`,
      ),
      effect: reserve ? 'root-only' : 'left-out',
    });
    // Fail closed: the marker stays reserved, with no owner to let through.
    if (reserve) out.push({ rule, subjects: [], label: `nobody but root (${p.kind} ${p.name} does not exist)` });
  };
  for (const rule of doc.rules) {
    const p = rule.principal;
    if (p.kind === 'everyone') {
      out.push({ rule, subjects: [{ kind: Kind.EVERYONE, id: 0n }], label: 'everyone' });
    } else if (p.kind === 'user') {
      const entry = users.get(p.name);
      if (entry !== undefined) {
        if (!NUMERIC.test(p.name)) bindings.users[p.name] = entry.uid;
        out.push({
          rule,
          subjects: [{ kind: Kind.UID, id: BigInt(entry.uid) }],
          label: `user ${escapeControl(entry.name)} (uid ${entry.uid})`,
        });
      } else if (NUMERIC.test(p.name)) {
        // A uid needs no passwd entry, as chown(1) accepts: bind() checks numbers, not names.
        out.push({ rule, subjects: [{ kind: Kind.UID, id: BigInt(p.name) }], label: `uid ${p.name}` });
      } else {
        bindings.users[p.name] = null;
        notFound(rule, p, 'passwd');
      }
    } else {
      const entry = groups.get(p.name);
      if (entry !== undefined) {
        const uids = memberUids(entry.members, members, primary.get(entry.gid));
        if (!NUMERIC.test(p.name)) bindings.groups[p.name] = { gid: entry.gid, members: uids };
        out.push({
          rule,
          subjects: [{ kind: Kind.GID, id: BigInt(entry.gid) }, ...uids.map((uid): Subject => ({ kind: Kind.UID, id: BigInt(uid) }))],
          label: `group ${escapeControl(entry.name)} (gid ${entry.gid}${uids.length > 0 ? `, members uid ${uids.join(', ')}` : ''})`,
        });
      } else if (NUMERIC.test(p.name)) {
        // A gid no group entry names may still be some users' passwd group.
        const uids = memberUids([], members, primary.get(Number(p.name)));
        out.push({
          rule,
          subjects: [{ kind: Kind.GID, id: BigInt(p.name) }, ...uids.map((uid): Subject => ({ kind: Kind.UID, id: BigInt(uid) }))],
          label: `gid ${p.name}${uids.length > 0 ? ` (members uid ${uids.join(', ')})` : ''}`,
        });
      } else {
        bindings.groups[p.name] = null;
        notFound(rule, p, 'group');
      }
    }
  }
  return { rules: out, unresolved, bindings };
}

/** A diagnostic pointing at the name after `user`/`group` on the rule's line. */
function unknown(doc: PolicyDocument, rule: Rule, message: string): Diagnostic {
  return diagnostic('error', principalSpan(doc, rule), message);
}

/**
 * For an edit from the command line: the user or group it names must exist
 * (a numeric id always does). The file may hold dead names; a new line may not.
 */
export function requireKnownPrincipal(p: Principal, directory: Directory = nssDirectory): void {
  if (p.kind === 'everyone' || NUMERIC.test(p.name)) return;
  const found = p.kind === 'user' ? directory.users([p.name]).has(p.name) : directory.groups([p.name]).has(p.name);
  if (found) return;
  const database = p.kind === 'user' ? 'passwd' : 'group';
  throw new LowportError(
    p.kind === 'user' ? 'E_UNKNOWN_USER' : 'E_UNKNOWN_GROUP',
    `unknown ${p.kind} '${p.name}': no such ${p.kind} in the ${database} database (getent ${database} ${p.name})`,
    {
      hint: `Nothing was changed. Check the name, create the ${p.kind} first, or give a numeric ${p.kind === 'user' ? 'uid' : 'gid'}.`,
    },
  );
}

/** One rule whose name no longer maps to what it was made live with. */
export interface NameChange {
  line: number;
  rule: Rule;
  message: string;
  /** The name does not resolve now: removing the line is a fix too. */
  gone: boolean;
  /** False for a name that did not resolve at apply time and still does not (a dead line, not a change). */
  changed: boolean;
}

/**
 * Compares the bindings a policy was applied with to what the names resolve
 * to now: a user deleted (and maybe their uid given to someone else), a
 * user's or group's id changed, a group's members changed, or a name that did
 * not resolve at apply time and does now. The rules are the applied text's.
 */
export function nameChanges(rules: readonly Rule[], recorded: NameBindings, directory: Directory = nssDirectory): NameChange[] {
  const named = rules.filter(
    (r): r is Rule & { principal: { kind: 'user' | 'group'; name: string } } =>
      r.principal.kind !== 'everyone' && !NUMERIC.test(r.principal.name),
  );
  const userNames = named.filter((r) => r.principal.kind === 'user').map((r) => r.principal.name);
  const groupNames = named.filter((r) => r.principal.kind === 'group').map((r) => r.principal.name);
  const usersNow = directory.users(userNames.filter((n) => n in recorded.users));
  const groupsNow = directory.groups(groupNames.filter((n) => n in recorded.groups));
  // Who holds the recorded ids now, and the members' uids now.
  const oldUids = userNames.flatMap((n) => {
    const id = recorded.users[n];
    return id === undefined || id === null ? [] : [String(id)];
  });
  const oldGids = groupNames.flatMap((n) => {
    const g = recorded.groups[n];
    return g === undefined || g === null ? [] : [String(g.gid)];
  });
  const memberNames = [...new Set([...groupsNow.values()].flatMap((g) => g.members))];
  const usersById = directory.users([...new Set([...oldUids, ...memberNames])]);
  const primaryNow = primaryMembersOf(
    directory,
    [...groupsNow.values()].map((g) => g.gid),
  );
  const groupsById = directory.groups([...new Set(oldGids)]);
  const userName = (uid: number) => usersById.get(String(uid))?.name;
  const groupName = (gid: number) => groupsById.get(String(gid))?.name;

  const out: NameChange[] = [];
  for (const rule of named) {
    const { kind, name } = rule.principal;
    const what = rule.action === 'reserve' ? 'reservation' : 'grant';
    const apply =
      rule.action === 'reserve' ? 'run `lowport apply` to keep its ports for root alone' : 'run `lowport apply` to drop the grant';
    const push = (message: string, gone = false, changed = true) => out.push({ line: rule.line, rule, message, gone, changed });
    if (kind === 'user') {
      if (!(name in recorded.users)) continue;
      const was = recorded.users[name];
      const message = idChange(
        { kind, name, what, apply, was: was ?? undefined, now: usersNow.get(name)?.uid, holderOf: userName },
        rule.action,
      );
      if (message !== undefined) push(message.text, message.gone, message.changed);
    } else {
      if (!(name in recorded.groups)) continue;
      const was = recorded.groups[name];
      const now = groupsNow.get(name);
      const message = idChange({ kind, name, what, apply, was: was?.gid, now: now?.gid, holderOf: groupName }, rule.action);
      if (message !== undefined) push(message.text, message.gone, message.changed);
      else if (was !== null && was !== undefined && now !== undefined) {
        const uidsNow = new Set(memberUids(now.members, usersById, primaryNow.get(now.gid)));
        const gone = was.members.filter((u) => !uidsNow.has(u));
        const added = [...uidsNow].filter((u) => !was.members.includes(u)).sort((a, b) => a - b);
        if (gone.length > 0 || added.length > 0) {
          const parts = [
            ...(gone.length > 0
              ? [`uid ${gone.join(', ')} left the group but the live ${what} still holds ${gone.length === 1 ? 'it' : 'them'}`]
              : []),
            ...(added.length > 0 ? [`uid ${added.join(', ')} joined but ${added.length === 1 ? 'is' : 'are'} not live yet`] : []),
          ];
          push(
            `group ${name} (gid ${was.gid}): its members changed since the policy was applied: ${parts.join('; ')}: run \`lowport apply\``,
          );
        }
      }
    }
  }
  return out;
}

/**
 * Ids of the subjects that lie in some user's subordinate range
 * (subuid(5), subgid(5)): that user's containers (rootless podman, LXC) run
 * processes with those ids, so a grant to one goes to the owner's containers.
 */
export function subordinateNotes(
  subjects: readonly Subject[],
  subuid: readonly SubordinateRange[],
  subgid: readonly SubordinateRange[],
): string[] {
  const notes: string[] = [];
  const seen = new Set<string>();
  for (const s of subjects) {
    const [ranges, file, what] =
      s.kind === Kind.UID ? [subuid, '/etc/subuid', 'uid'] : s.kind === Kind.GID ? [subgid, '/etc/subgid', 'gid'] : [undefined, '', ''];
    if (ranges === undefined) continue;
    const id = Number(s.id);
    for (const r of ranges) {
      if (id < r.start || id >= r.start + r.count) continue;
      const note = `${what} ${id} is in ${escapeControl(r.owner)}'s subordinate range (${file}: ${r.start}-${r.start + r.count - 1}): ${escapeControl(r.owner)}'s containers can use it`;
      if (!seen.has(note)) notes.push(note);
      seen.add(note);
    }
  }
  return notes;
}

/**
 * What happened to a user's or group's id since apply: the name appeared,
 * is still missing, is gone (its old id now someone else's or no one's), or
 * moved to another id. Undefined when the name still has the recorded id.
 */
function idChange(
  c: {
    kind: 'user' | 'group';
    name: string;
    what: string;
    apply: string;
    was: number | undefined;
    now: number | undefined;
    holderOf: (id: number) => string | undefined;
  },
  action: 'grant' | 'reserve',
): { text: string; gone: boolean; changed: boolean } | undefined {
  const idName = c.kind === 'user' ? 'uid' : 'gid';
  const who = `${c.kind} ${c.name}`;
  if (c.was === undefined) {
    if (c.now !== undefined)
      return {
        text: `${who} did not exist when the policy was applied and does now (${idName} ${c.now}): run \`lowport apply\` to make the ${c.what} live`,
        gone: false,
        changed: true,
      };
    return {
      text: `${who} does not exist: the ${c.what} is not live${action === 'reserve' ? ' (its ports refuse everyone but root)' : ''}`,
      gone: true,
      changed: false,
    };
  }
  if (c.now === undefined) {
    const holder = c.holderOf(c.was);
    const nowHeld = holder === undefined ? 'now nobody’s' : `now ${escapeControl(holder)}`;
    return {
      text: `${who} (${idName} ${c.was}): ${c.name} no longer exists; ${idName} ${c.was} is ${nowHeld}, and the live ${c.what} still holds it: ${c.apply}`,
      gone: true,
      changed: true,
    };
  }
  if (c.now !== c.was)
    return {
      text: `${who} (${idName} ${c.was}): ${c.name} is now ${idName} ${c.now}; the live ${c.what} still holds ${idName} ${c.was} (${heldBy(c.kind, c.holderOf(c.was))} now): run \`lowport apply\` to move it`,
      gone: false,
      changed: true,
    };
  return undefined;
}

function heldBy(kind: 'user' | 'group', name: string | undefined): string {
  return name === undefined ? `no ${kind}` : `${kind} ${escapeControl(name)}`;
}
