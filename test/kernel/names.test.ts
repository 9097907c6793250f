/**
 * Kernel tests (root): names that stop resolving (issue 9, finding 3). One
 * unknown name costs only its own line: the rest of the policy goes live, a
 * reservation of an unknown owner refuses everyone but root, edits of other
 * lines still work. A user deleted and their uid given to someone else is
 * flagged by list and doctor, and apply drops the grant.
 *
 * Users that come and go exist only inside private mount namespaces
 * (`unshare --mount` with a bind-mounted copy of /etc/passwd, which getent
 * reads): nothing is added to the machine's user database.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport } from '../../src/doctor/doctor.js';
import { binds, CLI, kernelSkipReason, reservedErrno, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const GHOST = 'no-such-user-xyz';

describe('names that do not resolve', { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('names');
  });
  after(() => box?.dispose());

  it('makes live everything that resolves, exits 1 naming each dead line, and keeps a reservation of an unknown owner for root alone', async () => {
    box.writePolicy(`grant 80 user nobody\ngrant 81 user ${GHOST}\nreserve 90 user ${GHOST}\n`);
    const r = await box.cli('apply');
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`policy:2:15-30: error: unknown user '${GHOST}'.*this grant is not live`));
    assert.match(r.stderr, new RegExp(`policy:3:17-32: error: unknown user '${GHOST}'.*reservation of 90 still refuses everyone but root`));
    assert.match(r.stderr, new RegExp(`remove the line with: lowport revoke 81 --user ${GHOST} --policy ${box.policy} `));
    assert.match(r.stdout, /2 rules live/);
    // The grant that resolves is live; the dead one is not.
    assert.deepEqual(box.probe({}, [...binds(80, ['127.0.0.1'], ['tcp']), ...binds(81, ['127.0.0.1'], ['tcp'])]), ['ok', 'EACCES']);
    // Fail closed: the reservation's port refuses uid 65534, even with CAP_NET_BIND_SERVICE; root still binds it.
    const refused = reservedErrno();
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1', '::1'])), [refused, refused, refused, refused]);
    assert.deepEqual(box.probe({ caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), [refused]);
    assert.deepEqual(box.probe({ uid: 0, gid: 0, caps: ['net_bind_service'] }, binds(90, ['127.0.0.1'], ['tcp'])), ['ok']);
  });

  it('gives scripts the dead lines in --json, with a non-zero exit', async () => {
    const r = await box.cli('apply', '--json');
    assert.equal(r.code, 1);
    const result = JSON.parse(r.stdout) as { unresolved: { rule: { line: number }; effect: string; fix: string }[] };
    assert.deepEqual(
      result.unresolved.map((u) => [u.rule.line, u.effect]),
      [
        [2, 'left-out'],
        [3, 'root-only'],
      ],
    );
    assert.match(result.unresolved[1]?.fix ?? '', new RegExp(`^lowport revoke --all --user ${GHOST} --policy `));
    const check = await box.cli('apply', '--check');
    assert.equal(check.code, 1);
    assert.match(check.stderr, /everything else would be live/);
  });

  it('lists the reservation kept for root and warns about the dead lines', async () => {
    const r = await box.cli('list');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /3 +reserve 90 nobody but root \(its owner does not exist\)/);
    assert.match(
      r.stdout,
      new RegExp(
        `${box.policy}:2:15-30: warning: user ${GHOST} does not exist: the grant is not live; or remove the line: lowport revoke 81.*\ngrant 81 user ${GHOST}\n {14}\\^~{15}\n`,
      ),
    );
  });

  it('still edits other lines, warning about each dead line with the command that removes it, and that command works', async () => {
    const r = await box.cli('grant', '82', '--user', 'nobody');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`policy:2:15-30: warning: unknown user '${GHOST}'`));
    const fix = /remove the line with: lowport (revoke --all [^\n]*)/.exec(r.stderr)?.[1];
    assert.ok(fix !== undefined, r.stderr);
    assert.deepEqual(box.probe({}, binds(82, ['127.0.0.1'], ['tcp'])), ['ok']);
    // The printed command, pasted (the sandbox's paths have no characters a shell would treat specially).
    const removed = await box.cli(
      ...fix.split(' ').filter((w) => !['--policy', '--cgroup', '--pin-dir'].includes(w) && !w.startsWith('/')),
    );
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!box.readPolicy().includes(GHOST), box.readPolicy());
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('refuses a grant for an unknown user given on the command line, shown against the command line with exit 2, and changes nothing', async () => {
    const text = box.readPolicy();
    const live = (await box.cli('list', '--json')).stdout;
    for (const command of ['grant', 'reserve']) {
      const r = await box.cli(command, '83', '--user', GHOST);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(
        r.stderr.startsWith(
          `command line:1:1-${GHOST.length}: error: --user: unknown user '${GHOST}': no such user in the passwd database (getent passwd ${GHOST})\n` +
            `${GHOST}\n^${'~'.repeat(GHOST.length - 1)}\n`,
        ),
        r.stderr,
      );
      assert.doesNotMatch(r.stderr, /policy:\d+/);
    }
    assert.equal(box.readPolicy(), text);
    assert.equal((await box.cli('list', '--json')).stdout, live);
  });

  it('reports syntax errors and unknown names in one run, for apply and for an edit, and changes nothing', async () => {
    const before = box.readPolicy();
    const live = (await box.cli('list', '--json')).stdout;
    const broken = `grant 80 user nobody\ngrant 81 user ${GHOST}\ngrnat 82 user nobody\n`;
    box.writePolicy(broken);
    try {
      for (const args of [['apply'], ['apply', '--check'], ['grant', '84', '--user', 'nobody']]) {
        const r = await box.cli(...args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`policy:2:15-30: error: unknown user '${GHOST}'`), args.join(' '));
        assert.match(
          r.stderr,
          /policy:3:1-5: error: unknown statement 'grnat': expected 'grant', 'reserve', 'forward' or 'log' \(did you mean 'grant'\?\)/,
        );
        assert.match(r.stderr, /lowport: 2 errors in the policy\. Fix the lines above; nothing was changed\.\n$/);
      }
      assert.equal(box.readPolicy(), broken);
    } finally {
      box.writePolicy(before);
    }
    assert.equal((await box.cli('list', '--json')).stdout, live);
  });

  it('says once that revoke --all has nothing to revoke', async () => {
    const r = await box.cli('revoke', '--all', '--user', 'daemon');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.match(/nothing to revoke/g)?.length, 1, r.stdout + r.stderr);
  });
});

describe('ids in a subordinate range', { skip }, () => {
  let box: Sandbox;
  before(() => {
    box = new Sandbox('subuid');
  });
  after(() => box?.dispose());

  it('grant and list warn when a granted uid lies in some user’s /etc/subuid range', () => {
    const subuid = join(box.dir, 'subuid');
    writeFileSync(subuid, 'nobody:4000000:65536\n', { mode: 0o644 });
    const run = (args: string[]) =>
      spawnSync(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          'mount --bind "$0" /etc/subuid && exec "$@"',
          subuid,
          process.execPath,
          CLI,
          ...args,
          ...box.args,
        ],
        { encoding: 'utf8' },
      );
    const granted = run(['grant', '85', '--user', '4000500']);
    assert.equal(granted.status, 0, granted.stderr);
    const note = "uid 4000500 is in nobody's subordinate range (/etc/subuid: 4000000-4065535): nobody's containers can use it";
    assert.ok(granted.stderr.includes(`lowport: warning: ${note}`), granted.stderr);
    const listed = run(['list']);
    const line = box.readPolicy().split('\n').indexOf('grant 85 user 4000500') + 1;
    assert.ok(
      listed.stdout.includes(`${box.policy}:${line}:15-21: warning: ${note}\ngrant 85 user 4000500\n              ^~~~~~~\n`),
      listed.stdout,
    );
    // Outside the range: no warning.
    const other = run(['grant', '86', '--user', '3999999']);
    assert.doesNotMatch(`${other.stdout}${other.stderr}`, /subordinate/);
  });
});

describe('a deleted user whose uid is reused', { skip }, () => {
  let box: Sandbox;
  // A uid no account on this machine has (checked below); the users holding it exist only in private mount namespaces.
  const uid = 3999000 + (process.pid % 1000);
  const alice = `lpt-alice-${process.pid}`;
  const bob = `lpt-bob-${process.pid}`;
  let withAlice: string;
  let withBob: string;

  before(() => {
    box = new Sandbox('reuse');
    assert.notEqual(spawnSync('getent', ['passwd', String(uid)]).status, 0, `uid ${uid} exists here`);
    const passwd = readFileSync('/etc/passwd', 'utf8');
    withAlice = join(box.dir, 'passwd-alice');
    withBob = join(box.dir, 'passwd-bob');
    writeFileSync(withAlice, `${passwd}${alice}:x:${uid}:${uid}::/nonexistent:/usr/sbin/nologin\n`, { mode: 0o644 });
    writeFileSync(withBob, `${passwd}${bob}:x:${uid}:${uid}::/nonexistent:/usr/sbin/nologin\n`, { mode: 0o644 });
  });
  after(() => box?.dispose());

  /** The built CLI in a private mount namespace where /etc/passwd is `passwd`. */
  function cliWith(passwd: string, args: string[]): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount --bind "$0" /etc/passwd && exec "$@"',
        passwd,
        process.execPath,
        CLI,
        ...args,
        ...box.args,
      ],
      { encoding: 'utf8' },
    );
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('is flagged by list and doctor, naming the old and the new holder, and apply drops the grant and keeps the reservation closed', () => {
    box.writePolicy(`grant 85 user ${alice}\nreserve 86 user ${alice}\n`);
    const applied = cliWith(withAlice, ['apply']);
    assert.equal(applied.code, 0, applied.stderr);
    assert.deepEqual(box.probe({ uid }, [...binds(85, ['127.0.0.1'], ['tcp']), ...binds(86, ['127.0.0.1'], ['tcp'])]), ['ok', 'ok']);

    // alice is deleted and bob gets her uid.
    const listed = cliWith(withBob, ['list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.doesNotMatch(listed.stdout, /the live rules are what the file says/);
    assert.match(listed.stdout, /users or groups it names have changed since/);
    assert.match(
      listed.stdout,
      new RegExp(
        `:1:15-\\d+: warning: user ${alice} \\(uid ${uid}\\): ${alice} no longer exists; uid ${uid} is now ${bob}, and the live grant still holds it: run \`lowport apply\` to drop the grant; or remove the line: lowport revoke 85 --user ${alice}`,
      ),
    );
    assert.match(
      listed.stdout,
      new RegExp(`:2:17-\\d+: warning: user ${alice} \\(uid ${uid}\\): .* run \`lowport apply\` to keep its ports for root alone`),
    );

    const doctor = cliWith(withBob, ['doctor', '--json', '--port', '85', '--user', 'nobody']);
    const report = JSON.parse(doctor.stdout) as DoctorReport;
    const flagged = report.checks.filter((c) => c.id === 'live-names');
    assert.equal(flagged.length, 2, JSON.stringify(report.checks));
    assert.ok(flagged.every((c) => c.status === 'fail' && c.detail.includes(`uid ${uid} is now ${bob}`)));

    const reapplied = cliWith(withBob, ['apply']);
    assert.equal(reapplied.code, 1);
    assert.match(reapplied.stderr, new RegExp(`unknown user '${alice}'`));
    // bob does not inherit alice's grant, and the reservation now refuses him too.
    assert.deepEqual(box.probe({ uid }, [...binds(85, ['127.0.0.1'], ['tcp']), ...binds(86, ['127.0.0.1'], ['tcp'])]), [
      'EACCES',
      reservedErrno(),
    ]);
    assert.deepEqual(box.probe({ uid: 0, gid: 0, caps: ['net_bind_service'] }, binds(86, ['127.0.0.1'], ['tcp'])), ['ok']);
  });
});
