import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressKey, addressText, compile, compileTable, protocolName, protocolNumber } from '../../../src/grants/compile.js';
import type { Entry } from '../../../src/grants/live.js';
import { encodeKey, HOST_IS_LITTLE_ENDIAN as HOST_LE, Kind, lookupFlag, RESERVED } from '../../../src/grants/map-format.js';
import { GRANT, PASS, REFUSE } from '../../../src/grants/program.js';
import {
  nameChanges,
  requireKnownPrincipal,
  resolvePolicy,
  subordinateNotes,
  type Directory,
  type NameBindings,
  type ResolvedRule,
  type Subject,
} from '../../../src/grants/resolve.js';
import { LowportError } from '../../../src/errors.js';
import type { GroupEntry, PasswdEntry } from '../../../src/os/nss.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { bind, policyMap, type BindProtocol, type Caller } from './bind-interpreter.js';

const user = (name: string, uid: number, gid = uid): PasswdEntry => ({ name, uid, gid, home: `/home/${name}`, shell: '/bin/sh' });

const USERS = [user('alice', 1000), user('bob', 1001), user('carol', 1002, 100), user('postgres', 70)];
const GROUPS: GroupEntry[] = [
  { name: 'dns', gid: 53, members: ['bob', 'ghost', 'alice', 'bob'] },
  { name: 'web', gid: 2000, members: [] },
];

/** A Directory over fixed tables that answers by name or number and records what it was asked. */
function fakeDirectory(): Directory & { asked: string[][] } {
  const asked: string[][] = [];
  return {
    asked,
    users(keys) {
      asked.push(['users', ...keys]);
      return new Map(keys.flatMap((k) => USERS.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const)));
    },
    groups(keys) {
      asked.push(['groups', ...keys]);
      return new Map(keys.flatMap((k) => GROUPS.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const)));
    },
  };
}

function resolve(text: string): ResolvedRule[] {
  return resolvePolicy(parsePolicy(text, 'policy'), fakeDirectory()).rules;
}

function entries(text: string): Entry[] {
  return compile(resolve(text));
}

const TCP = 6;
const UDP = 17;
const ZERO16 = '00'.repeat(16);

/** An entry as one comparable line: `kind proto/port family id addr -> rule flags`. */
function show(e: Entry): string {
  const kind = ['PORT', 'UID', 'GID', 'CGROUP', 'EVERYONE'][e.key.kind] ?? String(e.key.kind);
  const addr = e.key.addr.toString('hex');
  return `${kind} ${e.key.protocol}/${e.key.port} af${e.key.family} id${e.key.id} ${addr === ZERO16 ? 'any' : addr} -> line ${e.value.rule} flags ${e.value.flags} hits ${e.value.hits}`;
}

function shown(text: string): string[] {
  return entries(text).map(show).sort();
}

/** The names resolvePolicy could not resolve, as `line:column+length message`. */
function resolveProblems(text: string): string[] {
  const { unresolved } = resolvePolicy(parsePolicy(text, 'policy'), fakeDirectory());
  assert.ok(unresolved.length > 0, 'some name should not have resolved');
  return unresolved.map((u) => `${u.diagnostic.line}:${u.diagnostic.column}+${u.diagnostic.length} ${u.diagnostic.message}`);
}

// The marker flags compile must set: which principal kind, exact address or any.
const UID_EXACT = lookupFlag(Kind.UID, false);
const UID_ANY = lookupFlag(Kind.UID, true);
const GID_EXACT = lookupFlag(Kind.GID, false);
const GID_ANY = lookupFlag(Kind.GID, true);
const EVERYONE_ANY = lookupFlag(Kind.EVERYONE, true);

