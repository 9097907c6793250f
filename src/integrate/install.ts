/**
 * `lowport install` / `uninstall`: the policy applied at every boot, by a
 * systemd unit that runs `lowport apply` once, after local filesystems and
 * user lookups are up and before the network (so before network services
 * bind), and `lowport off` when stopped.
 */
import { dirname, join, resolve } from 'node:path';
import { readPolicy } from '../policy-file/policy-file.js';
import { dropinDirOf } from '../policy/sources.js';
import { policyPath, requireRoot, type LowportOptions } from '../grants/target.js';
import { LowportError, UsageError } from '../errors.js';
import {
  assertRootControlled,
  ensureTrustedDir,
  GENERATED,
  POLICY,
  preparePolicyDir,
  DROPIN,
  removeTrustedDirIfEmpty,
  removeTrustedFile,
  writeFileAtomic,
} from '../policy-file/trust.js';
import { pathExists } from '../os/process.js';
import {
  checkoutMarker,
  npmLinkOnPath,
  packageDirOf,
  resolveInRoot,
  shebang,
  temporaryPlace,
  type TemporaryPlace,
} from '../os/program-place.js';
import { findTreeFault, TreeCheckError, type TreeFault } from '../os/root-tree.js';
import { systemctl, systemctlPath } from '../os/systemctl.js';
import { systemdRunning } from '../os/system.js';
import { serializePolicy } from '../policy/print.js';
import { escapeControl, hasControl, shellQuote } from '../text.js';

const UNIT_NAME = 'lowport.service';
/** The audit trail's reader (`lowport log --follow --journal`): a service of its own, so the boot unit stays a oneshot. */
export const LOG_UNIT_NAME = 'lowport-log.service';

export interface InstallOptions extends LowportOptions {
  /** Install into this root directory (systemctl --root), not the running system. */
  root?: string;
  /**
   * The command that runs lowport on this machine, absolute: node and the
   * script (its package is the directory above dist/). Not used with `root`:
   * the unit then runs the lowport installed inside the image.
   */
  lowportArgv: string[];
  /** The trees the command loads (the package's package.json and dist/, koffi), walked whole. */
  packageFiles?: string[];
  /** The path lowport was started by (process.argv[1]): an npm link on its way is refused. */
  invokedAs?: string;
  /** lowport's version, for the tarball's name in the hint. */
  version?: string;
}

export interface InstallResult {
  unitFile?: string;
  /** lowport-log.service, written and enabled with the boot unit. */
  logUnitFile?: string;
  policy: string;
  createdPolicy: boolean;
  enabled: boolean;
  /** What to do by hand, when systemd is not there. */
  instructions?: string;
  notes: string[];
}

// The characters text.ts escapes for terminals; here as systemd C escapes.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/**
 * One word of an ExecStart= command line, as systemd.service(5) and
 * systemd.syntax(7) read it back to exactly this word: specifiers (`%n`, `%h`)
 * doubled to `%%`, variables (`$HOME`, `${X}`) to `$$`, and anything but a plain
 * word in double quotes, with `\` and `"` escaped and control characters as C
 * escapes (a raw newline would end the line and start a directive of the
 * caller's choosing). A lone `;` separates commands, so it is written `\;`.
 * The first word's prefixes (`+`, `-`, `@`, `:`, `!`) survive any quoting: the
 * callers make sure the first word is an absolute path.
 */
export function systemdQuote(word: string): string {
  if (word.includes('\0')) throw new UsageError('a command word holds a NUL byte, which no program can receive', 'Remove it.');
  if (word === ';') return '\\;';
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(escaped)) return escaped;
  const inner = escaped
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(CONTROL, (c) => {
      const code = c.charCodeAt(0);
      return code < 0x80 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
    });
  return `"${inner}"`;
}

/**
 * A path for ConditionPathExists= and the like, which takes the rest of the
 * line with specifiers but no quoting: `%` doubled, and refused unless it is
 * absolute and free of control characters (a `!` or `|` first would negate
 * or or-join the condition; a newline would add a directive).
 */
