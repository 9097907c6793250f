import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LowportError } from '../../../src/errors.js';
import { grant, removeLogging, reserve, revoke, revokeAll, setLogging, unreserve, type EditResult } from '../../../src/policy/edit.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { parsePortSpec } from '../../../src/policy/ports.js';
import { serializePolicy } from '../../../src/policy/print.js';
import type { PolicyDocument, Principal } from '../../../src/policy/types.js';

const alice: Principal = { kind: 'user', name: 'alice' };
const bob: Principal = { kind: 'user', name: 'bob' };
const dns: Principal = { kind: 'group', name: 'dns' };
const postgres: Principal = { kind: 'user', name: 'postgres' };

function doc(...lines: string[]): PolicyDocument {
  return parsePolicy(lines.map((l) => `${l}\n`).join(''), '/etc/lowport/policy');
}

/** The edited file's text, after checking that it parses back to the rules the edit claims. */
function textOf(result: EditResult): string {
  const text = serializePolicy(result.doc);
  const reparsed = parsePolicy(text, result.doc.file);
  assert.deepEqual(result.doc.rules, reparsed.rules, 'rules must match a parse of the written file');
  assert.deepEqual(result.doc.lines, reparsed.lines);
  return text;
}

const lines = (...l: string[]): string => l.map((x) => `${x}\n`).join('');
const ports = parsePortSpec;