describe('resolvePolicy', () => {
  it('resolves a user to their uid, with a label saying both', () => {
    const [r] = resolve('grant 80 user alice\n');
    assert.deepEqual(r?.subjects, [{ kind: Kind.UID, id: 1000n }]);
    assert.equal(r?.label, 'user alice (uid 1000)');
  });

  it('resolves a group to its gid and the uids of its members that exist, sorted and once each', () => {
    const [r] = resolve('grant 53 group dns\n');
    assert.deepEqual(r?.subjects, [
      { kind: Kind.GID, id: 53n },
      { kind: Kind.UID, id: 1000n },
      { kind: Kind.UID, id: 1001n },
    ]);
    assert.equal(r?.label, 'group dns (gid 53, members uid 1000, 1001)');
  });

  it('resolves a group without members to its gid alone', () => {
    const [r] = resolve('grant 80 group web\n');
    assert.deepEqual(r?.subjects, [{ kind: Kind.GID, id: 2000n }]);
    assert.equal(r?.label, 'group web (gid 2000)');
  });

  it('resolves everyone to the EVERYONE subject with id 0', () => {
    const [r] = resolve('grant 80 everyone\n');
    assert.deepEqual(r?.subjects, [{ kind: Kind.EVERYONE, id: 0n }]);
    assert.equal(r?.label, 'everyone');
  });

  it('accepts numeric uids and gids that no database knows, as chown does', () => {
    const [u, g] = resolve('grant 80 user 4242\ngrant 80 group 4343\n');
    assert.deepEqual(u?.subjects, [{ kind: Kind.UID, id: 4242n }]);
    assert.equal(u?.label, 'uid 4242');
    assert.deepEqual(g?.subjects, [{ kind: Kind.GID, id: 4343n }]);
    assert.equal(g?.label, 'gid 4343');
  });

  it('turns a numeric uid into that uid, and a numeric gid the database knows into that gid', () => {
    const [u, g] = resolve('grant 80 user 1001\ngrant 80 group 53\n');
    assert.deepEqual(u?.subjects, [{ kind: Kind.UID, id: 1001n }]);
    assert.deepEqual(g?.subjects?.[0], { kind: Kind.GID, id: 53n });
  });

  it('asks the directory once for all users, once for all groups and once for the members', () => {
    const dir = fakeDirectory();
    resolvePolicy(parsePolicy('grant 80 user alice\ngrant 53 group dns\ngrant 443 user bob\n', 'policy'), dir);
    assert.deepEqual(dir.asked, [
      ['users', 'alice', 'bob'],
      ['groups', 'dns'],
      ['users', 'bob', 'ghost', 'alice'],
    ]);
  });

  it('reports an unknown user at the name: its line, column and length', () => {
    assert.deepEqual(resolveProblems('# c\ngrant 80   user  mallory # x\n'), [
      "2:18+7 unknown user 'mallory': no such user in the passwd database (getent passwd mallory); this grant is not live",
    ]);
  });

  it('reports an unknown group at the name', () => {
    assert.deepEqual(resolveProblems('grant 53/udp\tgroup\tnobody.x addr ::1\n'), [
      "1:20+8 unknown group 'nobody.x': no such group in the group database (getent group nobody.x); this grant is not live",
    ]);
  });

  it('reports every unknown name at once, in file order, with the file name and source line', () => {
    const doc = parsePolicy('grant 80 user alice\ngrant 81 user zed\nreserve 82 group nogroup$\ngrant 83 user zed\n', 'pol.txt');
    const { unresolved } = resolvePolicy(doc, fakeDirectory());
    assert.deepEqual(
      unresolved.map((u) => [
        u.diagnostic.file,
        u.diagnostic.line,
        u.diagnostic.column,
        u.diagnostic.length,
        u.diagnostic.source,
        u.effect,
      ]),
      [
        ['pol.txt', 2, 15, 3, 'grant 81 user zed', 'left-out'],
        ['pol.txt', 3, 18, 8, 'reserve 82 group nogroup$', 'root-only'],
        ['pol.txt', 4, 15, 3, 'grant 83 user zed', 'left-out'],
      ],
    );
    assert.match(unresolved[1]?.diagnostic.message ?? '', /the reservation of 82 still refuses everyone but root$/);
  });

  it('resolves every other rule when a name does not resolve, instead of rejecting the whole policy', () => {
    const { rules, unresolved } = resolvePolicy(
      parsePolicy('grant 80 user alice\ngrant 81 user ghost\ngrant 82 group dns\n', 'policy'),
      fakeDirectory(),
    );
    assert.deepEqual(
      rules.map((r) => [r.rule.line, r.label]),
      [
        [1, 'user alice (uid 1000)'],
        [3, 'group dns (gid 53, members uid 1000, 1001)'],
      ],
    );
    assert.deepEqual(
      unresolved.map((u) => u.rule.line),
      [2],
    );
  });

  it('keeps a reservation whose owner does not resolve, with no subject: its ports stay reserved for root alone', () => {
    const { rules } = resolvePolicy(parsePolicy('reserve 5432/tcp user ghost\n', 'policy'), fakeDirectory());
    assert.deepEqual(
      rules.map((r) => [r.rule.line, r.subjects]),
      [[1, []]],
    );
    assert.deepEqual(compile(rules).map(show), [`PORT 6/5432 af0 id0 any -> line 1 flags ${RESERVED} hits 0`]);
  });

  it('records the id each name resolved to, and null for a name that did not', () => {
    const { bindings } = resolvePolicy(
      parsePolicy('grant 80 user alice\ngrant 80 user 4242\nreserve 81 user ghost\ngrant 53 group dns\ngrant 54 group nogroup\n', 'policy'),
      fakeDirectory(),
    );
    assert.deepEqual(bindings, { users: { alice: 1000, ghost: null }, groups: { dns: { gid: 53, members: [1000, 1001] }, nogroup: null } });
  });

  it('escapes control characters in names NSS gives back for a numeric principal', () => {
    const dir: Directory = {
      users: () => new Map(),
      groups: (keys) => new Map(keys.map((k) => [k, { name: 'evil\x1b[2Jname', gid: Number(k), members: [] }] as const)),
    };
    const [r] = resolvePolicy(parsePolicy('grant 80 group 4000\n', 'policy'), dir).rules;
    assert.equal(r?.label, 'group evil\\x1b[2Jname (gid 4000)');
  });

  it('points at the name, not at an earlier word that contains it', () => {
    // `user` in the comment-free statement appears once; the name `use` is a prefix of it.
    assert.deepEqual(
      resolveProblems('grant 80 user use\n').map((p) => p.split(' ')[0]),
      ['1:15+3'],
    );
  });
});

