/**
 * Resolved rules to policy-map entries (see map-format.ts for the layout).
 * Pure: no kernel, no I/O, so the whole translation is unit-tested.
 *
 * Each (protocol, port) a rule covers gets a PORT marker, and each subject ×
 * address a key of its own. When two rules produce the same key, the first in
 * the file wins (its line is the one `list` credits with the hits).
 */
import { addressFamily, formatIPv6, isV4Mapped, parseIPv6 } from '../policy/address.js';
import type { Protocol } from '../policy/types.js';
import { AF_INET, AF_INET6, EntryTable, idBytes, IPPROTO, Kind, lookupFlag, RESERVED } from './map-format.js';
import type { Entry } from './live.js';
import type { ResolvedRule } from './resolve.js';

const ANY_ADDRESS = Buffer.alloc(16);
const NO_ID = Buffer.alloc(8);

/** The family and 16 key bytes for an address; IPv4-mapped IPv6 is keyed as the IPv4 address, as the program does. */
export function addressKey(addr: string): { family: typeof AF_INET | typeof AF_INET6; bytes: Buffer } {
  const bytes = Buffer.alloc(16);
  if (addressFamily(addr) === 4) {
    addr.split('.').forEach((part, i) => bytes.writeUInt8(Number(part), i));
    return { family: AF_INET, bytes };
  }
  const groups = parseIPv6(addr);
  if (isV4Mapped(addr)) {
    bytes.writeUInt16BE(groups[6] ?? 0, 0);
    bytes.writeUInt16BE(groups[7] ?? 0, 2);
    return { family: AF_INET, bytes };
  }
  groups.forEach((g, i) => bytes.writeUInt16BE(g, i * 2));
  return { family: AF_INET6, bytes };
}

/** The address text for a key's family and bytes; undefined for "any address". */
export function addressText(family: number, bytes: Buffer): string | undefined {
  if (family === AF_INET) return Array.from(bytes.subarray(0, 4)).join('.');
  if (family === AF_INET6) return formatIPv6(Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2)));
  return undefined;
}

export function protocolNumber(p: Protocol): number {
  return IPPROTO[p];
}

export function protocolName(n: number): Protocol | undefined {
  return n === IPPROTO.tcp ? 'tcp' : n === IPPROTO.udp ? 'udp' : undefined;
}

/** The map entries for a resolved policy, packed (see EntryTable). */
export function compileTable(rules: readonly ResolvedRule[]): EntryTable {
  const table = new EntryTable();
  // Markers whose rule already credits a reservation's line.
  const reservationCredited = new Set<number>();
  const addresses = (addrs: readonly string[]) =>
    addrs.length === 0 ? [{ family: 0 as const, bytes: ANY_ADDRESS }] : addrs.map(addressKey);

  for (const { rule, subjects } of rules) {
    const addrKeys = addresses(rule.addrs);
    let flags = rule.action === 'reserve' ? RESERVED : 0;
    for (const s of subjects) for (const a of addrKeys) flags |= lookupFlag(s.kind, a.family === 0);
    // On a subject's key (not a marker) RESERVED only tells `list` the key is a reservation owner's.
    const ownerFlag = rule.action === 'reserve' ? RESERVED : 0;
    const targets = subjects.flatMap((s) => addrKeys.map((a) => ({ kind: s.kind, id: idBytes(s.id), family: a.family, addr: a.bytes })));
    for (const item of rule.ports) {
      for (const p of item.protocols) {
        const protocol = protocolNumber(p);
        for (let port = item.from; port <= item.to; port++) {
          const marker = table.put(Kind.PORT, protocol, port, 0, NO_ID, ANY_ADDRESS, rule.line, flags);
          if (!marker.added) table.addFlags(marker.index, flags);
          // A marker credits the first reservation of its port (its hits are refusals), else the first rule.
          if (rule.action === 'reserve' && !reservationCredited.has(marker.index)) {
            reservationCredited.add(marker.index);
            table.setRule(marker.index, rule.line);
          }
          // put() keeps an existing key as it is: the first rule wins, except
          // that a reservation claims its owners' keys, so `list` shows it.
          for (const t of targets) {
            const key = table.put(t.kind, protocol, port, t.family, t.id, t.addr, rule.line, ownerFlag);
            if (!key.added && ownerFlag !== 0 && (table.flags(key.index) & RESERVED) === 0) {
              table.addFlags(key.index, RESERVED);
              table.setRule(key.index, rule.line);
            }
          }
        }
      }
    }
  }
  // A reservation refuses everyone the policy does not name: an `everyone`
  // grant covering a reserved port must not open it, so the program never
  // looks up EVERYONE on such a port.
  const everyone = lookupFlag(Kind.EVERYONE, false) | lookupFlag(Kind.EVERYONE, true);
  for (const i of reservationCredited) table.setFlags(i, table.flags(i) & ~everyone);
  return table;
}

/** compileTable's entries as objects: for tests and for reading. */
export function compile(rules: readonly ResolvedRule[]): Entry[] {
  return compileTable(rules).toEntries();
}
