import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostic, formatDiagnostics } from '../../../src/diagnostic.js';
import { PolicyError } from '../../../src/errors.js';
import { loggingOf, parsePolicy, PolicySyntaxError, STATEMENTS } from '../../../src/policy/parse.js';
import { NEW_FILE_HEADER } from '../../../src/policy-file/policy-file.js';
import { formatLog, formatPrincipal, formatRule, serializePolicy } from '../../../src/policy/print.js';
import type { PortItem, Rule } from '../../../src/policy/types.js';

const both = (from: number, to = from): PortItem => ({ from, to, protocols: ['tcp', 'udp'] });
const tcp = (from: number, to = from): PortItem => ({ from, to, protocols: ['tcp'] });
const udp = (from: number, to = from): PortItem => ({ from, to, protocols: ['udp'] });

function rulesOf(text: string): Rule[] {
  return parsePolicy(text, 'policy').rules;
}

function onlyRule(text: string): Rule {
  const rules = rulesOf(text);
  assert.equal(rules.length, 1);
  const [rule] = rules;
  assert.ok(rule !== undefined);
  return rule;
}

/** Every diagnostic as `line:column+length message`. */
function problems(text: string): string[] {
  try {
    parsePolicy(text, 'policy');
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    assert.equal(error.code, 'E_POLICY_SYNTAX');
    return error.diagnostics.map((d) => `${d.line}:${d.column}+${d.length} ${d.message}`);
  }
  assert.fail('the policy should have been rejected');
}

/** The problems of a policy as the CLI shows them. */
function rendered(text: string): string {
  try {
    parsePolicy(text, 'policy');
  } catch (error) {
    assert.ok(error instanceof PolicyError);
    return formatDiagnostics(error.diagnostics);
  }
  assert.fail('the policy should have been rejected');
}

describe('parsePolicy: statements', () => {
  it('reads a grant to a user on any address', () => {
    assert.deepEqual(onlyRule('grant 80,443 user alice\n'), {
      action: 'grant',
      ports: [both(80), both(443)],
      principal: { kind: 'user', name: 'alice' },
      addrs: [],
      line: 1,
    });
  });

  it('reads a grant to a group on listed addresses, normalizing them', () => {
    const rule = onlyRule('grant 53/udp group dns addr 127.0.0.1,0:0:0:0:0:0:0:1\n');
    assert.deepEqual(rule.ports, [udp(53)]);
    assert.deepEqual(rule.principal, { kind: 'group', name: 'dns' });
    assert.deepEqual(rule.addrs, ['127.0.0.1', '::1']);
  });

  it('reads a grant to everyone', () => {
    const rule = onlyRule('grant 8000-8100/tcp everyone\n');
    assert.deepEqual(rule.ports, [tcp(8000, 8100)]);
    assert.deepEqual(rule.principal, { kind: 'everyone' });
  });

  it('reads a reservation', () => {
    const rule = onlyRule('reserve 5432,6379 user postgres\n');
    assert.equal(rule.action, 'reserve');
    assert.deepEqual(rule.ports, [both(5432), both(6379)]);
  });

  it('reads numeric ids as names', () => {
    assert.deepEqual(onlyRule('grant 80 user 1000\n').principal, { kind: 'user', name: '1000' });
    assert.deepEqual(onlyRule('grant 80 group 0\n').principal, { kind: 'group', name: '0' });
    assert.deepEqual(onlyRule('grant 80 user 4294967294\n').principal, { kind: 'user', name: '4294967294' });
  });

  it('accepts names with dots, dashes, underscores and a final dollar', () => {
    assert.deepEqual(onlyRule('grant 80 user _svc.web-1$\n').principal, { kind: 'user', name: '_svc.web-1$' });
  });

  it('takes any amount of spaces and tabs between words and around the statement', () => {
    const rule = onlyRule(' \t grant\t\t80   user \t alice  addr\t::1 \t\n');
    assert.deepEqual(rule.ports, [both(80)]);
    assert.deepEqual(rule.addrs, ['::1']);
  });

  it('ignores comments, full-line and trailing, even without a space before #', () => {
    const rules = rulesOf('# header\n  # indented\ngrant 80 user alice# no space\ngrant 443 everyone # x # y\n');
    assert.deepEqual(
      rules.map((r) => [r.line, formatRule(r)]),
      [
        [3, 'grant 80 user alice'],
        [4, 'grant 443 everyone'],
      ],
    );
  });

  it('numbers rules by their line in the file, counting blank and comment lines', () => {
    const rules = rulesOf('\n# c\n\ngrant 80 everyone\n\nreserve 5432 user pg\n');
    assert.deepEqual(
      rules.map((r) => r.line),
      [4, 6],
    );
  });

  it('gives an empty file no rules', () => {
    assert.deepEqual(parsePolicy('', 'policy'), { file: 'policy', lines: [], rules: [] });
  });

  it('gives a file of comments and blank lines no rules', () => {
    assert.deepEqual(rulesOf('# nothing yet\n\n   \n\t\n'), []);
  });

  it('accepts a last line without a newline', () => {
    const doc = parsePolicy('# c\ngrant 80 everyone', 'policy');
    assert.deepEqual(doc.lines, ['# c', 'grant 80 everyone']);
    assert.equal(doc.rules.length, 1);
  });

  it('accepts CRLF line ends and strips the CR from the lines', () => {
    const doc = parsePolicy('# c\r\ngrant 80 user alice\r\n', 'policy');
    assert.deepEqual(doc.lines, ['# c', 'grant 80 user alice']);
    assert.deepEqual(doc.rules[0]?.principal, { kind: 'user', name: 'alice' });
  });

  it('reads the example policy of the documentation', () => {
    const text = [
      '# lowport policy: who may bind which low ports.',
      'grant   80,443          user alice                 # dev server',
      'grant   53/udp          group dns   addr 127.0.0.1,::1',
      'grant   8000-8100/tcp   everyone',
      'reserve 5432,6379       user postgres',
      '',
    ].join('\n');
    assert.deepEqual(rulesOf(text).map(formatRule), [
      'grant 80,443 user alice',
      'grant 53/udp group dns addr 127.0.0.1,::1',
      'grant 8000-8100/tcp everyone',
      'reserve 5432,6379 user postgres',
    ]);
  });
});