describe('requireKnownPrincipal', () => {
  it('accepts names that exist, numbers and everyone, and refuses an unknown name with its database', () => {
    const dir = fakeDirectory();
    for (const p of [
      { kind: 'user', name: 'alice' },
      { kind: 'user', name: '4242' },
      { kind: 'group', name: 'dns' },
      { kind: 'everyone' },
    ] as const)
      requireKnownPrincipal(p, dir);
    assert.throws(
      () => requireKnownPrincipal({ kind: 'user', name: 'ghost' }, dir),
      (e: unknown) => e instanceof LowportError && e.code === 'E_UNKNOWN_USER' && /getent passwd ghost/.test(e.message),
    );
    assert.throws(
      () => requireKnownPrincipal({ kind: 'group', name: 'ghosts' }, dir),
      (e: unknown) => e instanceof LowportError && e.code === 'E_UNKNOWN_GROUP',
    );
  });
});

/** A directory over the given users and groups. */
function directoryOf(users: PasswdEntry[], groups: GroupEntry[] = []): Directory {
  return {
    users: (keys) => new Map(keys.flatMap((k) => users.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const))),
    groups: (keys) => new Map(keys.flatMap((k) => groups.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const))),
  };
}

describe('nameChanges', () => {
  const rules = parsePolicy(
    'grant 80 user alice\nreserve 5432 user postgres\ngrant 53 group dns\ngrant 81 user 4242\ngrant 82 user ghost\n',
    'policy',
  ).rules;
  const applied: NameBindings = { users: { alice: 1001, postgres: 70, ghost: null }, groups: { dns: { gid: 53, members: [1001] } } };
  const dns = (members: string[]): GroupEntry => ({ name: 'dns', gid: 53, members });

  it('says nothing while every name maps to what was applied, except a name that was and is unknown', () => {
    const now = directoryOf([user('alice', 1001), user('postgres', 70)], [dns(['alice'])]);
    assert.deepEqual(
      nameChanges(rules, applied, now).map((c) => [c.line, c.changed, c.gone]),
      [[5, false, true]],
    );
  });

  it('flags a deleted user whose uid now belongs to someone else, naming both', () => {
    const now = directoryOf([user('bob', 1001), user('postgres', 70)], [dns([])]);
    const [c] = nameChanges(rules, applied, now).filter((x) => x.line === 1);
    assert.equal(
      c?.message,
      'user alice (uid 1001): alice no longer exists; uid 1001 is now bob, and the live grant still holds it: run `lowport apply` to drop the grant',
    );
    assert.equal(c?.gone, true);
  });

  it('flags a deleted reservation owner whose uid is free', () => {
    const now = directoryOf([user('alice', 1001)], [dns(['alice'])]);
    const [c] = nameChanges(rules, applied, now).filter((x) => x.line === 2);
    assert.match(
      c?.message ?? '',
      /^user postgres \(uid 70\): postgres no longer exists; uid 70 is now nobody’s, and the live reservation still holds it: run `lowport apply` to keep its ports for root alone$/,
    );
  });

  it('flags a user whose uid changed, and a group member who left or joined', () => {
    const now = directoryOf([user('alice', 1005), user('carol', 1002), user('postgres', 70)], [dns(['carol'])]);
    const byLine = new Map(nameChanges(rules, applied, now).map((c) => [c.line, c.message]));
    assert.match(byLine.get(1) ?? '', /alice is now uid 1005; the live grant still holds uid 1001 \(no user now\)/);
    assert.match(byLine.get(3) ?? '', /uid 1001 left the group but the live grant still holds it; uid 1002 joined but is not live yet/);
  });

  it('flags a name that did not exist at apply time and does now', () => {
    const now = directoryOf([user('alice', 1001), user('postgres', 70), user('ghost', 3000)], [dns(['alice'])]);
    const [c] = nameChanges(rules, applied, now).filter((x) => x.line === 5);
    assert.equal(
      c?.message,
      'user ghost did not exist when the policy was applied and does now (uid 3000): run `lowport apply` to make the grant live',
    );
  });

  it('escapes the new holder’s name, which NSS may fill with control characters', () => {
    const now = directoryOf([user('b\x1b]0;pwned\x07', 1001), user('postgres', 70)], [dns([])]);
    const [c] = nameChanges(rules, applied, now).filter((x) => x.line === 1);
    assert.match(c?.message ?? '', /uid 1001 is now b\\x1b\]0;pwned\\x07,/);
    assert.ok(![...(c?.message ?? '')].some((ch) => ch.charCodeAt(0) < 0x20), 'no control character left');
  });
});

