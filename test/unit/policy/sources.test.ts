/** sources.ts and origin.ts: the policy file and its drop-ins as one document, each statement still at its own file and line. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostics } from '../../../src/diagnostic.js';
import { UsageError } from '../../../src/errors.js';
import { policyWarnings } from '../../../src/policy/clash.js';
import { lineRef, originOf } from '../../../src/policy/origin.js';
import { loggingOf, parsePolicy, PolicySyntaxError } from '../../../src/policy/parse.js';
import {
  dropinDirOf,
  dropinFileName,
  dropinOptionName,
  fileDocument,
  isDropinName,
  joinPolicyTexts,
  parsePolicyFiles,
  sortDropinNames,
  splitPolicyTexts,
  type PolicyTexts,
} from '../../../src/policy/sources.js';

const PATH = '/etc/lowport/policy';

function rendered(texts: PolicyTexts): string {
  try {
    parsePolicyFiles(texts, PATH);
  } catch (e) {
    if (e instanceof PolicySyntaxError) return formatDiagnostics(e.diagnostics);
    throw e;
  }
  return '';
}

describe('drop-in names', () => {
  it('reads NAME.policy and skips dotfiles, editor backups, and dpkg and ucf leftovers', () => {
    const read = ['10-web.policy', 'db.policy', 'a.b.policy'];
    const skipped = [
      '.hidden.policy',
      '.#web.policy',
      'web.policy~',
      'web.policy.swp',
      '.web.policy.swp',
      'web.policy.dpkg-old',
      'web.policy.dpkg-new',
      'web.policy.dpkg-dist',
      'web.policy.ucf-dist',
      'web.policy.ucf-old',
      '#web.policy#',
      'README',
      'web.conf',
      '.policy',
      'policy',
    ];
    for (const name of read) assert.equal(isDropinName(name), true, name);
    for (const name of skipped) assert.equal(isDropinName(name), false, name);
  });

  it('orders names by their bytes, as the C locale does, whatever the locale', () => {
    const names = ['b.policy', 'a.policy', 'Z.policy', '10-web.policy', '9-db.policy', '_x.policy', 'é.policy', 'README', 'A.policy'];
    assert.deepEqual(sortDropinNames(names), [
      '10-web.policy',
      '9-db.policy',
      'A.policy',
      'Z.policy',
      '_x.policy',
      'a.policy',
      'b.policy',
      'é.policy',
    ]);
  });

  it('--file takes a name (NAME or NAME.policy), refusing paths, dots and odd characters with the fix', () => {
    assert.equal(dropinFileName('web'), 'web.policy');
    assert.equal(dropinFileName('web.policy'), 'web.policy');
    assert.equal(dropinFileName('10-web_2.d'), '10-web_2.d.policy');
    const refused: [string, RegExp][] = [
      ['../web', /not a path/],
      ['/etc/passwd', /not a path/],
      ['a/b', /not a path/],
      ['..', /not dots/],
      ['.', /not dots/],
      ['.hidden', /starts with a letter/],
      ['-rf', /starts with a letter/],
      ['web space', /letters, digits/],
      ['web\n', /letters, digits/],
      ['', /not dots/],
      ['x'.repeat(129), /at most 128/],
    ];
    for (const [name, why] of refused) {
      assert.throws(
        () => dropinFileName(name),
        (e: unknown) => e instanceof UsageError && why.test(e.message) && /--file web/.test(e.hint ?? ''),
        name,
      );
    }
    assert.equal(dropinOptionName('web.policy'), 'web');
    assert.equal(dropinOptionName('web space.policy'), undefined);
  });

  it('puts the drop-ins of PATH in PATH.d', () => {
    assert.equal(dropinDirOf('/etc/lowport/policy'), '/etc/lowport/policy.d');
    assert.equal(dropinDirOf('/tmp/x/policy'), '/tmp/x/policy.d');
  });
});

describe('joinPolicyTexts', () => {
  it('is the main text itself without drop-ins, so the fingerprint of such a policy is what it was', () => {
    const text = 'grant 80 user alice\n';
    assert.equal(joinPolicyTexts({ main: text, dropins: [] }), text);
    assert.deepEqual(splitPolicyTexts(text), { main: text, dropins: [] });
  });

  it('round-trips every file, and differs when any drop-in changes', () => {
    const texts = {
      main: 'grant 80 user alice\n',
      dropins: [
        { name: '10-web.policy', text: 'grant 443 user alice\n' },
        { name: '20-db.policy', text: 'reserve 5432 user postgres\n\0odd' },
      ],
    };
    const joined = joinPolicyTexts(texts);
    assert.deepEqual(splitPolicyTexts(joined), texts);
    const changed = { ...texts, dropins: [texts.dropins[0]!, { name: '20-db.policy', text: 'reserve 5433 user postgres\n' }] };
    assert.notEqual(joinPolicyTexts(changed), joined);
    // The same text under another name is another policy (the order of files is part of it).
    const renamed = { ...texts, dropins: [{ ...texts.dropins[0]!, name: '30-web.policy' }, texts.dropins[1]!] };
    assert.notEqual(joinPolicyTexts(renamed), joined);
  });
});

describe('parsePolicyFiles', () => {
  it('without drop-ins is parsePolicy of the main file, with no parts', () => {
    const text = '# x\ngrant 80 user alice\n';
    assert.deepEqual(parsePolicyFiles({ main: text, dropins: [] }, PATH), parsePolicy(text, PATH));
  });

  it('counts a log statement of a drop-in like one of the main file, at its own line', () => {
    const texts = { main: 'grant 80 user alice\n', dropins: [{ name: '50-audit.policy', text: '# audit\nlog refusals\n' }] };
    const doc = parsePolicyFiles(texts, PATH);
    assert.deepEqual(doc.logs, [{ what: 'refusals', line: 3 }]);
    assert.deepEqual(loggingOf(doc), { grants: false, refusals: true });
    const part = doc.parts?.[1];
    assert.ok(part !== undefined);
    assert.deepEqual(fileDocument(doc, part).logs, [{ what: 'refusals', line: 2 }]);
  });

  it('numbers the lines of all files in a row, in the order given, and maps each back to its file and line', () => {
    const doc = parsePolicyFiles(
      {
        main: '# main\ngrant 80 user alice\n',
        dropins: [
          { name: '10-web.policy', text: 'grant 443 user www-data\n\ngrant 8443 user www-data\n' },
          { name: '20-db.policy', text: 'reserve 5432 user postgres\n' },
        ],
      },
      PATH,
    );
    assert.deepEqual(
      doc.rules.map((r) => [r.line, originOf(doc, r.line).file, originOf(doc, r.line).line]),
      [
        [2, PATH, 2],
        [3, `${PATH}.d/10-web.policy`, 1],
        [5, `${PATH}.d/10-web.policy`, 3],
        [6, `${PATH}.d/20-db.policy`, 1],
      ],
    );
    assert.equal(lineRef(doc, 5, 3), 'line 3');
    assert.equal(lineRef(doc, 5, 2), 'line 3 of policy.d/10-web.policy');
    assert.equal(lineRef(doc, 2, 6), 'line 2 of policy');
    // One file back as a document of its own.
    const web = fileDocument(doc, doc.parts![1]!);
    assert.deepEqual(
      web.rules.map((r) => r.line),
      [1, 3],
    );
    assert.equal(web.file, `${PATH}.d/10-web.policy`);
  });

  it("reports every file's errors at once, each at its own file:line:col", () => {
    assert.equal(
      rendered({
        main: 'grant 80 user alice\ngrant 70000 user bob\n',
        dropins: [{ name: '10-web.policy', text: '# web\ngrnat 443 user www-data\n' }],
      }),
      [
        '/etc/lowport/policy:2:7-11: error: port 70000 is out of range: ports are 1-65535',
        'grant 70000 user bob',
        '      ^~~~~',
        "/etc/lowport/policy.d/10-web.policy:2:1-5: error: unknown statement 'grnat': expected 'grant', 'reserve', 'forward' or 'log' (did you mean 'grant'?)",
        'grnat 443 user www-data',
        '^~~~~',
        '',
      ].join('\n'),
    );
  });

  it('refuses two owners of one reserved port in two files: an error at the second, a note at the first', () => {
    assert.equal(
      rendered({
        main: 'reserve 5432 user postgres\n',
        dropins: [{ name: '50-other.policy', text: '\nreserve 5432,5433 user alice\n' }],
      }),
      [
        '/etc/lowport/policy.d/50-other.policy:2:9-17: error: 5432 is already reserved for user postgres on line 1 of policy, ' +
          'so user alice and user postgres would both bind it; a reserved port has one owner: reserve it for a group both are in ' +
          '(several users may share a group), or take it out of one reservation',
        'reserve 5432,5433 user alice',
        '        ^~~~~~~~~',
        '/etc/lowport/policy:1:9-12: note: first reserved here',
        'reserve 5432 user postgres',
        '        ^~~~',
        '',
      ].join('\n'),
    );
  });

  it('refuses a port forwarded in two files', () => {
    assert.match(
      rendered({ main: 'forward 80/tcp to 8080\n', dropins: [{ name: 'web.policy', text: 'forward 80 to 8081\n' }] }),
      /^\/etc\/lowport\/policy\.d\/web\.policy:1:9-10: error: port 80 \(tcp\) is already forwarded on line 1 of policy:/,
    );
  });

  it('warns about clashes across files, naming the other file', () => {
    const doc = parsePolicyFiles(
      {
        main: 'grant 80 user alice\nreserve 5432 user postgres\n',
        dropins: [{ name: 'web.policy', text: 'grant 80 user alice\ngrant 5000-6000/tcp everyone\n' }],
      },
      PATH,
    );
    const text = formatDiagnostics(policyWarnings(doc));
    assert.match(text, /^\/etc\/lowport\/policy\.d\/web\.policy:1:7-8: warning: this statement repeats line 1 of policy:/m);
    assert.match(text, /^\/etc\/lowport\/policy:1:7-8: note: first here$/m);
    assert.match(
      text,
      /^\/etc\/lowport\/policy\.d\/web\.policy:2:7-19: warning: the grant to everyone does not open 5432\/tcp: line 2 of policy reserves it/m,
    );
  });

  it('keeps a statement repeated in one file at "line N", as before drop-ins existed', () => {
    const doc = parsePolicyFiles(
      { main: '# x\n', dropins: [{ name: 'web.policy', text: 'grant 80 user alice\ngrant 80 user alice\n' }] },
      PATH,
    );
    assert.match(formatDiagnostics(policyWarnings(doc)), /warning: this statement repeats line 1: /);
  });

  it('names a candidate by its own path', () => {
    assert.match(
      rendered({ main: '', dropins: [{ name: 'web.policy', text: 'grant 80 usr alice\n', from: '/tmp/ansible-tmp/source' }] }),
      /^\/tmp\/ansible-tmp\/source:1:10-12: error: /,
    );
  });
});
