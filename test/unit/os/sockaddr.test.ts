import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AF_INET6, decodeSockaddr, sockaddrIn, sockaddrIn6 } from '../../../src/os/sockaddr.js';
import { formatIPv6, parseIPv6 } from '../../../src/policy/address.js';

describe('struct sockaddr', () => {
  it('encodes sockaddr_in as family, port in network order, address, zero padding (16 bytes)', () => {
    assert.deepEqual([...sockaddrIn('192.168.0.11', 443)], [2, 0, 0x01, 0xbb, 192, 168, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('encodes sockaddr_in6 with the address at offset 8 and no flow info or scope (28 bytes)', () => {
    const b = sockaddrIn6(parseIPv6('2001:db8::1'), 8080);
    assert.equal(b.length, 28);
    assert.equal(b.readUInt16LE(0), AF_INET6);
    assert.equal(b.readUInt16BE(2), 8080);
    assert.equal(b.subarray(8, 24).toString('hex'), '20010db8000000000000000000000001');
    assert.equal(b.readUInt32LE(4) + b.readUInt32LE(24), 0);
  });

  it('decodes what it encodes, for both families', () => {
    assert.deepEqual(decodeSockaddr(sockaddrIn('127.0.0.2', 80)), { family: 4, address: '127.0.0.2', port: 80 });
    const v6 = decodeSockaddr(sockaddrIn6(parseIPv6('::ffff:10.0.0.1'), 65535));
    assert.equal(v6?.family, 6);
    assert.equal(v6?.port, 65535);
    assert.equal(v6?.family === 6 ? formatIPv6(v6.groups) : '', '::ffff:10.0.0.1');
  });

  it('decodes nothing from another family (AF_UNIX) or a buffer too short for its family', () => {
    assert.equal(decodeSockaddr(Buffer.from([1, 0, 0x2f, 0x74, 0x6d, 0x70])), undefined);
    assert.equal(decodeSockaddr(sockaddrIn6(parseIPv6('::1'), 1).subarray(0, 20)), undefined);
    assert.equal(decodeSockaddr(Buffer.alloc(1)), undefined);
  });
});