describe('subordinateNotes', () => {
  const subuid = [{ owner: 'alice', start: 100000, count: 65536 }];
  const subgid = [{ owner: '1000', start: 200000, count: 10 }];

  it('names the owner of the subordinate range a uid or gid lies in, and only those', () => {
    assert.deepEqual(
      subordinateNotes(
        [
          { kind: Kind.UID, id: 100500n },
          { kind: Kind.UID, id: 165536n },
          { kind: Kind.GID, id: 200009n },
          { kind: Kind.GID, id: 100500n },
          { kind: Kind.EVERYONE, id: 0n },
        ],
        subuid,
        subgid,
      ),
      [
        "uid 100500 is in alice's subordinate range (/etc/subuid: 100000-165535): alice's containers can use it",
        "gid 200009 is in 1000's subordinate range (/etc/subgid: 200000-200009): 1000's containers can use it",
      ],
    );
  });
});

describe('compile', () => {
  it('gives a user grant on 80,443 a PORT marker per protocol and port, and a UID key for each', () => {
    const flags = UID_ANY;
    assert.deepEqual(shown('\ngrant 80,443 user alice\n'), [
      `PORT 17/443 af0 id0 any -> line 2 flags ${flags} hits 0`,
      `PORT 17/80 af0 id0 any -> line 2 flags ${flags} hits 0`,
      `PORT 6/443 af0 id0 any -> line 2 flags ${flags} hits 0`,
      `PORT 6/80 af0 id0 any -> line 2 flags ${flags} hits 0`,
      'UID 17/443 af0 id1000 any -> line 2 flags 0 hits 0',
      'UID 17/80 af0 id1000 any -> line 2 flags 0 hits 0',
      'UID 6/443 af0 id1000 any -> line 2 flags 0 hits 0',
      'UID 6/80 af0 id1000 any -> line 2 flags 0 hits 0',
    ]);
  });

  it('keys an address rule by family and address bytes, and marks the exact lookup', () => {
    assert.deepEqual(shown('grant 53/udp user alice addr 127.0.0.1,2001:db8::1\n'), [
      `PORT 17/53 af0 id0 any -> line 1 flags ${UID_EXACT} hits 0`,
      'UID 17/53 af10 id1000 20010db8000000000000000000000001 -> line 1 flags 0 hits 0',
      'UID 17/53 af2 id1000 7f000001000000000000000000000000 -> line 1 flags 0 hits 0',
    ]);
  });

  it('keys an IPv4-mapped address as the IPv4 address, as the program sees it', () => {
    assert.deepEqual(shown('grant 80/tcp user alice addr ::ffff:127.0.0.1\n'), [
      `PORT 6/80 af0 id0 any -> line 1 flags ${UID_EXACT} hits 0`,
      'UID 6/80 af2 id1000 7f000001000000000000000000000000 -> line 1 flags 0 hits 0',
    ]);
  });

  it('gives a group rule a GID key and a UID key per member that resolves, and flags both lookups', () => {
    assert.deepEqual(shown('grant 53/tcp group dns\n'), [
      'GID 6/53 af0 id53 any -> line 1 flags 0 hits 0',
      `PORT 6/53 af0 id0 any -> line 1 flags ${GID_ANY | UID_ANY} hits 0`,
      'UID 6/53 af0 id1000 any -> line 1 flags 0 hits 0',
      'UID 6/53 af0 id1001 any -> line 1 flags 0 hits 0',
    ]);
  });

  it('gives everyone an EVERYONE key with id 0', () => {
    assert.deepEqual(shown('grant 8080/udp everyone\n'), [
      'EVERYONE 17/8080 af0 id0 any -> line 1 flags 0 hits 0',
      `PORT 17/8080 af0 id0 any -> line 1 flags ${EVERYONE_ANY} hits 0`,
    ]);
  });

  it('sets RESERVED on the marker of a reservation, credits the reservation’s line, and keys its owner', () => {
    assert.deepEqual(shown('grant 5432/tcp user alice\nreserve 5432/tcp user postgres\n'), [
      `PORT 6/5432 af0 id0 any -> line 2 flags ${RESERVED | UID_ANY} hits 0`,
      'UID 6/5432 af0 id1000 any -> line 1 flags 0 hits 0',
      'UID 6/5432 af0 id70 any -> line 2 flags 256 hits 0',
    ]);
  });

  it('credits a marker to the first reservation of its port when there are several', () => {
    // The parser refuses two owners of one port (policy/owners.ts); the compiler still gives such rules a meaning.
    const rules = [...resolve('reserve 22/tcp user alice\n'), ...resolve('\nreserve 22/tcp user bob\n')];
    const marker = compile(rules).find((e) => e.key.kind === Kind.PORT);
    assert.equal(marker?.value.rule, 1);
    assert.equal(marker?.value.flags, RESERVED | UID_ANY);
  });

  it('lets the first line win a key two rules produce, and merges the marker flags of both', () => {
    assert.deepEqual(shown('grant 80/tcp user alice addr ::1\ngrant 80/tcp group dns addr ::1\n'), [
      'GID 6/80 af10 id53 00000000000000000000000000000001 -> line 2 flags 0 hits 0',
      `PORT 6/80 af0 id0 any -> line 1 flags ${UID_EXACT | GID_EXACT} hits 0`,
      'UID 6/80 af10 id1000 00000000000000000000000000000001 -> line 1 flags 0 hits 0',
      'UID 6/80 af10 id1001 00000000000000000000000000000001 -> line 2 flags 0 hits 0',
    ]);
  });

  it('expands a range to every port in it', () => {
    const ports = entries('grant 1020-1023/udp everyone\n')
      .filter((e) => e.key.kind === Kind.EVERYONE)
      .map((e) => `${e.key.protocol}/${e.key.port}`);
    assert.deepEqual(ports, ['17/1020', '17/1021', '17/1022', '17/1023']);
  });

  it('makes no entry twice when port items overlap within a rule', () => {
    const es = entries('grant 80,79-81,80/tcp user alice\n');
    assert.equal(new Set(es.map((e) => encodeKey(e.key).toString('hex'))).size, es.length);
    assert.equal(es.length, 12); // 3 ports × 2 protocols × (marker + UID)
  });

  it('makes nothing of an empty policy', () => {
    assert.deepEqual(entries('# nothing\n'), []);
  });
});