export function systemdPath(path: string): string {
  if (!path.startsWith('/') || hasControl(path) || path !== path.trim()) {
    throw new UsageError(
      `the path '${escapeControl(path)}' cannot go into a systemd unit: it must be absolute, without control characters or leading or trailing spaces`,
      'Give an absolute path made of ordinary characters.',
    );
  }
  return path.replace(/%/g, '%%');
}

/**
 * A whole command line for ExecStart=: the first word must be an absolute
 * path, so no prefix (`+` runs it with full privileges, `-` ignores its
 * failure, `@`, `:`, `!`) can reach systemd, quoted or not.
 */
export function systemdCommandLine(words: string[]): string {
  const [first] = words;
  if (first === undefined || !first.startsWith('/')) {
    throw new UsageError(
      `the command '${escapeControl(first ?? '')}' is not an absolute path, which a systemd unit needs`,
      'Give the program as an absolute path, e.g. /usr/bin/server.',
    );
  }
  return words.map(systemdQuote).join(' ');
}

/**
 * The global options a unit passes on, absolute as the condition's path is:
 * a unit runs from /, where a relative path means something else.
 */
function globalOptions(options: LowportOptions): string[] {
  return [
    ...(options.policy === undefined ? [] : ['--policy', policyPath(options)]),
    ...(options.cgroup === undefined ? [] : ['--cgroup', resolve(options.cgroup)]),
    ...(options.pinDir === undefined ? [] : ['--pin-dir', resolve(options.pinDir)]),
  ];
}

/** The boot unit: `apply` at boot, `off` at stop. `header` says who installed it (`lowport install`, or the Debian package). */
export function bootUnit(
  lowportArgv: string[],
  options: LowportOptions,
  header = '# Installed by `lowport install`; `lowport uninstall` removes it.',
): string {
  const global = globalOptions(options);
  const cmd = (verb: string) => systemdCommandLine([...lowportArgv, verb, ...global]);
  return `${header}
[Unit]
Description=lowport: let non-root programs bind the ports the policy gives them
DefaultDependencies=no
After=local-fs.target nss-user-lookup.target
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists=${systemdPath(policyPath(options))}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${cmd('apply')}
ExecReload=${cmd('apply')}
ExecStop=${cmd('off')}

[Install]
WantedBy=sysinit.target
`;
}

/**
 * The audit trail's service: the one reader of the ring buffer (ops/log.ts),
 * writing each event to the journal with LOWPORT_* fields. It waits while no
 * policy has a `log` statement, and follows the ring across applies and
 * `off`. Root (the pins are root's, BPF needs CAP_BPF or CAP_SYS_ADMIN), with
 * every other capability dropped and the file system read-only.
 */
export function logUnit(
  lowportArgv: string[],
  options: LowportOptions,
  header = '# Installed by `lowport install`; `lowport uninstall` removes it.',
): string {
  const global = globalOptions(options);
  return `${header}
[Unit]
Description=lowport-log: who used a lowport grant and who was refused, to the journal
After=${UNIT_NAME} systemd-journald.socket

[Service]
Type=simple
ExecStart=${systemdCommandLine([...lowportArgv, 'log', '--follow', '--journal', ...global])}
Restart=on-failure
RestartSec=5s
CapabilityBoundingSet=CAP_BPF CAP_SYS_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelModules=yes
RestrictRealtime=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
`;
}

function unitFile(root: string | undefined, name = UNIT_NAME): string {
  return join(root ?? '/', 'etc/systemd/system', name);
}

/**
 * The copying ways to install lowport, for hints: what a root unit may run.
 * `npm install -g .` is not one of them: it links the checkout.
 */
function copyAdvice(version: string): string {
  return (
    'install a copy of lowport that only root can change and that stays where it is: the Debian package ' +
    '(`npm run deb && dpkg -i lowport_*.deb`; it installs and enables this boot unit itself, at /usr/bin/lowport), ' +
    `or npm's copy of a packed tarball (\`npm pack && npm install -g ./lowport-${version}.tgz\`, or \`npm install -g --install-links .\`; ` +
    'plain `npm install -g .` only links this directory) and run `lowport install` from it'
  );
}

