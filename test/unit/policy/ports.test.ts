import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../../src/errors.js';
import { PolicySpecError, PortSet, formatPorts, parsePortSpec, scanPortSpec } from '../../../src/policy/ports.js';
import type { PortItem } from '../../../src/policy/types.js';

const both = (from: number, to = from): PortItem => ({ from, to, protocols: ['tcp', 'udp'] });
const tcp = (from: number, to = from): PortItem => ({ from, to, protocols: ['tcp'] });
const udp = (from: number, to = from): PortItem => ({ from, to, protocols: ['udp'] });

/** The error parsePortSpec throws, as `offset+length: message`. */
function specError(text: string): string {
  try {
    parsePortSpec(text);
  } catch (error) {
    assert.ok(error instanceof PolicySpecError, `expected a PolicySpecError for '${text}'`);
    return `${error.offset}+${error.length}: ${error.message}`;
  }
  assert.fail(`'${text}' should not parse`);
}

describe('parsePortSpec', () => {
  it('reads a single port as both protocols', () => {
    assert.deepEqual(parsePortSpec('80'), [both(80)]);
  });

  it('reads a comma-separated list in the order written', () => {
    assert.deepEqual(parsePortSpec('443,80'), [both(443), both(80)]);
  });

  it('reads a range', () => {
    assert.deepEqual(parsePortSpec('8000-8100'), [both(8000, 8100)]);
  });

  it('reads a one-port range as that port', () => {
    assert.deepEqual(parsePortSpec('80-80'), [both(80)]);
  });

  it('limits an item to one protocol with a /tcp or /udp suffix', () => {
    assert.deepEqual(parsePortSpec('53/udp,8000-8100/tcp,80'), [udp(53), tcp(8000, 8100), both(80)]);
  });

  it('accepts the extremes 1 and 65535', () => {
    assert.deepEqual(parsePortSpec('1-65535'), [both(1, 65535)]);
  });

  /** Each bad spec and its error as `offset+length: message`: where the CLI and the file parser put the marker. */
  const errors: [spec: string, error: string][] = [
    ['0', '0+1: port 0 is out of range: ports are 1-65535'],
    ['65536', '0+5: port 65536 is out of range: ports are 1-65535'],
    // A 20-digit number must not round into range.
    ['100000000000000000065', '0+21: port 100000000000000000065 is out of range: ports are 1-65535'],
    ['80-', "2+1: expected a port after '-': write a range as FROM-TO, e.g. 8000-8100"],
    ['-80', "0+1: expected a port before '-': write a range as FROM-TO, e.g. 8000-8100"],
    ['100-80', '0+6: range 100-80 is reversed: write 80-100'],
    ['80/sctp', "3+4: unknown protocol 'sctp': expected 'tcp' or 'udp' (no suffix means both)"],
    ['80/TCP', "3+3: unknown protocol 'TCP': expected 'tcp' or 'udp' (no suffix means both) (protocols are lower case)"],
    ['80/', "2+1: expected 'tcp' or 'udp' after '/' (no suffix means both)"],
    ['/tcp', "0+1: expected a port before '/', e.g. 80, 80,443 or 8000-8100/tcp"],
    ['a', "0+1: 'a' is not a port number: expected a number 1-65535"],
    ['+80', "0+3: '+80' is not a port number: expected a number 1-65535"],
    ['080', "0+3: port '080' has a leading zero: write 80"],
    ['80,,443', "3+1: empty item in the port list: remove the extra ','"],
    ['80,,,443', "3+2: empty item in the port list: remove the extra ','"],
    ['80,', "2+1: the port list ends with ',': write the list without spaces, e.g. 80,443"],
    ['80,,', "2+2: the port list ends with ',': write the list without spaces, e.g. 80,443"],
    [',80', "0+1: the port list starts with ',': remove it"],
    [',,80', "0+2: the port list starts with ',': remove it"],
    [',', '0+1: expected a port list, e.g. 80, 80,443 or 8000-8100/tcp'],
    ['', '0+1: expected a port list, e.g. 80, 80,443 or 8000-8100/tcp'],
    ['80,443,8000-9x', "12+2: '9x' is not a port number: expected a number 1-65535"],
  ];
  for (const [spec, expected] of errors) {
    it(`rejects '${spec}': ${expected}`, () => {
      assert.equal(specError(spec), expected);
    });
  }

  it('reports a run of commas once, not once per empty item', () => {
    for (const spec of ['80,,', ',,80', '80,,,443', ',,']) assert.equal(scanPortSpec(spec).errors.length, 1, spec);
  });

  it('gives a usage error when nobody converts it', () => {
    assert.throws(
      () => parsePortSpec('0'),
      (error: unknown) => error instanceof UsageError && error.code === 'E_USAGE',
    );
  });

  it('reports every bad item when scanning', () => {
    const { items, errors } = scanPortSpec('0,80,70000/tcp,x');
    assert.deepEqual(items, [both(80)]);
    assert.deepEqual(
      errors.map((e) => [e.offset, e.message]),
      [
        [0, 'port 0 is out of range: ports are 1-65535'],
        [5, 'port 70000 is out of range: ports are 1-65535'],
        [15, "'x' is not a port number: expected a number 1-65535"],
      ],
    );
  });
});

