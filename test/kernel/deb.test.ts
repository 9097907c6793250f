/**
 * Kernel tests (root): `npm run deb`'s package, installed for real with dpkg.
 * It must install, give a grant that an unprivileged server on port 80 uses
 * (curl gets its answer), end every grant on remove, and leave nothing on
 * purge. The grant attaches to the sandbox's cgroup (--cgroup), so no other
 * program on the machine sees it; the package's own paths are used otherwise
 * (/etc/lowport/policy, /sys/fs/bpf/lowport, /usr/bin/lowport). A machine
 * that already has any of those is left alone: the test skips and says why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { binds, kernelSkipReason, rootTempDir, Sandbox } from './sandbox.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MACHINE_PATHS = [
  '/etc/lowport',
  '/usr/lib/lowport',
  '/usr/bin/lowport',
  '/sys/fs/bpf/lowport',
  '/lib/systemd/system/lowport.service',
  '/lib/systemd/system/lowport-log.service',
];

function debSkipReason(): string | undefined {
  if (spawnSync('dpkg-deb', ['--version']).status !== 0) return 'dpkg-deb is not installed (not a Debian system)';
  // What npm run deb builds with (.ci/run installs them; the 6.1 VM's minimal image has neither).
  for (const [tool, pkg] of [
    ['dpkg-shlibdeps', 'dpkg-dev'],
    ['strip', 'binutils'],
  ]) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      return `${tool} is not installed (apt-get install ${pkg}): npm run deb needs it`;
  }
  if (spawnSync('dpkg', ['-s', 'lowport'], { encoding: 'utf8' }).status === 0)
    return 'the lowport package is installed on this machine: the test would change it';
  const present = MACHINE_PATHS.filter((p) => existsSync(p));
  if (present.length > 0) return `this machine has lowport's own paths (${present.join(', ')}): the test would change them`;
  return undefined;
}

const skip = kernelSkipReason({ python3: 'python3', curl: 'curl' }) ?? debSkipReason();

function run(command: string, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(command, args, { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('the Debian package', { skip }, () => {
  let box: Sandbox;
  let out: string;
  let deb: string;
  before(() => {
    box = new Sandbox('deb');
    out = rootTempDir('lowport-deb');
    const built = run('bash', [join(REPO, 'packaging/deb/build.sh'), out]);
    assert.equal(built.code, 0, built.out);
    deb = built.out.trim().split('\n').pop() ?? '';
  });
  after(async () => {
    // Whatever a failed step left: the package, its pins, its files.
    if (spawnSync('dpkg', ['-s', 'lowport']).status === 0) run('dpkg', ['--purge', 'lowport']);
    rmSync(out, { recursive: true, force: true });
    await box?.dispose();
  });

  it('holds the program, the boot unit, the policy as a conffile, the man page and completions, all root-owned', () => {
    assert.match(deb, /lowport_\d+\.\d+\.\d+_[a-z0-9]+\.deb$/);
    const listing = run('dpkg-deb', ['--contents', deb]).out;
    for (const path of [
      './usr/bin/lowport -> ../lib/lowport/dist/bundle/main.js',
      './usr/lib/lowport/dist/bundle/main.js',
      './usr/lib/lowport/dist/src/cli/main.js',
      './usr/lib/lowport/node_modules/koffi/index.js',
      './lib/systemd/system/lowport.service',
      './lib/systemd/system/lowport-log.service',
      './etc/lowport/policy',
      './etc/lowport/policy.d/README',
      './usr/share/man/man8/lowport.8.gz',
      './usr/share/bash-completion/completions/lowport',
      './usr/share/zsh/vendor-completions/_lowport',
      './usr/share/doc/lowport/copyright',
    ]) {
      assert.ok(listing.includes(path), `${path} in\n${listing}`);
    }
    assert.doesNotMatch(listing, /^\S+ (?!root\/root)/m, 'every file root:root');
    assert.doesNotMatch(listing, /koffi\/build\/koffi\/(win32|darwin|freebsd|openbsd|musl)/, 'only this machine’s koffi binary');
    assert.match(
      run('dpkg-deb', ['--field', deb, 'Depends']).out.trim(),
      /^nodejs \(>= 20\), init-system-helpers \(>= 1\.54~\), libc6 \(>= [\d.]+\)/,
    );
    assert.equal(run('dpkg-deb', ['--info', deb, 'conffiles']).out.trim(), '/etc/lowport/policy\n/etc/lowport/policy.d/README');
    assert.match(listing, /^drwxr-xr-x root\/root +0 \S+ \S+ \.\/etc\/lowport\/policy\.d\/$/m, 'the drop-in directory, root:root 0755');
  });

  it('passes lintian without errors', (t) => {
    if (spawnSync('lintian', ['--version']).status !== 0) {
      t.skip('lintian is not installed (apt-get install lintian)');
      return;
    }
    const r = run('lintian', ['--no-tag-display-limit', deb]);
    assert.doesNotMatch(r.out, /^E: /m, r.out);
  });

  it('installs, grants port 80 to a server run as nobody, ends the grant on remove, and leaves nothing on purge', () => {
    const installed = run('dpkg', ['--install', deb]);
    assert.equal(installed.code, 0, installed.out);
    assert.equal(realpathSync('/usr/bin/lowport'), '/usr/lib/lowport/dist/bundle/main.js');
    const policy = lstatSync('/etc/lowport/policy');
    assert.equal(policy.uid, 0);
    assert.equal(policy.mode & 0o777, 0o644);
    const dropins = lstatSync('/etc/lowport/policy.d');
    assert.ok(
      dropins.isDirectory() && dropins.uid === 0 && dropins.gid === 0 && (dropins.mode & 0o777) === 0o755,
      'policy.d root:root 0755',
    );
    // `man lowport` finds the page (man-db is in CI's packages; elsewhere the file is checked).
    const man = run('man', ['-w', 'lowport']);
    if (man.code !== null && spawnSync('man', ['--version']).status === 0)
      assert.equal(man.out.trim(), '/usr/share/man/man8/lowport.8.gz', man.out);
    else assert.ok(existsSync('/usr/share/man/man8/lowport.8.gz'));

    const granted = run('/usr/bin/lowport', ['grant', '80', '--user', 'nobody', '--cgroup', box.cgroup]);
    assert.equal(granted.code, 0, granted.out);
    assert.match(readFileSync('/etc/lowport/policy', 'utf8'), /^grant 80 user nobody$/m);
    assert.ok(existsSync('/sys/fs/bpf/lowport/live'), 'pinned at the package’s pin dir');

    // A real server as uid 65534, no capabilities, in the sandbox's cgroup and a private netns; curl asks it.
    const server = `cd ${box.dir} && /usr/bin/python3 -m http.server 80 --bind 127.0.0.1 >/dev/null 2>&1 & s=$!
      i=0; until code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:80/) && [ "$code" = 200 ]; do
        i=$((i+1)); [ $i -lt 600 ] || break; sleep 0.1; done
      echo "HTTP=$code"; kill $s`;
    const { command, args, env } = box.clientCommand({}, ['sh', '-c', server]);
    const served = spawnSync(command, args, { encoding: 'utf8', env });
    assert.match(served.stdout, /^HTTP=200$/m, `${served.stdout}${served.stderr}`);

    const removed = run('dpkg', ['--remove', 'lowport']);
    assert.equal(removed.code, 0, removed.out);
    assert.equal(existsSync('/usr/bin/lowport'), false);
    assert.equal(existsSync('/usr/lib/lowport'), false);
    assert.equal(existsSync('/sys/fs/bpf/lowport'), false, 'remove ran `lowport off`');
    assert.deepEqual(box.probe({}, binds(80, ['127.0.0.1'], ['tcp'])), ['EACCES'], 'the grant ended with the package');
    assert.equal(existsSync('/etc/lowport/policy'), true, 'remove keeps the policy (a conffile)');

    const purged = run('dpkg', ['--purge', 'lowport']);
    assert.equal(purged.code, 0, purged.out);
    for (const p of MACHINE_PATHS) assert.equal(existsSync(p), false, `${p} after purge`);
    assert.notEqual(spawnSync('dpkg', ['-s', 'lowport']).status, 0, 'no package record');
  });
});