/**
 * The unit runs these files as root at every boot: refuse any that a user
 * could change (a clone in a home directory, a Node installed with nvm, one
 * group-writable directory deep in dist/). `argv` (node and the script) is
 * checked with every directory above it (up to `base`, an image's root);
 * `trees` (the package's files, koffi) are walked whole, symlinks checked
 * where they point.
 */
function assertRootOwnedProgram(argv: string[], trees: string[], version: string, base = '/'): void {
  let fault: TreeFault | undefined;
  try {
    fault = findTreeFault(argv, trees, base);
  } catch (e) {
    if (!(e instanceof TreeCheckError)) throw e;
    throw new LowportError('E_STATE', e.message, { hint: 'Check that the program files are there and readable by root.', cause: e });
  }
  if (fault === undefined) return;
  const { problem, fix } = treeFaultWording(fault);
  throw new LowportError(
    'E_POLICY_UNSAFE',
    `${problem}, so someone other than root could run their own code as root at every boot; lowport refuses to install it`,
    {
      hint: `Run: ${fix} (and check the rest of the tree: lowport names the first problem). Or ${copyAdvice(version)}, with a Node that only root can write (the system's).`,
    },
  );
}

function temporaryWording(t: TemporaryPlace): string {
  switch (t.why) {
    case 'temporary-dir':
      return `${t.at}, which is emptied at boot or by a tmp cleaner`;
    case 'tmpfs':
      return 'a tmpfs, which is empty again after a reboot';
    default:
      return `${t.at}, a directory everyone may write to, where tmp cleaners remove files`;
  }
}

/**
 * The program a boot unit runs must be an installed copy that lasts: not in
 * a temporary place, not a source checkout (a \`git pull\` or a half-done
 * build would change what root runs at boot, \`git clean\` removes dist/), and
 * not reached through an npm link (\`npm install -g .\`, which links the
 * checkout instead of copying it). `packageDir` and `invokedAs` are paths on
 * this machine, or inside `root` when given (no file system checks there).
 */
function assertInstalledCopy(argv: string[], packageDir: string, version: string, invokedAs?: string, root?: string): void {
  const refuse = (problem: string) =>
    new LowportError('E_STATE', `${problem}; lowport refuses to point the boot unit at it`, {
      hint: `To run lowport at every boot, ${copyAdvice(version)}.`,
    });
  const link = invokedAs === undefined ? undefined : npmLinkOnPath(invokedAs, 'lowport');
  if (link !== undefined)
    throw refuse(
      `lowport runs through the npm link ${link.link} -> ${link.target} (made by \`npm install -g .\` or \`npm link\`, which link the directory instead of copying it), so the boot unit would run whatever is in ${link.target} at each boot`,
    );
  const marker = checkoutMarker(root === undefined ? packageDir : join(root, packageDir));
  if (marker !== undefined)
    throw refuse(
      `${root === undefined ? 'lowport' : `the image's lowport`} runs from the source checkout ${packageDir} (it holds ${marker.slice(marker.lastIndexOf('/') + 1)}), so the boot unit would run as root whatever is built there next: a \`git pull\` or a half-done \`npm run build\` changes it, \`git clean\` removes it`,
    );
  for (const path of [...argv, packageDir]) {
    const place = temporaryPlace(path, root === undefined);
    if (place !== undefined)
      throw refuse(
        `${root === undefined ? 'lowport' : `the image's lowport`} runs from ${path}, in ${temporaryWording(place)}, so the boot unit would find nothing there at a later boot`,
      );
  }
}

/** Where lowport is installed inside an image, in the order the image's PATH finds it. */
const IMAGE_PROGRAMS = ['/usr/local/bin/lowport', '/usr/bin/lowport'];

/**
 * The command the image's unit runs: the lowport installed inside the image
 * (the Debian package's /usr/bin/lowport, or npm's copy in /usr/local), checked
 * inside the image as the host's is here: root's alone, an installed copy,
 * and a node for its `#!` line. This machine's paths mean nothing there.
 */