describe('formatPorts', () => {
  it('prints a port set that is the same for tcp and udp without suffix, sorted by port', () => {
    assert.equal(formatPorts([tcp(443), tcp(80), udp(80), udp(443), udp(53)]), '53/udp,80,443');
  });

  it('merges overlapping and adjacent ranges', () => {
    assert.equal(formatPorts(parsePortSpec('80-90,85-100,101,103')), '80-101,103');
  });

  it('prints a one-port range as the port', () => {
    assert.equal(formatPorts([both(80, 80)]), '80');
  });

  it('keeps a protocol-only range whole rather than cutting it around the other protocol', () => {
    assert.equal(formatPorts(parsePortSpec('1-1023/tcp,53/udp')), '1-1023/tcp,53/udp');
  });

  it('joins tcp and udp items that cover the same range', () => {
    assert.equal(formatPorts(parsePortSpec('8000-8050/tcp,8051-8100/tcp,8000-8100/udp')), '8000-8100');
  });

  it('puts tcp before udp when ranges start at the same port', () => {
    assert.equal(formatPorts(parsePortSpec('80-95/udp,80-90/tcp')), '80-90/tcp,80-95/udp');
  });

  it('drops duplicates', () => {
    assert.equal(formatPorts(parsePortSpec('80,80/tcp,80/udp,80')), '80');
  });

  it('prints nothing for no ports', () => {
    assert.equal(formatPorts([]), '');
  });

  it('gives the same text for every spelling of one set', () => {
    const spellings = ['443,80,53/udp', '53/udp,80-80,443/tcp,443/udp', '80/udp,80/tcp,443,53/udp,443'];
    assert.deepEqual(new Set(spellings.map((s) => formatPorts(parsePortSpec(s)))), new Set(['53/udp,80,443']));
  });
});

