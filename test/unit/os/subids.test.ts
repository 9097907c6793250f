import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSubordinateIds } from '../../../src/os/subids.js';

describe('parseSubordinateIds (/etc/subuid, /etc/subgid)', () => {
  it('reads owner:start:count lines, owners by name or uid', () => {
    assert.deepEqual(parseSubordinateIds('alice:100000:65536\n1001:165536:65536\n'), [
      { owner: 'alice', start: 100000, count: 65536 },
      { owner: '1001', start: 165536, count: 65536 },
    ]);
  });

  it('skips comments, blank lines, malformed lines, empty and overflowing ranges', () => {
    assert.deepEqual(parseSubordinateIds('# c\n\nbob:1:2:3\ncarol:x:10\n:5:5\ndave:10:0\neve:4294967295:2\n  frank:200:10  \r\n'), [
      { owner: 'frank', start: 200, count: 10 },
    ]);
  });
});
