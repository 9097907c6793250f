/**
 * The key and value bytes, written out by hand from the layout at the top of
 * src/grants/map-format.ts. The bind program reads them on a little-endian
 * CPU, so the exact-byte tests are for little-endian hosts.
 */
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import {
  AF_INET,
  AF_INET6,
  decodeKey,
  decodeValue,
  encodeKey,
  encodeValue,
  IPPROTO,
  Kind,
  KEY_SIZE,
  lookupFlag,
  PRINCIPAL_KINDS,
  EntryTable,
  RESERVED,
  VALUE_SIZE,
  type MapKey,
} from '../../../src/grants/map-format.js';

const littleEndian = { skip: endianness() === 'LE' ? false : 'byte layouts are written for little-endian hosts' };

function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function addr(bytes: string): Buffer {
  const b = Buffer.alloc(16);
  hex(bytes).copy(b);
  return b;
}

describe('map keys', () => {
  it('are 32 bytes and values 16', () => {
    assert.equal(KEY_SIZE, 32);
    assert.equal(VALUE_SIZE, 16);
    assert.equal(encodeKey({ kind: Kind.PORT, protocol: 6, port: 1, family: 0, id: 0n, addr: Buffer.alloc(16) }).length, 32);
    assert.equal(encodeValue({ rule: 0, flags: 0, hits: 0n }).length, 16);
  });

  it('use the kernel’s numbers for protocols and address families', () => {
    assert.deepEqual(IPPROTO, { tcp: 6, udp: 17 });
    assert.equal(AF_INET, 2);
    assert.equal(AF_INET6, 10);
  });

  it('lay out a UID key on an IPv4 address as kind, protocol, port, family, padding, id, address', littleEndian, () => {
    const key: MapKey = { kind: Kind.UID, protocol: 6, port: 80, family: AF_INET, id: 1000n, addr: addr('7f000001') };
    assert.deepEqual(
      encodeKey(key),
      hex(
        '01 06 50 00 02 00 00 00' + // kind 1, tcp, port 80 (host order), AF_INET, 3 zero bytes
          'e8 03 00 00 00 00 00 00' + // uid 1000
          '7f 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00', // 127.0.0.1, network order
      ),
    );
  });

  it('lay out a port marker with family 0, id 0 and a zero address', littleEndian, () => {
    const key: MapKey = { kind: Kind.PORT, protocol: 17, port: 0x1234, family: 0, id: 0n, addr: Buffer.alloc(16) };
    assert.deepEqual(encodeKey(key), hex('00 11 34 12 00 00 00 00' + '00'.repeat(24)));
  });

  it('lay out a GID key on an IPv6 address with the whole 16 bytes in network order', littleEndian, () => {
    const key: MapKey = {
      kind: Kind.GID,
      protocol: 17,
      port: 53,
      family: AF_INET6,
      id: 0x0102030405060708n,
      addr: addr('20010db8000000000000000000000001'),
    };
    assert.deepEqual(
      encodeKey(key),
      hex('02 11 35 00 0a 00 00 00' + '08 07 06 05 04 03 02 01' + '20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01'),
    );
  });

  it('put the largest port and id in without loss', littleEndian, () => {
    const key: MapKey = { kind: Kind.CGROUP, protocol: 6, port: 65535, family: 0, id: (1n << 64n) - 1n, addr: Buffer.alloc(16) };
    assert.deepEqual(encodeKey(key), hex('03 06 ff ff 00 00 00 00' + 'ff'.repeat(8) + '00'.repeat(16)));
  });

  it('read back every field they were made of', () => {
    const keys: MapKey[] = [
      { kind: Kind.PORT, protocol: 6, port: 1, family: 0, id: 0n, addr: Buffer.alloc(16) },
      { kind: Kind.UID, protocol: 17, port: 443, family: AF_INET, id: 65534n, addr: addr('c0a80001') },
      { kind: Kind.GID, protocol: 6, port: 1023, family: AF_INET6, id: 4294967294n, addr: addr('fe800000000000000000000000000001') },
      { kind: Kind.CGROUP, protocol: 17, port: 65535, family: 0, id: (1n << 64n) - 1n, addr: Buffer.alloc(16) },
      { kind: Kind.EVERYONE, protocol: 6, port: 80, family: AF_INET6, id: 0n, addr: Buffer.alloc(16, 0xff) },
    ];
    for (const key of keys) assert.deepEqual(decodeKey(encodeKey(key)), key);
  });

  it('decode bytes written by hand', littleEndian, () => {
    const key = decodeKey(hex('04 11 bb 01 02 00 00 00' + '00'.repeat(8) + '0a 00 00 01' + '00'.repeat(12)));
    assert.deepEqual(key, { kind: Kind.EVERYONE, protocol: 17, port: 443, family: AF_INET, id: 0n, addr: addr('0a000001') });
  });

  it('decode a key at an offset of a buffer of keys packed back to back', littleEndian, () => {
    const packed = hex('00'.repeat(32) + '02 06 16 00 00 00 00 00' + '35 00 00 00 00 00 00 00' + '00'.repeat(16));
    assert.deepEqual(decodeKey(packed, 32), { kind: Kind.GID, protocol: 6, port: 22, family: 0, id: 53n, addr: Buffer.alloc(16) });
  });
});

