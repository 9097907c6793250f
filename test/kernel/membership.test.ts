/**
 * Kernel tests (root): who counts as a member of a group (README, The policy
 * file). The issue's minimal case: `grant 22 group dtg1`, with dt1's passwd
 * group dtg1 (not listed in /etc/group), running with gid dtg2, must bind;
 * under `reserve 22 group dtg1` too, while others are refused.
 *
 * The users and groups are real entries of a passwd and a group file that
 * getent reads, but they exist only inside private mount namespaces
 * (`unshare --mount` with copies of /etc/passwd and /etc/group bound over
 * them), so nothing is added to the machine's user database and nothing
 * needs removing; the copies go with the sandbox's directory. The clients
 * bind with numeric ids (setpriv), which need no names.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { binds, CLI, kernelSkipReason, reservedErrno, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

/** Ids no entry of this machine has (checked in `before`). */
const DT1 = 39_991;
const DT2 = 39_992;
const DTG1 = 39_995;
const DTG2 = 39_996;

describe('group membership as the README says: listed members, passwd-primary users, the real gid', { skip }, () => {
  let box: Sandbox;
  let passwd: string;
  let group: string;
  before(() => {
    for (const id of [DT1, DT2, DTG1, DTG2]) {
      assert.notEqual(spawnSync('getent', ['passwd', String(id)]).status, 0, `uid ${id} exists here`);
      assert.notEqual(spawnSync('getent', ['group', String(id)]).status, 0, `gid ${id} exists here`);
    }
    box = new Sandbox('membership');
    passwd = join(box.dir, 'passwd');
    group = join(box.dir, 'group');
    // dt1's passwd group is dtg1, which lists nobody; dt2's is dtg2.
    writeFileSync(
      passwd,
      `${readFileSync('/etc/passwd', 'utf8')}dt1:x:${DT1}:${DTG1}::/nonexistent:/usr/sbin/nologin\ndt2:x:${DT2}:${DTG2}::/nonexistent:/usr/sbin/nologin\n`,
      { mode: 0o644 },
    );
    writeFileSync(group, `${readFileSync('/etc/group', 'utf8')}dtg1:x:${DTG1}:\ndtg2:x:${DTG2}:\n`, { mode: 0o644 });
  });
  after(() => box?.dispose());

  /** The CLI as root, seeing dt1, dt2, dtg1 and dtg2. */
  function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const script = 'mount --bind "$0" /etc/passwd && mount --bind "$1" /etc/group && shift && exec "$@"';
    return spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', 'sh', '-c', script, passwd, group, process.execPath, CLI, ...args, ...box.args],
      {
        encoding: 'utf8',
      },
    );
  }

  const tcp = (port: number) => binds(port, ['127.0.0.1', '::1'], ['tcp']);

  it('grant 22 group dtg1: dt1, whose passwd group it is, binds while running with gid dtg2; dt2 does not', () => {
    box.writePolicy('grant 22 group dtg1\n');
    const r = cli('apply');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(box.probe({ uid: DT1, gid: DTG2 }, tcp(22)), ['ok', 'ok']);
    assert.deepEqual(box.probe({ uid: DT2, gid: DTG2 }, tcp(22)), ['EACCES', 'EACCES']);
    // Not a member in the database, but running with dtg1 as its real gid: a member for the hook.
    assert.deepEqual(box.probe({ uid: DT2, gid: DTG1 }, tcp(22)), ['ok', 'ok']);
    const listed = cli('list');
    assert.match(listed.stdout, /grant 22 user dt1 \(uid 39991\) \+ group dtg1 \(gid 39995\)/, listed.stdout);
  });

  it('reserve 22 group dtg1: dt1 with gid dtg2 binds; dt2 and nobody are refused', () => {
    box.writePolicy('reserve 22 group dtg1\n');
    const r = cli('apply');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(box.probe({ uid: DT1, gid: DTG2 }, tcp(22)), ['ok', 'ok']);
    const refused = reservedErrno();
    assert.deepEqual(box.probe({ uid: DT2, gid: DTG2 }, tcp(22)), [refused, refused]);
    assert.deepEqual(box.probe({}, tcp(22)), [refused, refused]);
    // `list` does not mistake dt1 for a member who joined or left since the apply.
    const listed = cli('list');
    assert.doesNotMatch(listed.stdout, /changed since/, listed.stdout);
  });
});
