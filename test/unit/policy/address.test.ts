import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  PolicySpecError,
  addressFamily,
  formatIPv6,
  isV4Mapped,
  normalizeAddress,
  parseAddressList,
  parseIPv6,
  scanAddressList,
} from '../../../src/policy/address.js';

function addressError(text: string): string {
  try {
    normalizeAddress(text);
  } catch (error) {
    assert.ok(error instanceof PolicySpecError);
    assert.equal(error.offset, 0);
    assert.equal(error.length, Math.max(1, text.length));
    return error.message;
  }
  assert.fail(`'${text}' should be rejected`);
}

describe('normalizeAddress', () => {
  const cases: [string, string][] = [
    ['127.0.0.1', '127.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::', '::'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['fe80::', 'fe80::'],
    ['::FFFF:127.0.0.1', '::ffff:127.0.0.1'],
    ['::ffff:7f00:1', '::ffff:127.0.0.1'],
    ['0:0:0:0:0:ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
  ];
  for (const [input, expected] of cases) {
    it(`writes ${input} as ${expected}`, () => {
      assert.equal(normalizeAddress(input), expected);
    });
  }

  /** Each bad address and its error, which always covers the whole address. */
  const errors: [address: string, message: string][] = [
    // inet_aton reads 010 as 8, inet_pton refuses it.
    ['010.0.0.1', "'010.0.0.1': leading zeros are ambiguous (some tools read them as octal); write the numbers without them"],
    ['10.0.0.256', "'10.0.0.256': 256 is out of range: IPv4 numbers are 0-255"],
    ['127.1', "'127.1': not a valid IPv4 address: write all four numbers, e.g. 127.0.0.1"],
    ['fe80::1%eth0', "'fe80::1%eth0': zone ids are not supported; use the address without '%eth0'"],
    ['10.0.0.0/8', "'10.0.0.0/8': address ranges are not supported; list the addresses"],
    ['[::1]', "'[::1]': write IPv6 addresses without brackets: '::1'"],
    ['1::2::3', "'1::2::3': not a valid IPv6 address: expected an IPv4 address such as 127.0.0.1 or an IPv6 address such as ::1"],
    [
      'localhost',
      "'localhost': not an IP address: expected an IPv4 address such as 127.0.0.1 or an IPv6 address such as ::1 (host names are not supported)",
    ],
  ];
  for (const [address, message] of errors) {
    it(`rejects ${address}: ${message}`, () => {
      assert.equal(addressError(address), message);
    });
  }
});

describe('address helpers', () => {
  it('addressFamily tells 4 from 6', () => {
    assert.equal(addressFamily('127.0.0.1'), 4);
    assert.equal(addressFamily('::1'), 6);
    assert.equal(addressFamily('::ffff:127.0.0.1'), 6);
    assert.throws(() => addressFamily('example.com'), PolicySpecError);
  });

  it('isV4Mapped recognizes ::ffff:0:0/96 in any spelling', () => {
    assert.ok(isV4Mapped('::ffff:127.0.0.1'));
    assert.ok(isV4Mapped('0:0:0:0:0:FFFF:7f00:1'));
    assert.ok(!isV4Mapped('::1'));
    assert.ok(!isV4Mapped('127.0.0.1'));
    assert.ok(!isV4Mapped('::127.0.0.1'));
  });

  it('parseAddressList normalizes each address of a list', () => {
    assert.deepEqual(parseAddressList('127.0.0.1,0:0::1'), ['127.0.0.1', '::1']);
  });

  it('scanAddressList reports duplicates after normalization, pointing at the second', () => {
    const { addrs, errors } = scanAddressList('::1,1.2.3.4,0::1');
    assert.deepEqual(addrs, ['::1', '1.2.3.4']);
    assert.deepEqual(
      errors.map((e) => [e.offset, e.length, e.message]),
      [[12, 4, "'0::1' is listed twice (same as '::1'): list each address once"]],
    );
  });

  it('scanAddressList reports each bad address at its own offset', () => {
    const { errors } = scanAddressList('1.2.3.4,,fe80::1%lo,10.0.0.0/8');
    assert.deepEqual(
      errors.map((e) => [e.offset, e.length]),
      [
        [8, 1],
        [9, 10],
        [20, 10],
      ],
    );
  });

  /** Extra commas in an address list, each run reported once, as `offset+length: message`. */
  const commaErrors: [list: string, errors: string[]][] = [
    ['::1,', ["3+1: the address list ends with ',': write the list without spaces, e.g. 127.0.0.1,::1"]],
    ['::1,,', ["3+2: the address list ends with ',': write the list without spaces, e.g. 127.0.0.1,::1"]],
    [',::1', ["0+1: the address list starts with ',': remove it"]],
    ['::1,,,1.2.3.4', ["4+2: empty address in the list: remove the extra ','"]],
    [',', ['0+1: empty address: expected an IPv4 address such as 127.0.0.1 or an IPv6 address such as ::1']],
  ];
  for (const [list, expected] of commaErrors) {
    it(`scanAddressList reports '${list}' once: ${expected.join('; ')}`, () => {
      assert.deepEqual(
        scanAddressList(list).errors.map((e) => `${e.offset}+${e.length}: ${e.message}`),
        expected,
      );
    });
  }

  it('parseIPv6 gives the eight groups, mixed notation included', () => {
    assert.deepEqual(parseIPv6('2001:db8::1'), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(parseIPv6('::ffff:127.0.0.1'), [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]);
    assert.deepEqual(parseIPv6('1:2:3:4:5:6:1.2.3.4'), [1, 2, 3, 4, 5, 6, 0x102, 0x304]);
    assert.deepEqual(parseIPv6('::'), [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.throws(() => parseIPv6('127.0.0.1'), PolicySpecError);
    assert.throws(() => parseIPv6('fe80::1%eth0'), PolicySpecError);
  });

  it('formatIPv6 writes groups in normal form and refuses anything but eight groups', () => {
    assert.equal(formatIPv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), '2001:db8::1:0:0:1');
    assert.equal(formatIPv6([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]), '::ffff:10.0.0.1');
    assert.throws(() => formatIPv6([1, 2, 3]), RangeError);
    assert.throws(() => formatIPv6([0, 0, 0, 0, 0, 0, 0, 0x10000]), RangeError);
  });
});
