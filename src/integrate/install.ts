/**
 * `lowport install` / `uninstall`: the policy applied at every boot, by a
 * systemd unit that runs `lowport apply` once, after local filesystems and
 * user lookups are up and before the network (so before network services
 * bind), and `lowport off` when stopped.
 */
import { dirname, join } from 'node:path';
import { readPolicy } from '../engine/apply.js';
import { policyPath, requireRoot, type LowportOptions } from '../engine/target.js';
import { LowportError } from '../errors.js';
import { assertRootControlled, ensureTrustedDir, GENERATED, preparePolicyDir, removeFile, removeEmptyDir, writeFileAtomic } from '../kernel/files.js';
import { pathExists } from '../kernel/process.js';
import { systemctl, systemctlPath } from '../kernel/systemctl.js';
import { systemdRunning } from '../kernel/system.js';
import { serializePolicy } from '../policy/print.js';

export const UNIT_NAME = 'lowport.service';

export interface InstallOptions extends LowportOptions {
  /** Install into this root directory (systemctl --root), not the running system. */
  root?: string;
  /** The command that runs lowport, absolute: node and the script. */
  lowportArgv: string[];
  /** Other files the command loads (the package, koffi's native module), checked like it. */
  packageFiles?: string[];
}

export interface InstallResult {
  unitFile?: string;
  policy: string;
  createdPolicy: boolean;
  enabled: boolean;
  /** What to do by hand, when systemd is not there. */
  instructions?: string;
  notes: string[];
}

/** systemd's quoting for ExecStart= words (systemd.syntax(7)): double quotes, backslash escapes, % and $ doubled. */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function bootUnit(lowportArgv: string[], options: LowportOptions): string {
  const global = [
    ...(options.policy === undefined ? [] : ['--policy', options.policy]),
    ...(options.cgroup === undefined ? [] : ['--cgroup', options.cgroup]),
    ...(options.pinDir === undefined ? [] : ['--pin-dir', options.pinDir]),
  ];
  const cmd = (verb: string) => [...lowportArgv, verb, ...global].map(systemdQuote).join(' ');
  return `# Installed by \`lowport install\`; \`lowport uninstall\` removes it.
[Unit]
Description=lowport: let non-root programs bind the ports the policy gives them
DefaultDependencies=no
After=local-fs.target nss-user-lookup.target
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target
ConditionPathExists=${policyPath(options)}

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

function unitFile(root: string | undefined): string {
  return join(root ?? '/', 'etc/systemd/system', UNIT_NAME);
}

/**
 * The unit runs these files as root at every boot: refuse any that a user
 * could change (a clone in a home directory, a Node installed with nvm).
 */
export function assertRootOwnedProgram(argv: string[], extra: string[] = []): void {
  const role = { noun: 'program', risk: 'run their own code as root at every boot' };
  for (const path of [...argv, ...extra]) {
    try {
      assertRootControlled(path, role);
    } catch (e) {
      if (e instanceof LowportError) {
        throw new LowportError('E_POLICY_UNSAFE', e.message, {
          hint: 'Install lowport and Node where only root can write (e.g. `sudo npm install -g .` with the system Node), then run `lowport install` from there.',
          cause: e,
        });
      }
      throw e;
    }
  }
}

export function install(o: InstallOptions): InstallResult {
  if (o.root === undefined) requireRoot();
  assertRootOwnedProgram(o.lowportArgv, o.packageFiles ?? []);
  const notes: string[] = [];
  const policy = join(o.root ?? '/', policyPath(o));
  let createdPolicy = false;
  preparePolicyDir(dirname(policy));
  if (!pathExists(policy)) {
    writeFileAtomic(policy, serializePolicy(readPolicy(policy, true).doc));
    createdPolicy = true;
  }
  if (systemctlPath() === undefined) {
    return {
      policy,
      createdPolicy,
      enabled: false,
      notes,
      instructions:
        `systemd is not installed here. Run \`${o.lowportArgv.join(' ')} apply\` at every boot, after local filesystems are mounted and before network services start: ` +
        'for example from /etc/rc.local, an OpenRC service (`depend() { before net; need localmount; }`), or a runit/s6 oneshot.',
    };
  }
  const file = unitFile(o.root);
  // Root's unit, under --root IMG too: every directory from / to it root's alone, and a link at its name replaced, never followed.
  ensureTrustedDir(dirname(file), 0o755, GENERATED);
  writeFileAtomic(file, bootUnit(o.lowportArgv, o), { role: GENERATED, followLink: false });
  const live = o.root === undefined && systemdRunning();
  if (live) systemctl(['daemon-reload']);
  const enabled = systemctl(['enable', UNIT_NAME], o.root);
  if (!enabled.ok) throw new LowportError('E_STATE', `systemctl enable ${UNIT_NAME} failed: ${enabled.output}`, { hint: `See \`systemctl status ${UNIT_NAME}\`.` });
  if (!live) notes.push('systemd is not running as init here: the unit takes effect at the next boot with systemd. Run `lowport apply` to load the policy now.');
  return { unitFile: file, policy, createdPolicy, enabled: true, notes };
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
  if (systemctlPath() !== undefined && pathExists(file)) {
    const r = systemctl(['disable', UNIT_NAME], o.root);
    if (!r.ok) throw new LowportError('E_STATE', `systemctl disable ${UNIT_NAME} failed: ${r.output}`);
  }
  if (pathExists(file)) {
    removeFile(file);
    removed.push(file);
  }
  if (o.root === undefined && systemdRunning()) systemctl(['daemon-reload']);
  const policy = join(o.root ?? '/', policyPath(o));
  if (o.purge === true && pathExists(policy)) {
    assertRootControlled(dirname(policy));
    removeFile(policy);
    removeFile(join(dirname(policy), '.lowport.lock'));
    removeEmptyDir(dirname(policy));
    removed.push(policy);
  } else if (pathExists(policy)) {
    notes.push(`kept ${policy} (--purge removes it)`);
  }
  notes.push('grants live now stay until reboot or `lowport off`');
  return { removed, notes };
}
