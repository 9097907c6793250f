import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compile } from '../../../src/grants/compile.js';
import { describe as describeRules, type LiveRule } from '../../../src/grants/describe.js';
import type { Entry } from '../../../src/grants/live.js';
import { addressText, protocolName } from '../../../src/grants/compile.js';
import { AF_INET, AF_INET6, Kind, RESERVED } from '../../../src/grants/map-format.js';
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

  it('describes random tables as the plain algorithm does (a Map and Sets per rule, objects per entry)', () => {
    let seed = 11;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const kinds = [Kind.UID, Kind.UID, Kind.GID, Kind.EVERYONE, Kind.CGROUP, Kind.PORT];
    const ids = [1000n, 1001n, 70n, 53n, 5n, 2n ** 40n];
    for (let round = 0; round < 400; round++) {
      const entries: Entry[] = [];
      const seen = new Set<string>();
      for (let n = 1 + random(14); n > 0; n--) {
        const kind = kinds[random(kinds.length)] ?? Kind.UID;
        const family = ([0, 0, AF_INET, AF_INET6] as const)[random(4)] ?? 0;
        const addr = Buffer.alloc(16);
        if (family !== 0) addr[random(4)] = 1 + random(3);
        const key = { kind, protocol: [6, 6, 17, 1][random(4)] ?? 6, port: 1 + random(9), family, id: ids[random(ids.length)] ?? 0n, addr };
        const text = JSON.stringify({ ...key, id: String(key.id), addr: addr.toString('hex') });
        if (seen.has(text)) continue;
        seen.add(text);
        entries.push({ key, value: { rule: random(5), flags: random(3) === 0 ? RESERVED : 0, hits: BigInt(random(50)) } });
      }
      assert.deepEqual(describeRules(entries, namesFrom()), plainDescribe(entries, namesFrom()), `round ${round}`);
    }
  });
});

/**
 * describe as first written, straight over entry objects: what the packed
 * version (no Map or Set per rule, fast paths for one subject and one port)
 * must give for any table.
 */
function plainDescribe(entries: Entry[], names: (kind: number, ids: bigint[]) => Map<bigint, string>): LiveRule[] {
  interface G {
    line: number;
    reserve: boolean;
    subjects: Map<number, Set<bigint>>;
    ports: { tcp: number[]; udp: number[] };
    addrs: Set<string>;
    hits: number;
    refused: number;
  }
  const groups = new Map<number, G>();
  const scoped = new Map<bigint, G>();
  for (const { key, value } of entries) {
    const protocol = protocolName(key.protocol);
    if (protocol === undefined) continue;
    const byScope = value.rule === 0 && key.kind === Kind.CGROUP;
    let g = byScope ? scoped.get(key.id) : groups.get(value.rule);
    if (g === undefined) {
      g = { line: value.rule, reserve: false, subjects: new Map(), ports: { tcp: [], udp: [] }, addrs: new Set(), hits: 0, refused: 0 };
      if (byScope) scoped.set(key.id, g);
      else groups.set(value.rule, g);
    }
    const reserved = (value.flags & RESERVED) !== 0;
    if (key.kind === Kind.PORT) {
      if (reserved) {
        g.reserve = true;
        g.refused += Number(value.hits);
        g.ports[protocol].push(key.port);
      }
      continue;
    }
    if (reserved) g.reserve = true;
    let set = g.subjects.get(key.kind);
    if (set === undefined) g.subjects.set(key.kind, (set = new Set()));
    set.add(key.id);
    g.ports[protocol].push(key.port);
    const addr = key.family === 0 ? undefined : addressText(key.family, key.addr);
    if (addr !== undefined) g.addrs.add(addr);
    g.hits += Number(value.hits);
  }
  const all = [...groups.values(), ...scoped.values()];
  const byKind = new Map<number, Set<bigint>>();
  for (const g of all)
    for (const [kind, set] of g.subjects) for (const id of set) byKind.set(kind, (byKind.get(kind) ?? new Set()).add(id));
  const labels = new Map([...byKind].map(([kind, set]) => [kind, names(kind, [...set])] as const));
  const KIND: Record<number, string> = { [Kind.UID]: 'uid', [Kind.GID]: 'gid', [Kind.CGROUP]: 'cgroup', [Kind.EVERYONE]: 'everyone' };
  const spec = (g: G): string => (['tcp', 'udp'] as const).flatMap((p) => [...new Set(g.ports[p])].map((port) => `${port}/${p}`)).join(',');
  return all
    .filter((g) => g.ports.tcp.length + g.ports.udp.length > 0)
    .sort((a, b) => a.line - b.line)
    .map((g) => ({
      line: g.line,
      action: g.reserve ? 'reserve' : 'grant',
      who: [...g.subjects]
        .sort(([a], [b]) => a - b)
        .flatMap(([kind, set]) =>
          [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((id) => labels.get(kind)?.get(id) ?? `${KIND[kind] ?? 'id'} ${id}`),
        ),
      ports: formatPorts(parsePortSpec(spec(g))),
      addrs: [...g.addrs].sort(),
      hits: g.hits,
      refused: g.refused,
    }));
}