function imageProgram(root: string, version: string): string[] {
  if (!pathExists(root)) throw new UsageError(`--root ${root}: there is no such directory`, 'Give the directory of the image (its /).');
  const found = IMAGE_PROGRAMS.map((bin) => ({ bin, script: resolveInRoot(root, bin) })).find((c) => c.script !== undefined);
  if (found?.script === undefined)
    throw new LowportError(
      'E_STATE',
      `the image ${root} has no lowport (neither ${IMAGE_PROGRAMS.join(' nor ')} inside it), and its boot unit must run a lowport that is there when the image boots: the paths this lowport runs from are this machine's`,
      {
        hint: `Install the Debian package into the image first, e.g. \`cp lowport_*.deb ${root}/tmp/ && chroot ${root} dpkg -i /tmp/lowport_${version}_*.deb\` (it enables the boot unit itself), or with your image builder's package list.`,
      },
    );
  const { bin, script } = found;
  const packageDir = packageDirOf(script);
  assertInstalledCopy([script], packageDir, version, undefined, root);
  const interpreter = shebang(join(root, script))?.split(/\s+/) ?? [];
  const node =
    interpreter[0] === '/usr/bin/env'
      ? ['/usr/local/bin', '/usr/bin', '/bin']
          .map((d) => resolveInRoot(root, `${d}/${interpreter[1] ?? 'node'}`))
          .find((p) => p !== undefined)
      : interpreter[0] === undefined
        ? undefined
        : resolveInRoot(root, interpreter[0]);
  if (node === undefined)
    throw new LowportError(
      'E_STATE',
      `the image's ${bin} (${script}) starts with '#!${interpreter.join(' ')}', which is not in the image ${root}`,
      { hint: `Install Node.js 20 or later into the image (Debian: the nodejs package the lowport package depends on).` },
    );
  assertRootOwnedProgram(
    [join(root, bin), join(root, script), join(root, node)],
    [join(root, packageDir, 'package.json'), join(root, packageDir, 'dist'), join(root, packageDir, 'node_modules', 'koffi')],
    version,
    root,
  );
  return [bin];
}

/** What a fault of the program's tree (os/root-tree.ts) is, and the command that fixes it. */
function treeFaultWording({ path, kind, finding }: TreeFault): { problem: string; fix: string } {
  const what = `the program ${kind} ${path}`;
  const fix =
    kind === 'directory'
      ? `chown root:root ${path} && chmod go-w ${path}`
      : `chown -h root:root ${path}${kind === 'file' ? ` && chmod go-w ${path}` : ''}`;
  switch (finding.problem) {
    case 'owner':
      return { problem: `${what} is owned by uid ${finding.uid}, not root`, fix };
    case 'acl':
      return { problem: `${what} has an ACL that lets ${finding.writers.join(', ')} write it`, fix: `setfacl -b ${path}` };
    case 'world-writable':
      return { problem: `${what} is writable by everyone`, fix };
    case 'group-writable':
      return { problem: `${what} is writable by group ${finding.gid}`, fix };
    default:
      return { problem: `${what} is not root's alone`, fix };
  }
}

