/**
 * Who is a member of a group, as the README says (The policy file: WHO):
 * the users /etc/group lists, the users whose passwd entry names the group
 * as their primary group, and any process whose real gid is the group's.
 * Checked on resolvePolicy and nameChanges, and differentially: random
 * policies over a small user database, compiled and run through the real
 * bind program (bind-interpreter.ts), against a model written from the
 * README alone.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileTable } from '../../../src/grants/compile.js';
import { Kind } from '../../../src/grants/map-format.js';
import { GRANT, PASS, REFUSE } from '../../../src/grants/program.js';
import { nameChanges, resolvePolicy, type Directory } from '../../../src/grants/resolve.js';
import type { GroupEntry, PasswdEntry } from '../../../src/os/nss.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { bind, policyMap, type Caller } from './bind-interpreter.js';

const user = (name: string, uid: number, gid: number): PasswdEntry => ({ name, uid, gid, home: `/home/${name}`, shell: '/bin/sh' });

/** The issue's minimal case: dt1's passwd group is dtg1, and /etc/group lists nobody in it. */
const USERS = [user('dt1', 2001, 3001), user('dt2', 2002, 3002), user('dt3', 2003, 3002), user('dt4', 2004, 3004)];
const GROUPS: GroupEntry[] = [
  { name: 'dtg1', gid: 3001, members: [] },
  { name: 'dtg2', gid: 3002, members: ['dt4'] },
  { name: 'dtg3', gid: 3003, members: ['dt1', 'dt2'] },
];

function directoryOf(users: PasswdEntry[], groups: GroupEntry[]): Directory {
  return {
    users: (keys) => new Map(keys.flatMap((k) => users.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const))),
    groups: (keys) => new Map(keys.flatMap((k) => groups.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const))),
    primaryMembers: (gids) => new Map(gids.map((g) => [g, users.filter((u) => u.gid === g)] as const)),
  };
}

const directory = directoryOf(USERS, GROUPS);
const mapOf = (text: string) => policyMap(compileTable(resolvePolicy(parsePolicy(text, 'policy'), directory).rules));

describe('group members by passwd primary group', () => {
  it('resolves a group to its gid, its listed members and the users whose passwd group it is', () => {
    const [g1, g2] = resolvePolicy(parsePolicy('grant 22 group dtg1\ngrant 23 group dtg2\n', 'policy'), directory).rules;
    assert.deepEqual(g1?.subjects, [
      { kind: Kind.GID, id: 3001n },
      { kind: Kind.UID, id: 2001n },
    ]);
    assert.equal(g1?.label, 'group dtg1 (gid 3001, members uid 2001)');
    assert.equal(g2?.label, 'group dtg2 (gid 3002, members uid 2002, 2003, 2004)');
  });

  it('expands a numeric gid that no group entry has to the users whose passwd group it is', () => {
    const dir = directoryOf([...USERS, user('dt5', 2005, 3999)], GROUPS);
    const [r] = resolvePolicy(parsePolicy('grant 22 group 3999\n', 'policy'), dir).rules;
    assert.equal(r?.label, 'gid 3999 (members uid 2005)');
  });

  it('the minimal case: grant 22 group dtg1 lets dt1 bind while running with gid dtg2; reserve 22 group dtg1 too, and refuses the others', () => {
    const dt1AsDtg2: Caller = { uid: 2001, gid: 3002 };
    assert.equal(bind(mapOf('grant 22 group dtg1\n'), dt1AsDtg2, '0.0.0.0', 22).verdict, GRANT);
    const reserved = mapOf('reserve 22 group dtg1\n');
    assert.equal(bind(reserved, dt1AsDtg2, '0.0.0.0', 22).verdict, GRANT);
    assert.equal(bind(reserved, { uid: 2002, gid: 3002 }, '::', 22).verdict, REFUSE);
    // Not a member in the database, but running with the group's gid (newgrp with the group's password, a service's Group=).
    assert.equal(bind(reserved, { uid: 2004, gid: 3001 }, '0.0.0.0', 22, 'udp').verdict, GRANT);
  });

  it('records primary members with the applied names, so nameChanges flags a user whose passwd group changed, and nothing else', () => {
    const { bindings } = resolvePolicy(parsePolicy('grant 22 group dtg1\n', 'policy'), directory);
    assert.deepEqual(bindings.groups, { dtg1: { gid: 3001, members: [2001] } });
    const rules = parsePolicy('grant 22 group dtg1\n', 'policy').rules;
    assert.deepEqual(nameChanges(rules, bindings, directory), []);
    const moved = directoryOf([user('dt1', 2001, 3002), ...USERS.slice(1), user('dt6', 2006, 3001)], GROUPS);
    assert.match(
      nameChanges(rules, bindings, moved)[0]?.message ?? '',
      /uid 2001 left the group but the live grant still holds it; uid 2006 joined but is not live yet/,
    );
  });
});

// ---------------------------------------------------------------------------
// The differential test: the README's reading, written without looking at
// resolve.ts or compile.ts, against the compiled policy run by the program.

/** A small PRNG, so a failure repeats with its seed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Who = { kind: 'user'; name: string } | { kind: 'group'; name: string } | { kind: 'everyone' };
interface ModelRule {
  action: 'grant' | 'reserve';
  port: number;
  protocols: ('tcp' | 'udp')[];
  who: Who;
  addrs: string[];
}

/** README, "The policy file": a member of G is a listed member, a user whose passwd group is G, or a process whose real gid is G. */
function isMember(caller: Caller, group: string, users: PasswdEntry[], groups: GroupEntry[]): boolean {
  const g = groups.find((x) => x.name === group);
  if (g === undefined) return false;
  const name = users.find((u) => u.uid === caller.uid)?.name;
  return (
    caller.gid === g.gid || (name !== undefined && g.members.includes(name)) || users.some((u) => u.uid === caller.uid && u.gid === g.gid)
  );
}

