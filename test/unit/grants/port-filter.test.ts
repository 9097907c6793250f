/**
 * The port filter (map-format.ts) against the bind program, in the
 * interpreter: with the filter of the live map alone, and with the filters of
 * the live map and the next one ORed (what a swap leaves in the kernel while
 * it runs, or after a kill), every bind gets the same verdict and counts the
 * same hits. That is what lets the filter be updated around the swap instead
 * of with it (live.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileTable } from '../../../src/grants/compile.js';
import { addPorts, portFilter, PORT_FILTER_SIZE, RESERVED } from '../../../src/grants/map-format.js';
import { resolvePolicy } from '../../../src/grants/resolve.js';
import type { EntryTable } from '../../../src/grants/map-format.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { directory, hits, policyMap, portFilterOf, run, sockAddr, type BindProtocol, type Caller } from './bind-interpreter.js';

const table = (text: string): EntryTable => compileTable(resolvePolicy(parsePolicy(text, 'policy'), directory).rules);

const POLICIES = [
  '',
  'grant 80 user alice\n',
  'grant 80 everyone\n',
  // An EVERYONE key the marker does not flag: the case the RESERVED bit sends to the marker.
  'grant 80 everyone\nreserve 80 user postgres\n',
  'reserve 80,5432 user postgres\ngrant 5432 user alice addr 127.0.0.1\n',
  'grant 80 group web\ngrant 53/udp user bob addr ::1\n',
  'grant 8080/tcp user bob addr 127.0.0.1\ngrant 8080 group web\n',
  'reserve 8080 user ghost\ngrant 53 everyone addr ::1\n',
];
const CALLERS: Caller[] = [
  { uid: 0, gid: 0 },
  { uid: 1000, gid: 1000 },
  { uid: 1001, gid: 1001 },
  { uid: 1002, gid: 100 },
  { uid: 1005, gid: 2000 },
  { uid: 70, gid: 70 },
  { uid: 4000, gid: 4000 },
];
const BINDS: [string, number, BindProtocol][] = [];
for (const port of [53, 80, 81, 5432, 8080])
  for (const ip of ['0.0.0.0', '127.0.0.1', '::', '::1']) for (const protocol of ['tcp', 'udp'] as const) BINDS.push([ip, port, protocol]);

/** Every verdict of every caller and bind against `live`'s map with this filter, and the hits they counted. */
function verdicts(live: EntryTable, filter: Buffer): { verdicts: number[]; hits: string[] } {
  const map = policyMap(live);
  const out: number[] = [];
  for (const who of CALLERS) {
    for (const [ip, port, protocol] of BINDS) {
      const { family, ctx } = sockAddr(ip, port, protocol);
      out.push(run(family, ctx, { kind: 'outer', slot: map, ports: filter }, who).verdict);
    }
  }
  return { verdicts: out, hits: hits(map) };
}

describe('port filter', () => {
  it('holds each marker’s flags at its protocol and port, as the interpreter builds it', () => {
    for (const text of POLICIES) {
      const t = table(text);
      assert.equal(portFilter(t).length, PORT_FILTER_SIZE);
      assert.deepEqual(portFilter(t), portFilterOf(policyMap(t)), text);
    }
  });

  it('marks a reserved port RESERVED, and leaves ports without rules 0', () => {
    const f = portFilter(table('reserve 5432 user postgres\ngrant 80 user alice\n'));
    assert.ok((f.readUInt16LE(2 * 5432) & RESERVED) !== 0);
    assert.ok((f.readUInt16LE(65536 * 2 + 2 * 5432) & RESERVED) !== 0);
    assert.equal(f.readUInt16LE(2 * 80) & RESERVED, 0);
    assert.notEqual(f.readUInt16LE(2 * 80), 0);
    assert.equal(f.readUInt16LE(2 * 81), 0);
    assert.equal(f.readUInt16LE(0), 0);
  });

  it('gives the live map’s verdicts and hits whether the filter is its own or ORed with the next map’s (a swap under way)', () => {
    for (const liveText of POLICIES) {
      const live = table(liveText);
      const exact = verdicts(live, portFilter(live));
      for (const nextText of POLICIES) {
        const both = addPorts(portFilter(live), table(nextText));
        assert.deepEqual(verdicts(live, both), exact, `live:\n${liveText}next:\n${nextText}`);
      }
    }
  });

  it('would give a wrong verdict with a filter missing the live map’s port (so the filter must never lag the map)', () => {
    const live = table('reserve 8080 user postgres\n');
    const { verdicts: right } = verdicts(live, portFilter(live));
    const { verdicts: wrong } = verdicts(live, Buffer.alloc(PORT_FILTER_SIZE));
    assert.notDeepEqual(wrong, right);
  });
});
