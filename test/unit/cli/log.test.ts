/** `lowport log`'s output: the human line (the process name escaped), JSON lines, journal fields; its usage errors. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventJson, formatEvent, journalFields } from '../../../src/cli/log.js';
import { placeEvent, type LoggedEvent } from '../../../src/ops/log.js';
import { parsePolicyFiles } from '../../../src/policy/sources.js';
import { runMain } from '../../run-main.js';

const POLICY = '/etc/lowport/policy';

const EVENT: LoggedEvent = {
  monotonicNs: 1n,
  time: new Date('2026-11-30T07:35:03.045Z'),
  cgroupId: 18446744073709551615n,
  pid: 2657,
  uid: 65534,
  user: 'nobody',
  gid: 4242,
  line: 2,
  file: '/etc/lowport/policy',
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
      formatEvent(EVENT, POLICY),
      "2026-11-30T07:35:03.045Z refused udp [::1]:5432 pid 2657 'evil\\x1b[2J\\n'\\x9b' user nobody (65534) group 4242 cgroup 18446744073709551615 line 2",
    );
    assert.match(formatEvent({ ...EVENT, line: 0 }, POLICY), / a run scope$/);
  });

  it('prints one JSON object per line, the u64 cgroup id as a string, C1 controls escaped', () => {
    const text = eventJson(EVENT);
    assert.ok(!text.includes('\n') && !text.includes('\u009b'));
    const parsed = JSON.parse(text) as Record<string, unknown>;
    assert.equal(parsed.comm, EVENT.comm);
    assert.equal(parsed.cgroupId, '18446744073709551615');
    assert.equal(parsed.group, undefined);
    // One order of keys; what is not known is left out, not null.
    const ORDER = 'time verdict protocol family address port pid comm uid user gid group cgroupId file line'.split(' ');
    const keys = (e: LoggedEvent): string[] => Object.keys(JSON.parse(eventJson(e)) as object);
    assert.deepEqual(
      Object.keys(parsed),
      ORDER.filter((k) => k !== 'group'),
    );
    assert.deepEqual(
      keys({ ...EVENT, user: undefined, file: undefined, group: 'audit' }),
      ORDER.filter((k) => k !== 'user' && k !== 'file'),
    );
    assert.equal(parsed.time, '2026-11-30T07:35:03.045Z');
  });

  it('gives the journal the raw name in its own field and the escaped line as MESSAGE', () => {
    const fields = new Map(journalFields(EVENT, POLICY));
    assert.equal(fields.get('LOWPORT_COMM'), EVENT.comm);
    assert.equal(fields.get('PRIORITY'), '5');
    assert.equal(fields.get('OBJECT_PID'), '2657');
    assert.ok(!(fields.get('MESSAGE') ?? '').includes('\x1b'));
    assert.equal(fields.has('LOWPORT_GROUP'), false);
  });

  it('names the file of the statement that decided: the line alone in the policy file, file:line in a drop-in', () => {
    const dropin = { ...EVENT, file: '/etc/lowport/policy.d/audit.policy' };
    assert.match(formatEvent(dropin, POLICY), / cgroup \d+ policy\.d\/audit\.policy:2$/);
    assert.match(formatEvent(EVENT, POLICY), / cgroup \d+ line 2$/);
    const json = JSON.parse(eventJson(dropin)) as Record<string, unknown>;
    assert.equal(json.file, '/etc/lowport/policy.d/audit.policy');
    assert.equal(json.line, 2);
    const fields = new Map(journalFields(dropin, POLICY));
    assert.equal(fields.get('LOWPORT_FILE'), '/etc/lowport/policy.d/audit.policy');
    assert.equal(fields.get('LOWPORT_LINE'), '2');
    assert.match(fields.get('MESSAGE') ?? '', / policy\.d\/audit\.policy:2$/);
  });

  it('says where the files are not known, rather than naming one: the line through the applied policy, no file', () => {
    const unplaced: LoggedEvent = { ...EVENT, line: 12 };
    delete unplaced.file;
    assert.match(formatEvent(unplaced, POLICY), / line 12 of the applied policy$/);
    assert.equal((JSON.parse(eventJson(unplaced)) as Record<string, unknown>).file, undefined);
    const fields = new Map(journalFields(unplaced, POLICY));
    assert.equal(fields.has('LOWPORT_FILE'), false);
    assert.equal(fields.get('LOWPORT_LINE'), '12');
    // A drop-in whose path holds a control character is escaped, as list escapes it.
    assert.match(formatEvent({ ...EVENT, file: '/etc/lowport/policy.d/a\x1b.policy' }, POLICY), /policy\.d\/a\\x1b\.policy:2$/);
  });

  it('refuses --journal without --follow, and with --json', async () => {
    const a = await runMain(['log', '--journal']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--journal needs --follow/);
    const b = await runMain(['log', '--follow', '--journal', '--json']);
    assert.equal(b.code, 2);
  });

  it('keeps the name alone for the events, and takes enable and disable as its subcommands', async () => {
    const help = await runMain(['log', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: lowport log \[--follow \[--journal\]\] \[--json\]$/m);
    assert.match(help.stdout, /lowport log enable \[grants\|refusals\|all\] \[--file NAME\]/);
    assert.match(help.stdout, /-f, --follow /);
    assert.match(help.stdout, /^ {2}disable +turn the audit trail off/m);
    // The reader's options still reach it through the group (its own usage error, not the group's).
    assert.match((await runMain(['log', '-f', '--journal', '--json'])).stderr, /--journal and --json do not go together/);
    const unknown = await runMain(['log', 'follow']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'lowport log follow'/);
    const what = await runMain(['log', 'enable', 'everything']);
    assert.equal(what.code, 2);
    assert.match(what.stderr, /takes grants, refusals or all, not 'everything'/);
    assert.equal((await runMain(['log', 'enable', 'all', 'grants'])).code, 2);
    assert.equal((await runMain(['log', 'disable', 'all'])).code, 2);
    assert.match((await runMain(['log', 'enable', '--file', '../x'])).stderr, /is not a drop-in name/);
  });
});

describe('placing an event by the applied policy', () => {
  // The policy file (3 lines), then policy.d/audit.policy (2 lines): the program counts lines through both.
  const doc = parsePolicyFiles(
    {
      main: '# main\ngrant 80 user nobody\nreserve 90 user daemon\n',
      dropins: [{ name: 'audit.policy', text: 'log all\ngrant 81 user nobody\n' }],
    },
    POLICY,
  );
  const at = (line: number): { line: number; file?: string } => {
    const e = placeEvent(line, doc);
    return e.file === undefined ? { line: e.line } : { line: e.line, file: e.file };
  };

  it("gives a drop-in's statement its file and its line there, and the policy file's its own", () => {
    assert.deepEqual(at(5), { line: 2, file: '/etc/lowport/policy.d/audit.policy' });
    assert.deepEqual(at(2), { line: 2, file: POLICY });
    assert.deepEqual(at(3), { line: 3, file: POLICY });
  });

  it('leaves unplaced a run scope, a line with no grant or reservation (an older program), and any line without the document', () => {
    assert.deepEqual(at(0), { line: 0 });
    assert.deepEqual(at(4), { line: 4 }, 'line 4 is the log statement: no rule of this document decided there');
    assert.deepEqual(at(9), { line: 9 });
    const e = placeEvent(5, undefined);
    assert.equal(e.file, undefined);
    assert.equal(e.line, 5);
  });

  it('places the lines of a policy without drop-ins in the policy file, unchanged', () => {
    const one = parsePolicyFiles({ main: 'grant 80 user nobody\n', dropins: [] }, POLICY);
    const e = placeEvent(1, one);
    assert.equal(e.file, POLICY);
    assert.equal(e.line, 1);
  });
});
