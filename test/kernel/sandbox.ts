/**
 * Isolation for tests that touch the kernel. Each sandbox has its own child
 * cgroup (lowport attaches there, never at the machine's root), its own bpffs
 * mount (never /sys/fs/bpf; mounted bare, so 1777 as a hostile machine may
 * have it) holding the pin directory, and its own policy file in a
 * private temp directory. Clients run inside the cgroup, in a private network
 * namespace (so no port can collide with the machine's), as an unprivileged
 * user with no capabilities. `dispose()` removes everything, and is meant for
 * an `after`/`finally` hook.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMain } from '../run-main.js';
import { removeAll } from '../../src/grants/live.js';
import { forgetAppliedText } from '../../src/grants/scopes.js';
import { forgetReservedPorts, syncReservedPorts } from '../../src/grants/reserved-ports.js';
import { findCgroup2Root, createNewCgroup, killAndRemoveCgroup } from '../../src/os/cgroup.js';
import { mount } from '../../src/os/libc.js';
import { probeSetRetval } from '../../src/bpf/probes.js';

export const NOBODY = 65534;
const here = dirname(fileURLToPath(import.meta.url));
/** The built CLI (tests run from dist/test/kernel). */
export const CLI = join(here, '..', '..', 'src', 'cli', 'main.js');

/**
 * A helper program of test/fixtures/ (compiled next to this directory), to
 * copy into a sandbox's directory: the clients run as another user, who may
 * not be able to read the checkout (CI may clone under /root). Copied as
 * .mjs, since no package.json there says the file is an ES module.
 */
export function copyFixture(name: string, toDir: string): string {
  const to = join(toDir, `${name}.mjs`);
  copyFileSync(join(here, '..', 'fixtures', `${name}.js`), to);
  chmodSync(to, 0o644);
  return to;
}

let counter = 0;

/**
 * A fresh directory (0755) in one only root can write: lowport refuses a
 * policy, a unit or a program under a directory that others can write, as
 * /tmp is, sticky or not. /run is root's tmpfs, emptied at reboot.
 */
export function rootTempDir(prefix: string): string {
  const dir = mkdtempSync(join('/run', `${prefix}-`));
  chmodSync(dir, 0o755);
  return dir;
}

/** External tools a test runs, each with the Debian package that has it (README, "Running the tests"; .ci/run installs them). */
export type Tools = Record<string, string>;

/** What every sandbox runs its clients with: a private network namespace brought up, and the privilege drop. */
const SANDBOX_TOOLS: Tools = { unshare: 'util-linux', setpriv: 'util-linux', ip: 'iproute2' };

const TOOL_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

/**
 * Why a test cannot run here because a tool it runs is missing ("setfacl is
 * not installed (apt-get install acl)"), or false when every one is on PATH:
 * for `it(..., { skip: missingTools({ setfacl: 'acl' }) })`, so that a
 * missing tool is a skip that says why, never a bare failure such as
 * `null !== 0`.
 */
export function missingTools(tools: Tools): string | false {
  const missing = Object.keys(tools).filter(
    (t) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', t], { env: { ...process.env, PATH: TOOL_PATH } }).status !== 0,
  );
  if (missing.length === 0) return false;
  const packages = [...new Set(missing.map((t) => tools[t]))].join(' ');
  return `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed (apt-get install ${packages})`;
}

/**
 * Why kernel tests cannot run here, or undefined when they can: root, cgroup
 * v2, the sandbox's own tools, and `tools`, the ones the test file runs.
 */
export function kernelSkipReason(tools: Tools = {}): string | undefined {
  if (process.geteuid?.() !== 0) return 'kernel tests need root (run `sudo npm test`)';
  try {
    findCgroup2Root();
  } catch {
    return 'no cgroup v2 hierarchy is mounted';
  }
  return missingTools({ ...SANDBOX_TOOLS, ...tools }) || undefined;
}

/**
 * The errno others get from a reserved port on this kernel, as the probe
 * that picks the program variant answers: EADDRINUSE where a bind hook may
 * call bpf_set_retval (Linux 6.1), else EPERM. Root only, as the tests.
 */
export function reservedErrno(): 'EADDRINUSE' | 'EPERM' {
  return probeSetRetval().ok ? 'EADDRINUSE' : 'EPERM';
}

export interface BindRequest {
  proto: 'tcp' | 'udp';
  addr: string;
  port: number;
  /** Keep the socket open until the probe ends, so later binds find the port taken. */
  hold?: boolean;
}

/** 'ok' or the error code (EACCES, EPERM, EADDRINUSE, ...). */
export type BindResult = string;

