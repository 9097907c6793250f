/**
 * Port specs (`80,443`, `8000-8100/tcp`, `53/udp`): parsing, the canonical
 * compact text, and PortSet, the set algebra that edits are made of.
 */
import { PolicySpecError, splitList, type ListPart } from './spec-error.js';
import { PROTOCOLS, type PortItem, type Protocol } from './types.js';

export { PolicySpecError } from './spec-error.js';

export const MIN_PORT = 1;
export const MAX_PORT = 65535;

const BOTH: readonly Protocol[] = PROTOCOLS;
const EXAMPLE = 'e.g. 80, 80,443 or 8000-8100/tcp';

/**
 * Parses a whole port spec and keeps every item's error instead of stopping at
 * the first, so that a policy file reports all its bad ports in one go.
 * Offsets in the errors are relative to `text`.
 */
export function scanPortSpec(text: string): { items: PortItem[]; errors: PolicySpecError[] } {
  const items: PortItem[] = [];
  const errors: PolicySpecError[] = [];
  if (text === '') {
    errors.push(new PolicySpecError(text, 0, 1, `expected a port list, ${EXAMPLE}`));
    return { items, errors };
  }
  for (const part of splitList(text)) {
    if (part.kind === 'extra') {
      errors.push(extraCommaError(text, part));
    } else {
      const result = parseItem(text, part.text, part.offset);
      if (result instanceof PolicySpecError) errors.push(result);
      else items.push(result);
    }
  }
  return { items, errors };
}

/** Parses `80,443/tcp,8000-8100`; throws PolicySpecError at the first problem. */
export function parsePortSpec(text: string): PortItem[] {
  const { items, errors } = scanPortSpec(text);
  const first = errors[0];
  if (first !== undefined) throw first;
  return items;
}

function extraCommaError(text: string, extra: ListPart & { kind: 'extra' }): PolicySpecError {
  const message = {
    // `80, 443` in a file or `80,` on the command line: the list was cut short.
    end: "the port list ends with ',': write the list without spaces, e.g. 80,443",
    start: "the port list starts with ',': remove it",
    middle: "empty item in the port list: remove the extra ','",
    all: `expected a port list, ${EXAMPLE}`,
  }[extra.where];
  return new PolicySpecError(text, extra.offset, extra.length, message);
}

function parseItem(text: string, item: string, offset: number): PortItem | PolicySpecError {
  const slash = item.indexOf('/');
  const portsPart = slash < 0 ? item : item.slice(0, slash);
  let protocols: Protocol[] = [...BOTH];
  if (portsPart === '') {
    return new PolicySpecError(text, offset, 1, `expected a port before '/', ${EXAMPLE}`);
  }
  const dash = portsPart.indexOf('-');
  let from: number | PolicySpecError;
  let to: number | PolicySpecError;
  if (dash < 0) {
    from = parsePort(text, portsPart, offset);
    to = from;
  } else if (dash === 0) {
    return new PolicySpecError(text, offset, 1, "expected a port before '-': write a range as FROM-TO, e.g. 8000-8100");
  } else if (dash === portsPart.length - 1) {
    return new PolicySpecError(text, offset + dash, 1, "expected a port after '-': write a range as FROM-TO, e.g. 8000-8100");
  } else {
    from = parsePort(text, portsPart.slice(0, dash), offset);
    to = parsePort(text, portsPart.slice(dash + 1), offset + dash + 1);
  }
  if (from instanceof PolicySpecError) return from;
  if (to instanceof PolicySpecError) return to;
  if (from > to) {
    return new PolicySpecError(text, offset, portsPart.length, `range ${from}-${to} is reversed: write ${to}-${from}`);
  }
  if (slash >= 0) {
    const name = item.slice(slash + 1);
    if (name === '') {
      return new PolicySpecError(text, offset + slash, 1, "expected 'tcp' or 'udp' after '/' (no suffix means both)");
    }
    if (name !== 'tcp' && name !== 'udp') {
      const lower = name === 'TCP' || name === 'UDP' ? ' (protocols are lower case)' : '';
      return new PolicySpecError(
        text,
        offset + slash + 1,
        name.length,
        `unknown protocol '${name}': expected 'tcp' or 'udp' (no suffix means both)${lower}`,
      );
    }
    protocols = [name];
  }
  return { from, to, protocols };
}