describe('addressKey and addressText', () => {
  it('keys IPv4 as AF_INET with the four bytes first', () => {
    const k = addressKey('192.168.1.20');
    assert.equal(k.family, 2);
    assert.equal(k.bytes.toString('hex'), 'c0a80114' + '00'.repeat(12));
  });

  it('keys IPv6 as AF_INET6 with all sixteen bytes in network order', () => {
    const k = addressKey('fe80::1:2');
    assert.equal(k.family, 10);
    assert.equal(k.bytes.toString('hex'), 'fe800000000000000000000000010002');
  });

  it('keys :: as AF_INET6 and sixteen zero bytes, not as "any address"', () => {
    const k = addressKey('::');
    assert.equal(k.family, 10);
    assert.equal(k.bytes.toString('hex'), ZERO16);
  });

  it('keys an IPv4-mapped address as AF_INET, however it is spelled', () => {
    for (const text of ['::ffff:10.1.2.3', '::ffff:a01:203', '0:0:0:0:0:ffff:10.1.2.3']) {
      const k = addressKey(text);
      assert.equal(k.family, 2, text);
      assert.equal(k.bytes.toString('hex'), '0a010203' + '00'.repeat(12), text);
    }
  });

  it('gives back the normal text of a key for IPv4, IPv6 and ::', () => {
    for (const text of ['127.0.0.1', '0.0.0.0', '255.255.255.255', '::1', '::', '2001:db8::8:800:200c:417a', 'fe80::1']) {
      const { family, bytes } = addressKey(text);
      assert.equal(addressText(family, bytes), text);
    }
  });

  it('gives no text for family 0, "any address"', () => {
    assert.equal(addressText(0, Buffer.alloc(16)), undefined);
  });

  it('gives the IPv4 text back for an IPv4-mapped address', () => {
    const { family, bytes } = addressKey('::ffff:127.0.0.1');
    assert.equal(addressText(family, bytes), '127.0.0.1');
  });
});

