/**
 * Kernel tests (root): drop-in policy files (PATH.d/*.policy) with real
 * applies and real binds by uid 65534. A drop-in's grant goes live with the
 * main file's; one bad drop-in (a syntax error, group-writable, a symlink,
 * another user's, an unsafe directory) stops the apply and nothing live
 * changes; `grant --file` writes a drop-in through the one edit transaction;
 * `list` names each rule's file; the fingerprint covers the drop-ins.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { binds, kernelSkipReason, NOBODY, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

interface Listed {
  file: string;
  rules: { line: number; file?: string; ports: string; action: string }[];
}

describe('drop-in policy files', { skip }, () => {
  let box: Sandbox;
  let dropins: string;
  const tcp = (port: number) => box.probe({}, binds(port, ['127.0.0.1'], ['tcp']))[0];
  const writeDropin = (name: string, text: string, mode = 0o644): string => {
    const path = join(dropins, name);
    rmSync(path, { force: true });
    writeFileSync(path, text, { mode });
    chmodSync(path, mode);
    return path;
  };

  before(() => {
    box = new Sandbox('dropins');
    dropins = `${box.policy}.d`;
  });
  after(() => box?.dispose());

  it('applies a grant of a drop-in for uid 65534 (EACCES before, a bind after), and list names its file', async () => {
    box.writePolicy('# main\ngrant 80 user nobody\n');
    assert.equal((await box.cli('apply')).code, 0);
    const plain = await box.cli('list');
    // Without drop-ins, the LINE column is the main file's line alone, as before drop-ins existed.
    assert.match(plain.stdout, /^ {3}2 {2}grant 80 user nobody \(uid 65534\) {2}0$/m);

    mkdirSync(dropins, { mode: 0o755 });
    writeDropin('10-web.policy', '# the web role\n\ngrant 81 user nobody\n');
    writeDropin('README', 'not a policy: skipped\n');
    writeDropin('10-web.policy~', 'grant 89 user nobody\n');
    writeDropin('.10-web.policy.swp', 'grant 89 user nobody\n');
    writeDropin('10-web.policy.dpkg-old', 'grant 89 user nobody\n');
    assert.equal(tcp(81), 'EACCES');
    const stale = JSON.parse((await box.cli('list', '--json')).stdout) as Listed;
    assert.equal(stale.file, 'differs', 'a new drop-in is a change of the policy');

    const check = await box.cli('apply', '--check');
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /OK, 2 rules/);
    const r = await box.cli('apply');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(tcp(80), 'ok');
    assert.equal(tcp(81), 'ok');
    assert.equal(tcp(89), 'EACCES', 'backups, dotfiles and dpkg leftovers are not read');

    const listed = JSON.parse((await box.cli('list', '--json')).stdout) as Listed;
    assert.equal(listed.file, 'in-sync');
    assert.deepEqual(
      listed.rules.map((x) => [x.file, x.line, x.ports]),
      [
        [box.policy, 2, '80'],
        [join(dropins, '10-web.policy'), 3, '81'],
      ],
    );
    const human = await box.cli('list');
    assert.match(human.stdout, /^ {23}2 {2}grant 80 user nobody \(uid 65534\) {2}1$/m);
    assert.match(human.stdout, /^policy\.d\/10-web\.policy:3 {2}grant 81 user nobody \(uid 65534\) {2}1$/m);

    // A changed drop-in is a changed policy: list and apply --check see it.
    writeDropin('10-web.policy', '# the web role\n\ngrant 81,82 user nobody\n');
    assert.equal((JSON.parse((await box.cli('list', '--json')).stdout) as Listed).file, 'differs');
    assert.equal((await box.cli('apply')).code, 0);
    assert.equal(tcp(82), 'ok');
  });

  /** One bad drop-in: apply fails naming it, the old grants stay live, the drop-in's grant does not go live. */
  async function refusedWhole(plant: () => void, error: RegExp): Promise<void> {
    writeDropin('10-web.policy', 'grant 81 user nobody\n');
    rmSync(join(dropins, '50-new.policy'), { force: true });
    assert.equal((await box.cli('apply')).code, 0);
    plant();
    const r = await box.cli('apply');
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, error);
    assert.equal(tcp(80), 'ok', 'the main file’s grant stays live');
    assert.equal(tcp(81), 'ok', 'the other drop-in’s grant stays live');
    assert.equal(tcp(84), 'EACCES', 'nothing of the bad apply is live');
    rmSync(join(dropins, '50-new.policy'), { force: true });
  }

  it('refuses a drop-in with a syntax error, at its file:line:col, with every file unchanged live', async () => {
    await refusedWhole(
      () => writeDropin('50-new.policy', 'grant 84 user nobody\ngrant 84 usr nobody\n'),
      /policy\.d\/50-new\.policy:2:10-12: error: expected 'user NAME', 'group NAME' or 'everyone' after the ports, found 'usr'/,
    );
  });

  it('refuses a group-writable drop-in', async () => {
    await refusedWhole(() => {
      const path = writeDropin('50-new.policy', 'grant 84 user nobody\n', 0o664);
      chownSync(path, 0, 100);
    }, /the policy drop-in file \S+\/policy\.d\/50-new\.policy is writable by group 100, so its members could grant themselves any port; lowport refuses to use it/);
  });

  it('refuses a drop-in owned by another user than root', async () => {
    await refusedWhole(() => {
      const path = writeDropin('50-new.policy', 'grant 84 user nobody\n');
      chownSync(path, NOBODY, NOBODY);
    }, /the policy drop-in file \S+\/50-new\.policy is owned by uid 65534, not root/);
  });

  it('refuses a drop-in that is a symlink, even to a root-owned file', async () => {
    await refusedWhole(() => {
      const target = join(box.dir, 'elsewhere.policy');
      writeFileSync(target, 'grant 84 user nobody\n', { mode: 0o644 });
      symlinkSync(target, join(dropins, '50-new.policy'));
    }, /the policy drop-in \S+\/50-new\.policy is a symlink, and drop-ins are opened without following links/);
  });

  it('refuses a drop-in directory others can write', async () => {
    await refusedWhole(() => {
      writeDropin('50-new.policy', 'grant 84 user nobody\n');
      chmodSync(dropins, 0o777);
    }, /the policy drop-in directory \S+\/policy\.d is world-writable/);
    chmodSync(dropins, 0o755);
  });

  it('refuses a reserved port with an owner in each of two files: error at the second, note at the first', async () => {
    await refusedWhole(() => {
      box.writePolicy('# main\ngrant 80 user nobody\nreserve 5432 user daemon\n');
      writeDropin('50-new.policy', 'grant 84 user nobody\nreserve 5432 user nobody\n');
    }, /50-new\.policy:2:9-12: error: 5432 is already reserved for user daemon on line 3 of policy, [^\n]*\n[^\n]*\n[^\n]*\n\S+\/policy:3:9-12: note: first reserved here/);
    box.writePolicy('# main\ngrant 80 user nobody\n');
  });

  it('grant --file web writes policy.d/web.policy (root, 0644) and makes it live; revoke says where a grant lives', async () => {
    assert.equal((await box.cli('apply')).code, 0);
    assert.equal(tcp(85), 'EACCES');
    const r = await box.cli('grant', '85', '--user', 'nobody', '--file', 'web');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /policy\.d\/web\.policy: 3 rules in the policy and its drop-ins, live/);
    const file = join(dropins, 'web.policy');
    const st = lstatSync(file);
    assert.ok(st.isFile() && st.uid === 0 && (st.mode & 0o777) === 0o644, 'root 0644');
    assert.match(readFileSync(file, 'utf8'), /^grant 85 user nobody$/m);
    assert.doesNotMatch(box.readPolicy(), /85/, 'the main file is not edited');
    assert.equal(tcp(85), 'ok');
    const listed = JSON.parse((await box.cli('list', '--json')).stdout) as Listed;
    assert.deepEqual(
      listed.rules.filter((x) => x.ports === '85').map((x) => x.file),
      [file],
    );

    // Without --file, revoke edits the main file, which has no such grant: it says where the grant is.
    const elsewhere = await box.cli('revoke', '85', '--user', 'nobody');
    assert.equal(elsewhere.code, 0, elsewhere.stderr);
    assert.match(elsewhere.stderr, /nothing to revoke/);
    assert.match(elsewhere.stderr, /policy\.d\/web\.policy \(line \d+\) has some of that too, and was left as it is: .*--file web/);
    assert.equal(tcp(85), 'ok');
    const revoked = await box.cli('revoke', '85', '--user', 'nobody', '--file', 'web');
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(tcp(85), 'EACCES');

    // A name that is a path is refused before anything is read.
    const bad = await box.cli('grant', '86', '--user', 'nobody', '--file', '../x');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--file "\.\.\/x" is not a drop-in name: --file takes a name, not a path/);
  });

  it('grant --file on a machine with no policy yet makes the file with its header and the directory', async () => {
    rmSync(dropins, { recursive: true, force: true });
    rmSync(box.policy);
    const r = await box.cli('grant', '86', '--user', 'nobody', '--file', 'web');
    assert.equal(r.code, 0, r.stderr);
    assert.match(box.readPolicy(), /^# lowport policy/);
    const dir = lstatSync(dropins);
    assert.ok(dir.isDirectory() && dir.uid === 0 && (dir.mode & 0o777) === 0o755, 'policy.d root 0755');
    assert.equal(tcp(86), 'ok');
    assert.equal((JSON.parse((await box.cli('list', '--json')).stdout) as Listed).file, 'in-sync');
  });

  it('apply --check --candidate checks a file as the drop-in it would become (Ansible validate)', async () => {
    const candidate = join(box.dir, 'candidate');
    writeFileSync(candidate, 'grant 87 user nobody\n');
    const ok = await box.cli('apply', '--check', '--file', 'web', '--candidate', candidate);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /candidate as \S+\/policy\.d\/web\.policy: OK, 1 rule /);
    writeFileSync(candidate, 'grant 87 usr nobody\n');
    const bad = await box.cli('apply', '--check', '--file', 'web', '--candidate', candidate);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`^${candidate}:1:10-12: error: `, 'm'));
    assert.equal(tcp(87), 'EACCES', 'a check makes nothing live');
    const alone = await box.cli('apply', '--candidate', candidate);
    assert.equal(alone.code, 2);
  });

  it('off names each policy file that keeps rules, the drop-ins with the main file, and the same in --json', async () => {
    rmSync(dropins, { recursive: true, force: true });
    box.writePolicy('grant 82 user nobody\n');
    mkdirSync(dropins, { mode: 0o755 });
    writeDropin('web.policy', 'grant 83 user nobody\nreserve 84 user nobody\n');
    assert.equal((await box.cli('apply')).code, 0);
    assert.equal(tcp(83), 'ok');
    const r = await box.cli('off');
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `^The policy files stay as they are, with their 3 rules \\(1 in ${box.policy}, 2 in ${box.policy}\\.d/web\\.policy\\): ` +
          '.* makes all of them live again\\. To drop a rule for good, `lowport revoke` or `lowport unreserve` it ' +
          `\\(with --file NAME for one in ${box.policy}\\.d/NAME\\.policy\\), or edit its file\\.$`,
        'm',
      ),
    );
    assert.doesNotMatch(r.stdout, /The policy file \S+ stays as it is, with its 3 rules/, 'the drop-in’s rules are not the main file’s');
    const json = JSON.parse((await box.cli('off', '--json')).stdout) as {
      policyRules?: number;
      policyFiles?: { file: string; rules: number }[];
    };
    assert.equal(json.policyRules, 3);
    assert.deepEqual(json.policyFiles, [
      { file: box.policy, rules: 1 },
      { file: `${box.policy}.d/web.policy`, rules: 2 },
    ]);
    // A grant after `off` makes the drop-in's rules live again too: the note says so, and names their file.
    const grant = await box.cli('grant', '85', '--user', 'nobody');
    assert.equal(grant.code, 0, grant.stderr);
    // (85 joins line 1's grant: the other rules are the drop-in's two.)
    assert.match(
      grant.stderr,
      /lowport was off, and this edit made 2 other rules of the policy files live again too \(`lowport off` keeps the policy files;/,
    );
    assert.match(grant.stderr, /^lowport: {3}\S+\.d\/web\.policy:1: grant 83 /m);
    assert.equal((await box.cli('off')).code, 0);
    // Only the drop-in keeps rules: it is the file named.
    box.writePolicy('# nothing here\n');
    const only = await box.cli('off');
    assert.match(only.stdout, new RegExp(`^The policy file ${box.policy}\\.d/web\\.policy stays as it is, with its 2 rules: `, 'm'));
  });
});
