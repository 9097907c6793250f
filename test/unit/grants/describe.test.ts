import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compile } from '../../../src/grants/compile.js';
import { describe as describeRules, type LiveRule } from '../../../src/grants/describe.js';
import type { Entry } from '../../../src/grants/live.js';
import { Kind } from '../../../src/grants/map-format.js';
import { resolvePolicy, type Directory } from '../../../src/grants/resolve.js';
import type { GroupEntry, PasswdEntry } from '../../../src/os/nss.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { formatPorts, parsePortSpec } from '../../../src/policy/ports.js';

const USERS: PasswdEntry[] = [
  { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/sh' },
  { name: 'bob', uid: 1001, gid: 1001, home: '/home/bob', shell: '/bin/sh' },
  { name: 'postgres', uid: 70, gid: 70, home: '/var/lib/postgres', shell: '/bin/sh' },
];
const GROUPS: GroupEntry[] = [{ name: 'dns', gid: 53, members: ['bob'] }];

const directory: Directory = {
  users: (keys) => new Map(keys.flatMap((k) => USERS.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const))),
  groups: (keys) => new Map(keys.flatMap((k) => GROUPS.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const))),
};

/** Labels as `list` prints them, without NSS; records which ids were asked for. */
function namesFrom(asked: [number, bigint[]][] = []) {
  return (kind: number, ids: bigint[]): Map<bigint, string> => {
    asked.push([kind, ids]);
    const out = new Map<bigint, string>();
    for (const id of ids) {
      if (kind === Kind.UID) {
        const u = USERS.find((x) => BigInt(x.uid) === id);
        if (u !== undefined) out.set(id, `user ${u.name} (uid ${id})`);
      } else if (kind === Kind.GID) {
        const g = GROUPS.find((x) => BigInt(x.gid) === id);
        if (g !== undefined) out.set(id, `group ${g.name} (gid ${id})`);
      } else if (kind === Kind.EVERYONE) {
        out.set(id, 'everyone');
      }
    }
    return out;
  };
}

function compiled(text: string): Entry[] {
  return compile(resolvePolicy(parsePolicy(text, 'policy'), directory).rules);
}