describe('protocol numbers', () => {
  it('map tcp to 6 and udp to 17 and back, and nothing else to a name', () => {
    assert.equal(protocolNumber('tcp'), TCP);
    assert.equal(protocolNumber('udp'), UDP);
    assert.equal(protocolName(6), 'tcp');
    assert.equal(protocolName(17), 'udp');
    assert.equal(protocolName(132), undefined);
    assert.equal(protocolName(0), undefined);
  });
});

// ---------------------------------------------------------------------------
// The compiler's security rules, shown by running binds through the real bind
// program (bind-interpreter.ts) against the compiled table. Rules are given
// already resolved (no NSS): each statement with the subjects it resolved to.

const asUser = (uid: number): Subject[] => [{ kind: Kind.UID, id: BigInt(uid) }];
const asGroup = (gid: number, ...memberUids: number[]): Subject[] => [{ kind: Kind.GID, id: BigInt(gid) }, ...memberUids.flatMap(asUser)];
const asEveryone: Subject[] = [{ kind: Kind.EVERYONE, id: 0n }];
/** A reservation whose owner did not resolve: its ports are for root alone. */
const unresolved: Subject[] = [];

const callers = {
  root: { uid: 0, gid: 0 },
  postgres: { uid: 70, gid: 70 },
  alice: { uid: 1000, gid: 1000 },
  bob: { uid: 1001, gid: 1001 },
  /** A member of web (gid 2000) by a supplementary group. */
  carol: { uid: 1002, gid: 100 },
  /** In web by primary group. */
  dave: { uid: 1005, gid: 2000 },
} satisfies Record<string, Caller>;

const VERDICT = { grant: GRANT, pass: PASS, refuse: REFUSE } as const;
type Verdict = keyof typeof VERDICT;
type BindCase = [who: keyof typeof callers, at: string, port: number, protocol: BindProtocol, expect: Verdict];

interface SecurityCase {
  rule: string;
  policy: string;
  /** Per statement, what it resolved to. */
  subjects: Subject[][];
  binds: BindCase[];
}

function resolvedRules(policy: string, subjects: Subject[][]): ResolvedRule[] {
  const rules = parsePolicy(policy, 'policy').rules;
  assert.equal(rules.length, subjects.length, 'one subject list per statement');
  return rules.map((rule, i) => ({ rule, subjects: subjects[i] ?? [], label: `line ${rule.line}` }));
}

