/** The ACL check that keeps a policy file writable only by root. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aclWriters, ownershipProblem } from '../../../src/os/files.js';

/** A system.posix_acl_access value: version 2, then (tag, perm, id) entries. */
function acl(entries: [number, number, number][]): Buffer {
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + i * 8);
    b.writeUInt16LE(perm, 6 + i * 8);
    b.writeUInt32LE(id, 8 + i * 8);
  });
  return b;
}
const USER_OBJ = 1, USER = 2, GROUP_OBJ = 4, GROUP = 8, MASK = 0x10, OTHER = 0x20;
const UNDEFINED_ID = 0xffffffff;

describe('aclWriters', () => {
  it('finds nobody in a file without an ACL or with only the owner writing', () => {
    assert.deepEqual(aclWriters(undefined, 0), []);
    assert.deepEqual(aclWriters(acl([[USER_OBJ, 6, UNDEFINED_ID], [GROUP_OBJ, 4, UNDEFINED_ID], [OTHER, 4, UNDEFINED_ID]]), 0), []);
  });

  it('names a user and a group that an ACL lets write, whatever the mask says', () => {
    const a = acl([[USER_OBJ, 6, UNDEFINED_ID], [USER, 6, 65534], [GROUP_OBJ, 4, UNDEFINED_ID], [GROUP, 2, 100], [MASK, 4, UNDEFINED_ID], [OTHER, 4, UNDEFINED_ID]]);
    assert.deepEqual(aclWriters(a, 0), ['user 65534', 'group 100']);
  });

  it('counts the owning group when it is not root and may write, and root entries never', () => {
    assert.deepEqual(aclWriters(acl([[GROUP_OBJ, 6, UNDEFINED_ID], [USER, 7, 0]]), 50), ['group 50']);
    assert.deepEqual(aclWriters(acl([[GROUP_OBJ, 6, UNDEFINED_ID]]), 0), []);
  });
});

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
