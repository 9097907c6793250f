/**
 * IP literals of `addr` lists, normalized so that two spellings of one
 * address compare equal as strings: IPv4 as a plain dotted quad, IPv6 as
 * RFC 5952 text (compressed, lower case, v4-mapped in mixed notation).
 */
import { isIP } from 'node:net';
import { PolicySpecError, splitList } from './spec-error.js';

export { PolicySpecError } from './spec-error.js';

const EXPECTED = 'expected an IPv4 address such as 127.0.0.1 or an IPv6 address such as ::1';

/** Validates and normalizes one address; throws PolicySpecError (over the whole text) saying why not. */
export function normalizeAddress(text: string): string {
  const fail = (why: string): never => {
    throw new PolicySpecError(text, 0, text.length, `'${text}': ${why}`);
  };
  if (text === '') fail(`empty address: ${EXPECTED}`);
  if (text.includes('/')) fail('address ranges are not supported; list the addresses');
  if (text.startsWith('[') || text.endsWith(']')) {
    fail(`write IPv6 addresses without brackets: '${text.replace(/^\[|\]$/g, '')}'`);
  }
  const percent = text.indexOf('%');
  if (percent >= 0) {
    fail(`zone ids are not supported; use the address without '${text.slice(percent)}'`);
  }
  if (text.includes(':')) {
    if (isIP(text) !== 6) fail(`not a valid IPv6 address: ${EXPECTED}`);
    return formatIPv6(parseIPv6(text));
  }
  if (/^[0-9.]+$/.test(text)) return normalizeIPv4(text, fail);
  return fail(`not an IP address: ${EXPECTED} (host names are not supported)`);
}

function normalizeIPv4(text: string, fail: (why: string) => never): string {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => p === '')) {
    return fail('not a valid IPv4 address: write all four numbers, e.g. 127.0.0.1');
  }
  for (const part of parts) {
    if (part.length > 1 && part.startsWith('0')) {
      // inet_aton reads `010` as 8, inet_pton refuses it: too ambiguous to guess.
      return fail('leading zeros are ambiguous (some tools read them as octal); write the numbers without them');
    }
    if (Number(part) > 255) return fail(`${part} is out of range: IPv4 numbers are 0-255`);
  }
  return parts.map(Number).join('.');
}

/** 4 or 6; throws PolicySpecError when `addr` is not an IP literal. */
export function addressFamily(addr: string): 4 | 6 {
  const family = isIP(addr);
  if (family === 4 || family === 6) return family;
  throw new PolicySpecError(addr, 0, addr.length, `'${addr}': not an IP address: ${EXPECTED}`);
}

/** True for IPv4-mapped IPv6 addresses (`::ffff:0:0/96`), however they are spelled. */
export function isV4Mapped(addr: string): boolean {
  if (isIP(addr) !== 6 || addr.includes('%')) return false;
  const groups = parseIPv6(addr);
  return groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
}

/**
 * Validates a comma-separated address list (the `addr` clause, or a CLI
 * `--addr`), keeping every item's error. Offsets are relative to `text`.
 */
export function scanAddressList(text: string): { addrs: string[]; errors: PolicySpecError[] } {
  const addrs: string[] = [];
  const errors: PolicySpecError[] = [];
  const seen = new Map<string, string>();
  for (const part of splitList(text)) {
    if (part.kind === 'extra') {
      const why = {
        // `::1, 127.0.0.1` in a file: the list was cut short.
        end: "the address list ends with ',': write the list without spaces, e.g. 127.0.0.1,::1",
        start: "the address list starts with ',': remove it",
        middle: "empty address in the list: remove the extra ','",
        all: `empty address: ${EXPECTED}`,
      }[part.where];
      errors.push(new PolicySpecError(text, part.offset, part.length, why));
      continue;
    }
    try {
      const addr = normalizeAddress(part.text);
      const earlier = seen.get(addr);
      if (earlier === undefined) {
        seen.set(addr, part.text);
        addrs.push(addr);
      } else {
        const same = earlier === part.text ? '' : ` (same as '${earlier}')`;
        errors.push(
          new PolicySpecError(text, part.offset, part.text.length, `'${part.text}' is listed twice${same}: list each address once`),
        );
      }
    } catch (error) {
      if (!(error instanceof PolicySpecError)) throw error;
      errors.push(new PolicySpecError(text, part.offset + error.offset, error.length, error.message));
    }
  }
  return { addrs, errors };
}

/** Parses `127.0.0.1,::1` into normalized addresses; throws PolicySpecError at the first problem. */
export function parseAddressList(text: string): string[] {
  const { addrs, errors } = scanAddressList(text);
  const first = errors[0];
  if (first !== undefined) throw first;
  return addrs;
}

/**
 * The eight 16-bit groups of an IPv6 literal (mixed notation included), for
 * callers that need its bytes. Throws PolicySpecError for anything else.
 */
export function parseIPv6(text: string): number[] {
  if (isIP(text) !== 6 || text.includes('%')) {
    throw new PolicySpecError(text, 0, text.length, `'${text}': not a valid IPv6 address: ${EXPECTED}`);
  }
  let body = text.toLowerCase();
  const tailV4: number[] = [];
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.', lastColon)) {
    const [a = 0, b = 0, c = 0, d = 0] = body
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    tailV4.push((a << 8) | b, (c << 8) | d);
    body = body.slice(0, lastColon + 1);
    // `1:2:3:4:5:6:` loses its separator; the `::` of `::1.2.3.4` must stay.
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const toGroups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const doubleColon = body.indexOf('::');
  let groups: number[];
  if (doubleColon < 0) {
    groups = [...toGroups(body), ...tailV4];
  } else {
    const head = toGroups(body.slice(0, doubleColon));
    const tail = [...toGroups(body.slice(doubleColon + 2)), ...tailV4];
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return groups;
}

/**
 * Eight 16-bit groups as RFC 5952 text (section 4), with section 5's mixed
 * notation for v4-mapped addresses: the normal form normalizeAddress returns.
 */
export function formatIPv6(groups: readonly number[]): string {
  if (groups.length !== 8 || !groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)) {
    throw new RangeError(`an IPv6 address is eight 16-bit groups, not [${groups.join(',')}]`);
  }
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `::ffff:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  // The longest run of two or more zero groups becomes `::`; the first one wins a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}