/** Sets the hit counter of the entries that match. */
function hit(entries: Entry[], match: { kind: number; protocol?: number; port: number; id?: bigint }, hits: bigint): void {
  const found = entries.filter(
    (e) =>
      e.key.kind === match.kind &&
      e.key.port === match.port &&
      (match.protocol === undefined || e.key.protocol === match.protocol) &&
      (match.id === undefined || e.key.id === match.id),
  );
  assert.ok(found.length > 0, `no entry matches ${JSON.stringify(match, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
  for (const e of found) e.value.hits = hits;
}

const POLICY = [
  '# who may bind what',
  'grant   80,443        user alice',
  'grant   53/udp        group dns   addr 127.0.0.1,::1',
  '',
  'reserve 5432          user postgres',
  'grant   8000-8002/tcp everyone',
  '',
].join('\n');

describe('describe (list)', () => {
  it('groups the entries back into one rule per policy line, in line order', () => {
    const rules = describeRules(compiled(POLICY), namesFrom());
    assert.deepEqual(
      rules.map((r) => [r.line, r.action, r.ports]),
      [
        [2, 'grant', '80,443'],
        [3, 'grant', '53/udp'],
        [5, 'reserve', '5432'],
        [6, 'grant', '8000-8002/tcp'],
      ],
    );
  });

  it('describes every rule with who, ports, addresses, hits and refusals', () => {
    const entries = compiled(POLICY);
    hit(entries, { kind: Kind.UID, protocol: 6, port: 80 }, 2n);
    hit(entries, { kind: Kind.UID, protocol: 17, port: 443 }, 1n);
    hit(entries, { kind: Kind.GID, port: 53 }, 4n);
    hit(entries, { kind: Kind.PORT, protocol: 6, port: 5432 }, 5n);
    hit(entries, { kind: Kind.PORT, protocol: 17, port: 5432 }, 2n);
    hit(entries, { kind: Kind.UID, protocol: 6, port: 5432 }, 9n);
    hit(entries, { kind: Kind.EVERYONE, port: 8001 }, 3n);
    // Marker hits of a port nobody reserved are not refusals of any rule.
    hit(entries, { kind: Kind.PORT, protocol: 6, port: 80 }, 100n);
    const expected: LiveRule[] = [
      { line: 2, action: 'grant', who: ['user alice (uid 1000)'], ports: '80,443', addrs: [], hits: 3, refused: 0 },
      {
        line: 3,
        action: 'grant',
        who: ['user bob (uid 1001)', 'group dns (gid 53)'],
        ports: '53/udp',
        addrs: ['127.0.0.1', '::1'],
        hits: 8,
        refused: 0,
      },
      { line: 5, action: 'reserve', who: ['user postgres (uid 70)'], ports: '5432', addrs: [], hits: 9, refused: 7 },
      { line: 6, action: 'grant', who: ['everyone'], ports: '8000-8002/tcp', addrs: [], hits: 3, refused: 0 },
    ];
    assert.deepEqual(describeRules(entries, namesFrom()), expected);
  });

  it('gives the same rules whatever order the entries come in, as a kernel hash map returns them', () => {
    const entries = compiled(POLICY);
    hit(entries, { kind: Kind.PORT, protocol: 6, port: 5432 }, 5n);
    const forward = describeRules(entries, namesFrom());
    const backward = describeRules([...entries].reverse(), namesFrom());
    const interleaved = describeRules(
      entries
        .map((e, i) => ({ e, k: (i * 7919) % entries.length }))
        .sort((a, b) => a.k - b.k)
        .map(({ e }) => e),
      namesFrom(),
    );
    assert.deepEqual(backward, forward);
    assert.deepEqual(interleaved, forward);
    assert.deepEqual(
      backward.map((r) => r.line),
      [2, 3, 5, 6],
    );
  });

  it('merges neighbouring ports into ranges, as the canonical port text does', () => {
    const rules = describeRules(compiled('grant 81/tcp,79/tcp,80,1023/udp user alice\n'), namesFrom());
    assert.equal(rules[0]?.ports, '79-81/tcp,80/udp,1023/udp');
  });

  it('writes every port list as the canonical text does (formatPorts), for random TCP-only, UDP-only, same and mixed lists', () => {
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 300; round++) {
      const ports = Array.from({ length: 1 + random(6) }, () => 1 + random(40));
      const shape = round % 4;
      const spec = ports
        .map((p, i) =>
          shape === 0 ? `${p}/tcp` : shape === 1 ? `${p}/udp` : shape === 2 ? `${p}` : `${p}${['', '/tcp', '/udp'][i % 3] ?? ''}`,
        )
        .join(',');
      const rules = describeRules(compiled(`grant ${spec} user alice\n`), namesFrom());
      assert.equal(rules[0]?.ports, formatPorts(parsePortSpec(spec)), spec);
    }
  });

  it('orders who by kind, users before groups, then by id', () => {
    const entries = compiled('grant 80 group dns\n');
    entries.push(...compiled('grant 80 user alice\n').map((e) => ({ key: e.key, value: { ...e.value, rule: 1 } })));
    assert.deepEqual(describeRules(entries, namesFrom())[0]?.who, ['user alice (uid 1000)', 'user bob (uid 1001)', 'group dns (gid 53)']);
  });

  it('writes a port on one protocol with its suffix and one on both without', () => {
    const rules = describeRules(compiled('grant 53/udp,80,443/tcp user alice\n'), namesFrom());
    assert.equal(rules[0]?.ports, '53/udp,80,443/tcp');
  });

  it('credits each key to the line that made it when rules overlap', () => {
    const entries = compiled('grant 80/tcp user alice\ngrant 80/tcp group dns\n');
    hit(entries, { kind: Kind.UID, port: 80, id: 1001n }, 6n);
    assert.deepEqual(
      describeRules(entries, namesFrom()).map((r) => [r.line, r.who, r.hits]),
      [
        [1, ['user alice (uid 1000)'], 0],
        [2, ['user bob (uid 1001)', 'group dns (gid 53)'], 6],
      ],
    );
  });

  it('asks for the names of each kind once, with each id once', () => {
    const asked: [number, bigint[]][] = [];
    describeRules(compiled('grant 80 user alice\ngrant 443 user alice\ngrant 53 group dns\n'), namesFrom(asked));
    const byKind = new Map(asked.map(([kind, ids]) => [kind, [...ids].sort()]));
    assert.equal(asked.length, byKind.size);
    assert.deepEqual(byKind.get(Kind.UID), [1000n, 1001n]);
    assert.deepEqual(byKind.get(Kind.GID), [53n]);
  });

  it('falls back to the kind and number for ids the names function does not know', () => {
    const rules = describeRules(compiled('grant 80 user 4242\ngrant 81 group 4343\n'), () => new Map());
    assert.deepEqual(
      rules.map((r) => r.who),
      [['uid 4242'], ['gid 4343']],
    );
  });

  it('skips entries of protocols other than TCP and UDP', () => {
    const entries = compiled('grant 80/tcp user alice\n');
    const [first] = entries;
    assert.ok(first !== undefined);
    entries.push({ key: { ...first.key, protocol: 132, port: 9 }, value: { rule: 7, flags: 0, hits: 1n } });
    assert.deepEqual(
      describeRules(entries, namesFrom()).map((r) => r.line),
      [1],
    );
  });

  it('describes nothing for no entries', () => {
    assert.deepEqual(describeRules([], namesFrom()), []);
  });

  it('lists a second reservation of an already reserved port as a reservation', () => {
    // The parser refuses two owners of one port (policy/owners.ts); the compiler still gives such rules a meaning.
    const resolved = ['reserve 5432 user postgres\n', '\nreserve 5432 user alice\n'].flatMap(
      (text) => resolvePolicy(parsePolicy(text, 'policy'), directory).rules,
    );
    const rules = describeRules(compile(resolved), namesFrom());
    assert.deepEqual(
      rules.map((r) => [r.line, r.action]),
      [
        [1, 'reserve'],
        [2, 'reserve'],
      ],
    );
  });

  it('lists a reservation whose owner did not resolve, with its ports and nobody as owner, and its refusals', () => {
    const entries = compiled('grant 80 user alice\nreserve 5432/tcp,53/udp user ghost\n');
    hit(entries, { kind: Kind.PORT, port: 5432 }, 3n);
    const rules = describeRules(entries, namesFrom());
    assert.deepEqual(
      rules.map((r) => [r.line, r.action, r.who, r.ports, r.refused]),
      [
        [1, 'grant', ['user alice (uid 1000)'], '80', 0],
        [2, 'reserve', [], '53/udp,5432/tcp', 3],
      ],
    );
  });

  it('keeps a reservation in the list when an earlier grant already made its key: the reservation takes the key over', () => {
    const entries = compiled('grant 5432 user postgres\nreserve 5432 user postgres\n');
    hit(entries, { kind: Kind.PORT, port: 5432 }, 4n);
    const rules = describeRules(entries, namesFrom());
    assert.deepEqual(
      rules.map((r) => [r.line, r.action, r.refused]),
      [[2, 'reserve', 8]],
    );
  });
});
