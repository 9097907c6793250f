/**
 * `lowport log enable|disable`: which file of the policy the edit may change
 * (logHolders, enableTarget, disableTarget), and what the refusals say to do.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LowportError } from '../../../src/errors.js';
import { disableTarget, enableTarget, logCommand, logHolders } from '../../../src/ops/logging.js';
import { parsePolicyFiles } from '../../../src/policy/sources.js';

const PATH = '/etc/lowport/policy';
const OPTIONS = { policy: PATH };

function holders(main: string, dropins: [string, string][] = []) {
  return logHolders(parsePolicyFiles({ main, dropins: dropins.map(([name, text]) => ({ name, text })) }, PATH), PATH);
}

function refusal(fn: () => unknown): LowportError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof LowportError, String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

describe('the log statements of a policy, each in its file', () => {
  it('places a statement of the policy file and of a drop-in at their own lines', () => {
    assert.deepEqual(holders('# main\nlog grants\n', [['audit.policy', '# audit\n\nlog refusals\n']]), [
      { dropin: undefined, name: 'policy', line: 2, what: 'grants' },
      { dropin: 'audit.policy', name: 'policy.d/audit.policy', line: 3, what: 'refusals' },
    ]);
    assert.deepEqual(holders('grant 80 user nobody\nlog all\n'), [{ dropin: undefined, name: 'policy', line: 2, what: 'all' }]);
  });
});

describe('lowport log enable: the file it edits', () => {
  it("edits the file asked for when no other file holds a 'log' statement (its own may)", () => {
    assert.equal(enableTarget(OPTIONS, holders('log grants\n'), undefined, 'all'), undefined);
    assert.equal(enableTarget(OPTIONS, holders('', [['audit.policy', 'log all\n']]), 'audit.policy', 'refusals'), 'audit.policy');
    assert.equal(enableTarget(OPTIONS, [], 'audit.policy', 'all'), 'audit.policy');
  });

  it('refuses when another file holds one, naming it with file:line and the command that edits it there', () => {
    const e = refusal(() =>
      enableTarget(OPTIONS, holders('grant 80 user nobody\n', [['audit.policy', '\nlog all\n']]), undefined, 'refusals'),
    );
    assert.equal(e.code, 'E_POLICY_CLASH');
    assert.match(e.message, /policy\.d\/audit\.policy:2 \('log all'\); nothing was changed$/);
    assert.match(e.hint ?? '', /`lowport log enable refusals --file audit --policy \/etc\/lowport\/policy`/);
    assert.match(e.hint ?? '', /first `lowport log disable --file audit --policy \/etc\/lowport\/policy`/);
    // The other way round: the policy file's statement, edited without --file.
    const back = refusal(() => enableTarget({}, holders('log grants\n', [['audit.policy', '']]), 'audit.policy', 'all'));
    assert.match(back.message, /policy:1 \('log grants'\)/);
    assert.match(back.hint ?? '', /`lowport log enable all`;/);
  });
});

describe('lowport log disable: the file it edits', () => {
  it('finds the one file that holds the statement, wherever it is', () => {
    assert.deepEqual(disableTarget(OPTIONS, holders('grant 80 user nobody\n', [['audit.policy', 'log all\nlog grants\n']]), undefined), {
      found: true,
      dropin: 'audit.policy',
    });
    assert.deepEqual(disableTarget(OPTIONS, holders('log all\n'), undefined), { found: true, dropin: undefined });
  });

  it('finds nothing to do when no file has one, or the file asked for has none', () => {
    assert.deepEqual(disableTarget(OPTIONS, holders('grant 80 user nobody\n'), undefined), { found: false });
    assert.deepEqual(disableTarget(OPTIONS, holders('log all\n', [['web.policy', '']]), 'web.policy'), { found: false });
  });

  it('refuses when several files hold one, with a command per file', () => {
    const e = refusal(() => disableTarget({}, holders('log grants\n', [['audit.policy', 'log refusals\n']]), undefined));
    assert.equal(e.code, 'E_POLICY_CLASH');
    assert.match(e.message, /in 2 files of the policy: policy:1 \('log grants'\), policy\.d\/audit\.policy:1 \('log refusals'\)/);
    assert.equal(e.hint, 'An edit changes one file: run `lowport log disable`, then `lowport log disable --file audit`.');
  });

  it('says to edit by hand a drop-in that --file cannot name', () => {
    assert.match(logCommand(OPTIONS, ['disable'], '-odd.policy'), /^edit \/etc\/lowport\/policy\.d\/-odd\.policy by hand/);
  });
});