export interface ClientOptions {
  uid?: number;
  gid?: number;
  /** Supplementary groups. */
  groups?: number[];
  /** Capabilities to keep, ambient and inheritable, e.g. ['net_bind_service']. */
  caps?: string[];
  /** sysctl settings for the private network namespace, e.g. { 'net.ipv4.ip_unprivileged_port_start': '80' }. */
  sysctls?: Record<string, string>;
  /** Run outside the sandbox's cgroup (in a sibling cgroup): the grant must not reach it. */
  outside?: boolean;
}

export class Sandbox {
  readonly name: string;
  readonly cgroup: string;
  readonly outsideCgroup: string;
  readonly pinDir: string;
  /** The sandbox's own bpffs mount, the pin directory's parent. */
  readonly bpffs: string;
  readonly dir: string;
  readonly policy: string;
  private readonly children = new Set<ChildProcess>();
  private readonly lowportUserBefore = machineUser('lowport');

  /** A directory for the clients' own files (owned by them once a test chowns it). */
  get work(): string {
    return join(this.dir, 'work');
  }

  /** The bind probe (test/fixtures/bind-probe.ts), in the sandbox's directory. */
  get probePath(): string {
    return join(this.dir, 'bind-probe.mjs');
  }

  constructor(label: string) {
    this.name = `lowport-test-${process.pid}-${++counter}-${label}`;
    const root = findCgroup2Root();
    this.cgroup = join(root, this.name);
    this.outsideCgroup = join(root, `${this.name}-outside`);
    // Root-owned and not writable by others (the policy's directory must be),
    // but readable, so the unprivileged clients can run the files placed here.
    this.dir = rootTempDir('lowport-test');
    this.policy = join(this.dir, 'policy');
    this.bpffs = join(this.dir, 'bpffs');
    this.pinDir = join(this.bpffs, 'lowport');
    copyFixture('bind-probe', this.dir);
    mkdirSync(this.bpffs);
    mount('bpf', this.bpffs, 'bpf');
    createNewCgroup(this.cgroup);
    createNewCgroup(this.outsideCgroup);
  }

  /** Global options for this sandbox's CLI calls. */
  get args(): string[] {
    return ['--policy', this.policy, '--cgroup', this.cgroup, '--pin-dir', this.pinDir];
  }

  get options(): { policy: string; cgroup: string; pinDir: string } {
    return { policy: this.policy, cgroup: this.cgroup, pinDir: this.pinDir };
  }

  writePolicy(text: string, mode = 0o644): void {
    writeFileSync(this.policy, text, { mode });
  }

  readPolicy(): string {
    return readFileSync(this.policy, 'utf8');
  }

  /** Runs the CLI in-process with this sandbox's options; returns exit code and output. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return runMain([...this.args, ...args]);
  }

  /** Runs the built CLI binary as a separate process. */
  cliProcess(args: string[], env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
    return spawnSync(process.execPath, [CLI, ...args, ...this.args], { encoding: 'utf8', env });
  }