describe('map values', () => {
  it('lay out rule, flags and hits', littleEndian, () => {
    assert.deepEqual(
      encodeValue({ rule: 7, flags: 0x103, hits: 0x0102030405n }),
      hex('07 00 00 00' + '03 01 00 00' + '05 04 03 02 01 00 00 00'),
    );
  });

  it('read back every field they were made of, the largest values included', () => {
    for (const v of [
      { rule: 0, flags: 0, hits: 0n },
      { rule: 12, flags: RESERVED | 1, hits: 99n },
      { rule: 0xffffffff, flags: 0xffffffff, hits: (1n << 64n) - 1n },
    ]) {
      assert.deepEqual(decodeValue(encodeValue(v)), v);
    }
  });

  it('decode a value at an offset of a buffer of values packed back to back', littleEndian, () => {
    const packed = hex('00'.repeat(16) + '02 00 00 00 08 00 00 00 01 00 00 00 00 00 00 00');
    assert.deepEqual(decodeValue(packed, 16), { rule: 2, flags: 8, hits: 1n });
  });

  it('decode the hit counter the program increments in place at offset 8', littleEndian, () => {
    const b = encodeValue({ rule: 3, flags: 0, hits: 0n });
    b.writeBigUInt64LE(b.readBigUInt64LE(8) + 1n, 8);
    assert.deepEqual(decodeValue(b), { rule: 3, flags: 0, hits: 1n });
  });
});

describe('lookup flags', () => {
  const all = PRINCIPAL_KINDS.flatMap((kind) => [lookupFlag(kind, false), lookupFlag(kind, true)]);

  it('cover the four principal kinds, most specific first', () => {
    assert.deepEqual(PRINCIPAL_KINDS, [Kind.UID, Kind.GID, Kind.CGROUP, Kind.EVERYONE]);
  });

  it('are single bits', () => {
    for (const flag of all) {
      assert.ok(flag > 0 && (flag & (flag - 1)) === 0, `${flag} is not a single bit`);
    }
  });

  it('are distinct for every kind and for exact and any address', () => {
    assert.equal(all.length, 8);
    assert.equal(new Set(all).size, 8);
  });

  it('are distinct from RESERVED, which is a single bit too', () => {
    assert.ok(RESERVED > 0 && (RESERVED & (RESERVED - 1)) === 0);
    for (const flag of all) assert.equal(flag & RESERVED, 0);
  });

  it('fit, all of them with RESERVED, in the 32-bit flags field and in a positive 32-bit immediate', () => {
    const union = all.reduce((a, b) => a | b, RESERVED);
    assert.ok(union > 0 && union <= 0x7fffffff);
  });
});

