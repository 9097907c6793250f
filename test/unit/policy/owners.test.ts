/** owners.ts: a reserved port has one owner, in a file (the parser) and in a `reserve` edit alike. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostics } from '../../../src/diagnostic.js';
import { LowportError, PolicyError } from '../../../src/errors.js';
import { reserve } from '../../../src/policy/edit.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { scanPortSpec } from '../../../src/policy/ports.js';
import { serializePolicy } from '../../../src/policy/print.js';
import type { Principal } from '../../../src/policy/types.js';

const ONE_OWNER =
  'a reserved port has one owner: reserve it for a group both are in (several users may share a group), or take it out of one reservation';

/** The file's errors as the CLI shows them. */
function rendered(text: string): string {
  try {
    parsePolicy(text, 'policy');
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    assert.equal(error.code, 'E_POLICY_SYNTAX');
    return formatDiagnostics(error.diagnostics);
  }
  assert.fail('the policy should have been rejected');
}

describe('a port reserved for two owners', () => {
  /** Each policy and its errors as the CLI shows them. */
  const errors: [what: string, policy: string[], rendering: string[]][] = [
    [
      'one port, two users',
      ['reserve 5432     user postgres', '# and later', 'reserve 80,5432 user alice'],
      [
        `policy:3:9-15: error: 5432 is already reserved for user postgres on line 1, so user alice and user postgres would both bind it; ${ONE_OWNER}`,
        'reserve 80,5432 user alice',
        '        ^~~~~~~',
        'policy:1:9-12: note: first reserved here',
        'reserve 5432     user postgres',
        '        ^~~~',
      ],
    ],
    [
      'a port inside a range reserved for someone else',
      ['reserve 80-90 user a', 'reserve 85 user b'],
      [
        `policy:2:9-10: error: 85 is already reserved for user a on line 1, so user b and user a would both bind it; ${ONE_OWNER}`,
        'reserve 85 user b',
        '        ^~',
        'policy:1:9-13: note: first reserved here',
        'reserve 80-90 user a',
        '        ^~~~~',
      ],
    ],
    [
      'a user and a group',
      ['reserve 53/udp group dns', 'reserve 53 user named'],
      [
        `policy:2:9-10: error: 53/udp is already reserved for group dns on line 1, so user named and group dns would both bind it; ${ONE_OWNER}`,
        'reserve 53 user named',
        '        ^~',
        'policy:1:9-14: note: first reserved here',
        'reserve 53/udp group dns',
        '        ^~~~~~',
      ],
    ],
    [
      'a name and a number, which the policy does not resolve',
      ['reserve 80 user alice', 'reserve 80 user 1000'],
      [
        `policy:2:9-10: error: 80 is already reserved for user alice on line 1, so user 1000 and user alice would both bind it; ${ONE_OWNER}`,
        'reserve 80 user 1000',
        '        ^~',
        'policy:1:9-10: note: first reserved here',
        'reserve 80 user alice',
        '        ^~',
      ],
    ],
  ];
  for (const [what, policy, rendering] of errors) {
    it(`is an error in a file: ${what}`, () => {
      assert.equal(rendered(`${policy.join('\n')}\n`), `${rendering.join('\n')}\n`);
    });
  }

  it('is reported with the file’s other errors, once per reservation', () => {
    const out = rendered('reserve 80 user a\nreserve 80 user b\nreserve 80 user c\ngrant 70000 user a\n');
    assert.deepEqual(
      out.split('\n').filter((l) => l.startsWith('policy:')),
      [
        'policy:4:7-11: error: port 70000 is out of range: ports are 1-65535',
        `policy:2:9-10: error: 80 is already reserved for user a on line 1, so user b and user a would both bind it; ${ONE_OWNER}`,
        'policy:1:9-10: note: first reserved here',
        `policy:3:9-10: error: 80 is already reserved for user a on line 1, so user c and user a would both bind it; ${ONE_OWNER}`,
        'policy:1:9-10: note: first reserved here',
      ],
    );
  });

  /** Files that keep one owner per port and protocol: accepted. */
  const accepted: [what: string, policy: string[]][] = [
    ['one owner reserving a port twice (a repeat, a warning of clash.ts)', ['reserve 80 user a', 'reserve 80,443 user a']],
    ['tcp for one owner, udp for another', ['reserve 53/tcp user a', 'reserve 53/udp user b']],
    ['adjacent ranges', ['reserve 80-89 user a', 'reserve 90-99 user b']],
    ['a grant of a port reserved for someone else', ['reserve 80 user a', 'grant 80 user b']],
    ['a user and the group of the same name', ['reserve 80 user a', 'reserve 81 group a']],
  ];
  for (const [what, policy] of accepted) {
    it(`is no error for ${what}`, () => {
      assert.equal(parsePolicy(`${policy.join('\n')}\n`, 'policy').rules.length, policy.length);
    });
  }
});

describe('the reserve edit', () => {
  const user = (name: string): Principal => ({ kind: 'user', name });
  const ports = (spec: string) => scanPortSpec(spec).items;

  /** A file, the reservation asked for, and the refusal as the CLI shows it. */
  const refused: [what: string, policy: string[], request: [string, Principal], rendering: string[]][] = [
    [
      'a port of another owner’s range',
      ['# db', 'reserve 80-90 user a  # web'],
      ['85', user('b')],
      [
        `policy:2:9-13: error: 85 is reserved for user a on line 2, so reserving it for user b too would let both bind it; ${ONE_OWNER}`,
        'reserve 80-90 user a  # web',
        '        ^~~~~',
      ],
    ],
    [
      'a range over another owner’s port, naming only the ports they share',
      ['reserve 5432/tcp group pg'],
      ['5000-6000', user('b')],
      [
        `policy:1:9-16: error: 5432/tcp is reserved for group pg on line 1, so reserving it for user b too would let both bind it; ${ONE_OWNER}`,
        'reserve 5432/tcp group pg',
        '        ^~~~~~~~',
      ],
    ],
  ];
  for (const [what, policy, [spec, principal], rendering] of refused) {
    it(`refuses ${what}, at the line of the file`, () => {
      const doc = parsePolicy(`${policy.join('\n')}\n`, 'policy');
      const before = serializePolicy(doc);
      assert.throws(
        () => reserve(doc, { ports: ports(spec), principal }),
        (e: unknown) => {
          assert.ok(e instanceof LowportError);
          assert.equal(e.code, 'E_POLICY_CLASH');
          assert.equal(formatDiagnostics(e.diagnostics), `${rendering.join('\n')}\n`);
          assert.match(e.hint ?? '', /^Nothing was changed\. `lowport unreserve /);
          return true;
        },
      );
      assert.equal(serializePolicy(doc), before);
    });
  }

  const allowed: [what: string, policy: string[], request: [string, Principal], after: string[]][] = [
    ['more ports for the same owner', ['reserve 80 user a'], ['80-81', user('a')], ['reserve 80-81 user a']],
    [
      'the other protocol for another owner',
      ['reserve 53/tcp user a'],
      ['53/udp', user('b')],
      ['reserve 53/tcp user a', 'reserve 53/udp user b'],
    ],
  ];
  for (const [what, policy, [spec, principal], after] of allowed) {
    it(`accepts ${what}`, () => {
      const r = reserve(parsePolicy(`${policy.join('\n')}\n`, 'policy'), { ports: ports(spec), principal });
      assert.equal(serializePolicy(r.doc), `${after.join('\n')}\n`);
    });
  }
});
