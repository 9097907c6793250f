/** `lowport log`'s output: the human line (the process name escaped), JSON lines, journal fields; its usage errors. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventJson, formatEvent, journalFields } from '../../../src/cli/log.js';
import type { LoggedEvent } from '../../../src/ops/log.js';
import { runMain } from '../../run-main.js';

const EVENT: LoggedEvent = {
  monotonicNs: 1n,
  time: new Date('2026-11-30T07:35:03.045Z'),
  cgroupId: 18446744073709551615n,
  pid: 2657,
  uid: 65534,
  user: 'nobody',
  gid: 4242,
  line: 2,
  protocol: 'udp',
  family: 6,
  address: '::1',
  port: 5432,
  verdict: 'refused',
  comm: "evil\x1b[2J\n'\u009b",
};

describe('lowport log output', () => {
  it('escapes the process name and brackets an IPv6 address; an unknown group shows as its id', () => {
    assert.equal(
      formatEvent(EVENT),
      "2026-11-30T07:35:03.045Z refused udp [::1]:5432 pid 2657 'evil\\x1b[2J\\n'\\x9b' user nobody (65534) group 4242 cgroup 18446744073709551615 line 2",
    );
    assert.match(formatEvent({ ...EVENT, line: 0 }), / a run scope$/);
  });

  it('prints one JSON object per line, the u64 cgroup id as a string, C1 controls escaped', () => {
    const text = eventJson(EVENT);
    assert.ok(!text.includes('\n') && !text.includes('\u009b'));
    const parsed = JSON.parse(text) as Record<string, unknown>;
    assert.equal(parsed.comm, EVENT.comm);
    assert.equal(parsed.cgroupId, '18446744073709551615');
    assert.equal(parsed.group, undefined);
  });

  it('gives the journal the raw name in its own field and the escaped line as MESSAGE', () => {
    const fields = new Map(journalFields(EVENT));
    assert.equal(fields.get('LOWPORT_COMM'), EVENT.comm);
    assert.equal(fields.get('PRIORITY'), '5');
    assert.equal(fields.get('OBJECT_PID'), '2657');
    assert.ok(!(fields.get('MESSAGE') ?? '').includes('\x1b'));
    assert.equal(fields.has('LOWPORT_GROUP'), false);
  });

  it('refuses --journal without --follow, and with --json', async () => {
    const a = await runMain(['log', '--journal']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--journal needs --follow/);
    const b = await runMain(['log', '--follow', '--journal', '--json']);
    assert.equal(b.code, 2);
  });
});
