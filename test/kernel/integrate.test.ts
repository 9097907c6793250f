/**
 * Root tests: `install`/`uninstall` into a private root with the real
 * systemctl, generated units through the real `systemd-analyze verify`, and
 * `import-authbind` on a fixture tree with real owners and modes, applied to
 * a sandbox.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runMain } from '../run-main.js';
import { install } from '../../src/integrate/install.js';
import { binds, kernelSkipReason, NOBODY, PackageCopy, rootTempDir, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
const haveSystemd = spawnSync('sh', ['-c', 'command -v systemctl && command -v systemd-analyze']).status === 0;

describe('install, unit and import-authbind', { skip }, () => {
  let root: string;
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    root = rootTempDir('lowport-root');
    box = new Sandbox('integrate');
    pkg = new PackageCopy();
  });
  after(async () => {
    rmSync(root, { recursive: true, force: true });
    await box?.dispose();
    pkg?.dispose();
  });

  // The unit runs lowport from a root-owned copy: the checkout itself may sit
  // where install rightly refuses to point a root unit at (a home directory).
  const installOptions = () => ({ root, lowportArgv: [process.execPath, pkg.cli], packageFiles: [pkg.dir] });

  it('installs an enabled boot unit that passes systemd-analyze verify, and creates the policy', { skip: haveSystemd ? false : 'systemd tools are not installed (CI installs systemd)' }, () => {
    const r = install(installOptions());
    const unit = join(root, 'etc/systemd/system/lowport.service');
    assert.equal(r.unitFile, unit);
    assert.equal(r.enabled, true);
    assert.equal(r.createdPolicy, true);
    const link = join(root, 'etc/systemd/system/sysinit.target.wants/lowport.service');
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readlinkSync(link), '/etc/systemd/system/lowport.service');
    assert.match(readFileSync(unit, 'utf8'), new RegExp(`^ExecStart=${process.execPath} ${pkg.cli} apply$`, 'm'));
    assert.match(readFileSync(join(root, 'etc/lowport/policy'), 'utf8'), /^# lowport policy/);
    const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
    assert.equal(verify.status, 0, verify.stderr);
  });

  it('refuses to install a unit that would run, as root, a file another user could change', () => {
    const script = join(root, 'user-main.js');
    writeFileSync(script, '');
    chownSync(script, NOBODY, NOBODY);
    assert.throws(() => install({ ...installOptions(), lowportArgv: [process.execPath, script] }), (e: Error & { code?: string; hint?: string }) => {
      assert.equal(e.code, 'E_POLICY_UNSAFE');
      assert.match(e.message, /the program file .*user-main.js is owned by uid 65534, not root, so that user could run their own code as root at every boot/);
      assert.match(e.hint ?? '', /only root can write/);
      return true;
    });
    assert.doesNotMatch(readFileSync(join(root, 'etc/systemd/system/lowport.service'), 'utf8'), /user-main/);
  });

  it('keeps an existing policy on install, and uninstall removes the unit but keeps the policy unless --purge', { skip: haveSystemd ? false : 'systemd tools are not installed' }, async () => {
    writeFileSync(join(root, 'etc/lowport/policy'), 'grant 80 user nobody\n');
    install(installOptions());
    assert.equal(readFileSync(join(root, 'etc/lowport/policy'), 'utf8'), 'grant 80 user nobody\n');
    const un = await runMain(['uninstall', '--root', root]);
    assert.equal(un.code, 0, un.stderr);
    assert.equal(existsSync(join(root, 'etc/systemd/system/lowport.service')), false);
    assert.equal(existsSync(join(root, 'etc/systemd/system/sysinit.target.wants/lowport.service')), false);
    assert.ok(existsSync(join(root, 'etc/lowport/policy')));
    assert.match(un.stdout, /kept .*policy \(--purge removes it\)/);
    install(installOptions());
    assert.equal((await runMain(['uninstall', '--purge', '--root', root])).code, 0);
    assert.equal(existsSync(join(root, 'etc/lowport')), false);
  });

  it('generates units that systemd-analyze verify accepts, for a service and for socket activation', { skip: haveSystemd ? false : 'systemd tools are not installed' }, async () => {
    const dir = join(root, 'units');
    for (const extra of [[], ['--socket']]) {
      const r = await runMain(['unit', 'web', '--user', 'nobody', '--port', '80,443/tcp', '--output-dir', dir, ...extra, '--', '/usr/bin/python3', '-m', 'http.server', '80']);
      assert.equal(r.code, 0, r.stderr);
      const files = extra.length === 0 ? ['web.service'] : ['web.socket', 'web.service'];
      const verify = spawnSync('systemd-analyze', ['verify', ...files.map((f) => join(dir, f))], { encoding: 'utf8' });
      assert.equal(verify.status, 0, `${verify.stdout}${verify.stderr}`);
      // Only systemd's own advice about the nobody user may be printed.
      assert.doesNotMatch(verify.stderr.replace(/.*Special user nobody configured.*\n?/g, ''), /\S/);
    }
  });

  it('imports an authbind tree with real owners and modes, and applies it', async () => {
    const dir = join(root, 'authbind');
    for (const sub of ['byport', 'byaddr', 'byuid']) mkdirSync(join(dir, sub), { recursive: true });
    writeFileSync(join(dir, 'byport', '80'), '');
    chownSync(join(dir, 'byport', '80'), NOBODY, NOBODY);
    chmodSync(join(dir, 'byport', '80'), 0o500);
    writeFileSync(join(dir, 'byaddr', '127.0.0.2,81'), '');
    chownSync(join(dir, 'byaddr', '127.0.0.2,81'), NOBODY, NOBODY);
    chmodSync(join(dir, 'byaddr', '127.0.0.2,81'), 0o500);
    writeFileSync(join(dir, 'byuid', String(NOBODY)), '::1/128,82\n10.0.0.0/8,83\n');
    const printed = await runMain(['import-authbind', '--dir', dir]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^grant 80 user nobody$/m);
    assert.match(printed.stdout, /^grant 81 user nobody addr 127\.0\.0\.2$/m);
    assert.match(printed.stdout, /^grant 82 user nobody addr ::1$/m);
    assert.match(printed.stdout, /^# {3}byuid\/65534 line 2 \(10\.0\.0\.0\/8,83\): a network \(\/8\) cannot be expressed/m);
    const applied = await box.cli('import-authbind', '--dir', dir, '--apply');
    assert.equal(applied.code, 0, applied.stderr);
    assert.deepEqual(
      box.probe({}, [...binds(80, ['127.0.0.1'], ['tcp']), ...binds(81, ['127.0.0.2', '127.0.0.1'], ['tcp']), ...binds(82, ['::1'], ['udp'])]),
      ['ok', 'ok', 'EACCES', 'ok'],
    );
  });
});
