/**
 * Root tests: `install`/`uninstall` into a private root with the real
 * systemctl, generated units through the real `systemd-analyze verify`, and
 * `import-authbind` on a fixture tree with real owners and modes, applied to
 * a sandbox.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runMain } from '../run-main.js';
import { install } from '../../src/integrate/install.js';
import { aclWriters } from '../../src/os/files.js';
import { getXattr } from '../../src/os/libc.js';
import { binds, CLI, ImageRoot, kernelSkipReason, missingTools, NOBODY, PackageCopy, rootTempDir, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();
/** The tree these tests run from: a checkout on the host, a copy of dist in the VM. */
const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const noSystemd = missingTools({ systemctl: 'systemd', 'systemd-analyze': 'systemd' });

describe('install, unit and import-authbind', { skip }, () => {
  let root: string;
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    root = rootTempDir('lowport-root');
    box = new Sandbox('integrate');
    // An image with lowport installed as the Debian package installs it: the unit must run that one.
    pkg = new ImageRoot(root).pkg as PackageCopy;
    // systemd-analyze verify --root resolves the unit's targets inside the image.
    cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), {
      recursive: true,
      filter: (src) => !src.includes('.') || src.endsWith('.target'),
    });
  });
  after(async () => {
    rmSync(root, { recursive: true, force: true });
    await box?.dispose();
  });

  // This lowport's own paths (the checkout's) are given too: with --root they must not reach the image's unit.
  const installOptions = () => ({ root, lowportArgv: [process.execPath, CLI], version: '0.1.0' });

  it('installs an enabled boot unit that passes systemd-analyze verify, and creates the policy', { skip: noSystemd }, () => {
    const r = install(installOptions());
    const unit = join(root, 'etc/systemd/system/lowport.service');
    assert.equal(r.unitFile, unit);
    assert.equal(r.enabled, true);
    assert.equal(r.createdPolicy, true);
    const link = join(root, 'etc/systemd/system/sysinit.target.wants/lowport.service');
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readlinkSync(link), '/etc/systemd/system/lowport.service');
    const text = readFileSync(unit, 'utf8');
    assert.match(text, /^ExecStart=\/usr\/bin\/lowport apply$/m);
    assert.match(text, /^ExecStop=\/usr\/bin\/lowport off$/m);
    assert.ok(!text.includes(process.execPath) && !text.includes(CLI), text);
    assert.match(readFileSync(join(root, 'etc/lowport/policy'), 'utf8'), /^# lowport policy/);
    const dropins = lstatSync(join(root, 'etc/lowport/policy.d'));
    assert.ok(dropins.isDirectory() && dropins.uid === 0 && (dropins.mode & 0o7777) === 0o755, 'the drop-in directory, root 0755');
    // Inside the image: the program it names must be there and executable.
    const verify = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/lowport.service'], { encoding: 'utf8' });
    assert.equal(verify.status, 0, verify.stderr);
  });

  it("installs the audit trail's reader, lowport-log.service, enabled, that passes systemd-analyze verify", { skip: noSystemd }, () => {
    const r = install(installOptions());
    const unit = join(root, 'etc/systemd/system/lowport-log.service');
    assert.equal(r.logUnitFile, unit);
    const link = join(root, 'etc/systemd/system/multi-user.target.wants/lowport-log.service');
    assert.equal(readlinkSync(link), '/etc/systemd/system/lowport-log.service');
    const text = readFileSync(unit, 'utf8');
    assert.match(text, /^ExecStart=\/usr\/bin\/lowport log --follow --journal$/m);
    assert.match(text, /^CapabilityBoundingSet=CAP_BPF CAP_SYS_ADMIN$/m);
    const verify = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/etc/systemd/system/lowport-log.service'], {
      encoding: 'utf8',
    });
    assert.equal(verify.status, 0, verify.stderr);
  });

  it('refuses to install a unit that would run, as root, a file another user could change', () => {
    const script = join(pkg.dir, 'dist/src/cli/main.js');
    chownSync(script, NOBODY, NOBODY);
    try {
      assert.throws(
        () => install(installOptions()),
        (e: Error & { code?: string; hint?: string }) => {
          assert.equal(e.code, 'E_POLICY_UNSAFE');
          assert.match(
            e.message,
            /the program file .*main.js is owned by uid 65534, not root, so someone other than root could run their own code as root at every boot/,
          );
          assert.match(e.hint ?? '', /only root can change/);
          assert.match(e.hint ?? '', /npm pack && npm install -g \.\/lowport-0\.1\.0\.tgz/);
          return true;
        },
      );
    } finally {
      chownSync(script, 0, 0);
    }
  });

  it('with --root, refuses an image without lowport, naming the package as the fix, and writes nothing into it', () => {
    const bare = rootTempDir('lowport-bare-img');
    try {
      new ImageRoot(bare, { withLowport: false });
      // The built CLI as its own process (main.js the entry script), as an admin runs it.
      const r = spawnSync(process.execPath, [CLI, 'install', '--root', bare], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`the image ${bare} has no lowport \\(neither /usr/local/bin/lowport nor /usr/bin/lowport inside it\\)`),
      );
      assert.match(r.stderr, /the paths this lowport runs from are this machine's/);
      assert.match(r.stderr, /Install the Debian package into the image first, e\.g\. `cp lowport_\*\.deb .* && chroot .* dpkg -i /);
      assert.equal(existsSync(join(bare, 'etc')), false);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });

  it(
    "with --root, refuses an image whose lowport is a checkout or has no node, and says the unit runs at the image's boots",
    { skip: noSystemd },
    async () => {
      const marker = join(pkg.dir, '.git');
      mkdirSync(marker);
      try {
        assert.throws(
          () => install(installOptions()),
          /the image's lowport runs from the source checkout \/usr\/lib\/lowport \(it holds \.git\)/,
        );
      } finally {
        rmSync(marker, { recursive: true });
      }
      const node = join(root, 'usr/bin/node');
      renameSync(node, `${node}.away`);
      try {
        assert.throws(
          () => install(installOptions()),
          /the image's \/usr\/bin\/lowport \(\/usr\/lib\/lowport\/dist\/src\/cli\/main\.js\) starts with '#!\/usr\/bin\/node', which is not in the image/,
        );
      } finally {
        renameSync(`${node}.away`, node);
      }
      const r = await runMain(['install', '--root', root]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /runs `\/usr\/bin\/lowport apply` at every boot of the image, the first one included/);
      assert.match(r.stderr, /nothing is loaded into this machine's kernel/);
      assert.doesNotMatch(r.stderr, /Run `lowport apply`/);
    },
  );

  it('refuses to point the boot unit at this checkout, at a copy under /run, or through an npm link, and names the copying installs', async () => {
    const unit = '/etc/systemd/system/lowport.service';
    const before = existsSync(unit);
    // The tree these tests run from, as `sudo lowport install` from a clone (npm install -g . links it). The VM's
    // project layer is a copy of dist, not a checkout: there the same refusal is shown on a copy with a .git below.
    if (existsSync(join(REPO, '.git')) || existsSync(join(REPO, 'tsconfig.json'))) {
      const r = await runMain(['install']);
      assert.equal(r.code, 1, r.stdout);
      assert.match(
        r.stderr,
        /lowport runs from the source checkout .* \(it holds (\.git|tsconfig\.json)\), so the boot unit would run as root whatever is built there next/,
      );
      assert.match(r.stderr, /the Debian package \(`npm run deb && dpkg -i lowport_\*\.deb`/);
      assert.match(r.stderr, /`npm pack && npm install -g \.\/lowport-\d+\.\d+\.\d+\.tgz`/);
      assert.match(r.stderr, /plain `npm install -g \.` only links this directory/);
    }
    const copy = new PackageCopy();
    const prefix = rootTempDir('lowport-prefix');
    try {
      // A checkout anywhere, named before the temporary place it is in.
      mkdirSync(join(copy.dir, '.git'));
      assert.throws(
        () => install({ lowportArgv: [process.execPath, copy.cli], packageFiles: [copy.dir], version: '0.1.0' }),
        new RegExp(`lowport runs from the source checkout ${copy.dir} \\(it holds \\.git\\), so the boot unit would run as root`),
      );
      rmSync(join(copy.dir, '.git'), { recursive: true });
      // An installed-looking copy, but under /run, which is emptied at boot.
      assert.throws(
        () => install({ lowportArgv: [process.execPath, copy.cli], packageFiles: [copy.dir], version: '0.1.0' }),
        (e: Error & { code?: string; hint?: string }) => {
          assert.equal(e.code, 'E_STATE');
          assert.match(e.message, new RegExp(`lowport runs from ${copy.cli}, in /run, which is emptied at boot`));
          assert.match(e.hint ?? '', /npm pack && npm install -g \.\/lowport-0\.1\.0\.tgz/);
          return true;
        },
      );
      // npm install -g . as npm does it: PREFIX/lib/node_modules/lowport a link to the directory, PREFIX/bin/lowport a link into it.
      mkdirSync(join(prefix, 'lib/node_modules'), { recursive: true });
      mkdirSync(join(prefix, 'bin'));
      symlinkSync(copy.dir, join(prefix, 'lib/node_modules/lowport'));
      symlinkSync('../lib/node_modules/lowport/dist/src/cli/main.js', join(prefix, 'bin/lowport'));
      assert.throws(
        () => install({ lowportArgv: [process.execPath, copy.cli], invokedAs: join(prefix, 'bin/lowport'), version: '0.1.0' }),
        new RegExp(
          `lowport runs through the npm link ${prefix}/lib/node_modules/lowport -> ${copy.dir} \\(made by \`npm install -g \\.\` or \`npm link\``,
        ),
      );
    } finally {
      copy.dispose();
      rmSync(prefix, { recursive: true, force: true });
      assert.equal(existsSync(unit), before, 'no boot unit was written on this machine');
    }
  });

  it(
    'keeps an existing policy on install, and uninstall removes the unit but keeps the policy unless --purge',
    { skip: noSystemd },
    async () => {
      writeFileSync(join(root, 'etc/lowport/policy'), 'grant 80 user nobody\n');
      install(installOptions());
      assert.equal(readFileSync(join(root, 'etc/lowport/policy'), 'utf8'), 'grant 80 user nobody\n');
      const un = await runMain(['uninstall', '--root', root]);
      assert.equal(un.code, 0, un.stderr);
      assert.equal(existsSync(join(root, 'etc/systemd/system/lowport.service')), false);
      assert.equal(existsSync(join(root, 'etc/systemd/system/sysinit.target.wants/lowport.service')), false);
      assert.equal(existsSync(join(root, 'etc/systemd/system/lowport-log.service')), false);
      assert.equal(existsSync(join(root, 'etc/systemd/system/multi-user.target.wants/lowport-log.service')), false);
      assert.ok(existsSync(join(root, 'etc/lowport/policy')));
      assert.match(un.stderr, /^lowport: kept .*policy \(--purge removes it\)/m);
      // A drop-in is another package's or role's file: purge keeps it, and says so.
      install(installOptions());
      writeFileSync(join(root, 'etc/lowport/policy.d/web.policy'), 'grant 443 user nobody\n');
      const kept = await runMain(['uninstall', '--purge', '--root', root]);
      assert.equal(kept.code, 0, kept.stderr);
      assert.equal(existsSync(join(root, 'etc/lowport/policy')), false);
      assert.ok(existsSync(join(root, 'etc/lowport/policy.d/web.policy')));
      assert.match(kept.stderr, /^lowport: kept .*policy\.d: it is not empty$/m);
      rmSync(join(root, 'etc/lowport/policy.d/web.policy'));
      install(installOptions());
      assert.equal((await runMain(['uninstall', '--purge', '--root', root])).code, 0);
      assert.equal(existsSync(join(root, 'etc/lowport')), false);
    },
  );

  it('generates units that systemd-analyze verify accepts, for a service and for socket activation', { skip: noSystemd }, async () => {
    const dir = join(root, 'units');
    for (const extra of [[], ['--socket']]) {
      const r = await runMain([
        'unit',
        'web',
        '--user',
        'nobody',
        '--port',
        '80,443/tcp',
        '--output-dir',
        dir,
        ...extra,
        '--',
        '/usr/bin/python3',
        '-m',
        'http.server',
        '80',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const files = extra.length === 0 ? ['web.service'] : ['web.socket', 'web.service'];
      const verify = spawnSync('systemd-analyze', ['verify', ...files.map((f) => join(dir, f))], { encoding: 'utf8' });
      assert.equal(verify.status, 0, `${verify.stdout}${verify.stderr}`);
      // Only systemd's own advice about the nobody user may be printed.
      assert.doesNotMatch(verify.stderr.replace(/.*Special user nobody configured.*\n?/g, ''), /\S/);
    }
  });

  it('refuses to install when one file or directory deep in the tree is not root-controlled, naming it', () => {
    const deep = join(pkg.dir, 'dist', 'src', 'grants');
    const file = join(pkg.dir, 'dist', 'src', 'os', 'libc.js');
    const koffiDir = join(pkg.dir, 'node_modules', 'koffi');
    const cases: [string, () => void, () => void, RegExp][] = [
      [
        deep,
        () => chmodSync(deep, 0o757),
        () => chmodSync(deep, 0o755),
        /the program directory .*\/dist\/src\/grants is writable by everyone/,
      ],
      [
        deep,
        () => chmodSync(deep, 0o1777),
        () => chmodSync(deep, 0o755),
        /the program directory .*\/dist\/src\/grants is writable by everyone/,
      ],
      [file, () => chmodSync(file, 0o664), () => chmodSync(file, 0o644), /the program file .*libc\.js is writable by group 0/],
      [file, () => chownSync(file, NOBODY, 0), () => chownSync(file, 0, 0), /the program file .*libc\.js is owned by uid 65534/],
      [
        koffiDir,
        () => chownSync(koffiDir, NOBODY, 0),
        () => chownSync(koffiDir, 0, 0),
        /the program directory .*node_modules\/koffi is owned by uid 65534/,
      ],
    ];
    for (const [, spoil, restore, message] of cases) {
      spoil();
      try {
        assert.throws(
          () => install(installOptions()),
          (e: Error & { code?: string; hint?: string }) => {
            assert.equal(e.code, 'E_POLICY_UNSAFE');
            assert.match(e.message, message);
            assert.match(e.hint ?? '', /^Run: (chown|chmod)/);
            return true;
          },
        );
      } finally {
        restore();
      }
    }
    // A symlink in the tree counts for where it points.
    const outside = mkdtempSync(join(tmpdir(), 'lowport-outside-'));
    try {
      chmodSync(outside, 0o755);
      chownSync(outside, NOBODY, NOBODY);
      symlinkSync(outside, join(pkg.dir, 'dist', 'src', 'linked'));
      assert.throws(() => install(installOptions()), /the program directory .*lowport-outside-.* is owned by uid 65534/);
    } finally {
      rmSync(join(pkg.dir, 'dist', 'src', 'linked'), { force: true });
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('refuses to install when an ACL deep in the tree lets another user write', { skip: missingTools({ setfacl: 'acl' }) }, () => {
    const file = join(pkg.dir, 'dist', 'src', 'os', 'libc.js');
    // An ACL that lets nobody write, hidden among 40 harmless entries (too long for a small getxattr buffer).
    const acl = [...Array.from({ length: 40 }, (_, i) => `u:${20000 + i}:r`), `u:${NOBODY}:rw`].join(',');
    const setfacl = spawnSync('setfacl', ['-m', acl, file], { encoding: 'utf8' });
    // CI installs acl (setfacl); the temp file system takes ACLs.
    assert.equal(setfacl.status, 0, setfacl.stderr);
    try {
      // Read whole: a 256-byte getxattr buffer got ERANGE here and saw no ACL.
      assert.deepEqual(aclWriters(getXattr(file, 'system.posix_acl_access'), 0), ['user 65534']);
      assert.throws(() => install(installOptions()), /the program file .*libc\.js has an ACL that lets user 65534 write it/);
    } finally {
      spawnSync('setfacl', ['-b', file]);
    }
  });

  it('refuses unit commands with a systemd prefix, root or a forged --user, and names the file PATH gave', async () => {
    const run = (...a: string[]) => runMain(['unit', 'web', '--port', '80', ...a]);
    const plus = await run('--user', 'nobody', '--', '+/bin/sh', '-c', 'id');
    assert.equal(plus.code, 2);
    assert.match(plus.stderr, /'\+\/bin\/sh' starts with '\+', a systemd prefix/);
    for (const user of ['root', '0', 'nobody\nExecStartPre=+/bin/sh -c id', 'no-such-user-lowport']) {
      const r = await run('--user', user, '--', '/bin/true');
      assert.equal(r.code, 2, user);
      assert.equal(r.stdout, '');
      assert.doesNotMatch(r.stderr, /\nExecStartPre/);
    }
    const bare = await run('--user', 'nobody', '--', 'true');
    assert.equal(bare.code, 0, bare.stderr);
    assert.match(bare.stderr, /^lowport: using \/\S+\/true for true \(from PATH\)$/m);
    assert.match(bare.stdout, /^ExecStart=\/\S+\/true$/m);
  });

  it('writes hostile command words so that systemd-analyze verify reads the program and its words back', { skip: noSystemd }, async () => {
    const dir = rootTempDir('lowport-units');
    try {
      // A program whose path holds a specifier: unescaped, systemd would look for my-web.service-prog.
      const prog = join(dir, 'my-%n-prog');
      writeFileSync(prog, '#!/bin/sh\n', { mode: 0o755 });
      const words = [
        'a\nExecStartPre=+/bin/sh -c id',
        '%n',
        '$HOME',
        '${PATH}',
        '"',
        "'",
        '\\',
        'end\\',
        ';',
        '\x1b[2J',
        'rtl\u202e',
        ' spaced ',
      ];
      const r = await runMain(['unit', 'web', '--user', 'nobody', '--port', '80', '--output-dir', dir, '--', prog, ...words]);
      assert.equal(r.code, 0, r.stderr);
      const text = readFileSync(join(dir, 'web.service'), 'utf8');
      assert.doesNotMatch(text, /^ExecStartPre/m);
      // eslint-disable-next-line no-control-regex -- the test is about control characters
      assert.doesNotMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
      const verify = spawnSync('systemd-analyze', ['verify', join(dir, 'web.service')], { encoding: 'utf8' });
      assert.equal(verify.status, 0, `${verify.stdout}${verify.stderr}`);
      assert.doesNotMatch(verify.stderr.replace(/.*Special user nobody configured.*\n?/g, ''), /\S/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("escapes specifiers in the boot unit's ConditionPathExists=, so systemd checks the policy path itself", { skip: noSystemd }, () => {
    const policy = join('/etc/lowport', 'policy-%n');
    install({ ...installOptions(), policy });
    const unit = readFileSync(join(root, 'etc/systemd/system/lowport.service'), 'utf8');
    const condition = /^ConditionPathExists=(.*)$/m.exec(unit)?.[1] ?? '';
    assert.equal(condition, '/etc/lowport/policy-%%n');
    // systemd-analyze condition checks the running system: point the same escaped condition at the policy install created in the root.
    const created = join(root, policy);
    assert.ok(existsSync(created));
    const check = spawnSync('systemd-analyze', ['condition', `ConditionPathExists=${join(root, condition)}`], { encoding: 'utf8' });
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
    rmSync(created);
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
    // Everyone but group nogroup: access(2) refuses its members, so nothing may be imported.
    writeFileSync(join(dir, 'byport', '84'), '');
    chownSync(join(dir, 'byport', '84'), 0, NOBODY);
    chmodSync(join(dir, 'byport', '84'), 0o705);
    // A file name that would print a live grant for everyone.
    writeFileSync(join(dir, 'byport', '85\ngrant 1-1023 everyone\n#'), '');
    chmodSync(join(dir, 'byport', '85\ngrant 1-1023 everyone\n#'), 0o755);
    // An IPv6 ADDR:PORT name, which authbind never reads.
    writeFileSync(join(dir, 'byaddr', '::1:86'), '');
    chmodSync(join(dir, 'byaddr', '::1:86'), 0o755);
    const printed = await runMain(['import-authbind', '--dir', dir]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.deepEqual(
      printed.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('#')),
      ['grant 80 user nobody', 'grant 81 user nobody addr 127.0.0.2', 'grant 82 user nobody addr ::1'],
    );
    assert.match(printed.stdout, /^# {3}byport\/84: authbind lets everyone but the other members of group nogroup bind it/m);
    assert.match(printed.stdout, /^# {3}byport\/85\\ngrant 1-1023 everyone\\n#: not a port number/m);
    assert.match(printed.stdout, /^# {3}byaddr\/::1:86: authbind reads ADDR:PORT names for IPv4 only/m);
    assert.match(printed.stdout, /^grant 80 user nobody$/m);
    assert.match(printed.stdout, /^grant 81 user nobody addr 127\.0\.0\.2$/m);
    assert.match(printed.stdout, /^grant 82 user nobody addr ::1$/m);
    assert.match(printed.stdout, /^# {3}byuid\/65534 line 2 \(10\.0\.0\.0\/8,83\): a network \(\/8\) cannot be expressed/m);
    const applied = await box.cli('import-authbind', '--dir', dir, '--apply');
    assert.equal(applied.code, 0, applied.stderr);
    assert.deepEqual(
      box.probe({}, [
        ...binds(80, ['127.0.0.1'], ['tcp']),
        ...binds(81, ['127.0.0.2', '127.0.0.1'], ['tcp']),
        ...binds(82, ['::1'], ['udp']),
      ]),
      ['ok', 'ok', 'EACCES', 'ok'],
    );
  });

  it('import-authbind --apply refuses a tree a user controls, and skips symlinks in a root-owned one', async () => {
    const tree = (parent: string, owner: number): string => {
      const dir = join(parent, 'authbind');
      for (const sub of ['byport', 'byaddr', 'byuid']) mkdirSync(join(dir, sub), { recursive: true });
      writeFileSync(join(dir, 'byport', '90'), '', { mode: 0o755 });
      for (const p of [dir, join(dir, 'byport'), join(dir, 'byaddr'), join(dir, 'byuid'), join(dir, 'byport', '90')])
        chownSync(p, owner, owner);
      return dir;
    };
    // A nobody-owned tree in a 1777 directory: the sticky directory on the way is named.
    const shared = join(root, 'ab-shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const inShared = await box.cli('import-authbind', '--dir', tree(shared, NOBODY), '--apply');
    assert.notEqual(inShared.code, 0);
    assert.match(inShared.stderr, new RegExp(`the authbind directory ${shared} is writable by everyone`));
    // A nobody-owned tree in root's directory: the tree is named, with the fix.
    const user = join(root, 'ab-user');
    mkdirSync(user);
    const userTree = tree(user, NOBODY);
    const owned = await box.cli('import-authbind', '--dir', userTree, '--apply');
    assert.notEqual(owned.code, 0);
    assert.match(owned.stderr, new RegExp(`the authbind directory ${userTree} is owned by uid ${NOBODY}, not root`));
    assert.match(owned.stderr, new RegExp(`chown root:root ${userTree} && chmod go-w ${userTree}`));
    // Only a subdirectory of a user's.
    const sub = join(root, 'ab-sub');
    mkdirSync(sub);
    const subTree = tree(sub, 0);
    chownSync(join(subTree, 'byport'), NOBODY, NOBODY);
    const subApplied = await box.cli('import-authbind', '--dir', subTree, '--apply');
    assert.notEqual(subApplied.code, 0);
    assert.match(subApplied.stderr, new RegExp(`the authbind directory ${join(subTree, 'byport')} is owned by uid ${NOBODY}`));
    // None of them went live.
    assert.deepEqual(box.probe({}, binds(90, ['127.0.0.1'], ['tcp'])), ['EACCES']);
    // Printing only warns.
    const printed = await runMain(['import-authbind', '--dir', userTree]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /^grant 90 everyone$/m);
    assert.match(
      printed.stderr,
      new RegExp(`^warning: the authbind directory ${userTree} is owned by uid ${NOBODY}.*\\(with --apply\\)`, 'm'),
    );
    // A root-owned tree imports, the user's file in it included; a symlink in it is skipped with a note.
    const good = join(root, 'ab-root');
    mkdirSync(good);
    const goodTree = tree(good, 0);
    chownSync(join(goodTree, 'byport', '90'), NOBODY, NOBODY);
    chmodSync(join(goodTree, 'byport', '90'), 0o500);
    const target = join(good, 'nobody-file');
    writeFileSync(target, '', { mode: 0o755 });
    symlinkSync(target, join(goodTree, 'byport', '91'));
    const applied = await box.cli('import-authbind', '--dir', goodTree, '--apply');
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stderr, /note: byport\/91: a symlink, which lowport does not follow/);
    assert.deepEqual(box.probe({}, [...binds(90, ['127.0.0.1'], ['tcp']), ...binds(91, ['127.0.0.1'], ['tcp'])]), ['ok', 'EACCES']);
  });
});