describe('grant', () => {
  it('appends a new statement for a principal that has none', () => {
    const before = doc('# policy', 'grant 80 user bob');
    const result = grant(before, { ports: ports('443,80'), principal: alice, addrs: [] });
    assert.equal(result.changed, true);
    assert.equal(textOf(result), lines('# policy', 'grant 80 user bob', 'grant 80,443 user alice'));
    assert.deepEqual(result.notes, ["added 'grant 80,443 user alice'"]);
  });

  it('writes addresses normalized and without duplicates', () => {
    const result = grant(doc(), { ports: ports('53/udp'), principal: dns, addrs: ['127.0.0.1', '0:0::1', '::1'] });
    assert.equal(textOf(result), lines('grant 53/udp group dns addr 127.0.0.1,::1'));
  });

  it('extends the line of the same principal and address set instead of adding one', () => {
    const before = doc('# web', '  grant 80 user alice addr ::1,127.0.0.1   # dev server', 'grant 22 user bob');
    const result = grant(before, { ports: ports('443'), principal: alice, addrs: ['127.0.0.1', '::1'] });
    assert.equal(textOf(result), lines('# web', '  grant 80,443 user alice addr ::1,127.0.0.1  # dev server', 'grant 22 user bob'));
    assert.deepEqual(result.notes, ['line 2 now also grants 443 to user alice on 127.0.0.1,::1']);
  });

  it('does not merge into a rule with other addresses', () => {
    const before = doc('grant 80 user alice addr 127.0.0.1');
    const result = grant(before, { ports: ports('443'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 80 user alice addr 127.0.0.1', 'grant 443 user alice'));
  });

  it('notes that a rule for every address already covers a grant for some addresses', () => {
    const before = doc('grant 80 user alice');
    const result = grant(before, { ports: ports('80'), principal: alice, addrs: ['::1'] });
    assert.equal(textOf(result), lines('grant 80 user alice', 'grant 80 user alice addr ::1'));
    assert.deepEqual(result.notes, ['line 1 already grants 80 to user alice on every address', "added 'grant 80 user alice addr ::1'"]);
  });

  it('does not merge into a rule of another principal kind with the same name', () => {
    const before = doc('grant 80 group alice');
    const result = grant(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 80 group alice', 'grant 80 user alice'));
  });

  it('changes nothing when everything is already granted, and says where', () => {
    const before = doc('grant 80 user alice', 'grant 443/tcp user alice # tls');
    const result = grant(before, { ports: ports('80/tcp,443/tcp'), principal: alice, addrs: [] });
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ['line 1 already grants 80/tcp to user alice', 'line 2 already grants 443/tcp to user alice']);
    assert.equal(textOf(result), serializePolicy(before));
  });

  it('adds only the missing ports and notes the ones already there', () => {
    const before = doc('grant 80/tcp user alice');
    const result = grant(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 80 user alice'));
    assert.deepEqual(result.notes, ['line 1 already grants 80/tcp to user alice', 'line 1 now also grants 80/udp to user alice']);
  });

  it('puts a new statement after the last non-blank line, keeping trailing blank lines', () => {
    const before = doc('grant 22 user bob', '# end', '', '');
    const result = grant(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 22 user bob', '# end', 'grant 80 user alice', '', ''));
  });

  it('writes the first statement of an empty file', () => {
    const result = grant(doc(), { ports: ports('80'), principal: { kind: 'everyone' }, addrs: [] });
    assert.equal(textOf(result), 'grant 80 everyone\n');
  });

  it('adds a newline to a file that lacked one, without a blank line', () => {
    const before = parsePolicy('grant 22 user bob', 'policy');
    const result = grant(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 22 user bob', 'grant 80 user alice'));
  });

  it('keeps comments, blank lines and untouched statements byte for byte', () => {
    const text = '# head  \n\n\tgrant   22    user bob   #  ssh\n   # note\ngrant 80 user alice\t# web\n\n';
    const result = grant(parsePolicy(text, 'p'), { ports: ports('443'), principal: alice, addrs: [] });
    assert.equal(textOf(result), '# head  \n\n\tgrant   22    user bob   #  ssh\n   # note\ngrant 80,443 user alice  # web\n\n');
  });

  it('does not mutate the document it is given', () => {
    const before = doc('grant 80 user alice # web');
    const copy = structuredClone(before);
    grant(before, { ports: ports('443'), principal: alice, addrs: ['::1'] });
    grant(before, { ports: ports('443'), principal: alice, addrs: [] });
    assert.deepEqual(before, copy);
  });

  it('refuses an invalid name or address with a usage error', () => {
    const isUsage = (error: unknown): boolean => error instanceof LowportError && error.code === 'E_USAGE';
    assert.throws(() => grant(doc(), { ports: ports('80'), principal: { kind: 'user', name: 'a b' }, addrs: [] }), isUsage);
    assert.throws(() => grant(doc(), { ports: ports('80'), principal: alice, addrs: ['fe80::1%eth0'] }), isUsage);
    assert.throws(() => grant(doc(), { ports: [], principal: alice, addrs: [] }), isUsage);
  });
});

describe('revoke', () => {
  it('removes a statement whose ports are all revoked, with its trailing comment', () => {
    const before = doc('# web server', 'grant 80 user alice # web', 'grant 22 user bob');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('# web server', 'grant 22 user bob'));
    assert.deepEqual(result.notes, ['removed line 2: grant 80 user alice']);
  });

  it('splits a range around a revoked port', () => {
    const before = doc('grant 8000-8100 user alice');
    const result = revoke(before, { ports: ports('8050'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 8000-8049,8051-8100 user alice'));
    assert.deepEqual(result.notes, ['line 1 no longer grants 8050 to user alice']);
  });

  it('leaves tcp when udp is revoked from a port of both protocols', () => {
    const before = doc('grant 80 user alice');
    const result = revoke(before, { ports: ports('80/udp'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 80/tcp user alice'));
  });

  it('revokes from every rule of the principal when no address is given', () => {
    const before = doc('grant 80,443 user alice', 'grant 80 user alice addr ::1', 'grant 80 user bob');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 443 user alice', 'grant 80 user bob'));
  });

  it('keeps the indentation and the comment of a changed line', () => {
    const before = doc('\t grant 80,443 user alice   # web');
    const result = revoke(before, { ports: ports('443'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('\t grant 80 user alice  # web'));
  });

  it('removes only the revoked address from a list when all the ports go', () => {
    const before = doc('grant 80 user alice addr 127.0.0.1,::1 # local');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: ['::1'] });
    assert.equal(textOf(result), lines('grant 80 user alice addr 127.0.0.1  # local'));
    assert.deepEqual(result.notes, ['line 1 no longer grants 80 to user alice on ::1']);
  });

  it('splits a rule when some ports are revoked for one of its addresses', () => {
    const before = doc('  grant 80,443 user alice addr 127.0.0.1,::1 # local', 'grant 22 user bob');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: ['0::1'] });
    assert.equal(
      textOf(result),
      lines('  grant 80,443 user alice addr 127.0.0.1  # local', '  grant 443 user alice addr ::1', 'grant 22 user bob'),
    );
    assert.deepEqual(result.notes, [
      'line 1 no longer grants 80 to user alice on ::1',
      "added 'grant 443 user alice addr ::1' after line 1 for the ports left",
    ]);
  });

  it('writes the ports of a rule it splits canonically, and its rules match the written text', () => {
    const before = doc('grant 443,80,80/tcp user alice addr ::1,127.0.0.1');
    const result = revoke(before, { ports: ports('443'), principal: alice, addrs: ['::1'] });
    assert.equal(textOf(result), lines('grant 80,443 user alice addr 127.0.0.1', 'grant 80 user alice addr ::1'));
  });

  it('removes a rule whose only address is revoked', () => {
    const before = doc('grant 80 user alice addr ::1', 'grant 80 user alice addr 127.0.0.1');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: ['::1'] });
    assert.equal(textOf(result), lines('grant 80 user alice addr 127.0.0.1'));
  });

  it('refuses to revoke one address from a rule for any address, with a hint', () => {
    const before = doc('grant 80 user alice');
    assert.throws(
      () => revoke(before, { ports: ports('80'), principal: alice, addrs: ['::1'] }),
      (error: unknown) =>
        error instanceof LowportError &&
        error.code === 'E_USAGE' &&
        error.message === 'line 1 grants 80 to user alice on every address, so it cannot be revoked for ::1 alone' &&
        error.hint === 'Revoke without --addr, then grant the addresses you want.',
    );
  });

  it('ignores a rule for any address that does not grant the revoked ports', () => {
    const before = doc('grant 22 user alice', 'grant 80 user alice addr ::1');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: ['::1'] });
    assert.equal(textOf(result), lines('grant 22 user alice'));
  });

  it('changes nothing and says so when nothing was granted', () => {
    const before = doc('grant 80 user bob', 'grant 443 user alice');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ['nothing to revoke: user alice has no grant of 80']);
    assert.equal(textOf(result), serializePolicy(before));
  });

  it('notes the ports that were not granted when others were revoked', () => {
    const before = doc('grant 80/tcp user alice', 'grant 9 user alice');
    const result = revoke(before, { ports: ports('80,443'), principal: alice, addrs: [] });
    assert.equal(textOf(result), lines('grant 9 user alice'));
    assert.deepEqual(result.notes, ['removed line 1: grant 80/tcp user alice', 'user alice had no grant of 80/udp,443']);
  });

  it('does not touch reservations', () => {
    const before = doc('reserve 80 user alice');
    const result = revoke(before, { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(result.changed, false);
  });

  it('keeps a full-line comment above a removed statement and everything else', () => {
    const text = '# alice\ngrant 80 user alice\n\n# bob\ngrant 80 user bob # b\n';
    const result = revoke(parsePolicy(text, 'p'), { ports: ports('80'), principal: alice, addrs: [] });
    assert.equal(textOf(result), '# alice\n\n# bob\ngrant 80 user bob # b\n');
    assert.deepEqual(
      result.doc.rules.map((r) => r.line),
      [4],
    );
  });
});

describe('revokeAll', () => {
  it('removes every grant and reservation of exactly that principal', () => {
    const before = doc(
      '# all',
      'grant 80 user alice',
      'grant 53/udp group alice',
      'reserve 5432 user alice # db',
      'grant 443 user alice addr ::1',
      'grant 22 user bob',
    );
    const result = revokeAll(before, alice);
    assert.equal(textOf(result), lines('# all', 'grant 53/udp group alice', 'grant 22 user bob'));
    assert.deepEqual(result.notes, [
      'removed line 2: grant 80 user alice',
      'removed line 4: reserve 5432 user alice',
      'removed line 5: grant 443 user alice addr ::1',
    ]);
  });

  it('changes nothing when the principal has no rules', () => {
    const result = revokeAll(doc('grant 22 user bob'), alice);
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ['nothing to revoke: user alice has no grants or reservations']);
  });

  it('removes grants to everyone', () => {
    const result = revokeAll(doc('grant 80 everyone', 'grant 80 user alice'), { kind: 'everyone' });
    assert.equal(textOf(result), lines('grant 80 user alice'));
  });
});

describe('reserve and unreserve', () => {
  it('reserve appends a reservation', () => {
    const result = reserve(doc('grant 80 everyone'), { ports: ports('6379,5432'), principal: postgres });
    assert.equal(textOf(result), lines('grant 80 everyone', 'reserve 5432,6379 user postgres'));
  });

  it('reserve extends an existing reservation of the same principal', () => {
    const result = reserve(doc('reserve 5432 user postgres # db'), { ports: ports('5433'), principal: postgres });
    assert.equal(textOf(result), lines('reserve 5432-5433 user postgres  # db'));
    assert.deepEqual(result.notes, ['line 1 now also reserves 5433 for user postgres']);
  });

  it('reserve changes nothing when the ports are already reserved', () => {
    const result = reserve(doc('reserve 5432 user postgres'), { ports: ports('5432/tcp'), principal: postgres });
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ['line 1 already reserves 5432/tcp for user postgres']);
  });

  it('reserve ignores grants of the same ports', () => {
    const result = reserve(doc('grant 5432 user postgres'), { ports: ports('5432'), principal: postgres });
    assert.equal(textOf(result), lines('grant 5432 user postgres', 'reserve 5432 user postgres'));
  });

  it('reserve refuses everyone and says why', () => {
    assert.throws(
      () => reserve(doc(), { ports: ports('80'), principal: { kind: 'everyone' } }),
      (error: unknown) =>
        error instanceof LowportError && error.code === 'E_USAGE' && error.message === "a reservation for 'everyone' reserves nothing",
    );
  });

  it('unreserve takes the ports out of every reservation, whoever it is for', () => {
    // (One owner per port: owners.ts refuses a port reserved for two.)
    const before = doc('reserve 5432,6379 user postgres', 'reserve 6380 group redis # cache', 'grant 6379 user bob');
    const result = unreserve(before, { ports: ports('6379-6380') });
    assert.equal(textOf(result), lines('reserve 5432 user postgres', 'grant 6379 user bob'));
    assert.deepEqual(result.notes, ['line 1 no longer reserves 6379 for user postgres', 'removed line 2: reserve 6380 group redis']);
  });

  it('unreserve splits a reserved range', () => {
    const result = unreserve(doc('reserve 5000-5010/tcp user app'), { ports: ports('5005') });
    assert.equal(textOf(result), lines('reserve 5000-5004/tcp,5006-5010/tcp user app'));
  });

  it('unreserve changes nothing when the ports are not reserved', () => {
    const result = unreserve(doc('grant 80 user alice'), { ports: ports('80') });
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ['nothing to unreserve: none of 80 is reserved']);
  });

  it('a principal given as an id matches the same id in the file', () => {
    const result = revokeAll(doc('grant 80 user 1000'), { kind: 'user', name: '1000' });
    assert.equal(textOf(result), '');
  });

  it('bob is untouched by edits for alice', () => {
    const before = doc('grant 80 user bob');
    assert.equal(revoke(before, { ports: ports('80'), principal: alice, addrs: [] }).changed, false);
    assert.equal(revokeAll(before, alice).changed, false);
    assert.equal(grant(before, { ports: ports('80'), principal: bob, addrs: [] }).changed, false);
  });
});

describe('log statements across edits', () => {
  it('keeps every log statement, renumbered, when a grant adds or removes lines', () => {
    const doc = parsePolicy('# audit\nlog all\ngrant 80 user alice\nlog grants\n', 'policy');
    const granted = grant(doc, {
      ports: [{ from: 443, to: 443, protocols: ['tcp', 'udp'] }],
      principal: { kind: 'user', name: 'bob' },
      addrs: [],
    });
    assert.deepEqual(granted.doc.logs, [
      { what: 'all', line: 2 },
      { what: 'grants', line: 4 },
    ]);
    const revoked = revoke(granted.doc, {
      ports: [{ from: 80, to: 80, protocols: ['tcp', 'udp'] }],
      principal: { kind: 'user', name: 'alice' },
      addrs: [],
    });
    assert.deepEqual(revoked.doc.logs, [
      { what: 'all', line: 2 },
      { what: 'grants', line: 3 },
    ]);
    assert.deepEqual(parsePolicy(serializePolicy(revoked.doc), 'policy').logs, revoked.doc.logs);
  });
});

describe('setLogging and removeLogging (lowport log enable/disable)', () => {
  /** The edited text, after checking that a parse of it gives the log statements the edit claims. */
  const logText = (result: EditResult): string => {
    const text = textOf(result);
    assert.deepEqual(parsePolicy(text, result.doc.file).logs, result.doc.logs);
    return text;
  };

  it('appends the statement to a file without one, before its trailing blank lines', () => {
    const result = setLogging(doc('# policy', 'grant 80 user alice', ''), 'refusals');
    assert.equal(result.changed, true);
    assert.equal(logText(result), lines('# policy', 'grant 80 user alice', 'log refusals', ''));
    assert.deepEqual(result.notes, ["added 'log refusals'"]);
  });

  it("replaces the file's statement in place, keeping its indentation and comment, and removes the others", () => {
    const before = doc('  log grants   # who uses port 80', 'grant 80 user alice', 'log refusals');
    const result = setLogging(before, 'all');
    assert.equal(logText(result), lines('  log all  # who uses port 80', 'grant 80 user alice'));
    assert.deepEqual(result.notes, [
      "line 1: 'log grants' is now 'log all'",
      "removed line 3: log refusals (one 'log' statement says it all)",
    ]);
  });

  it('changes nothing when the file already says it, once', () => {
    const result = setLogging(doc('grant 80 user alice', 'log all'), 'all');
    assert.equal(result.changed, false);
    assert.deepEqual(result.notes, ["line 2 already says 'log all'"]);
    // The same statement twice is still an edit: the second goes.
    const twice = setLogging(doc('log all', 'log all'), 'all');
    assert.equal(twice.changed, true);
    assert.equal(logText(twice), lines('log all'));
  });

  it('removes every log statement and leaves the rest byte for byte; without one, nothing changes', () => {
    const before = doc('# audit', 'log grants  # temporary', 'grant 80 user alice   # web', 'log refusals');
    const result = removeLogging(before);
    assert.equal(result.changed, true);
    assert.equal(logText(result), lines('# audit', 'grant 80 user alice   # web'));
    assert.equal(result.doc.logs, undefined);
    assert.deepEqual(result.notes, ['removed line 2: log grants', 'removed line 4: log refusals']);
    const none = removeLogging(doc('grant 80 user alice'));
    assert.equal(none.changed, false);
    assert.deepEqual(none.notes, ["no 'log' statement here: nothing to remove"]);
  });
});
