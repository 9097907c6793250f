/** PROXY protocol headers against haproxy's doc/proxy-protocol.txt: its examples, sizes and byte layout. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  encodeHeader,
  encodeV1,
  encodeV2,
  encodeV2FromSockaddrs,
  unmapAddress,
  V2_SIGNATURE,
  type ConnectionInfo,
} from '../../../src/forward/proxy-protocol.js';
import { sockaddrIn, sockaddrIn6 } from '../../../src/os/sockaddr.js';
import { parseIPv6 } from '../../../src/policy/address.js';

const tcp = (src: string, sport: number, dst: string, dport: number): ConnectionInfo => ({
  transport: 'tcp',
  source: { address: src, port: sport },
  destination: { address: dst, port: dport },
});

const ALL_F6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';

describe('PROXY protocol v1', () => {
  it("encodes the spec's example line: PROXY TCP4 192.168.0.1 192.168.0.11 56324 443", () => {
    assert.equal(
      encodeV1(tcp('192.168.0.1', 56324, '192.168.0.11', 443)).toString('latin1'),
      'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
    );
  });

  it('reaches exactly the worst-case lengths the spec gives: 56 bytes for TCP4, 104 for TCP6', () => {
    const v4 = encodeV1(tcp('255.255.255.255', 65535, '255.255.255.255', 65535));
    assert.equal(v4.toString('latin1'), 'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n');
    assert.equal(v4.length, 56);
    const v6 = encodeV1(tcp(ALL_F6, 65535, ALL_F6, 65535));
    assert.equal(v6.toString('latin1'), `PROXY TCP6 ${ALL_F6} ${ALL_F6} 65535 65535\r\n`);
    assert.equal(v6.length, 104);
  });

  it('sends PROXY UNKNOWN (15 bytes) when the two ends are of different families', () => {
    const b = encodeV1(tcp('::1', 1234, '127.0.0.1', 80));
    assert.equal(b.toString('latin1'), 'PROXY UNKNOWN\r\n');
    assert.equal(b.length, 15);
  });

  it('names a v4-mapped client of a dual-stack socket as the IPv4 address it is', () => {
    assert.equal(
      encodeV1(tcp('::ffff:127.0.0.2', 40000, '::ffff:127.0.0.1', 80)).toString('latin1'),
      'PROXY TCP4 127.0.0.2 127.0.0.1 40000 80\r\n',
    );
    assert.equal(unmapAddress('::FFFF:10.0.0.1'), '10.0.0.1');
    assert.equal(unmapAddress('fe80::1%eth0'), 'fe80::1');
    assert.equal(unmapAddress('::1'), '::1');
  });
});

describe('PROXY protocol v2', () => {
  it('starts with the 12-byte signature \\r\\n\\r\\n\\0\\r\\nQUIT\\n', () => {
    assert.deepEqual([...V2_SIGNATURE], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  });

  it('encodes TCP over IPv4 as 0x21 0x11, length 12, addresses then ports in network order', () => {
    const b = encodeV2(tcp('192.168.0.1', 56324, '192.168.0.11', 443));
    assert.equal(b.length, 16 + 12);
    assert.deepEqual(b.subarray(0, 12), V2_SIGNATURE);
    assert.equal(b[12], 0x21, 'version 2, command PROXY');
    assert.equal(b[13], 0x11, 'AF_INET, STREAM');
    assert.equal(b.readUInt16BE(14), 12);
    assert.deepEqual([...b.subarray(16, 20)], [192, 168, 0, 1]);
    assert.deepEqual([...b.subarray(20, 24)], [192, 168, 0, 11]);
    assert.equal(b.readUInt16BE(24), 56324);
    assert.equal(b.readUInt16BE(26), 443);
  });

  it('matches the header haproxy sends for 172.19.0.1:42578 -> 172.19.0.3:80, byte for byte', () => {
    // haproxy's send-proxy-v2 header for that connection, as captured with netcat.
    const expected = '0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050';
    assert.equal(encodeV2(tcp('172.19.0.1', 42578, '172.19.0.3', 80)).toString('hex'), expected);
  });

  it('encodes TCP over IPv6 as 0x21, length 36, with the 16-byte addresses', () => {
    const b = encodeV2(tcp('2001:db8::1', 1234, '::1', 443));
    assert.equal(b.length, 16 + 36);
    assert.equal(b[13], 0x21);
    assert.equal(b.readUInt16BE(14), 36);
    assert.equal(b.subarray(16, 32).toString('hex'), '20010db8000000000000000000000001');
    assert.equal(b.subarray(32, 48).toString('hex'), '00000000000000000000000000000001');
    assert.equal(b.readUInt16BE(48), 1234);
    assert.equal(b.readUInt16BE(50), 443);
  });

  it('marks UDP as DGRAM (0x12, 0x22)', () => {
    assert.equal(encodeV2({ ...tcp('10.0.0.1', 5000, '10.0.0.2', 53), transport: 'udp' })[13], 0x12);
    assert.equal(encodeV2({ ...tcp('::2', 5000, '::1', 53), transport: 'udp' })[13], 0x22);
  });

  it('sends AF_UNSPEC with no addresses when the families differ, so the receiver uses the real ones', () => {
    const b = encodeV2(tcp('::1', 1, '127.0.0.1', 2));
    assert.equal(b.length, 16);
    assert.equal(b[12], 0x21);
    assert.equal(b[13], 0x00);
    assert.equal(b.readUInt16BE(14), 0);
  });

  it('unmaps v4-mapped ends to a 12-byte IPv4 block', () => {
    const b = encodeHeader('v2', tcp('::ffff:127.0.0.2', 40000, '::ffff:127.0.0.1', 80));
    assert.equal(b[13], 0x11);
    assert.deepEqual([...b.subarray(16, 24)], [127, 0, 0, 2, 127, 0, 0, 1]);
  });
});

describe('PROXY protocol v2 from struct sockaddr', () => {
  const mapped = (v4: string, port: number): Buffer =>
    sockaddrIn6(
      [
        0,
        0,
        0,
        0,
        0,
        0xffff,
        ...[0, 2].map((i) =>
          v4
            .split('.')
            .slice(i, i + 2)
            .reduce((a, p) => a * 256 + Number(p), 0),
        ),
      ],
      port,
    );
  const cases: [string, Buffer, Buffer, ConnectionInfo][] = [
    ['IPv4', sockaddrIn('192.168.0.1', 56324), sockaddrIn('192.168.0.11', 443), tcp('192.168.0.1', 56324, '192.168.0.11', 443)],
    ['IPv6', sockaddrIn6(parseIPv6('2001:db8::1'), 1), sockaddrIn6(parseIPv6('fe80::2'), 65535), tcp('2001:db8::1', 1, 'fe80::2', 65535)],
    [
      'v4-mapped on a dual-stack socket',
      mapped('127.0.0.2', 40000),
      mapped('127.0.0.1', 80),
      tcp('::ffff:127.0.0.2', 40000, '::ffff:127.0.0.1', 80),
    ],
    ['v4-mapped client, plain IPv4 local', mapped('10.0.0.1', 5), sockaddrIn('10.0.0.2', 6), tcp('10.0.0.1', 5, '10.0.0.2', 6)],
    [
      'IPv6 client, IPv4 local (UNSPEC)',
      sockaddrIn6(parseIPv6('::1'), 1234),
      sockaddrIn('127.0.0.1', 80),
      tcp('::1', 1234, '127.0.0.1', 80),
    ],
    ['an unknown family (UNSPEC)', Buffer.from([1, 0, 0, 0]), sockaddrIn('127.0.0.1', 80), tcp('/tmp/x', 0, '127.0.0.1', 80)],
  ];
  for (const [name, source, destination, info] of cases) {
    it(`gives the bytes encodeV2 gives from the text: ${name}`, () => {
      assert.deepEqual(encodeV2FromSockaddrs(source, destination), encodeV2(info));
    });
  }

  it('does not take an address that only starts like a v4-mapped one for IPv4', () => {
    const almost = sockaddrIn6([0, 0, 0, 0, 1, 0xffff, 0x7f00, 1], 80);
    assert.equal(encodeV2FromSockaddrs(almost, almost)[13], 0x21);
  });
});