describe('EntryTable', () => {
  const ANY = Buffer.alloc(16);

  it('packs keys and values back to back in the map layout', littleEndian, () => {
    const t = new EntryTable();
    t.put(Kind.PORT, 6, 80, 0, 0n, ANY, 3, 2);
    t.put(Kind.UID, 6, 80, 0, 1000n, ANY, 3, 0);
    assert.equal(t.count, 2);
    assert.equal(
      t.keys.subarray(0, 64).toString('hex'),
      '0006500000000000' + '00'.repeat(24) + '0106500000000000' + 'e803000000000000' + '00'.repeat(16),
    );
    assert.equal(t.values.subarray(0, 32).toString('hex'), '0300000002000000' + '00'.repeat(8) + '0300000000000000' + '00'.repeat(8));
  });

  it('keeps the first entry of a key and tells the caller it was there', () => {
    const t = new EntryTable();
    const first = t.put(Kind.UID, 17, 53, 2, 7n, Buffer.from('7f000001' + '00'.repeat(12), 'hex'), 1, 0);
    const again = t.put(Kind.UID, 17, 53, 2, 7n, Buffer.from('7f000001' + '00'.repeat(12), 'hex'), 2, 4);
    assert.deepEqual(
      [first, again],
      [
        { index: 0, added: true },
        { index: 0, added: false },
      ],
    );
    assert.equal(t.count, 1);
    assert.deepEqual(t.value(0), { rule: 1, flags: 0, hits: 0n });
  });

  it('tells keys apart that differ in any one field', () => {
    const t = new EntryTable();
    const base = [Kind.UID, 6, 80, 2, 1000n, Buffer.alloc(16, 1)] as const;
    const variants = [
      base,
      [Kind.GID, 6, 80, 2, 1000n, Buffer.alloc(16, 1)],
      [Kind.UID, 17, 80, 2, 1000n, Buffer.alloc(16, 1)],
      [Kind.UID, 6, 81, 2, 1000n, Buffer.alloc(16, 1)],
      [Kind.UID, 6, 80, 10, 1000n, Buffer.alloc(16, 1)],
      [Kind.UID, 6, 80, 2, 1001n, Buffer.alloc(16, 1)],
      [Kind.UID, 6, 80, 2, 1000n, Buffer.alloc(16, 2)],
    ] as const;
    for (const [kind, protocol, port, family, id, addr] of variants) t.put(kind, protocol, port, family, id, addr, 1, 0);
    assert.equal(t.count, variants.length);
  });

  it('grows past its first capacity without losing or duplicating entries', () => {
    const t = new EntryTable();
    for (let port = 1; port <= 1000; port++) t.put(Kind.EVERYONE, 6, port, 0, 0n, ANY, port, 0);
    for (let port = 1; port <= 1000; port++) assert.equal(t.put(Kind.EVERYONE, 6, port, 0, 0n, ANY, 0, 0).added, false);
    assert.equal(t.count, 1000);
    assert.deepEqual([t.key(999).port, t.rule(999), t.key(0).port, t.rule(0)], [1000, 1000, 1, 1]);
  });

  it('merges flags, sets rule and hits in place', () => {
    const t = new EntryTable();
    const { index } = t.put(Kind.PORT, 6, 22, 0, 0n, ANY, 1, lookupFlag(Kind.UID, true));
    t.addFlags(index, RESERVED);
    t.setRule(index, 4);
    t.setHits(index, 12n);
    assert.deepEqual(t.value(index), { rule: 4, flags: lookupFlag(Kind.UID, true) | RESERVED, hits: 12n });
  });

  it('round-trips entries, hits included, through fromEntries and toEntries', () => {
    const entries = [
      { key: { kind: Kind.PORT, protocol: 6, port: 80, family: 0, id: 0n, addr: ANY } as MapKey, value: { rule: 1, flags: 2, hits: 5n } },
      {
        key: { kind: Kind.UID, protocol: 6, port: 80, family: AF_INET6, id: 1000n, addr: Buffer.alloc(16, 0xab) } as MapKey,
        value: { rule: 1, flags: 0, hits: 7n },
      },
    ];
    assert.deepEqual(EntryTable.fromEntries(entries).toEntries(), entries);
    assert.deepEqual(EntryTable.fromEntries([]).toEntries(), []);
  });
});
