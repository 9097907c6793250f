/**
 * Everything the benchmark creates on the machine, and its removal. Like the
 * kernel tests' sandbox (test/kernel/sandbox.ts), and for the same reasons:
 * lowport attaches to a dedicated child cgroup (never the hierarchy's root),
 * pins in its own bpffs directory (never /sys/fs/bpf/lowport), reads a policy
 * from a private temp directory; clients run in a private network namespace.
 *
 * Sibling cgroups, so that every variant can run in every round (the runs
 * are interleaved, see bind.ts) while lowport's policy stays loaded:
 *   hooked  lowport's links are attached here
 *   plain   nothing of lowport's; the baselines and the peers run here
 *   floor1  the trivial program `r0 = 1; exit` on both bind hooks (bind.ts attaches it)
 *   floor3  the trivial program `r0 = 3; exit`: a grant that does no work
 *
 * Two private network namespaces, each held open by a sleeping process and
 * entered with nsenter by every client run:
 *   main    lo up, the kernel's defaults (ports below 1024 privileged)
 *   sysctl  lo up, net.ipv4.ip_unprivileged_port_start=80 (per namespace,
 *           so the machine's own setting is untouched)
 * Not a fresh `unshare --net` per run: a namespace is torn down in the
 * background after its last process exits, a burst of kernel work that would
 * land in the next run's measurement.
 *
 * The benchmark uses the built CLI for everything lowport does, and plain
 * files for the rest, so it measures what a user runs and does not depend on
 * src/ internals.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI as users run it: the bundle, package.json's bin (the benchmark runs from dist/bench). */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'bundle', 'main.js');
/** tsc's CLI, dist/src/cli/main.js: what the profiles run, so that time is named by source file. */
export const SOURCE_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

export const NOBODY = 65534;
const BPFFS = '/sys/fs/bpf';

/** The cgroup-v2 mount point, from /proc/mounts (/sys/fs/cgroup/unified on these hybrid machines). */
export function findCgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint !== undefined) return mountPoint.replace(/\\040/g, ' ');
  }
  throw new Error('no cgroup v2 hierarchy is mounted: the bind hook attaches to one (mount -t cgroup2 none /sys/fs/cgroup/unified)');
}

/** What was at a file's place before the benchmark wrote there, to put back afterwards. */
interface SavedFile {
  path: string;
  previous: { content: Buffer; mode: number; uid: number; gid: number } | undefined;
}

export class Workspace {
  readonly dir: string;
  readonly policy: string;
  readonly hooked: string;
  readonly plain: string;
  readonly floor1: string;
  readonly floor3: string;
  readonly pinDir: string;
  /** A second instance with a small policy (`grant`, `doctor`, `list` as people use them), in a cgroup of its own. */
  readonly small: { cgroup: string; pinDir: string; policy: string };
  /** A third lowport instance, the same policy with `log all`: the cost of the audit trail (issue 14). */
  readonly logged: string;
  readonly loggedPinDir: string;
  private readonly saved: SavedFile[] = [];
  private readonly holders: ChildProcess[] = [];
  /** Pids of the processes holding the network namespaces open (see above). */
  readonly netns = { main: 0, sysctl: 0 };
  private disposed = false;

  constructor() {
    const tag = `lowport-bench-${process.pid}`;
    const root = findCgroup2Root();
    this.hooked = join(root, `${tag}-hooked`);
    this.plain = join(root, `${tag}-plain`);
    this.floor1 = join(root, `${tag}-floor1`);
    this.floor3 = join(root, `${tag}-floor3`);
    // bpffs refuses names with a dot; this one has none.
    this.pinDir = join(BPFFS, tag.replace(/-/g, '_'));
    this.logged = join(root, `${tag}-logged`);
    this.loggedPinDir = `${this.pinDir}_logged`;
    // Root-owned and writable only by root, up to / (lowport refuses a policy
    // under a directory others could write, such as /tmp), but readable, so
    // uid 65534 can run the client placed here.
    this.dir = mkdtempSync(join('/run', `${tag}-`));
    chmodSync(this.dir, 0o755);
    this.policy = join(this.dir, 'policy');
    this.small = { cgroup: join(root, `${tag}-small`), pinDir: `${this.pinDir}_small`, policy: join(this.dir, 'small.policy') };
    for (const cg of this.cgroups) mkdirSync(cg);
  }

  get cgroups(): string[] {
    return [this.hooked, this.plain, this.floor1, this.floor3, this.small.cgroup, this.logged];
  }