describe('PortSet', () => {
  const set = (spec: string): PortSet => PortSet.fromItems(parsePortSpec(spec));

  it('subtracting a port from a range splits the range', () => {
    assert.equal(set('8000-8100').subtract(set('8050')).toString(), '8000-8049,8051-8100');
  });

  it('subtracting one protocol leaves the other', () => {
    assert.equal(set('80').subtract(set('80/udp')).toString(), '80/tcp');
  });

  it('subtracting the ends of a range trims it', () => {
    assert.equal(set('10-20').subtract(set('1-10,20-30')).toString(), '11-19');
  });

  it('subtracting several ranges from several ranges keeps what lies between', () => {
    assert.equal(set('1-100,200-300').subtract(set('50-60,90-210,250')).toString(), '1-49,61-89,211-249,251-300');
  });

  it('subtracting everything leaves an empty set', () => {
    assert.ok(set('80,443').subtract(set('1-65535')).isEmpty());
  });

  it('union merges adjacent ranges', () => {
    assert.equal(set('80-89/tcp').union(set('90-99/tcp')).toString(), '80-99/tcp');
  });

  it('intersect keeps only common members', () => {
    assert.equal(set('80-90').intersect(set('85-100/tcp')).toString(), '85-90/tcp');
  });

  it('equals compares members, not spelling', () => {
    assert.ok(set('80,81,82/tcp,82/udp').equals(set('80-82')));
    assert.ok(!set('80').equals(set('80/tcp')));
  });

  it('covers tells whether another set is a subset', () => {
    assert.ok(set('1-1023').covers(set('80,443/udp')));
    assert.ok(!set('1-1023/tcp').covers(set('80')));
  });

  it('has finds a port by binary search', () => {
    const s = set('22,80-90,443/tcp');
    assert.ok(s.has('tcp', 85));
    assert.ok(s.has('tcp', 443));
    assert.ok(!s.has('udp', 443));
    assert.ok(!s.has('tcp', 91));
  });

  it('handles the whole port range without listing it', () => {
    const all = set('1-65535');
    assert.equal(all.ranges('tcp').length, 1);
    assert.equal(all.size(), 131070);
    assert.equal(all.subtract(set('1-1023')).toString(), '1024-65535');
  });

  it('is immutable: operations return new sets', () => {
    const s = set('80');
    s.union(set('443'));
    s.subtract(set('80'));
    assert.equal(s.toString(), '80');
  });

  it('refuses items that are out of range', () => {
    assert.throws(() => PortSet.fromItems([{ from: 0, to: 80, protocols: ['tcp'] }]), PolicySpecError);
    assert.throws(() => PortSet.fromItems([{ from: 90, to: 80, protocols: ['tcp'] }]), PolicySpecError);
    assert.throws(() => PortSet.fromItems([{ from: 80, to: 80, protocols: [] }]), PolicySpecError);
  });

  it('agrees with a naive set of numbers on many random sets', () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const randomItems = (): PortItem[] =>
      Array.from({ length: random(5) }, () => {
        const from = 1 + random(40);
        const to = from + random(8);
        const protocols: PortItem['protocols'][] = [['tcp'], ['udp'], ['tcp', 'udp']];
        return { from, to, protocols: protocols[random(3)] ?? ['tcp'] };
      });
    const naive = (items: PortItem[]): Set<string> =>
      new Set(items.flatMap((i) => i.protocols.flatMap((p) => Array.from({ length: i.to - i.from + 1 }, (_, k) => `${p}/${i.from + k}`))));
    const members = (set: PortSet): Set<string> => new Set([...set.entries()].map((e) => `${e.protocol}/${e.port}`));
    for (let round = 0; round < 500; round++) {
      const a = randomItems();
      const b = randomItems();
      const sa = PortSet.fromItems(a);
      const sb = PortSet.fromItems(b);
      const na = naive(a);
      const nb = naive(b);
      assert.deepEqual(members(sa.union(sb)), new Set([...na, ...nb]));
      assert.deepEqual(members(sa.subtract(sb)), new Set([...na].filter((x) => !nb.has(x))));
      assert.deepEqual(members(sa.intersect(sb)), new Set([...na].filter((x) => nb.has(x))));
      assert.equal(
        sa.covers(sb),
        [...nb].every((x) => na.has(x)),
      );
      if (!sa.isEmpty()) assert.ok(PortSet.fromItems(parsePortSpec(formatPorts(a))).equals(sa));
    }
  });

  it('PortSet.entries lists every protocol and port once, tcp first', () => {
    assert.deepEqual(
      [...PortSet.fromItems(parsePortSpec('80-81/tcp,81,53/udp')).entries()],
      [
        { protocol: 'tcp', port: 80 },
        { protocol: 'tcp', port: 81 },
        { protocol: 'udp', port: 53 },
        { protocol: 'udp', port: 81 },
      ],
    );
  });
});
