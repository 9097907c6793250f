/** The refusal of a file or directory that is not root's alone, worded for its role. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GENERATED, ownershipProblem } from '../../../src/policy-file/trust.js';

describe('ownershipProblem', () => {
  const dir = (mode: number, uid = 0, gid = 0) => ({ uid, gid, mode: 0o40000 | mode });
  it('refuses a directory others can write even with the sticky bit (as /tmp), and says to use a root-only one', () => {
    const p = ownershipProblem('/tmp', dir(0o1777), 'directory', undefined);
    assert.match(p?.message ?? '', /the policy directory \/tmp is writable by everyone \(sticky/);
    assert.match(p?.fix ?? '', /only root can write/);
  });
  it("accepts root's 0755 and root-group-writable directories, refuses another owner or group", () => {
    assert.equal(ownershipProblem('/etc', dir(0o755), 'directory', undefined), undefined);
    assert.equal(ownershipProblem('/etc', dir(0o775), 'directory', undefined), undefined);
    assert.match(ownershipProblem('/d', dir(0o775, 0, 100), 'directory', undefined)?.message ?? '', /writable by group 100/);
    assert.match(ownershipProblem('/d', dir(0o755, 1000), 'directory', undefined)?.message ?? '', /owned by uid 1000/);
  });
});

describe('ownershipProblem wording', () => {
  const cases: [string, { uid: number; gid: number; mode: number }, 'file' | 'directory', RegExp, RegExp][] = [
    [
      '/etc/lowport/policy',
      { uid: 1000, gid: 0, mode: 0o100644 },
      'file',
      /^the policy file \/etc\/lowport\/policy is owned by uid 1000, not root, so that user could grant themselves any port$/,
      /^chown root:root \/etc\/lowport\/policy && chmod 644/,
    ],
    [
      '/etc/lowport/policy',
      { uid: 0, gid: 0, mode: 0o100666 },
      'file',
      /^the policy file \/etc\/lowport\/policy is world-writable, so anyone could grant/,
      /chmod 644/,
    ],
    [
      '/etc/lowport',
      { uid: 0, gid: 50, mode: 0o40775 },
      'directory',
      /^the policy directory \/etc\/lowport is writable by group 50, so its members could/,
      /chmod go-w \/etc\/lowport$/,
    ],
  ];
  for (const [path, st, what, message, fix] of cases) {
    it(`${what} ${path} mode ${st.mode.toString(8)} uid ${st.uid} gid ${st.gid}`, () => {
      const p = ownershipProblem(path, st, what, undefined);
      assert.match(p?.message ?? '', message);
      assert.match(p?.fix ?? '', fix);
    });
  }
  it('names the role and its risk', () => {
    assert.match(
      ownershipProblem('/x', { uid: 0, gid: 0, mode: 0o41777 }, 'directory', undefined, GENERATED)?.message ?? '',
      /^the output directory \/x is writable by everyone \(sticky.*plant a link there/,
    );
  });
});
