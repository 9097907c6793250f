/** What `lowport off` says of the rules the policy keeps: of the main file, of a drop-in, or of each file when several hold rules. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policyKept } from '../../../src/cli/apply.js';

const policy = '/etc/lowport/policy';

describe('lowport off: the rules the policy keeps', () => {
  it('names the main file when it alone holds rules, as before drop-ins existed', () => {
    assert.equal(
      policyKept({ policy, policyRules: 3, policyFiles: [{ file: policy, rules: 3 }] }),
      'The policy file /etc/lowport/policy stays as it is, with its 3 rules: the next `lowport apply`, `grant`, `revoke`, `reserve` or ' +
        '`unreserve` makes all of them live again. To drop a rule for good, `lowport revoke` or `lowport unreserve` it, or edit the file.',
    );
  });

  it('names every file with its count when drop-ins hold rules too, and says how to revoke from a drop-in', () => {
    assert.equal(
      policyKept({
        policy,
        policyRules: 4,
        policyFiles: [
          { file: policy, rules: 1 },
          { file: '/etc/lowport/policy.d/10-web.policy', rules: 2 },
          { file: '/etc/lowport/policy.d/dns.policy', rules: 1 },
        ],
      }),
      'The policy files stay as they are, with their 4 rules (1 in /etc/lowport/policy, 2 in /etc/lowport/policy.d/10-web.policy, ' +
        '1 in /etc/lowport/policy.d/dns.policy): the next `lowport apply`, `grant`, `revoke`, `reserve` or `unreserve` makes all of them ' +
        'live again. To drop a rule for good, `lowport revoke` or `lowport unreserve` it (with --file NAME for one in ' +
        '/etc/lowport/policy.d/NAME.policy), or edit its file.',
    );
  });

  it('names the drop-in, not the main file, when only a drop-in holds rules', () => {
    const text = policyKept({ policy, policyRules: 1, policyFiles: [{ file: '/etc/lowport/policy.d/web.policy', rules: 1 }] });
    assert.match(
      text ?? '',
      /^The policy file \/etc\/lowport\/policy\.d\/web\.policy stays as it is, with its 1 rule: .* makes it live again\./,
    );
    assert.match(text ?? '', /with --file NAME for one in \/etc\/lowport\/policy\.d\/NAME\.policy\), or edit the file\.$/);
  });

  it('says nothing when no file keeps a rule', () => {
    assert.equal(policyKept({ policy, policyRules: 0, policyFiles: [] }), undefined);
    assert.equal(policyKept({ policy }), undefined);
  });
});
