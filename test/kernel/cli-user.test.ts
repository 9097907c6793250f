/**
 * The built CLI run by a normal user (uid 65534): root-only commands never
 * prompt without a terminal, they print the exact sudo command (absolute
 * paths) and exit 1; `apply --check` works without root. Needs root to set up
 * (a root-owned copy of the package that uid 65534 can read, then setpriv).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kernelSkipReason, NOBODY, PackageCopy } from './sandbox.js';

const skip = kernelSkipReason({ sudo: 'sudo' });

describe('the lowport command for a normal user', { skip }, () => {
  let pkg: PackageCopy;
  let cli: string;
  let policy: string;

  before(() => {
    pkg = new PackageCopy();
    cli = pkg.cli;
    policy = join(pkg.dir, 'policy');
    writeFileSync(policy, 'grant 80 user nobody\n', { mode: 0o644 });
  });
  after(() => pkg?.dispose());

  function asNobody(...args: string[]) {
    return spawnSync(
      'setpriv',
      [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        '--clear-groups',
        '--inh-caps=-all',
        '--bounding-set=-all',
        '--no-new-privs',
        process.execPath,
        cli,
        ...args,
      ],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/nonexistent', LANG: 'C' },
      },
    );
  }

  it('prints the exact sudo command with absolute paths and exits 1 instead of prompting, with no terminal', () => {
    const r = asNobody('grant', '80', '--policy', policy);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /lowport grant needs root/);
    // The invoking user is named, and node and the script are absolute: sudo's PATH would not find an nvm node.
    const expected = `sudo ${process.execPath} ${cli} grant 80 --policy ${policy} --user nobody`;
    assert.ok(r.stderr.includes(expected), `expected ${expected} in:\n${r.stderr}`);
    assert.equal(r.stdout, '');
  });

  it('asks before re-running through sudo when it has a terminal, and changes nothing on no', () => {
    // script(1) gives the command a terminal; the answer comes through it.
    const command = [process.execPath, cli, 'grant', '81', '--policy', policy].join(' ');
    const r = spawnSync(
      'setpriv',
      [
        `--reuid=${NOBODY}`,
        `--regid=${NOBODY}`,
        '--clear-groups',
        '--inh-caps=-all',
        '--bounding-set=-all',
        'script',
        '-qec',
        command,
        '/dev/null',
      ],
      { encoding: 'utf8', input: 'n\n', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/nonexistent', LANG: 'C' }, timeout: 20_000 },
    );
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /Run this through sudo\? \[Y\/n\]/);
    assert.match(r.stdout, /nothing was changed/);
  });

  it('does the same for list, apply and off', () => {
    for (const command of ['list', 'apply', 'off']) {
      const r = asNobody(command, '--policy', policy);
      assert.equal(r.status, 1, command);
      assert.match(r.stderr, new RegExp(`lowport ${command} needs root[^]*sudo \\S+ \\S+ ${command}`));
    }
  });

  it('says why list and forward list need root: what they read, not that they change what the kernel lets programs bind', () => {
    const cases: [string[], RegExp][] = [
      [
        ['list'],
        /^lowport: error: lowport list needs root: it reads lowport's BPF map, pinned in \/sys\/fs\/bpf, which only root may open/,
      ],
      [['forward', 'list'], /^lowport: error: lowport forward list needs root: it reads lowport's nftables table/],
      // The old spelling, after its note.
      [['forward', '--list'], /\nlowport: error: lowport forward list needs root: it reads lowport's nftables table/],
    ];
    for (const [args, why] of cases) {
      const r = asNobody(...args, '--policy', policy);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /changes what the kernel/);
    }
  });

  it('says an unknown option in its own words, naming the command and its options (exit 2)', () => {
    const r = asNobody('run', '--group', 'dns', '--port', '53', '--', 'true');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^lowport: error: lowport run has no option '--group': it runs COMMAND as one user, given with --user U/);
    assert.match(r.stderr, /\nlowport run takes --port, --user, --addr, /);
    assert.doesNotMatch(r.stderr, /To specify a positional argument|sudo/);
  });

  it('reports a usage error (exit 2) before any talk of root', () => {
    const r = asNobody('grant', '99999', '--policy', policy);
    assert.equal(r.status, 2);
    assert.doesNotMatch(r.stderr, /sudo/);
  });

  it('exits 2 for doctor and forward serve with a --user that does not exist, as root, shown against the command line', () => {
    for (const args of [
      ['doctor', '--user', 'no-such-user-xyz', '--port', '80'],
      ['forward', 'serve', '80/tcp', '8080', '--user', 'no-such-user-xyz'],
    ]) {
      const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^command line:1:1-16: error: --user: unknown user 'no-such-user-xyz'/);
    }
  });

  it('checks a policy without root with apply --check', () => {
    const r = asNobody('apply', '--check', '--policy', policy);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /OK, 1 rule/);
  });
});