function parsePort(text: string, digits: string, offset: number): number | PolicySpecError {
  if (!/^[0-9]+$/.test(digits)) {
    return new PolicySpecError(text, offset, digits.length, `'${digits}' is not a port number: expected a number ${MIN_PORT}-${MAX_PORT}`);
  }
  // A 20-digit port must not round to something in range.
  const value = digits.length > 5 ? Infinity : Number(digits);
  if (value < MIN_PORT || value > MAX_PORT) {
    return new PolicySpecError(text, offset, digits.length, `port ${digits} is out of range: ports are ${MIN_PORT}-${MAX_PORT}`);
  }
  if (digits.startsWith('0')) {
    // Some tools read `080` as octal; refuse to guess, like for IPv4 addresses.
    return new PolicySpecError(text, offset, digits.length, `port '${digits}' has a leading zero: write ${value}`);
  }
  return value;
}

/** A closed interval of ports. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/**
 * An immutable set of (protocol, port) pairs, kept per protocol as sorted,
 * disjoint, non-adjacent ranges: `1-65535` is one range, never 65535 numbers.
 * Two PortSets with the same members have the same ranges, so `equals` and
 * `toItems` are canonical.
 */
export class PortSet {
  static readonly EMPTY = new PortSet([], []);

  private constructor(
    private readonly tcp: readonly PortRange[],
    private readonly udp: readonly PortRange[],
  ) {}

  /** The set an item list denotes; items may overlap, come in any order. */
  static fromItems(items: readonly PortItem[]): PortSet {
    const tcp: PortRange[] = [];
    const udp: PortRange[] = [];
    for (const item of items) {
      checkItem(item);
      const range = { from: item.from, to: item.to };
      if (item.protocols.includes('tcp')) tcp.push(range);
      if (item.protocols.includes('udp')) udp.push(range);
    }
    return new PortSet(normalize(tcp), normalize(udp));
  }

  /** Ports `from`..`to` (default: just `from`) of the given protocols (default: both). */
  static of(from: number, to = from, protocols: readonly Protocol[] = BOTH): PortSet {
    return PortSet.fromItems([{ from, to, protocols: [...protocols] }]);
  }

  ranges(protocol: Protocol): readonly PortRange[] {
    return protocol === 'tcp' ? this.tcp : this.udp;
  }

  has(protocol: Protocol, port: number): boolean {
    const ranges = this.ranges(protocol);
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const range = ranges[mid];
      if (range === undefined) break;
      if (port < range.from) hi = mid - 1;
      else if (port > range.to) lo = mid + 1;
      else return true;
    }
    return false;
  }

  isEmpty(): boolean {
    return this.tcp.length === 0 && this.udp.length === 0;
  }

  /** How many (protocol, port) pairs. */
  size(): number {
    let total = 0;
    for (const range of [...this.tcp, ...this.udp]) total += range.to - range.from + 1;
    return total;
  }

  union(other: PortSet): PortSet {
    return new PortSet(normalize([...this.tcp, ...other.tcp]), normalize([...this.udp, ...other.udp]));
  }

  subtract(other: PortSet): PortSet {
    return new PortSet(subtractRanges(this.tcp, other.tcp), subtractRanges(this.udp, other.udp));
  }

  intersect(other: PortSet): PortSet {
    return new PortSet(intersectRanges(this.tcp, other.tcp), intersectRanges(this.udp, other.udp));
  }

  equals(other: PortSet): boolean {
    return sameRanges(this.tcp, other.tcp) && sameRanges(this.udp, other.udp);
  }

  /** True when every member of `other` is in this set. */
  covers(other: PortSet): boolean {
    return other.subtract(this).isEmpty();
  }

  /**
   * The canonical item list: a maximal range present in both protocols becomes
   * one item without suffix, every other range an item with its protocol;
   * sorted by port (tcp before udp on a tie). formatPorts prints these.
   */
  toItems(): PortItem[] {
    const keyed: { item: PortItem; rank: number }[] = [];
    const common = new Set<string>();
    for (const range of intersectExact(this.tcp, this.udp)) {
      common.add(`${range.from}-${range.to}`);
      keyed.push({ item: { from: range.from, to: range.to, protocols: [...BOTH] }, rank: 0 });
    }
    for (const [rank, protocol] of [
      [1, 'tcp'],
      [2, 'udp'],
    ] as const) {
      for (const range of this.ranges(protocol)) {
        if (common.has(`${range.from}-${range.to}`)) continue;
        keyed.push({ item: { from: range.from, to: range.to, protocols: [protocol] }, rank });
      }
    }
    keyed.sort((a, b) => a.item.from - b.item.from || a.rank - b.rank || a.item.to - b.item.to);
    return keyed.map((k) => k.item);
  }

  /** Every member, lazily, tcp first then udp, each in port order. */
  *entries(): Generator<{ protocol: Protocol; port: number }> {
    for (const protocol of PROTOCOLS) {
      for (const range of this.ranges(protocol)) {
        for (let port = range.from; port <= range.to; port++) yield { protocol, port };
      }
    }
  }

  toString(): string {
    return formatItems(this.toItems());
  }
}

