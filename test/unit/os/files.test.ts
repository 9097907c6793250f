/** The ACL and ownership checks (facts) that keep a policy file writable only by root. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aclWriters, ownershipFinding } from '../../../src/os/files.js';

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
const USER_OBJ = 1,
  USER = 2,
  GROUP_OBJ = 4,
  GROUP = 8,
  MASK = 0x10,
  OTHER = 0x20;
const UNDEFINED_ID = 0xffffffff;

describe('aclWriters', () => {
  it('finds nobody in a file without an ACL or with only the owner writing', () => {
    assert.deepEqual(aclWriters(undefined, 0), []);
    assert.deepEqual(
      aclWriters(
        acl([
          [USER_OBJ, 6, UNDEFINED_ID],
          [GROUP_OBJ, 4, UNDEFINED_ID],
          [OTHER, 4, UNDEFINED_ID],
        ]),
        0,
      ),
      [],
    );
  });

  it('names a user and a group that an ACL lets write, whatever the mask says', () => {
    const a = acl([
      [USER_OBJ, 6, UNDEFINED_ID],
      [USER, 6, 65534],
      [GROUP_OBJ, 4, UNDEFINED_ID],
      [GROUP, 2, 100],
      [MASK, 4, UNDEFINED_ID],
      [OTHER, 4, UNDEFINED_ID],
    ]);
    assert.deepEqual(aclWriters(a, 0), ['user 65534', 'group 100']);
  });

  it('counts the owning group when it is not root and may write, and root entries never', () => {
    assert.deepEqual(
      aclWriters(
        acl([
          [GROUP_OBJ, 6, UNDEFINED_ID],
          [USER, 7, 0],
        ]),
        50,
      ),
      ['group 50'],
    );
    assert.deepEqual(aclWriters(acl([[GROUP_OBJ, 6, UNDEFINED_ID]]), 0), []);
  });
});

describe('ownershipFinding', () => {
  const st = (mode: number, uid = 0, gid = 0) => ({ uid, gid, mode: 0o40000 | mode });
  it('names what it found, ACL writers first, then the owner, then write bits', () => {
    assert.equal(ownershipFinding(st(0o755), undefined), undefined);
    assert.equal(ownershipFinding(st(0o775), undefined), undefined, 'group root may write');
    assert.deepEqual(ownershipFinding(st(0o1777), undefined), { problem: 'world-writable', sticky: true });
    assert.deepEqual(ownershipFinding(st(0o757), undefined), { problem: 'world-writable', sticky: false });
    assert.deepEqual(ownershipFinding(st(0o775, 0, 100), undefined), { problem: 'group-writable', gid: 100 });
    assert.deepEqual(ownershipFinding(st(0o755, 1000), undefined), { problem: 'owner', uid: 1000 });
    assert.deepEqual(ownershipFinding(st(0o755, 1000), acl([[USER, 6, 65534]])), { problem: 'acl', writers: ['user 65534'] });
  });
});
