/** withUnknownNames: a file with syntax errors is reported with its unknown names, in one report (README: every problem at once). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDiagnostics } from '../../../src/diagnostic.js';
import { PolicyError } from '../../../src/errors.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { withUnknownNames } from '../../../src/ops/unresolved.js';

const GHOST = 'lowport-no-such-user-9x';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('withUnknownNames', () => {
  it('reports the syntax errors and the unknown users and groups together, in line order', () => {
    const text = [
      `grant 80 user ${GHOST}`,
      'grnat 81 user root',
      `reserve 82 group ${GHOST}`,
      'grant 70000 user root',
      'grant 83 user root',
    ].join('\n');
    const e = caught(() => withUnknownNames(() => parsePolicy(text, 'policy')));
    assert.ok(e instanceof PolicyError, String(e));
    assert.deepEqual(
      e.diagnostics.map((d) => `${d.line}:${d.column} ${d.severity} ${d.message}`),
      [
        `1:15 error unknown user '${GHOST}': no such user in the passwd database (getent passwd ${GHOST})`,
        "2:1 error unknown statement 'grnat': expected 'grant', 'reserve', 'forward' or 'log' (did you mean 'grant'?)",
        `3:18 error unknown group '${GHOST}': no such group in the group database (getent group ${GHOST})`,
        '4:7 error port 70000 is out of range: ports are 1-65535',
      ],
    );
    assert.equal(e.hint, 'Fix the lines above; nothing was changed.');
    // Nothing is live from a rejected file: the report does not say what would be.
    assert.doesNotMatch(formatDiagnostics(e.diagnostics), /not live|refuses everyone/);
  });

  it('passes a good file through, and a file whose only problems are syntax errors unchanged', () => {
    const doc = withUnknownNames(() => parsePolicy(`grant 80 user ${GHOST}\n`, 'policy'));
    assert.equal(doc.rules.length, 1);
    const syntax = caught(() => parsePolicy('grnat 80 user root\n', 'policy'));
    const e = caught(() => withUnknownNames(() => parsePolicy('grnat 80 user root\n', 'policy')));
    assert.ok(e instanceof PolicyError && syntax instanceof PolicyError);
    assert.deepEqual(e.diagnostics, syntax.diagnostics);
  });

  it('leaves other errors alone', () => {
    const other = new Error('not a policy');
    assert.equal(
      caught(() =>
        withUnknownNames(() => {
          throw other;
        }),
      ),
      other,
    );
  });
});