const SECURITY: SecurityCase[] = [
  {
    rule: 'a grant to everyone over a range does not open a port reserved inside it (31cce13)',
    policy: 'grant 85-95 everyone\nreserve 90 user postgres\n',
    subjects: [asEveryone, asUser(70)],
    binds: [
      ['bob', '0.0.0.0', 90, 'tcp', 'refuse'],
      ['bob', '127.0.0.1', 90, 'udp', 'refuse'],
      ['alice', '::1', 90, 'tcp', 'refuse'],
      ['bob', '0.0.0.0', 89, 'tcp', 'grant'],
      ['bob', '::', 91, 'udp', 'grant'],
      ['postgres', '0.0.0.0', 90, 'tcp', 'grant'],
      ['root', '0.0.0.0', 90, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'the reservation wins whichever comes first in the file',
    policy: 'reserve 90 user postgres\ngrant 85-95 everyone\n',
    subjects: [asUser(70), asEveryone],
    binds: [
      ['bob', '0.0.0.0', 90, 'tcp', 'refuse'],
      ['bob', '0.0.0.0', 91, 'tcp', 'grant'],
      ['postgres', '::', 90, 'udp', 'grant'],
    ],
  },
  {
    rule: 'an address-specific grant to everyone does not open a reserved port either, and a reservation covers only its protocol',
    policy: 'grant 90 everyone addr 127.0.0.1\nreserve 90/tcp user postgres\n',
    subjects: [asEveryone, asUser(70)],
    binds: [
      ['bob', '127.0.0.1', 90, 'tcp', 'refuse'],
      ['bob', '0.0.0.0', 90, 'tcp', 'refuse'],
      ['bob', '127.0.0.1', 90, 'udp', 'grant'],
      ['bob', '0.0.0.0', 90, 'udp', 'pass'],
      ['postgres', '0.0.0.0', 90, 'tcp', 'grant'],
    ],
  },
  {
    rule: 'a reservation refuses everyone the policy does not name, and a named grant still opens it where it says',
    policy: 'reserve 5432 user postgres\ngrant 5432 user alice addr 127.0.0.1\n',
    subjects: [asUser(70), asUser(1000)],
    binds: [
      ['alice', '127.0.0.1', 5432, 'tcp', 'grant'],
      ['alice', '0.0.0.0', 5432, 'tcp', 'refuse'],
      ['bob', '127.0.0.1', 5432, 'tcp', 'refuse'],
      ['postgres', '0.0.0.0', 5432, 'udp', 'grant'],
      ['root', '127.0.0.1', 5432, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'a reservation whose owner did not resolve keeps its port for root alone, even against a grant to everyone',
    policy: 'reserve 5432 user ghost\ngrant 5432 everyone\n',
    subjects: [unresolved, asEveryone],
    binds: [
      ['alice', '0.0.0.0', 5432, 'tcp', 'refuse'],
      ['postgres', '::', 5432, 'udp', 'refuse'],
      ['root', '0.0.0.0', 5432, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'user, group and everyone rules on one port each add their own lookups to its marker',
    policy: 'grant 80 user alice\ngrant 80 group web\ngrant 80/udp everyone\n',
    subjects: [asUser(1000), asGroup(2000, 1002), asEveryone],
    binds: [
      ['alice', '0.0.0.0', 80, 'tcp', 'grant'],
      ['carol', '0.0.0.0', 80, 'tcp', 'grant'],
      ['dave', '::', 80, 'tcp', 'grant'],
      ['bob', '0.0.0.0', 80, 'tcp', 'pass'],
      ['bob', '0.0.0.0', 80, 'udp', 'grant'],
      ['root', '0.0.0.0', 80, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'a grant with addresses holds on those addresses only, in either family',
    policy: 'grant 53 user alice addr 127.0.0.1,2001:db8::1\n',
    subjects: [asUser(1000)],
    binds: [
      ['alice', '127.0.0.1', 53, 'udp', 'grant'],
      ['alice', '2001:db8::1', 53, 'tcp', 'grant'],
      ['alice', '0.0.0.0', 53, 'udp', 'pass'],
      ['alice', '::', 53, 'udp', 'pass'],
      ['alice', '2001:db8::2', 53, 'tcp', 'pass'],
      ['bob', '127.0.0.1', 53, 'udp', 'pass'],
    ],
  },
  {
    rule: 'an any-address grant and an address-specific one on the same port both hold',
    policy: 'grant 53 user alice addr 127.0.0.1\ngrant 53 user bob\n',
    subjects: [asUser(1000), asUser(1001)],
    binds: [
      ['bob', '2001:db8::1', 53, 'tcp', 'grant'],
      ['bob', '127.0.0.1', 53, 'tcp', 'grant'],
      ['alice', '127.0.0.1', 53, 'tcp', 'grant'],
      ['alice', '0.0.0.0', 53, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'an IPv4-mapped IPv6 address is the IPv4 address, in the policy and in the bind',
    policy: 'grant 80 user alice addr ::ffff:127.0.0.1\ngrant 81 user alice addr 127.0.0.1\n',
    subjects: [asUser(1000), asUser(1000)],
    binds: [
      ['alice', '127.0.0.1', 80, 'tcp', 'grant'],
      ['alice', '::ffff:127.0.0.1', 80, 'tcp', 'grant'],
      ['alice', '::ffff:127.0.0.1', 81, 'tcp', 'grant'],
      // ::127.0.0.1 (IPv4-compatible, deprecated) is an IPv6 address.
      ['alice', '::127.0.0.1', 80, 'tcp', 'pass'],
      ['alice', '::ffff:10.0.0.1', 81, 'tcp', 'pass'],
      ['alice', '::1', 80, 'tcp', 'pass'],
    ],
  },
  {
    rule: 'root is never refused, and is granted only when named',
    policy: 'grant 80 user root\nreserve 81 user alice\ngrant 82 user alice\n',
    subjects: [asUser(0), asUser(1000), asUser(1000)],
    binds: [
      ['root', '0.0.0.0', 80, 'tcp', 'grant'],
      ['root', '0.0.0.0', 81, 'tcp', 'pass'],
      ['root', '0.0.0.0', 82, 'udp', 'pass'],
      ['alice', '0.0.0.0', 81, 'tcp', 'grant'],
      ['bob', '0.0.0.0', 81, 'tcp', 'refuse'],
    ],
  },
  {
    rule: 'only the ports and protocols a rule covers get a marker: the rest pass untouched',
    policy: 'grant 1000-1002/tcp user alice\n',
    subjects: [asUser(1000)],
    binds: [
      ['alice', '0.0.0.0', 999, 'tcp', 'pass'],
      ['alice', '0.0.0.0', 1000, 'tcp', 'grant'],
      ['alice', '0.0.0.0', 1002, 'tcp', 'grant'],
      ['alice', '0.0.0.0', 1003, 'tcp', 'pass'],
      ['alice', '0.0.0.0', 1001, 'udp', 'pass'],
    ],
  },
];

describe(
  'compileTable: the security rules, through the bind program',
  { skip: HOST_LE ? false : 'the interpreter reads uid and gid as on little-endian CPUs' },
  () => {
    for (const c of SECURITY) {
      it(c.rule, () => {
        const map = policyMap(compileTable(resolvedRules(c.policy, c.subjects)));
        const got = c.binds.map(([who, at, port, protocol]) => bind(map, callers[who], at, port, protocol).verdict);
        const want = c.binds.map(([, , , , expect]) => VERDICT[expect]);
        // One line per bind, so a failure shows which binds changed.
        const line = (v: number, [who, at, port, protocol]: BindCase): string =>
          `${who} ${at} ${port}/${protocol}: ${Object.entries(VERDICT).find(([, n]) => n === v)?.[0] ?? v}`;
        assert.deepEqual(
          got.map((v, i) => line(v, c.binds[i] as BindCase)),
          want.map((v, i) => line(v, c.binds[i] as BindCase)),
        );
      });
    }

    it('flags on a marker only the lookups its port’s rules can match, so a bind costs one lookup per kind named', () => {
      const lookups = (policy: string, subjects: Subject[][], at: string, port: number): number =>
        bind(policyMap(compileTable(resolvedRules(policy, subjects))), callers.bob, at, port).lookups;
      // A port no rule names stops at the port filter, read in place: no lookup.
      assert.equal(lookups('grant 80 user alice\n', [asUser(1000)], '0.0.0.0', 81), 0);
      // Else the outer map, then one per flagged lookup (the filter holds the marker's flags).
      assert.equal(lookups('grant 80 user alice\n', [asUser(1000)], '0.0.0.0', 80), 2);
      assert.equal(lookups('grant 80 user alice addr 127.0.0.1\n', [asUser(1000)], '127.0.0.1', 80), 2);
      assert.equal(lookups('grant 80 user alice addr 127.0.0.1\ngrant 80 user carol\n', [asUser(1000), asUser(1002)], '127.0.0.1', 80), 3);
      assert.equal(lookups('grant 80 group web\n', [asGroup(2000, 1002)], '0.0.0.0', 80), 3);
      // A reserved port looks up its marker too, and never EVERYONE, whatever grant covers it.
      assert.equal(lookups('grant 80 everyone\nreserve 80 user postgres\n', [asEveryone, asUser(70)], '0.0.0.0', 80), 3);
    });
  },
);