  /** Creates the two network namespaces; call once, before any client runs. */
  async openNetworkNamespaces(unprivilegedPortStart: number): Promise<void> {
    this.netns.main = await this.holdNetworkNamespace('ip link set lo up');
    this.netns.sysctl = await this.holdNetworkNamespace(
      `ip link set lo up && sysctl -qw net.ipv4.ip_unprivileged_port_start=${unprivilegedPortStart}`,
    );
  }

  private holdNetworkNamespace(setup: string): Promise<number> {
    // unshare execs sh, which execs sleep: the child's pid is the holder's.
    const child = spawn('unshare', ['--net', '--', 'sh', '-c', `${setup} && echo ready && exec sleep infinity`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.holders.push(child);
    return new Promise((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.once('data', () => (child.pid === undefined ? reject(new Error('unshare did not start')) : resolve(child.pid)));
      child.once('exit', (code) => reject(new Error(`network namespace setup failed (exit ${code}): ${setup}: ${err.trim()}`)));
      child.once('error', reject);
    });
  }

  /** lowport's global options for this workspace: every CLI call gets them. */
  get lowportArgs(): string[] {
    return ['--policy', this.policy, '--cgroup', this.hooked, '--pin-dir', this.pinDir];
  }

  /** The same for the small instance. */
  get smallArgs(): string[] {
    return ['--policy', this.small.policy, '--cgroup', this.small.cgroup, '--pin-dir', this.small.pinDir];
  }

  /** The same for the logging instance. */
  get loggedArgs(): string[] {
    return ['--policy', this.policy, '--cgroup', this.logged, '--pin-dir', this.loggedPinDir];
  }

  /**
   * Writes `content` at `path` (outside the workspace, e.g. /etc/authbind/byport/80)
   * with this owner and mode; dispose() restores what was there, or removes it.
   */
  placeFile(path: string, content: string, mode: number, uid: number, gid: number): void {
    let previous: SavedFile['previous'];
    if (existsSync(path)) {
      const st = lstatSync(path);
      if (!st.isFile()) throw new Error(`${path} exists and is not a regular file; not touching it`);
      previous = { content: readFileSync(path), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    }
    this.saved.push({ path, previous });
    writeFileSync(path, content);
    chownSync(path, uid, gid);
    chmodSync(path, mode);
  }

  /** Removes everything, whatever state the run left; every step runs even if one fails. */
  dispose(log: (line: string) => void): void {
    if (this.disposed) return;
    this.disposed = true;
    const step = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (e) {
        log(`cleanup: ${what} failed: ${(e as Error).message}`);
      }
    };
    for (const h of this.holders) step('ending a network namespace holder', () => h.kill('SIGKILL'));
    step('lowport off', () => this.lowportOff(this.pinDir, this.lowportArgs));
    step('lowport off (small policy)', () => this.lowportOff(this.small.pinDir, this.smallArgs));
    step('lowport off (logging instance)', () => this.lowportOff(this.loggedPinDir, this.loggedArgs));
    for (const cg of this.cgroups) step(`removing cgroup ${cg}`, () => removeCgroup(cg));
    for (const s of this.saved.reverse()) step(`restoring ${s.path}`, () => restoreFile(s));
    step(`removing ${this.dir}`, () => rmSync(this.dir, { recursive: true, force: true }));
  }

  private lowportOff(pinDir: string, args: string[]): void {
    const r = spawnSync(process.execPath, [CLI, 'off', ...args], { encoding: 'utf8' });
    // If `off` itself failed (a broken build), unpinning is what removes the
    // links: a cgroup link is detached when its last reference goes.
    const leftovers = [pinDir, ...stageDirsOf(pinDir)].filter((d) => existsSync(d));
    for (const d of leftovers) rmSync(d, { recursive: true, force: true });
    if (r.status !== 0)
      throw new Error(`exit ${r.status}: ${r.stderr.trim()}${leftovers.length > 0 ? `; unpinned ${leftovers.join(', ')} by hand` : ''}`);
  }
}

/** Staging directories an install of this pin directory may have left (grants/live.ts names them so). */
function stageDirsOf(pinDir: string): string[] {
  const prefix = `lowport_stage_${basename(pinDir)}-`;
  return readdirSync(dirname(pinDir))
    .filter((n) => n.startsWith(prefix))
    .map((n) => join(dirname(pinDir), n));
}

function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  // Clients are run to their end, so the cgroup is empty unless a run was interrupted.
  for (let i = 0; i < 50; i++) {
    const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    spawnSync('sleep', ['0.05']);
  }
  rmdirSync(dir);
}

function restoreFile(s: SavedFile): void {
  if (s.previous === undefined) {
    if (existsSync(s.path)) unlinkSync(s.path);
    return;
  }
  writeFileSync(s.path, s.previous.content);
  chownSync(s.path, s.previous.uid, s.previous.gid);
  chmodSync(s.path, s.previous.mode);
}