describe('parsePolicy: errors', () => {
  /** Each one-line policy and how the CLI shows its one problem: location, message, the line, the marker. */
  const errors: [line: string, rendering: string[]][] = [
    // rejects an unknown statement
    [
      'allow 80 user bob',
      ["policy:1:1-5: error: unknown statement 'allow': expected 'grant', 'reserve', 'forward' or 'log'", 'allow 80 user bob', '^~~~~'],
    ],
    // says keywords are lower case when one is not
    [
      'Grant 80 user bob',
      [
        "policy:1:1-5: error: unknown statement 'Grant': expected 'grant', 'reserve', 'forward' or 'log' (keywords are lower case)",
        'Grant 80 user bob',
        '^~~~~',
      ],
    ],
    // suggests the nearest statement for a typo
    [
      'grnat 80 user bob',
      [
        "policy:1:1-5: error: unknown statement 'grnat': expected 'grant', 'reserve', 'forward' or 'log' (did you mean 'grant'?)",
        'grnat 80 user bob',
        '^~~~~',
      ],
    ],
    [
      'froward 80 to 8080',
      [
        "policy:1:1-7: error: unknown statement 'froward': expected 'grant', 'reserve', 'forward' or 'log' (did you mean 'forward'?)",
        'froward 80 to 8080',
        '^~~~~~~',
      ],
    ],
    // and the nearest keyword after the ports
    [
      'grant 80 usr bob',
      [
        "policy:1:10-12: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports, found 'usr' (did you mean 'user'?)",
        'grant 80 usr bob',
        '         ^~~',
      ],
    ],
    // rejects a statement without ports
    ['grant', ["policy:1:6: error: expected ports after 'grant', e.g. 'grant 80,443 user alice'", 'grant', '     ^']],
    // rejects a statement without a principal, pointing after the ports
    ['grant 80', ["policy:1:9: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports", 'grant 80', '        ^']],
    // rejects a bare name where user or group is expected
    [
      'grant 80 alice',
      [
        "policy:1:10-14: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports, found 'alice'",
        'grant 80 alice',
        '         ^~~~~',
      ],
    ],
    // rejects an upper-case principal keyword
    [
      'grant 80 User alice',
      [
        "policy:1:10-13: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports, found 'User' (keywords are lower case)",
        'grant 80 User alice',
        '         ^~~~',
      ],
    ],
    // rejects user without a name
    ['grant 80 user', ["policy:1:14: error: expected a user name or id after 'user'", 'grant 80 user', '             ^']],
    // rejects group without a name, even when a comment follows
    [
      'grant 80 group   # dns',
      ["policy:1:15: error: expected a group name or id after 'group'", 'grant 80 group   # dns', '              ^'],
    ],
    // rejects an invalid name and says what a name looks like
    [
      'grant 80 user 9lives',
      [
        "policy:1:15-20: error: '9lives' is not a valid user name: a name starts with a letter or '_', then letters, digits, '_', '.' or '-', and may end in '$'; an id is a number 0-4294967294",
        'grant 80 user 9lives',
        '              ^~~~~~',
      ],
    ],
    // rejects an id above 4294967294
    [
      'grant 80 group 4294967295',
      [
        'policy:1:16-25: error: group id 4294967295 is out of range: ids are 0-4294967294',
        'grant 80 group 4294967295',
        '               ^~~~~~~~~~',
      ],
    ],
    // rejects an id with a leading zero
    [
      'grant 80 user 01000',
      ["policy:1:15-19: error: user id '01000' has a leading zero: write 1000", 'grant 80 user 01000', '              ^~~~~'],
    ],
    // rejects a port out of range, pointing at the port within the list
    [
      'grant 80,70000 user alice',
      ['policy:1:10-14: error: port 70000 is out of range: ports are 1-65535', 'grant 80,70000 user alice', '         ^~~~~'],
    ],
    // rejects a reversed range
    [
      'grant 8100-8000 everyone',
      ['policy:1:7-15: error: range 8100-8000 is reversed: write 8000-8100', 'grant 8100-8000 everyone', '      ^~~~~~~~~'],
    ],
    // rejects an unknown protocol
    [
      'grant 80/sctp everyone',
      [
        "policy:1:10-13: error: unknown protocol 'sctp': expected 'tcp' or 'udp' (no suffix means both)",
        'grant 80/sctp everyone',
        '         ^~~~',
      ],
    ],
    // rejects spaces inside the port list once, without complaining about the rest of the line
    [
      'grant 80, 443 user alice',
      [
        "policy:1:9: error: the port list ends with ',': write the list without spaces, e.g. 80,443",
        'grant 80, 443 user alice',
        '        ^',
      ],
    ],
    // rejects an empty port between commas
    [
      'grant 80,,443 everyone',
      ["policy:1:10: error: empty item in the port list: remove the extra ','", 'grant 80,,443 everyone', '         ^'],
    ],
    // rejects addr without addresses
    [
      'grant 80 user a addr',
      ["policy:1:21: error: expected addresses after 'addr', e.g. 'addr 127.0.0.1,::1'", 'grant 80 user a addr', '                    ^'],
    ],
    // rejects a zone id and says what to write instead
    [
      'grant 80 everyone addr fe80::1%eth0',
      [
        "policy:1:24-35: error: 'fe80::1%eth0': zone ids are not supported; use the address without '%eth0'",
        'grant 80 everyone addr fe80::1%eth0',
        '                       ^~~~~~~~~~~~',
      ],
    ],
    // rejects an address range
    [
      'grant 80 everyone addr 10.0.0.0/8',
      [
        "policy:1:24-33: error: '10.0.0.0/8': address ranges are not supported; list the addresses",
        'grant 80 everyone addr 10.0.0.0/8',
        '                       ^~~~~~~~~~',
      ],
    ],
    // rejects an IPv4 address with leading zeros
    [
      'grant 80 everyone addr 010.0.0.1',
      [
        "policy:1:24-32: error: '010.0.0.1': leading zeros are ambiguous (some tools read them as octal); write the numbers without them",
        'grant 80 everyone addr 010.0.0.1',
        '                       ^~~~~~~~~',
      ],
    ],
    // rejects an address listed twice, in any spelling
    [
      'grant 80 everyone addr ::1,127.0.0.1,0::1',
      [
        "policy:1:38-41: error: '0::1' is listed twice (same as '::1'): list each address once",
        'grant 80 everyone addr ::1,127.0.0.1,0::1',
        '                                     ^~~~',
      ],
    ],
    // rejects spaces inside the address list
    [
      'grant 80 everyone addr ::1, 127.0.0.1',
      [
        "policy:1:27: error: the address list ends with ',': write the list without spaces, e.g. 127.0.0.1,::1",
        'grant 80 everyone addr ::1, 127.0.0.1',
        '                          ^',
      ],
    ],
    // rejects addr on a reservation and says why
    [
      'reserve 5432 user postgres addr 127.0.0.1',
      [
        "policy:1:28-31: error: 'addr' is not allowed on 'reserve': a reservation covers every address",
        'reserve 5432 user postgres addr 127.0.0.1',
        '                           ^~~~',
      ],
    ],
    // rejects a reservation for everyone and says why
    [
      'reserve 5432 everyone',
      [
        "policy:1:14-21: error: a reservation for 'everyone' reserves nothing: name the user or group that alone may bind these ports",
        'reserve 5432 everyone',
        '             ^~~~~~~~',
      ],
    ],
    // rejects words after the principal
    [
      'grant 80 user alice foo',
      [
        "policy:1:21-23: error: unexpected 'foo' after the statement: expected 'addr' or the end of the line",
        'grant 80 user alice foo',
        '                    ^~~',
      ],
    ],
    // rejects a second name after everyone
    [
      'grant 80 everyone alice',
      [
        "policy:1:19-23: error: unexpected 'alice' after the statement: expected 'addr' or the end of the line",
        'grant 80 everyone alice',
        '                  ^~~~~',
      ],
    ],
    // rejects an upper-case addr keyword
    [
      'grant 80 everyone ADDR ::1',
      [
        "policy:1:19-22: error: unexpected 'ADDR' after the statement: expected 'addr' or the end of the line (keywords are lower case)",
        'grant 80 everyone ADDR ::1',
        '                  ^~~~',
      ],
    ],
    // rejects words after the addresses
    [
      'grant 80 everyone addr ::1 now',
      [
        "policy:1:28-30: error: unexpected 'now' after the statement: expected the end of the line ('#' starts a comment)",
        'grant 80 everyone addr ::1 now',
        '                           ^~~',
      ],
    ],
    // rejects a second addr clause
    [
      'grant 80 everyone addr ::1 addr 127.0.0.1',
      [
        "policy:1:28-31: error: 'addr' is given twice: put all addresses in one list, e.g. 'addr 127.0.0.1,::1'",
        'grant 80 everyone addr ::1 addr 127.0.0.1',
        '                           ^~~~',
      ],
    ],
    // rejects words after a reservation
    [
      'reserve 80 user pg please',
      [
        "policy:1:20-25: error: unexpected 'please' after the statement: expected the end of the line ('#' starts a comment)",
        'reserve 80 user pg please',
        '                   ^~~~~~',
      ],
    ],
    // a tab counts as one column (8:), and shows as spaces to the next tab stop
    [
      '\tgrant\t0\teveryone',
      ['policy:1:8: error: port 0 is out of range: ports are 1-65535', '        grant   0       everyone', '                ^'],
    ],
  ];
  for (const [line, rendering] of errors) {
    it(`rejects '${line}': ${rendering[0]?.replace(/^policy:\S+ /, '') ?? ''}`, () => {
      assert.equal(rendered(`${line}\n`), `${rendering.join('\n')}\n`);
    });
  }

  it('reports a run of commas once, over all of them', () => {
    assert.equal(
      rendered('grant 80,, user alice\n'),
      "policy:1:9-10: error: the port list ends with ',': write the list without spaces, e.g. 80,443\ngrant 80,, user alice\n        ^~\n",
    );
  });

  it('points at both statements when a port is forwarded twice', () => {
    assert.equal(
      rendered('forward 80 to 8080\n# web\nforward 80/tcp to 8081\n'),
      [
        'policy:3:9-14: error: port 80 (tcp) is already forwarded on line 1: keep one statement per port and protocol',
        'forward 80/tcp to 8081',
        '        ^~~~~~',
        'policy:1:9-10: note: first forwarded here',
        'forward 80 to 8080',
        '        ^~',
        '',
      ].join('\n'),
    );
  });

  it('reports every bad value of one well-formed line', () => {
    assert.deepEqual(problems('grant 0,80,70000 user 9x addr ::1,fe80::1%lo\n'), [
      '1:7+1 port 0 is out of range: ports are 1-65535',
      '1:12+5 port 70000 is out of range: ports are 1-65535',
      "1:23+2 '9x' is not a valid user name: a name starts with a letter or '_', " +
        "then letters, digits, '_', '.' or '-', and may end in '$'; an id is a number 0-4294967294",
      "1:35+10 'fe80::1%lo': zone ids are not supported; use the address without '%lo'",
    ]);
  });

  it('reports a problem on every bad line of the file and keeps the file and source line', () => {
    const text = [
      '# policy',
      'grant 80 user alice',
      'allow 80 user bob',
      '',
      'grant 70000 user carol',
      'reserve 22 everyone',
      'grant 443 user dave   # fine',
      'grant 53/udp group dns addr 10.0.0.0/8',
    ].join('\r\n');
    let caught: unknown;
    try {
      parsePolicy(text, '/etc/lowport/policy');
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof PolicyError);
    assert.deepEqual(
      caught.diagnostics.map((d) => [d.file, d.line, d.column, d.source]),
      [
        ['/etc/lowport/policy', 3, 1, 'allow 80 user bob'],
        ['/etc/lowport/policy', 5, 7, 'grant 70000 user carol'],
        ['/etc/lowport/policy', 6, 12, 'reserve 22 everyone'],
        ['/etc/lowport/policy', 8, 29, 'grant 53/udp group dns addr 10.0.0.0/8'],
      ],
    );
    assert.equal(
      caught.message,
      "/etc/lowport/policy:3:1: unknown statement 'allow': expected 'grant', 'reserve', 'forward' or 'log' (and 3 more)",
    );
    const [first] = caught.diagnostics;
    assert.ok(first !== undefined);
    assert.equal(
      formatDiagnostic(first),
      "/etc/lowport/policy:3:1-5: error: unknown statement 'allow': expected 'grant', 'reserve', 'forward' or 'log'\nallow 80 user bob\n^~~~~",
    );
  });
});

