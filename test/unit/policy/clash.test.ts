/** clash.ts: statements that clash with or repeat another, as warnings that mark both. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostics } from '../../../src/diagnostic.js';
import { policyWarnings } from '../../../src/policy/clash.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { PortSet } from '../../../src/policy/ports.js';
import { samePrincipal } from '../../../src/policy/principal.js';
import type { Rule } from '../../../src/policy/types.js';

const warnings = (text: string): string => formatDiagnostics(policyWarnings(parsePolicy(text, 'policy')));

describe('policyWarnings', () => {
  /** Each policy and its warnings as the CLI shows them. */
  const rows: [what: string, policy: string[], rendering: string[]][] = [
    [
      'a grant to everyone over a reserved port, even one reserved further down',
      ['grant 5000-5999/tcp everyone', 'reserve 5432 user postgres'],
      [
        'policy:1:7-19: warning: the grant to everyone does not open 5432/tcp: line 2 reserves it for user postgres, and a reservation refuses everyone it does not name; grant it by name, or remove it from this list',
        'grant 5000-5999/tcp everyone',
        '      ^~~~~~~~~~~~~',
        'policy:2:9-12: note: reserved here',
        'reserve 5432 user postgres',
        '        ^~~~',
      ],
    ],
    [
      'a statement said twice',
      ['grant 80,443 user alice', 'grant 443,80 user alice  # again'],
      [
        'policy:2:7-12: warning: this statement repeats line 1: 80,443 is already granted to user alice there; remove one of them',
        'grant 443,80 user alice  # again',
        '      ^~~~~~',
        'policy:1:7-12: note: first here',
        'grant 80,443 user alice',
        '      ^~~~~~',
      ],
    ],
    [
      'a statement that repeats part of another',
      ['reserve 5432 user pg', 'reserve 5432,6379 user pg'],
      [
        'policy:2:9-17: warning: 5432 is already reserved for user pg on line 1: remove 5432 from one of them',
        'reserve 5432,6379 user pg',
        '        ^~~~~~~~~',
        'policy:1:9-12: note: first here',
        'reserve 5432 user pg',
        '        ^~~~',
      ],
    ],
  ];
  for (const [what, policy, rendering] of rows) {
    it(`warns about ${what}`, () => {
      assert.equal(warnings(`${policy.join('\n')}\n`), `${rendering.join('\n')}\n`);
    });
  }

  /** Policies that say what they mean: no warning. */
  const quiet: [what: string, policy: string[]][] = [
    ['a grant and a reservation of one port for the same owner', ['grant 5432 user pg', 'reserve 5432 user pg']],
    ['one port granted to two users', ['grant 80 user alice', 'grant 80 user bob']],
    ['one port granted to one user on different addresses', ['grant 80 user alice addr 127.0.0.1', 'grant 80 user alice addr ::1']],
    ['a grant to everyone next to a reservation of another port', ['grant 80 everyone', 'reserve 5432 user pg']],
    ['a grant to everyone of a reserved port but another protocol', ['grant 53/udp everyone', 'reserve 53/tcp user dns']],
    ['two reservations of one port for different protocols', ['reserve 53/tcp user a', 'reserve 53/udp user b']],
    // Two owners of one port are an error instead, of the parser (owners.test.ts).
  ];
  for (const [what, policy] of quiet) {
    it(`is quiet about ${what}`, () => {
      assert.equal(warnings(`${policy.join('\n')}\n`), '');
    });
  }

  /**
   * policyWarnings finds repeats through the ports each (action, principal,
   * addresses) group claimed first, so that 10,000 rules take milliseconds.
   * Here it is held to the plain reading: the first earlier statement with the
   * same action, principal and addresses that shares a port, else the first
   * reservation under a grant to everyone.
   */
  it('names the same earlier statement as comparing every pair would, on random policies', () => {
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
    const expected = (rules: readonly Rule[]): [number, number][] =>
      rules.flatMap((rule, i): [number, number][] => {
        const ports = PortSet.fromItems(rule.ports);
        const shares = (o: Rule): boolean => !ports.intersect(PortSet.fromItems(o.ports)).isEmpty();
        const sameAddrs = (o: Rule): boolean => [...new Set(o.addrs)].sort().join() === [...new Set(rule.addrs)].sort().join();
        const repeat = rules
          .slice(0, i)
          .find((o) => o.action === rule.action && samePrincipal(o.principal, rule.principal) && sameAddrs(o) && shares(o));
        const under =
          rule.action === 'grant' && rule.principal.kind === 'everyone'
            ? rules.find((o) => o.action === 'reserve' && shares(o))
            : undefined;
        const other = repeat ?? under;
        return other === undefined ? [] : [[rule.line, other.line]];
      });
    let compared = 0;
    let warned = 0;
    for (let round = 0; round < 2000; round++) {
      const lines = Array.from({ length: 1 + Math.floor(next() * 8) }, () => {
        const from = pick([20, 21, 22, 23, 25, 30]);
        const to = from + pick([0, 0, 1, 3, 8]);
        const ports = `${from === to ? from : `${from}-${to}`}${pick(['', '/tcp', '/udp'])}${next() < 0.3 ? `,${pick([21, 40])}` : ''}`;
        if (next() < 0.3) return `reserve ${ports} user alice`;
        const addr = next() < 0.3 ? ` addr ${pick(['127.0.0.1', '::1,127.0.0.1', '127.0.0.1,::1'])}` : '';
        return `grant ${ports} ${pick(['user alice', 'user bob', 'group g', 'everyone', 'user 1000', 'group 1000'])}${addr}`;
      });
      const doc = parsePolicy(`${lines.join('\n')}\n`, 'policy');
      const got = policyWarnings(doc).map((d): [number, number] => [d.line, d.related?.[0]?.line ?? 0]);
      assert.deepEqual(got, expected(doc.rules), lines.join('\n'));
      compared++;
      if (got.length > 0) warned++;
    }
    assert.equal(compared, 2000);
    assert.ok(warned > 200, `only ${warned} of the random policies had a warning: the comparison saw too few repeats`);
  });
});