  /** argv prefix that runs a command as the client described: netns, cgroup, identity. */
  clientCommand(o: ClientOptions, argv: string[]): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
    const uid = o.uid ?? NOBODY;
    const gid = o.gid ?? uid;
    const caps = o.caps ?? [];
    const sysctls = Object.entries(o.sysctls ?? {})
      .map(([k, v]) => `sysctl -qw ${k}=${v} && `)
      .join('');
    const setpriv = [
      'setpriv',
      `--reuid=${uid}`,
      `--regid=${gid}`,
      o.groups === undefined || o.groups.length === 0 ? '--clear-groups' : `--groups=${o.groups.join(',')}`,
      `--inh-caps=-all${caps.map((c) => `,+${c}`).join('')}`,
      ...(caps.length > 0 ? [`--ambient-caps=${caps.map((c) => `+${c}`).join(',')}`] : []),
      `--bounding-set=-all${caps.map((c) => `,+${c}`).join('')}`,
      ...(caps.length > 0 ? [] : ['--no-new-privs']),
    ];
    const script = `ip link set lo up && ${sysctls}echo $$ > "$LOWPORT_TEST_CGROUP/cgroup.procs" && exec "$@"`;
    return {
      command: 'unshare',
      args: ['--net', '--', 'sh', '-c', script, 'sh', ...setpriv, ...argv],
      env: { ...process.env, LOWPORT_TEST_CGROUP: o.outside === true ? this.outsideCgroup : this.cgroup },
    };
  }

  /** Tries each bind as the client and returns 'ok' or the error code for each, in order. */
  probe(o: ClientOptions, binds: BindRequest[]): BindResult[] {
    const { command, args, env } = this.clientCommand(o, [process.execPath, this.probePath, JSON.stringify(binds)]);
    const r = spawnSync(command, args, { encoding: 'utf8', env });
    if (r.status !== 0) throw new Error(`bind probe failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout) as BindResult[];
  }

  /** Starts a long-running client (a server); it is killed by dispose(). */
  start(o: ClientOptions, argv: string[], extraEnv: NodeJS.ProcessEnv = {}): ChildProcess {
    const { command, args, env } = this.clientCommand(o, argv);
    const child = spawn(command, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Removes the kernel state, the cgroups and the files, whatever state the test left. */
  async dispose(): Promise<void> {
    for (const c of this.children) c.kill('SIGKILL');
    try {
      // As `lowport off` does: the kernel state, and what lowport keeps under /run for this instance.
      removeAll({ cgroup: this.cgroup, pinDir: this.pinDir });
      forgetAppliedText({ cgroup: this.cgroup, pinDir: this.pinDir });
      // Reserved ports lowport added to this network namespace's sysctl; the record of other (private) namespaces too.
      try {
        syncReservedPorts(this.pinDir, undefined);
      } finally {
        forgetReservedPorts(this.pinDir);
      }
    } finally {
      // Scoped-grant cgroups a test's `lowport run` left below the sandbox's go first.
      for (const name of readdirSync(this.cgroup)) if (name.startsWith('lowport-run-')) await killAndRemoveCgroup(join(this.cgroup, name));
      await killAndRemoveCgroup(this.cgroup);
      await killAndRemoveCgroup(this.outsideCgroup);
      // Lazily: a process a test left may still hold an fd in it; the kernel objects go with their last reference.
      spawnSync('umount', ['-l', this.bpffs]);
      rmSync(this.dir, { recursive: true, force: true });
    }
    // A tripwire: a forwarder started without --user outside a private /etc creates lowport's system user on the machine.
    if (machineUser('lowport') !== this.lowportUserBefore) {
      throw new Error(
        "a test changed the machine's `lowport` user: start the forwarder with --user, or in a private copy of /etc (forward.test.ts)",
      );
    }
  }
}

function machineUser(name: string): string {
  return spawnSync('getent', ['passwd', name], { encoding: 'utf8' }).stdout;
}

/**
 * A copy of the built package (package.json, dist/src, koffi) in a temp
 * directory every user can read: the checkout may sit where uid 65534
 * cannot (CI may clone under /root).
 */
export class PackageCopy {
  readonly dir: string;
  readonly cli: string;

  /** `dir`: where to put the copy (created 0755; dispose removes it), by default a fresh directory under /run. */
  constructor(dir?: string) {
    const root = fileURLToPath(new URL('../../..', import.meta.url));
    this.dir = dir ?? rootTempDir('lowport-pkg');
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    cpSync(join(root, 'package.json'), join(this.dir, 'package.json'));
    cpSync(join(root, 'dist', 'src'), join(this.dir, 'dist', 'src'), { recursive: true });
    cpSync(join(root, 'node_modules', 'koffi'), join(this.dir, 'node_modules', 'koffi'), { recursive: true });
    this.cli = join(this.dir, 'dist', 'src', 'cli', 'main.js');
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * An image for `install --root`, laid out as the Debian package installs
 * lowport: the program in usr/lib/lowport (a PackageCopy), usr/bin/lowport a
 * relative link to its CLI, and a usr/bin/node for the `#!` line the package
 * writes (a stand-in: install checks that it is there and root's, nothing
 * runs it). `withLowport: false` leaves the image without lowport.
 */
export class ImageRoot {
  readonly pkg: PackageCopy | undefined;

  constructor(
    readonly dir: string,
    { withLowport = true } = {},
  ) {
    mkdirSync(join(dir, 'usr', 'bin'), { recursive: true, mode: 0o755 });
    if (!withLowport) return;
    this.pkg = new PackageCopy(join(dir, 'usr', 'lib', 'lowport'));
    const cli = this.pkg.cli;
    writeFileSync(cli, readFileSync(cli, 'utf8').replace(/^#!.*/, '#!/usr/bin/node'), { mode: 0o755 });
    symlinkSync('../lib/lowport/dist/src/cli/main.js', join(dir, 'usr', 'bin', 'lowport'));
    writeFileSync(join(dir, 'usr', 'bin', 'node'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  }
}

/** Shorthand for a list of bind requests. */
export function binds(port: number, addrs: string[], protos: ('tcp' | 'udp')[] = ['tcp', 'udp']): BindRequest[] {
  return protos.flatMap((proto) => addrs.map((addr) => ({ proto, addr, port })));
}
