/** What lowport puts into net.ipv4.ip_local_reserved_ports and takes out again (grants/reserved-ports.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPortList, parsePortList, planReservedPorts, reservedPortsOf } from '../../../src/grants/reserved-ports.js';
import { parsePolicy } from '../../../src/policy/parse.js';

const RANGE: [number, number] = [32768, 60999];
const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);

describe('reserved ports in the kernel sysctl', () => {
  it('reads and writes the sysctl format, runs as ranges', () => {
    assert.deepEqual(sorted(parsePortList('8080,9000-9002')), [8080, 9000, 9001, 9002]);
    assert.deepEqual(sorted(parsePortList('')), []);
    assert.equal(formatPortList([9002, 8080, 9000, 9001, 8080]), '8080,9000-9002');
    assert.equal(formatPortList([]), '');
  });

  it('adds only reserved ports inside ip_local_port_range, and remembers only what it added', () => {
    const plan = planReservedPorts({
      current: new Set([40001, 50000]),
      range: RANGE,
      wanted: [90, 40000, 40001],
      mine: [],
      others: new Set(),
    });
    assert.deepEqual(sorted(plan.next), [40000, 40001, 50000]);
    assert.deepEqual(plan.added, [40000]);
    assert.deepEqual(plan.mine, [40000]);
  });

  it("takes out what it added when the reservation goes, never the admin's entries, nor a port another instance added", () => {
    const plan = planReservedPorts({
      current: new Set([40000, 40001, 40002, 50000]),
      range: RANGE,
      wanted: [],
      mine: [40000, 40002],
      others: new Set([40002]),
    });
    assert.deepEqual(sorted(plan.next), [40001, 40002, 50000]);
    assert.deepEqual(plan.removed, [40000]);
    assert.deepEqual(plan.mine, []);
  });

  it('takes a port out when the range no longer covers it, and shares one another instance added', () => {
    const narrowed = planReservedPorts({
      current: new Set([40000]),
      range: [50000, 60000],
      wanted: [40000],
      mine: [40000],
      others: new Set(),
    });
    assert.deepEqual(sorted(narrowed.next), []);
    const shared = planReservedPorts({ current: new Set([40000]), range: RANGE, wanted: [40000], mine: [], others: new Set([40000]) });
    assert.deepEqual(shared.mine, [40000]);
    assert.deepEqual(shared.added, []);
  });

  it('takes the ports of reserve statements, whatever their protocol, and not of grants', () => {
    const doc = parsePolicy('grant 40010 user nobody\nreserve 40000-40002/udp user daemon\nreserve 5432 group daemon\n', 'policy');
    assert.deepEqual(
      reservedPortsOf(doc).sort((a, b) => a - b),
      [5432, 40000, 40001, 40002],
    );
  });
});