/** The canonical compact text of a port list: `tcp{80,443}+udp{53,80,443}` is `53/udp,80,443`. */
export function formatPorts(items: readonly PortItem[]): string {
  return formatItems(PortSet.fromItems(items).toItems());
}

function formatItems(items: readonly PortItem[]): string {
  return items.map(formatItem).join(',');
}

function formatItem(item: PortItem): string {
  const ports = item.from === item.to ? `${item.from}` : `${item.from}-${item.to}`;
  const [only] = item.protocols;
  return item.protocols.length === 1 && only !== undefined ? `${ports}/${only}` : ports;
}

/** Guards the set algebra against items that did not come from the parser. */
function checkItem(item: PortItem): void {
  const valid =
    Number.isInteger(item.from) &&
    Number.isInteger(item.to) &&
    item.from >= MIN_PORT &&
    item.to <= MAX_PORT &&
    item.from <= item.to &&
    item.protocols.length > 0 &&
    // Items can come from JSON or a script, where the type system no longer holds.
    item.protocols.every((p: string) => p === 'tcp' || p === 'udp');
  if (!valid) {
    const text = `${item.from}-${item.to}/${item.protocols.join('+')}`;
    throw new PolicySpecError(
      text,
      0,
      text.length,
      `invalid port item ${text}: expected FROM <= TO within ${MIN_PORT}-${MAX_PORT} and protocols tcp and/or udp`,
    );
  }
}

function normalize(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: { from: number; to: number }[] = [];
  for (const range of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && range.from <= last.to + 1) {
      last.to = Math.max(last.to, range.to);
    } else {
      out.push({ from: range.from, to: range.to });
    }
  }
  return out;
}

function subtractRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  let j = 0;
  for (const range of a) {
    let from = range.from;
    // Both lists are sorted, so ranges of b that end before this one can be skipped for good.
    while (j < b.length && (b[j]?.to ?? Infinity) < from) j++;
    for (let k = j; k < b.length && from <= range.to; k++) {
      const cut = b[k];
      if (cut === undefined || cut.from > range.to) break;
      if (cut.from > from) out.push({ from, to: cut.from - 1 });
      from = Math.max(from, cut.to + 1);
    }
    if (from <= range.to) out.push({ from, to: range.to });
  }
  return out;
}

function intersectRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i];
    const y = b[j];
    if (x === undefined || y === undefined) break;
    const from = Math.max(x.from, y.from);
    const to = Math.min(x.to, y.to);
    if (from <= to) out.push({ from, to });
    if (x.to < y.to) i++;
    else j++;
  }
  return out;
}

/** Ranges that appear, identically, in both lists. */
function intersectExact(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const keys = new Set(b.map((r) => `${r.from}-${r.to}`));
  return a.filter((r) => keys.has(`${r.from}-${r.to}`));
}

function sameRanges(a: readonly PortRange[], b: readonly PortRange[]): boolean {
  return (
    a.length === b.length &&
    a.every((r, i) => {
      const other = b[i];
      return other?.from === r.from && other.to === r.to;
    })
  );
}
