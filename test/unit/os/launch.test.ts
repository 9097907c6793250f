/**
 * Unit tests (no root): the one place uids and gids are checked (os/nss.ts parseId and
 * userByNameOrUid, os/launch.ts checkIdentity and runsAs).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LowportError } from '../../../src/errors.js';
import { checkIdentity, runsAs } from '../../../src/os/launch.js';
import { MAX_ID, parseGroup, parseId, parsePasswd, userByNameOrUid } from '../../../src/os/nss.js';
import { spawnSync } from 'node:child_process';

describe('uid and gid validation', () => {
  it('parseId takes only plain decimal from 0 to 2^32-2', () => {
    assert.equal(parseId('0'), 0);
    assert.equal(parseId('65534'), 65534);
    assert.equal(parseId('3000000000'), 3000000000);
    assert.equal(parseId(String(MAX_ID)), 4294967294);
    for (const bad of ['4294967295', '4294967296', '99999999999', '00', '01', '+1', '-1', ' 1', '1 ', '1e3', '0x10', '1.0', '', '１'])
      assert.equal(parseId(bad), undefined, bad);
  });

  it('userByNameOrUid refuses number-like keys that are not valid ids, with a usage error, before any lookup', () => {
    for (const bad of ['4294967295', '4294967296', '00', '+0', '-1', ' 0', '1e3']) {
      assert.throws(
        () => userByNameOrUid(bad, 'Give a uid.'),
        (e: unknown) =>
          e instanceof LowportError &&
          e.code === 'E_USAGE' &&
          /is not a valid uid/.test(e.message) &&
          /4294967295 is \(uid_t\)-1/.test(e.hint ?? ''),
        bad,
      );
    }
  });

  it("userByNameOrUid refuses a uid without a user whose number is a group's gid (it would run with that group), and takes one that is not", () => {
    const users = new Set(parsePasswd(spawnSync('getent', ['passwd'], { encoding: 'utf8' }).stdout).map((u) => u.uid));
    const groups = parseGroup(spawnSync('getent', ['group'], { encoding: 'utf8' }).stdout);
    // A group whose number no user has (on Debian: utmp 43, staff 50, ...): an unnamed uid of that number would get its gid.
    const privileged = groups.find((g) => g.gid > 0 && !users.has(g.gid));
    assert.ok(privileged !== undefined, 'this machine has no group without a user of the same number');
    assert.throws(
      () => userByNameOrUid(String(privileged.gid), 'Give a user.'),
      (e: unknown) => e instanceof LowportError && e.code === 'E_USAGE' && e.message.includes(`the group '${privileged.name}'`),
    );
    let free = 3000000000;
    while (users.has(free) || groups.some((g) => g.gid === free)) free++;
    assert.deepEqual(
      { ...userByNameOrUid(String(free), 'Give a user.') },
      { name: String(free), uid: free, gid: free, home: '/', shell: '/bin/sh', known: false },
    );
  });

  it('checkIdentity refuses root, (uid_t)-1, ids past 32 bits and non-integers, for the uid and the gid', () => {
    for (const id of [0, 4294967295, 4294967296, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => checkIdentity({ uid: id, gid: 100 }),
        (e: unknown) => e instanceof LowportError && e.code === 'E_USAGE' && /uid/.test(e.message),
        `uid ${id}`,
      );
      assert.throws(
        () => checkIdentity({ uid: 100, gid: id }),
        (e: unknown) => e instanceof LowportError && e.code === 'E_USAGE' && /gid/.test(e.message),
        `gid ${id}`,
      );
    }
    checkIdentity({ uid: 65534, gid: 65534 });
    checkIdentity({ uid: 3000000000, gid: MAX_ID });
  });

  it('runsAs wants all four uids and gids of /proc/PID/status to be the expected ones', () => {
    const status = (u: string, g: string) => `Name:\tx\nUid:\t${u}\nGid:\t${g}\n`;
    const who = { uid: 65534, gid: 65534 };
    assert.equal(runsAs(status('65534\t65534\t65534\t65534', '65534\t65534\t65534\t65534'), who), true);
    assert.equal(runsAs(status('65534\t65534\t0\t65534', '65534\t65534\t65534\t65534'), who), false, 'saved uid 0');
    assert.equal(runsAs(status('65534\t65534\t65534\t65534', '65534\t0\t65534\t65534'), who), false, 'effective gid 0');
    assert.equal(runsAs(status('0\t0\t0\t0', '0\t0\t0\t0'), who), false);
    assert.equal(runsAs('Name:\tx\n', who), false);
  });
});
