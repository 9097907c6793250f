/**
 * Kernel tests (root) for the bundled CLI, dist/bundle/main.js: what
 * package.json's bin and the Debian package run (scripts/bundle.ts). The rest
 * of the suite tests tsc's dist/src; here the bundle does real work as its own
 * process, with each file it starts by path: grant, list and revoke on a
 * sandbox; doctor run by root for --user nobody (the bind test, probe-main.js,
 * runs as nobody); the userspace forwarder (worker-main.js and its relay
 * thread, tcp-thread.js) in a private network namespace; the sudo command a
 * normal user is shown, which must name the bundle. From a copy of the package
 * that nobody can read (PackageCopy, with dist/bundle added).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, realpathSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { binds, copyFixture, ImageRoot, kernelSkipReason, missingTools, NOBODY, PackageCopy, rootTempDir, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ sudo: 'sudo', pgrep: 'procps' });
const noSystemd = missingTools({ systemctl: 'systemd' });
const BUNDLE = fileURLToPath(new URL('../../bundle', import.meta.url));

describe('the bundled CLI (dist/bundle)', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  let cli: string;
  before(() => {
    box = new Sandbox('bundle');
    pkg = new PackageCopy();
    cpSync(BUNDLE, join(pkg.dir, 'dist', 'bundle'), { recursive: true });
    cli = join(pkg.dir, 'dist', 'bundle', 'main.js');
    copyFixture('forward-helper', box.dir);
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /** The bundled CLI as root, in the sandbox's cgroup and a private network namespace (as the sandbox's clients run). */
  function bundled(...args: string[]) {
    const script = 'ip link set lo up && echo $$ > "$LOWPORT_TEST_CGROUP/cgroup.procs" && exec "$@"';
    return spawnSync('unshare', ['--net', '--', 'sh', '-c', script, 'sh', process.execPath, cli, ...args, ...box.args], {
      encoding: 'utf8',
      env: { ...process.env, LOWPORT_TEST_CGROUP: box.cgroup },
      timeout: 60_000,
    });
  }

  it('grants, lists and revokes: nobody binds the port only while the grant lasts', () => {
    const granted = bundled('grant', '81', '--user', 'nobody');
    assert.equal(granted.status, 0, `${granted.stdout}${granted.stderr}`);
    assert.deepEqual(box.probe({}, binds(81, ['127.0.0.1', '::1'])), ['ok', 'ok', 'ok', 'ok']);
    const listed = bundled('list', '--json');
    assert.equal(listed.status, 0, listed.stderr);
    // Read back from the kernel: the rule, and the probe's four binds counted on it.
    const list = JSON.parse(listed.stdout) as { live: boolean; rules: { action: string; who: string[]; ports: string; hits: number }[] };
    assert.equal(list.live, true, listed.stdout);
    assert.deepEqual(
      list.rules.map((r) => [r.action, r.who, r.ports, r.hits]),
      [['grant', ['user nobody (uid 65534)'], '81', 4]],
      listed.stdout,
    );
    const revoked = bundled('revoke', '81', '--user', 'nobody');
    assert.equal(revoked.status, 0, `${revoked.stdout}${revoked.stderr}`);
    assert.deepEqual(box.probe({}, binds(81, ['127.0.0.1'], ['tcp'])), ['EACCES']);
  });

  it('doctor --user nobody, run by root, starts the bind test (probe-main.js) as nobody: EACCES without a grant, every bind with one', () => {
    const without = bundled('doctor', '--json', '--port', '82', '--user', 'nobody');
    assert.ok(without.stdout.startsWith('{'), `${without.stdout}${without.stderr}`);
    type Report = { user: { uid: number }; ports: { canBind: Record<string, boolean>; error: Record<string, string> }[] };
    const a = JSON.parse(without.stdout) as Report;
    assert.equal(without.status, 1);
    assert.equal(a.user.uid, NOBODY);
    assert.deepEqual(a.ports[0]?.error, { tcp4: 'EACCES', tcp6: 'EACCES', udp4: 'EACCES', udp6: 'EACCES' });
    assert.equal(bundled('grant', '82', '--user', 'nobody').status, 0);
    const withGrant = bundled('doctor', '--json', '--port', '82', '--user', 'nobody');
    assert.equal(withGrant.status, 0, `${withGrant.stdout}${withGrant.stderr}`);
    assert.deepEqual((JSON.parse(withGrant.stdout) as Report).ports[0]?.canBind, { tcp4: true, tcp6: true, udp4: true, udp6: true });
  });

  it('forward serve: the worker process (worker-main.js) and its relay thread (tcp-thread.js) carry a connection both ways', () => {
    const d = box.dir;
    const file = join(d, 'forward.sh');
    writeFileSync(
      file,
      `set -u
ip link set lo up
H="${process.execPath} ${d}/forward-helper.mjs"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
waitfor() { local end=$((SECONDS + 120)); until "$@"; do [ $SECONDS -lt $end ] || { echo "WAITFOR: $*"; cat ${d}/fwd.log; exit 1; }; sleep 0.05; done; }
listening() { (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null; }
ready() { grep -q "^lowport: forwarding [a-z,]* port 83 " ${d}/fwd.log 2>/dev/null; }
$H echo-server 7000 >/dev/null & waitfor listening 7000
${process.execPath} ${cli} forward serve 83/tcp 7000 --workers 1 --user nobody --log 2>${d}/fwd.log & F=$!
waitfor ready
echo "WORKER=$(pgrep -P $F -f worker-main.js -u ${NOBODY} | wc -l)"
echo "ECHO=$($H half-close 83 1000000)"
kill -TERM $F; wait $F; echo "EXIT=$?"
cat ${d}/fwd.log
`,
    );
    const r = spawnSync('unshare', ['--net', 'bash', file], { encoding: 'utf8', timeout: 240_000 });
    const out = `${r.stdout}${r.stderr}`;
    const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1];
    assert.equal(value('WORKER'), '1', `one worker process, started from the bundle, as nobody\n${out}`);
    assert.equal(value('ECHO'), '{"sent":1000000,"received":1000000,"same":true}', out);
    assert.equal(value('EXIT'), '0', out);
    assert.match(out, /=> 127\.0\.0\.1:7000 up=1000000 down=1000000 /);
  });

  it(
    "install --root: finds the image's lowport laid out as the Debian package lays the bundle out, and writes its boot unit",
    { skip: noSystemd },
    () => {
      const img = rootTempDir('lowport-bundle-img');
      try {
        const lib = join(img, 'usr', 'lib', 'lowport');
        new ImageRoot(img);
        cpSync(BUNDLE, join(lib, 'dist', 'bundle'), { recursive: true });
        const main = join(lib, 'dist', 'bundle', 'main.js');
        writeFileSync(main, readFileSync(main, 'utf8').replace(/^#!.*/, '#!/usr/bin/node'), { mode: 0o755 });
        unlinkSync(join(img, 'usr', 'bin', 'lowport'));
        symlinkSync('../lib/lowport/dist/bundle/main.js', join(img, 'usr', 'bin', 'lowport'));
        // The package directory is the one above dist/ (os/package-dir.ts), not a fixed depth above main.js.
        const r = spawnSync(process.execPath, [cli, 'install', '--root', img], { encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
        assert.match(readFileSync(join(img, 'etc/systemd/system/lowport.service'), 'utf8'), /^ExecStart=\/usr\/bin\/lowport apply$/m);
      } finally {
        rmSync(img, { recursive: true, force: true });
      }
    },
  );

  it('shows a normal user the sudo command that re-runs the bundle itself, and that command works', () => {
    const policy = join(box.dir, 'user-policy');
    writeFileSync(policy, 'grant 80 user nobody\n', { mode: 0o644 });
    const r = spawnSync(
      'setpriv',
      [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs'].concat([
        process.execPath,
        cli,
        'apply',
        '--policy',
        policy,
        '--cgroup',
        box.cgroup,
        '--pin-dir',
        box.pinDir,
      ]),
      { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/nonexistent', LANG: 'C' } },
    );
    assert.equal(r.status, 1, r.stderr);
    const shown = /^ {2}sudo (.*)$/m.exec(r.stderr)?.[1];
    const script = realpathSync(cli);
    assert.equal(shown, `${process.execPath} ${script} apply --policy ${policy} --cgroup ${box.cgroup} --pin-dir ${box.pinDir}`, r.stderr);
    // What sudo would run, run as root: the bundle applies the policy.
    const asRoot = spawnSync(process.execPath, [script, 'apply', '--policy', policy, '--cgroup', box.cgroup, '--pin-dir', box.pinDir], {
      encoding: 'utf8',
    });
    assert.equal(asRoot.status, 0, asRoot.stderr);
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['ok']);
  });
});
