/** diagnostic.ts: the one renderer of errors, warnings and notes at a place in a source. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  COMMAND_LINE,
  diagnostic,
  didYouMean,
  formatDiagnostic,
  formatDiagnostics,
  nearest,
  related,
  span,
  type Diagnostic,
} from '../../src/diagnostic.js';

const at = (source: string, offset: number, length = 1, line = 1) => span('policy', line, source, offset, length);

describe('span', () => {
  it('turns a 0-based offset and a length into 1-based columns, the end inclusive', () => {
    assert.deepEqual(at('grant 70000 user alice', 6, 5), {
      file: 'policy',
      line: 1,
      column: 7,
      endColumn: 11,
      length: 5,
      source: 'grant 70000 user alice',
    });
  });

  it('covers at least one character', () => {
    assert.deepEqual([at('x', 0, 0).length, at('x', 0, 0).endColumn], [1, 1]);
  });
});

describe('formatDiagnostic', () => {
  /** Each diagnostic and its rendering, line by line. */
  const rows: [what: string, d: Diagnostic, expected: string[]][] = [
    [
      'one character: column only, a caret',
      diagnostic('error', at('grant 80,,443 everyone', 9), "empty item in the port list: remove the extra ','"),
      ["policy:1:10: error: empty item in the port list: remove the extra ','", 'grant 80,,443 everyone', '         ^'],
    ],
    [
      'a range: column-endColumn, a caret at the start and tildes for the rest',
      diagnostic('error', at('grant 70000 user alice', 6, 5, 2), 'port 70000 is out of range: ports are 1-65535'),
      ['policy:2:7-11: error: port 70000 is out of range: ports are 1-65535', 'grant 70000 user alice', '      ^~~~~'],
    ],
    [
      'a warning',
      diagnostic('warning', at('grant 80 user ghost', 14, 5), "unknown user 'ghost'"),
      ["policy:1:15-19: warning: unknown user 'ghost'", 'grant 80 user ghost', '              ^~~~~'],
    ],
    ['a note', diagnostic('note', at('grant 80 everyone', 0, 5), 'a note'), ['policy:1:1-5: note: a note', 'grant 80 everyone', '^~~~~']],
    [
      'a mark past the end of the line: where something is missing',
      diagnostic('error', at('grant 80', 8), "expected 'user NAME', 'group NAME' or 'everyone' after the ports"),
      ["policy:1:9: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports", 'grant 80', '        ^'],
    ],
    [
      'a mark further past the end, and a range that runs past it',
      diagnostic('error', at('ab', 3, 3), 'beyond'),
      ['policy:1:4-6: error: beyond', 'ab', '   ^~~'],
    ],
    [
      'tabs: shown as spaces to the next tab stop, so the marker lines up on any terminal',
      diagnostic('error', at('\tgrant\t0\teveryone', 7), 'port 0 is out of range: ports are 1-65535'),
      ['policy:1:8: error: port 0 is out of range: ports are 1-65535', '        grant   0       everyone', '                ^'],
    ],
    [
      'a tab inside the range is underlined over its whole width',
      diagnostic('error', at('a\tb', 0, 3), 'range over a tab'),
      ['policy:1:1-3: error: range over a tab', 'a       b', '^~~~~~~~~'],
    ],
    [
      'a control character in the source: escaped, and the marker moves with it',
      diagnostic('error', at('grant\x1b[2J 0 everyone', 10), 'port 0 is out of range: ports are 1-65535'),
      ['policy:1:11: error: port 0 is out of range: ports are 1-65535', 'grant\\x1b[2J 0 everyone', '             ^'],
    ],
    [
      'a control character in the message and the file name: escaped, the line stays one line',
      diagnostic('error', span('/tmp/a\nb', 1, 'x', 0), "unknown statement 'x\x1b'"),
      ["/tmp/a\\nb:1:1: error: unknown statement 'x\\x1b'", 'x', '^'],
    ],
    [
      'a command-line word',
      diagnostic('error', span(COMMAND_LINE, 1, '22,99999/tcp', 3, 5), 'bad ports: port 99999 is out of range: ports are 1-65535'),
      ['command line:1:4-8: error: bad ports: port 99999 is out of range: ports are 1-65535', '22,99999/tcp', '   ^~~~~'],
    ],
    [
      'secondary marks: each with its own location line and marker, as a note',
      diagnostic('error', at('forward 80/tcp to 8081', 8, 6, 3), 'port 80 (tcp) is already forwarded on line 1', {
        related: [related(at('forward 80 to 8080', 8, 2, 1), 'first forwarded here'), related(at('#', 0, 1, 2), 'and a second mark')],
      }),
      [
        'policy:3:9-14: error: port 80 (tcp) is already forwarded on line 1',
        'forward 80/tcp to 8081',
        '        ^~~~~~',
        'policy:1:9-10: note: first forwarded here',
        'forward 80 to 8080',
        '        ^~',
        'policy:2:1: note: and a second mark',
        '#',
        '^',
      ],
    ],
    [
      'a hint last, indented',
      diagnostic('warning', at('grant 81 user ghost', 14, 5), "unknown user 'ghost'", {
        hint: 'remove the line with: lowport revoke 81 --user ghost',
      }),
      [
        "policy:1:15-19: warning: unknown user 'ghost'",
        'grant 81 user ghost',
        '              ^~~~~',
        '  remove the line with: lowport revoke 81 --user ghost',
      ],
    ],
  ];
  for (const [what, d, expected] of rows) {
    it(what, () => {
      assert.equal(formatDiagnostic(d), expected.join('\n'));
    });
  }

  it('draws the marker from endColumn when it and the length disagree', () => {
    const d: Diagnostic = { ...at('abcdef', 1, 1), endColumn: 4, severity: 'error', message: 'm' };
    assert.equal(formatDiagnostic(d).split('\n')[2], ' ^~~');
  });
});