describe('the table of statements', () => {
  it("names every statement of the parser's table in the unknown-statement message", () => {
    const caught = (() => {
      try {
        parsePolicy('nonsense 80 user bob\n', 'policy');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(caught instanceof PolicyError);
    for (const { keyword } of STATEMENTS) assert.ok(caught.message.includes(`'${keyword}'`), `${keyword}: ${caught.message}`);
  });

  it("puts every statement of the parser's table in a new file's header, which parses to no rules", () => {
    for (const { keyword, form } of STATEMENTS) assert.ok(NEW_FILE_HEADER.includes(`#   ${keyword.padEnd(7)} ${form}\n`), keyword);
    assert.deepEqual(parsePolicy(NEW_FILE_HEADER, 'policy').rules, []);
  });

  it('parses every statement of the table (no keyword without a parser)', () => {
    const examples: Record<(typeof STATEMENTS)[number]['keyword'], string> = {
      grant: 'grant 80 user bob',
      reserve: 'reserve 81 user bob',
      forward: 'forward 82 to 8082',
      log: 'log all',
    };
    const doc = parsePolicy(`${Object.values(examples).join('\n')}\n`, 'policy');
    assert.equal(doc.rules.length + (doc.forwards?.length ?? 0) + (doc.logs?.length ?? 0), STATEMENTS.length);
  });
});

describe('a file with syntax errors', () => {
  it('keeps the statements that did parse, for the names to be checked with them', () => {
    const text = ['grant 80 user alice', 'grnat 81 user bob', 'reserve 82 group dns', 'forward 83 to 8083', 'grant 70000 user carol'].join(
      '\n',
    );
    let caught: unknown;
    try {
      parsePolicy(text, 'policy');
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof PolicySyntaxError);
    assert.ok(caught instanceof PolicyError);
    assert.deepEqual(
      caught.diagnostics.map((d) => d.line),
      [2, 5],
    );
    assert.deepEqual(
      caught.parsed.rules.map((r) => [r.line, r.action, r.principal]),
      [
        [1, 'grant', { kind: 'user', name: 'alice' }],
        [3, 'reserve', { kind: 'group', name: 'dns' }],
      ],
    );
    assert.deepEqual(
      caught.parsed.forwards?.map((f) => f.line),
      [4],
    );
  });
});

describe('printing', () => {
  it('formatPrincipal names each kind of principal', () => {
    assert.equal(formatPrincipal({ kind: 'user', name: 'alice' }), 'user alice');
    assert.equal(formatPrincipal({ kind: 'group', name: 'dns' }), 'group dns');
    assert.equal(formatPrincipal({ kind: 'everyone' }), 'everyone');
  });

  it('formatRule writes a canonical statement with single spaces', () => {
    const rule = onlyRule('grant\t443,80,80/udp   user  alice addr 127.0.0.1,0::1  # c\n');
    assert.equal(formatRule(rule), 'grant 80,443 user alice addr 127.0.0.1,::1');
  });

  it('formatRule output parses back to the same rule', () => {
    const rule = onlyRule('grant 53/udp,80,443,8000-8100/tcp group web addr ::ffff:127.0.0.1\n');
    assert.deepEqual(onlyRule(`${formatRule(rule)}\n`), rule);
  });

  it('serializePolicy gives back a file byte for byte', () => {
    const text = [
      '# lowport policy',
      '',
      '  grant   80,443          user alice                 # dev server',
      '\tgrant\t53/udp\tgroup dns   addr 127.0.0.1,::1   ',
      '   ',
      '#grant 1 everyone',
      'reserve 5432,6379       user postgres#db',
      '',
      '',
    ].join('\n');
    assert.equal(serializePolicy(parsePolicy(text, 'policy')), text);
  });

  it('serializePolicy writes CRLF files with LF line ends', () => {
    const doc = parsePolicy('# a\r\ngrant 80 everyone\r\n', 'policy');
    assert.equal(serializePolicy(doc), '# a\ngrant 80 everyone\n');
  });

  it('serializePolicy ends the last line with a newline', () => {
    assert.equal(serializePolicy(parsePolicy('grant 80 everyone', 'policy')), 'grant 80 everyone\n');
  });

  it('serializePolicy writes an empty document as an empty file', () => {
    assert.equal(serializePolicy(parsePolicy('', 'policy')), '');
  });

  it('serializePolicy keeps a file that is one blank line', () => {
    assert.equal(serializePolicy(parsePolicy('\n', 'policy')), '\n');
  });
});

describe('log statements', () => {
  it('reads each kind with its line, and what they turn on together', () => {
    const doc = parsePolicy('grant 80 user bob\n  log refusals   # who was refused\nlog grants\n', 'policy');
    assert.deepEqual(doc.logs, [
      { what: 'refusals', line: 2 },
      { what: 'grants', line: 3 },
    ]);
    assert.deepEqual(loggingOf(doc), { grants: true, refusals: true });
    assert.deepEqual(loggingOf(parsePolicy('log grants\n', 'policy')), { grants: true, refusals: false });
    assert.deepEqual(loggingOf(parsePolicy('log all\n', 'policy')), { grants: true, refusals: true });
  });

  it('leaves logs out of a document without a log statement (logging off)', () => {
    const doc = parsePolicy('grant 80 user bob\n', 'policy');
    assert.equal(doc.logs, undefined);
    assert.deepEqual(loggingOf(doc), { grants: false, refusals: false });
  });

  it('prints a statement that parses back to itself', () => {
    for (const what of ['grants', 'refusals', 'all'] as const) {
      assert.deepEqual(parsePolicy(`${formatLog({ what })}\n`, 'policy').logs, [{ what, line: 1 }]);
    }
  });

  it('reports a missing, unknown or extra word with line:col', () => {
    assert.deepEqual(problems('log\n'), ["1:4+1 expected 'grants', 'refusals' or 'all' after 'log', e.g. 'log all'"]);
    assert.deepEqual(problems('grant 80 user bob\nlog grant\n'), [
      "2:5+5 expected 'grants', 'refusals' or 'all' after 'log', found 'grant' (did you mean 'grants'?)",
    ]);
    assert.deepEqual(problems('log ALL\n'), [
      "1:5+3 expected 'grants', 'refusals' or 'all' after 'log', found 'ALL' (keywords are lower case)",
    ]);
    assert.deepEqual(problems('log all user bob\n'), [
      "1:9+4 unexpected 'user' after the statement: expected the end of the line ('#' starts a comment)",
    ]);
  });

  it('renders an error as the other statements do', () => {
    assert.equal(
      rendered('log everything\n'),
      [
        "policy:1:5-14: error: expected 'grants', 'refusals' or 'all' after 'log', found 'everything'",
        'log everything',
        '    ^~~~~~~~~~',
      ].join('\n') + '\n',
    );
  });
});