export function install(o: InstallOptions): InstallResult {
  if (o.root === undefined) requireRoot();
  const version = o.version ?? 'VERSION';
  let argv: string[];
  if (o.root === undefined) {
    const script = o.lowportArgv[o.lowportArgv.length - 1] ?? '';
    assertInstalledCopy(o.lowportArgv, packageDirOf(script), version, o.invokedAs);
    assertRootOwnedProgram(o.lowportArgv, o.packageFiles ?? [], version);
    argv = o.lowportArgv;
  } else {
    argv = imageProgram(resolve(o.root), version);
  }
  const notes: string[] = [];
  const policy = join(o.root ?? '/', policyPath(o));
  let createdPolicy = false;
  preparePolicyDir(dirname(policy));
  // The drop-in directory (policy/sources.ts), as the Debian package ships it: where roles and packages put their files.
  ensureTrustedDir(dropinDirOf(policy), 0o755, DROPIN);
  if (!pathExists(policy)) {
    writeFileAtomic(policy, serializePolicy(readPolicy(policy, true).doc));
    createdPolicy = true;
  }
  const applyLater =
    o.root === undefined
      ? 'Run `lowport apply` to load the policy now.'
      : `It runs \`${argv.map(shellQuote).join(' ')} apply\` at every boot of the image, the first one included, with the rules of ${policy} (${policyPath(o)} inside it); nothing is loaded into this machine's kernel. Edit that file for the image: \`lowport grant\` here would also change this machine's grants.`;
  if (systemctlPath() === undefined) {
    return {
      policy,
      createdPolicy,
      enabled: false,
      notes: o.root === undefined ? notes : [applyLater],
      instructions:
        `systemd is not installed here. Run \`${argv.map(shellQuote).join(' ')} apply\` at every boot${o.root === undefined ? '' : ' of the image'}, after local filesystems are mounted and before network services start: ` +
        'for example from /etc/rc.local, an OpenRC service (`depend() { before net; need localmount; }`), or a runit/s6 oneshot.',
    };
  }
  const file = unitFile(o.root);
  // Root's unit, under --root IMG too: every directory from / to it root's alone, and a link at its name replaced, never followed.
  ensureTrustedDir(dirname(file), 0o755, GENERATED);
  writeFileAtomic(file, bootUnit(argv, o), { role: GENERATED, followLink: false });
  const logFile = unitFile(o.root, LOG_UNIT_NAME);
  writeFileAtomic(logFile, logUnit(argv, o), { role: GENERATED, followLink: false });
  const live = o.root === undefined && systemdRunning();
  if (live) systemctl(['daemon-reload']);
  for (const name of [UNIT_NAME, LOG_UNIT_NAME]) {
    const enabled = systemctl(['enable', name], o.root);
    if (!enabled.ok)
      throw new LowportError('E_STATE', `systemctl enable ${name} failed: ${enabled.output}`, {
        hint: `See \`systemctl status ${name}\`.`,
      });
  }
  // The reader waits for a policy with `log`; started now, it is there when one comes.
  if (live) systemctl(['start', LOG_UNIT_NAME]);
  if (o.root !== undefined) notes.push(applyLater);
  else if (!live) notes.push(`systemd is not running as init here: the unit takes effect at the next boot with systemd. ${applyLater}`);
  return { unitFile: file, logUnitFile: logFile, policy, createdPolicy, enabled: true, notes };
}

export interface UninstallOptions extends LowportOptions {
  root?: string;
  /** Also remove the policy file (and its directory when empty). */
  purge?: boolean;
}

export function uninstall(o: UninstallOptions): { removed: string[]; notes: string[] } {
  if (o.root === undefined) requireRoot();
  const removed: string[] = [];
  const notes: string[] = [];
  const file = unitFile(o.root);
  // Removing names as root under --root IMG: only where no user could have
  // swapped a directory on the way for a link to the real /etc.
  if (pathExists(dirname(file))) assertRootControlled(dirname(file), GENERATED);
  for (const name of [LOG_UNIT_NAME, UNIT_NAME]) {
    const path = unitFile(o.root, name);
    if (systemctlPath() !== undefined && pathExists(path)) {
      if (name === LOG_UNIT_NAME && o.root === undefined && systemdRunning()) systemctl(['stop', name]);
      const r = systemctl(['disable', name], o.root);
      if (!r.ok) throw new LowportError('E_STATE', `systemctl disable ${name} failed: ${r.output}`);
    }
    if (pathExists(path)) {
      removeTrustedFile(path, GENERATED);
      removed.push(path);
    }
  }
  if (o.root === undefined && systemdRunning()) systemctl(['daemon-reload']);
  const policy = join(o.root ?? '/', policyPath(o));
  if (o.purge === true && pathExists(policy)) {
    assertRootControlled(dirname(policy));
    removeTrustedFile(policy, POLICY);
    // Drop-ins are others' files (a package's, a role's): the directory goes only when none is left.
    removeTrustedDirIfEmpty(dropinDirOf(policy), DROPIN);
    if (pathExists(dropinDirOf(policy))) notes.push(`kept ${dropinDirOf(policy)}: it is not empty`);
    removeTrustedFile(join(dirname(policy), '.lowport.lock'), POLICY, { emptyDir: true });
    removed.push(policy);
  } else if (pathExists(policy)) {
    notes.push(`kept ${policy} (--purge removes it)`);
  }
  notes.push('grants live now stay until reboot or `lowport off`');
  return { removed, notes };
}