describe('formatDiagnostic of a hand-built diagnostic', () => {
  it('marks the start of the line for a column below 1', () => {
    const d: Diagnostic = { ...at('abc', 0, 1), column: 0, endColumn: 0, severity: 'error', message: 'm' };
    assert.equal(formatDiagnostic(d), 'policy:1:0: error: m\nabc\n^');
  });
});

describe('formatDiagnostics', () => {
  it('ends each diagnostic with a newline, and is empty for none', () => {
    const d = diagnostic('error', at('x', 0), 'm');
    assert.equal(formatDiagnostics([d, d]), 'policy:1:1: error: m\nx\n^\npolicy:1:1: error: m\nx\n^\n');
    assert.equal(formatDiagnostics([]), '');
  });
});

describe('nearest: the "did you mean" of a typo', () => {
  it('finds a swap, a missing, an extra and a wrong letter', () => {
    const keywords = ['grant', 'reserve', 'forward'];
    assert.equal(nearest('grnat', keywords), 'grant');
    assert.equal(nearest('reserv', keywords), 'reserve');
    assert.equal(nearest('forwards', keywords), 'forward');
    assert.equal(nearest('grent', keywords), 'grant');
    assert.equal(didYouMean('grnat', keywords), " (did you mean 'grant'?)");
  });

  it('guesses nothing far off, for an exact word, or between two equally near', () => {
    assert.equal(nearest('allow', ['grant', 'reserve', 'forward']), undefined);
    assert.equal(nearest('grant', ['grant', 'reserve']), undefined);
    assert.equal(nearest('ab', ['ac', 'ad']), undefined);
    // Short words allow one edit only: `usr` is `user`, `xy` is not `user`.
    assert.equal(nearest('usr', ['user', 'group']), 'user');
    assert.equal(nearest('xy', ['user', 'group']), undefined);
    assert.equal(didYouMean('allow', ['grant']), '');
  });
});