function matches(who: Who, caller: Caller, users: PasswdEntry[], groups: GroupEntry[]): boolean {
  if (who.kind === 'everyone') return true;
  if (who.kind === 'user') return users.some((u) => u.name === who.name && u.uid === caller.uid);
  return isMember(caller, who.name, users, groups);
}

/**
 * README: a grant lets WHO bind on its addresses (any without `addr`); a
 * reservation refuses everyone but root, its owners and users the policy
 * grants the port to by name (not `everyone`); anything else is left to the kernel.
 */
function modelVerdict(
  rules: ModelRule[],
  caller: Caller,
  port: number,
  protocol: 'tcp' | 'udp',
  addr: string,
  db: [PasswdEntry[], GroupEntry[]],
) {
  const covers = (r: ModelRule) => r.port === port && r.protocols.includes(protocol);
  const atAddr = (r: ModelRule) => r.addrs.length === 0 || r.addrs.includes(addr);
  const granted = rules.some((r) => r.action === 'grant' && covers(r) && atAddr(r) && matches(r.who, caller, ...db));
  const reserved = rules.filter((r) => r.action === 'reserve' && covers(r));
  if (reserved.length === 0) return granted ? GRANT : PASS;
  if (reserved.some((r) => matches(r.who, caller, ...db))) return GRANT;
  if (rules.some((r) => r.action === 'grant' && covers(r) && atAddr(r) && r.who.kind !== 'everyone' && matches(r.who, caller, ...db)))
    return GRANT;
  return caller.uid === 0 ? PASS : REFUSE;
}

function printRule(r: ModelRule): string {
  const ports = r.protocols.length === 2 ? `${r.port}` : `${r.port}/${r.protocols[0] ?? ''}`;
  const who = r.who.kind === 'everyone' ? 'everyone' : `${r.who.kind} ${r.who.name}`;
  return `${r.action} ${ports} ${who}${r.addrs.length > 0 ? ` addr ${r.addrs.join(',')}` : ''}`;
}

describe('group membership, differentially against the README', () => {
  it('agrees with the README on random policies, callers and binds', () => {
    const next = random(12);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
    const ports = [22, 53, 80];
    const addrs = ['0.0.0.0', '127.0.0.1'];
    let compared = 0;
    for (let round = 0; round < 100; round++) {
      // A database: 4 users with random passwd groups, 3 groups with random listed members.
      const gids = [3001, 3002, 3003];
      const users = [1, 2, 3, 4].map((i) => user(`u${i}`, 2000 + i, pick([...gids, 4000 + i])));
      const groups = gids.map((gid, i) => ({ name: `g${i + 1}`, gid, members: users.filter(() => next() < 0.3).map((u) => u.name) }));
      const rules: ModelRule[] = Array.from({ length: 1 + Math.floor(next() * 4) }, () => ({
        action: next() < 0.3 ? 'reserve' : 'grant',
        port: pick(ports),
        protocols: pick([['tcp', 'udp'], ['tcp'], ['udp']] as const).slice(),
        who: pick<Who>([
          { kind: 'group', name: 'g1' },
          { kind: 'group', name: 'g2' },
          { kind: 'group', name: 'g3' },
          { kind: 'user', name: pick(users).name },
          { kind: 'everyone' },
        ]),
        addrs: [],
      }));
      for (const r of rules) if (r.action === 'grant' && next() < 0.3) r.addrs = ['127.0.0.1'];
      // Reservations are for a user or a group (the CLI and the parser refuse `reserve ... everyone`).
      for (const r of rules) if (r.action === 'reserve' && r.who.kind === 'everyone') r.who = { kind: 'group', name: 'g1' };
      // A reserved port has one owner (the parser refuses a second): a later reservation of it takes the earlier owner,
      // or becomes a grant where the earlier ones (tcp and udp apart) have two.
      const reservations = rules.filter((r) => r.action === 'reserve');
      for (const [i, r] of reservations.entries()) {
        const owners = new Set(
          reservations
            .slice(0, i)
            .filter((o) => o.action === 'reserve' && o.port === r.port && o.protocols.some((p) => r.protocols.includes(p)))
            .map((o) => JSON.stringify(o.who)),
        );
        const [owner] = owners;
        if (owners.size > 1) r.action = 'grant';
        else if (owner !== undefined) r.who = JSON.parse(owner) as Who;
      }
      const text = `${rules.map(printRule).join('\n')}\n`;
      const map = policyMap(compileTable(resolvePolicy(parsePolicy(text, 'policy'), directoryOf(users, groups)).rules));
      for (let b = 0; b < 20; b++) {
        const caller: Caller = { uid: pick([...users.map((u) => u.uid), 2999]), gid: pick([...gids, 4001, 4002, 5000]) };
        const port = pick(ports);
        const protocol = pick(['tcp', 'udp'] as const);
        const addr = pick(addrs);
        const want = modelVerdict(rules, caller, port, protocol, addr, [users, groups]);
        const got = bind(map, caller, addr, port, protocol).verdict;
        assert.equal(
          got,
          want,
          `round ${round}: uid ${caller.uid} gid ${caller.gid} binds ${protocol} ${addr}:${port}\npolicy:\n${text}users: ${JSON.stringify(users.map((u) => [u.name, u.uid, u.gid]))}\ngroups: ${JSON.stringify(groups)}`,
        );
        compared++;
      }
    }
    assert.equal(compared, 2000);
  });
});
