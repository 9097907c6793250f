/** text.ts: what reaches a terminal, and words of commands shown to paste into a shell. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { escapeControl, hasControl, shellCommand, shellQuote } from '../../src/text.js';

/** Every character a terminal or reader must not get raw. */
// eslint-disable-next-line no-control-regex -- the test is about control characters
const RAW = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

describe('escapeControl', () => {
  it('leaves ordinary text, spaces and non-ASCII letters alone', () => {
    assert.equal(escapeControl('node server.js --port 80'), 'node server.js --port 80');
    assert.equal(escapeControl('café ✓ 日本'), 'café ✓ 日本');
  });

  it('escapes C0 controls, DEL and C1 controls so no terminal sequence or line break gets through', () => {
    assert.equal(escapeControl('a\nb'), 'a\\nb');
    assert.equal(escapeControl('\x1b]0;owned\x07\x1b[2J'), '\\x1b]0;owned\\x07\\x1b[2J');
    assert.equal(escapeControl('tab\there\rx\x00'), 'tab\\there\\rx\\x00');
    assert.equal(escapeControl('del\x7f csi\x9b1m'), 'del\\x7f csi\\x9b1m');
  });

  it('escapes the bidi controls and the Unicode line separators', () => {
    assert.equal(escapeControl('evil\u202etxt.exe'), 'evil\\u202etxt.exe');
    assert.equal(escapeControl('\u2066\u2069\u200e\u200f\u061c'), '\\u2066\\u2069\\u200e\\u200f\\u061c');
    assert.equal(escapeControl('a\u2028b\u2029c'), 'a\\u2028b\\u2029c');
  });

  it('doubles a backslash, so an escape shown is never the same as the characters that spell it', () => {
    assert.equal(escapeControl('\\x1b'), '\\\\x1b');
    assert.notEqual(escapeControl('\\n'), escapeControl('\n'));
  });

  it('leaves nothing raw in any character from U+0000 to U+FFFF', () => {
    let all = '';
    for (let c = 0; c < 0x10000; c++) if (c < 0xd800 || c > 0xdfff) all += String.fromCharCode(c);
    assert.doesNotMatch(escapeControl(all), RAW);
    assert.equal(hasControl(all), true);
    assert.equal(hasControl('plain text'), false);
  });
});

describe('shellQuote', () => {
  const sh = (script: string, shell = 'bash') => spawnSync(shell, ['-c', script], { encoding: 'utf8' });

  it('leaves plain words bare and single-quotes the rest', () => {
    assert.equal(shellQuote('/usr/bin/node'), '/usr/bin/node');
    assert.equal(shellQuote('alice'), 'alice');
    assert.equal(shellQuote('my server'), "'my server'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote('$(reboot)'), "'$(reboot)'");
    assert.equal(shellQuote(''), "''");
  });

  it('writes a word with control characters in $-quotes: one line, nothing raw', () => {
    const word = "x\n; rm -rf / #\x1b[2J'\u202e\\";
    const quoted = shellQuote(word);
    assert.ok(quoted.startsWith("$'"));
    assert.doesNotMatch(quoted, RAW);
    assert.doesNotMatch(quoted, /\n/);
  });

  it('quotes so that a shell reads back exactly the word, hostile ones included', () => {
    const words = [
      'plain',
      'with space',
      "it's",
      '$HOME',
      '`id`',
      '"dq"',
      'a\\b',
      'nl\nrm -rf /',
      '\x1b[31mred',
      'bidi\u202e',
      "mix'\n\\$x",
    ];
    const r = sh(`printf '%s\\0' ${words.map(shellQuote).join(' ')}`);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\0').slice(0, -1), words);
  });

  it('reads back the same in a POSIX sh for words without control characters', () => {
    const words = ['with space', "it's", '$HOME', '`id`', 'a\\b', '*'];
    const r = sh(`printf '%s\\0' ${words.map(shellQuote).join(' ')}`, 'sh');
    assert.deepEqual(r.stdout.split('\0').slice(0, -1), words);
  });
});

describe('shellCommand', () => {
  it('joins the words of a command, each quoted as needed', () => {
    assert.equal(shellCommand(['lowport', 'revoke', '80', '--user', 'a b']), "lowport revoke 80 --user 'a b'");
    assert.equal(shellCommand(['lowport', 'revoke', '--all', '--user', "it's"]), "lowport revoke --all --user 'it'\\''s'");
  });
});

describe('CLI output of text others chose', () => {
  // eslint-disable-next-line no-control-regex -- the test is about control characters
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;

  it("list shows a run scope's command line and other programs' names escaped, one line each", async () => {
    const { formatList } = await import('../../src/cli/list.js');
    const text = formatList({
      policy: '/etc/lowport/policy',
      pinDir: '/sys/fs/bpf/lowport',
      cgroup: '/sys/fs/cgroup',
      live: true,
      entries: 1,
      file: 'in-sync',
      warnings: [],
      shadowed: [],
      rules: [{ line: 0, action: 'grant', ports: '80', who: ['run of `srv \x1b[2J\nfake 1 line`'], addrs: [], hits: 0, refused: 0 }],
      programs: [{ hook: 'bind4', id: 7, name: 'x\x1b]0;t\x07', ours: false, inherited: false, createdByUid: 1000 }],
    } as unknown as Parameters<typeof formatList>[0]);
    assert.doesNotMatch(text, RAW);
    assert.match(text, /srv \\x1b\[2J\\nfake 1 line/);
    assert.match(text, /x\\x1b\]0;t\\x07/);
  });

  it('error messages and hints quoting a path keep their own lines and escape the rest', async () => {
    const { formatError } = await import('../../src/cli/main.js');
    const { LowportError } = await import('../../src/errors.js');
    const text = formatError(
      new LowportError('E_STATE', 'cannot read /tmp/\x1b[2Jx\u202e: ENOENT', { hint: 'Create /tmp/\x1b[2Jx, or give another path.' }),
    );
    assert.doesNotMatch(text, RAW);
    assert.equal(text, 'lowport: error: cannot read /tmp/\\x1b[2Jx\\u202e: ENOENT\nCreate /tmp/\\x1b[2Jx, or give another path.\n');
  });
});

describe('terminalText (the guard before a terminal)', () => {
  it('keeps line breaks, tabs and ordinary text, and escapes any other control character', async () => {
    const { terminalText } = await import('../../src/text.js');
    assert.equal(terminalText('a\tb\nc é ✓\n'), 'a\tb\nc é ✓\n');
    assert.equal(terminalText('x\x1b[2Jy\nz\u202ew\n'), 'x\\x1b[2Jy\nz\\u202ew\n');
    assert.equal(terminalText('pass\\x1b plain\n'), 'pass\\x1b plain\n', 'a line without controls is left alone, backslashes too');
  });
});
