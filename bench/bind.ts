/**
 * lowport's benchmark (`sudo npm run bench`; about 75 s here). Side by side in
 * one run, on this machine:
 *
 *   bind()   cost for uid 65534 granted port 80 by lowport with 10,000 rules
 *            loaded (or --rules N), against root's own bind, the floor of any
 *            cgroup program (a trivial `r0 = 1; exit` and `r0 = 3; exit`,
 *            attached in cgroups of their own), root through lowport's hook
 *            on a port with rules, on a port without (8080) and on port 0,
 *            the ip_unprivileged_port_start sysctl and authbind; a granted
 *            bind with the audit trail on (`log all`, a second instance in
 *            its own cgroup, read by `lowport log --follow`); C client,
 *            private network namespaces, interleaved rounds; and the length
 *            of each program as the kernel runs it (xlated and jited)
 *   apply    wall time of the built CLI loading the 10,000 rules: first
 *            install, and re-apply (the swap)
 *   list     wall time of `lowport list` and `list --json` with them live
 *   small    `grant`, `revoke`, `list` and `doctor` on a second instance with
 *            a small policy (two rules), as people use them day to day
 *   floors   `node -e 0` and `lowport --version` (Node start-up, and that plus
 *            loading lowport's modules), the part of any command that is not
 *            its work
 *
 * and, from `node --cpu-prof`, where apply's and list's time goes.
 * Targets (issues 8 and 13): granted bind within 1.15x root's, and against
 * the floor: a port without rules within 1.02x of `r0 = 1`, a granted bind
 * within 1.05x of `r0 = 3`, root through lowport within 1.03x of `r0 = 1`
 * (all 1.05x with more than 10,000 rules); logging on within 1.05x of
 * logging off (issue 14); apply under 1 s; list under 200 ms; grant and
 * doctor with a small policy under 200 ms. Results and method: bench/README.md.
 *
 * Options: --rounds N (bind rounds, default 11), --cli-rounds N (default 5),
 * --rules N (rules loaded, default 10,000; 100,000 for the large case),
 * --no-profile, --bind-only (bind() alone: the policy is loaded through the
 * library, not timed, and the CLI is not measured).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Assembler, R0 } from '../src/bpf/asm.js';
import { BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND, BPF_PROG_TYPE_CGROUP_SOCK_ADDR } from '../src/bpf/attr.js';
import { LinkHandle, OwnedFd, ProgramHandle, withHandle } from '../src/bpf/handles.js';
import { progQuery } from '../src/bpf/syscall.js';
import { openDir } from '../src/os/process.js';
import { compileDocument, policyFingerprint } from '../src/grants/document.js';
import { programOptions, swapPolicy } from '../src/grants/live.js';
import { buildBindProgram } from '../src/grants/program.js';
import { loggingOf, parsePolicy } from '../src/policy/parse.js';
import { buildClient, runClient, type BindSample, type Variant } from './bind-client.js';
import { summarizeProfile, type ProfileSummary } from './cpu-profile.js';
import { fmt, markdownTable, median, range, timeCommand } from './timing.js';
import { CLI, NOBODY, SOURCE_CLI, Workspace } from './workspace.js';

let RULES = 10_000;
const PORT = 80;
/** A port no rule of the bench policy names (its rules use 1..1023). */
const HIGH_PORT = 8080;
const FAST = { iterations: 20_000, warmup: 2_000 };
// authbind forks a setuid helper per bind (~3 ms): far fewer, or it alone would take minutes.
const SLOW = { iterations: 150, warmup: 5 };
/**
 * The audit trail's rounds fit its ring (RING_BYTES / 64 bytes an IPv4
 * record: 16,384 events) with nothing read, and each starts once the reader has
 * printed every earlier event: so every logged bind writes its event, none
 * meets a full ring (a dropped event costs less than a written one).
 */
const LOGGED = { iterations: 10_000, warmup: 1_000 };

const TARGET = { bindRatio: 1.15, applyMs: 1000, listMs: 200, smallMs: 200 };
/** Against the trivial program for the same caller and port (issue 13); 1.05 for all three above 10,000 rules. */
const FLOOR_TARGET = { noRule: 1.02, granted: 1.05, rootThrough: 1.03, large: 1.05 };
/** Issue 14: a granted bind with the audit trail on, against the same bind with it off. */
const LOGGING_TARGET = 1.05;

function variants(): Variant[] {
  return [
    { key: 'root', label: 'root, no program (baseline)', uid: 0, cgroup: 'plain' },
    { key: 'floor1', label: 'root, trivial program `r0 = 1` (the floor)', uid: 0, cgroup: 'floor1' },
    { key: 'floor3', label: 'uid 65534, trivial program `r0 = 3` (the floor of a grant)', uid: NOBODY, cgroup: 'floor3' },
    {
      key: 'granted',
      label: `uid 65534 granted by lowport (${RULES.toLocaleString('en')} rules)`,
      uid: NOBODY,
      cgroup: 'hooked',
      floor: 'floor3',
    },
    {
      key: 'granted-logged',
      label: 'uid 65534 granted, logging on (`log all`, read by `lowport log --follow`)',
      uid: NOBODY,
      cgroup: 'logged',
      floor: 'granted',
    },
    { key: 'root-hooked', label: 'root through lowport (port with rules)', uid: 0, cgroup: 'hooked', floor: 'floor1' },
    // No rule names these ports: the common case of every bind on the machine.
    { key: 'root-8080', label: `root, port ${HIGH_PORT}, no program`, uid: 0, cgroup: 'plain', port: HIGH_PORT },
    { key: 'floor1-8080', label: `root, port ${HIGH_PORT}, trivial \`r0 = 1\``, uid: 0, cgroup: 'floor1', port: HIGH_PORT },
    {
      key: 'hooked-8080',
      label: `root, port ${HIGH_PORT} through lowport (no rule)`,
      uid: 0,
      cgroup: 'hooked',
      port: HIGH_PORT,
      floor: 'floor1-8080',
    },
    { key: 'floor1-0', label: 'root, port 0, trivial `r0 = 1`', uid: 0, cgroup: 'floor1', port: 0 },
    { key: 'hooked-0', label: 'root, port 0 through lowport (no rule)', uid: 0, cgroup: 'hooked', port: 0, floor: 'floor1-0' },
    { key: 'sysctl', label: 'uid 65534, sysctl ip_unprivileged_port_start=80', uid: NOBODY, cgroup: 'plain', sysctl: true },
    { key: 'authbind', label: 'uid 65534, authbind --deep', uid: NOBODY, cgroup: 'plain', authbind: true },
  ];
}
let VARIANTS: Variant[] = variants();

/** Binds that must fail, or the numbers above would mean nothing. */
const CONTROLS: { variant: Variant; port: number; why: string }[] = [
  {
    variant: { key: 'ctl-plain', label: 'uid 65534, no grant', uid: NOBODY, cgroup: 'plain' },
    port: PORT,
    why: 'uid 65534 binds port 80 without lowport, sysctl or authbind',
  },
  {
    variant: { key: 'ctl-81', label: 'uid 65534, port 81', uid: NOBODY, cgroup: 'hooked' },
    port: 81,
    why: 'uid 65534 binds port 81, which the loaded policy does not grant it',
  },
];

const CLI_STEPS = [
  'apply (install)',
  'apply (re-apply: swap)',
  'list',
  'list --json',
  'node -e 0',
  'lowport --version',
  'grant (small policy)',
  'revoke (small policy)',
  'list (small policy)',
  'doctor (small policy)',
] as const;
/** The small instance's policy, before each round's grant and revoke of port 81. */
const SMALL_POLICY = ['grant 80 --user nobody', 'grant 443 --user nobody --addr 127.0.0.1'];
type CliStep = (typeof CLI_STEPS)[number];

// ---- the run's plumbing ------------------------------------------------

let interrupted: NodeJS.Signals | undefined;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => (interrupted = sig));

/** Lets a signal's handler run between steps (the steps themselves are synchronous); stops the run on one. */
async function checkpoint(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  if (interrupted !== undefined) throw new Error(`interrupted by ${interrupted}`);
}

function progress(text: string): void {
  process.stderr.write(`bench: ${text}\n`);
}

function lowport(ws: Workspace, args: string[], capture = false): ReturnType<typeof timeCommand> {
  // Always with the workspace's --policy/--cgroup/--pin-dir: never the machine's own setup.
  return timeCommand(process.execPath, [CLI, ...args, ...ws.lowportArgs], capture);
}

/** The same for the small instance (ws.smallArgs); doctor's exit status 1 (a port that cannot be bound now) is an answer, not a failure. */
function lowportSmall(ws: Workspace, args: string[], okStatus: readonly number[] = [0]): ReturnType<typeof timeCommand> {
  return timeCommand(process.execPath, [CLI, ...args, ...ws.smallArgs], false, okStatus);
}

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** authbind (Debian package), installed when missing; the reason when it cannot be. */
function ensureAuthbind(): string | undefined {
  if (has('authbind')) return undefined;
  progress('authbind is missing: apt-get install -y authbind');
  for (const attempt of [['install', '-y', 'authbind'], ['update'], ['install', '-y', 'authbind']]) {
    spawnSync('apt-get', attempt, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (attempt[0] === 'install' && has('authbind')) return undefined;
  }
  return 'authbind is not installed and apt-get could not install it';
}

function machine(): Record<string, string> {
  const cpuList = cpus();
  const pkg = (name: string): string => {
    const r = spawnSync('dpkg-query', ['-W', '-f', '${Version}', name], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout : 'n/a';
  };
  const lowportVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return {
    kernel: release(),
    cpus: `${cpuList.length} × ${cpuList[0]?.model.trim() ?? 'unknown'}`,
    node: process.version,
    gcc: execFileSync('gcc', ['-dumpfullversion'], { encoding: 'utf8' }).trim(),
    authbind: pkg('authbind'),
    lowport: lowportVersion,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

/** `grant 80 user nobody` and RULES - 1 single-port rules for other (numeric) uids. */
function benchPolicy(): string {
  const lines = ['# lowport benchmark policy (bench/bind.ts)', `grant ${PORT} user nobody`];
  for (let i = 1; i < RULES; i++) lines.push(`grant ${1 + ((i * 7) % 1023)} user ${20000 + i}`);
  return `${lines.join('\n')}\n`;
}

/**
 * --bind-only: loads the bench policy through the library, the compile and
 * swap `apply` does, without the CLI's warnings pass over the file (quadratic
 * in the rules: seconds at 10,000, far more at 100,000). Returns the entries.
 */
function loadDirect(ws: Workspace): number {
  const text = readFileSync(ws.policy, 'utf8');
  const { table } = compileDocument(parsePolicy(text, ws.policy));
  const { installed } = swapPolicy({ cgroup: ws.hooked, pinDir: ws.pinDir }, table, policyFingerprint(text));
  if (!installed) throw new Error('the bench policy did not install afresh');
  return table.count;
}

/**
 * The audit trail's instance: the bench policy with `log all`, in the
 * `logged` cgroup, loaded through the library (not timed), and its reader,
 * `lowport log --follow --json`, counting the events it prints.
 */
function loadLogged(ws: Workspace): { reader: ChildProcess; events: () => number } {
  const text = `${readFileSync(ws.policy, 'utf8')}log all\n`;
  const doc = parsePolicy(text, ws.policy);
  const { table } = compileDocument(doc);
  swapPolicy({ cgroup: ws.logged, pinDir: ws.loggedPinDir }, table, policyFingerprint(text), loggingOf(doc));
  const reader = spawn(process.execPath, [CLI, 'log', '--follow', '--json', ...ws.loggedArgs], { stdio: ['ignore', 'pipe', 'ignore'] });
  let lines = 0;
  reader.stdout.on('data', (d: Buffer) => {
    for (const byte of d) if (byte === 0x0a) lines++;
  });
  return { reader, events: () => lines };
}

// ---- the floor: trivial programs ----------------------------------------------

const HOOKS = [
  { name: 'bind4', attachType: BPF_CGROUP_INET4_BIND },
  { name: 'bind6', attachType: BPF_CGROUP_INET6_BIND },
] as const;

interface ProgramSize {
  label: string;
  /** BPF instructions as loaded (our assembler's output). */
  loaded: number;
  /** After the verifier's rewrites (inlined map lookups, direct helper calls). */
  xlated: number;
  /** Bytes of machine code from the JIT (0 without it). */
  jited: number;
}

/**
 * Loads `r0 = VALUE; exit` (assembled with src/bpf/asm.ts) on both bind hooks
 * of `cgroup`, through links this process holds: closing them detaches it.
 */
function attachTrivial(cgroup: string, value: 1 | 3): { links: LinkHandle[]; size: ProgramSize } {
  const insns = new Assembler().mov(R0, { imm: value }).exit().assemble();
  const links: LinkHandle[] = [];
  let size: ProgramSize | undefined;
  withHandle(new OwnedFd(openDir(cgroup), `cgroup ${cgroup}`), (cg) => {
    for (const hook of HOOKS) {
      withHandle(
        ProgramHandle.load({
          type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
          insns,
          expectedAttachType: hook.attachType,
          name: `bench_floor${value}`,
        }),
        (program) => {
          const { xlatedInsns, jitedBytes } = program.lengths();
          size ??= {
            label: `trivial \`r0 = ${value}; exit\` (bind4 and bind6)`,
            loaded: insns.length / 8,
            xlated: xlatedInsns,
            jited: jitedBytes,
          };
          links.push(LinkHandle.attachCgroup(program, cg, hook.attachType, `floor${value} ${hook.name}`));
        },
      );
    }
  });
  if (size === undefined) throw new Error('no trivial program was loaded');
  return { links, size };
}

/** lowport's programs as attached to the hooked cgroup: their lengths before and after the verifier and the JIT. */
function lowportSizes(ws: Workspace): ProgramSize[] {
  const out: ProgramSize[] = [];
  for (const [cgroup, logged] of [
    [ws.hooked, false],
    [ws.logged, true],
  ] as const)
    withHandle(new OwnedFd(openDir(cgroup), `cgroup ${cgroup}`), (cg) => {
      for (const hook of HOOKS) {
        for (const id of progQuery(cg.fd, hook.attachType).progIds) {
          const program = ProgramHandle.fromId(id);
          if (program === undefined) continue;
          withHandle(program, (p) => {
            const info = p.info();
            const { xlatedInsns, jitedBytes } = p.lengths();
            out.push({
              label: `lowport ${hook.name} (${info.name})${logged ? ', logging on (`log all`)' : ''}`,
              loaded: loadedLength(hook.name, logged),
              xlated: xlatedInsns,
              jited: jitedBytes,
            });
          });
        }
      }
    });
  return out;
}

/** The length of lowport's program as it builds it (the kernel reports only what came out of the verifier). */
function loadedLength(hook: 'bind4' | 'bind6', logged: boolean): number {
  const options = programOptions(logged ? { grants: true, refusals: true, ringFd: 0 } : undefined);
  return buildBindProgram(hook === 'bind4' ? 4 : 6, 0, 0, options).assemble().length / 8;
}

function sizeTable(sizes: ProgramSize[]): string {
  return markdownTable(
    ['program', 'BPF insns loaded', 'xlated insns (after the verifier)', 'jited bytes'],
    sizes.map((s) => [s.label, String(s.loaded), String(s.xlated), String(s.jited)]),
    [false, true, true, true],
  );
}

// ---- the measurements --------------------------------------------------------

interface ListJson {
  live: boolean;
  file: string;
  entries: number;
  rules: { line: number; hits: number }[];
}

function listJson(ws: Workspace): ListJson {
  return JSON.parse(lowport(ws, ['list', '--json'], true).result.stdout) as ListJson;
}

/** CLI wall times, `rounds` of each, in rounds (install, swap, list, ...) so drift hits every step alike. */
async function benchCli(ws: Workspace, rounds: number): Promise<{ times: Record<CliStep, number[]>; entries: number }> {
  const times = Object.fromEntries(CLI_STEPS.map((s) => [s, [] as number[]])) as Record<CliStep, number[]>;
  let entries = 0;
  for (const edit of SMALL_POLICY) lowportSmall(ws, edit.split(' '));
  for (let r = 0; r < rounds; r++) {
    progress(`CLI round ${r + 1}/${rounds}`);
    lowport(ws, ['off']);
    const install = lowport(ws, ['apply'], true);
    const m = /(\d+) rules? live \((\d+) map entries\); bind hooks attached/.exec(install.result.stdout);
    if (m === null || Number(m[1]) !== RULES) throw new Error(`apply did not install ${RULES} rules: ${install.result.stdout.trim()}`);
    entries = Number(m[2]);
    times['apply (install)'].push(install.ms);
    const swap = lowport(ws, ['apply'], true);
    if (swap.result.stdout.includes('attached'))
      throw new Error(`re-apply installed again instead of swapping: ${swap.result.stdout.trim()}`);
    times['apply (re-apply: swap)'].push(swap.ms);
    times.list.push(lowport(ws, ['list']).ms);
    times['list --json'].push(lowport(ws, ['list', '--json']).ms);
    times['node -e 0'].push(timeCommand(process.execPath, ['-e', '0']).ms);
    times['lowport --version'].push(timeCommand(process.execPath, [CLI, '--version']).ms);
    times['grant (small policy)'].push(lowportSmall(ws, ['grant', '81', '--user', 'nobody']).ms);
    times['revoke (small policy)'].push(lowportSmall(ws, ['revoke', '81', '--user', 'nobody']).ms);
    times['list (small policy)'].push(lowportSmall(ws, ['list']).ms);
    times['doctor (small policy)'].push(lowportSmall(ws, ['doctor', '--port', '80', '--user', 'nobody'], [0, 1]).ms);
    await checkpoint();
  }
  const state = listJson(ws);
  if (!state.live || state.rules.length !== RULES || state.file !== 'in-sync') {
    throw new Error(
      `after apply, list shows live=${state.live}, ${state.rules.length} rules, file ${state.file}; expected ${RULES} rules in sync`,
    );
  }
  return { times, entries };
}

interface BindResults {
  samples: Map<string, BindSample[]>;
  skipped: Map<string, string>;
  controls: string[];
  /** Binds the granted variant made, and the hits lowport counted for its rule. */
  grantedBinds: number;
  /** Binds the logging variant made: each one an event (its rounds fit the ring). */
  loggedBinds: number;
  ruleHits: number | undefined;
  /** Runs repeated after a spurious EADDRINUSE (see benchBinds). */
  repeated: string[];
}

async function benchBinds(
  ws: Workspace,
  client: string,
  rounds: number,
  authbindProblem: string | undefined,
  loggedEvents: () => number,
): Promise<BindResults> {
  const controls: string[] = [];
  for (const c of CONTROLS) {
    const out = runClient(ws, client, c.variant, c.port, 1, 0);
    if (out.ok) throw new Error(`control failed: ${c.why}, and it succeeded; the setup does not isolate what it should`);
    if (!/EACCES|EPERM/.test(out.error)) throw new Error(`control failed: ${c.why}: expected EACCES, got ${out.error}`);
    controls.push(`${c.why}: refused (${out.error})`);
  }
  const skipped = new Map<string, string>();
  if (authbindProblem !== undefined) skipped.set('authbind', authbindProblem);
  else ws.placeFile(`/etc/authbind/byport/${PORT}`, '', 0o500, NOBODY, NOBODY);

  const hitsBefore = grantHits(ws);
  const samples = new Map<string, BindSample[]>(VARIANTS.map((v) => [v.key, []]));
  const active = VARIANTS.filter((v) => !skipped.has(v.key));
  let grantedBinds = 0;
  let loggedBinds = 0;
  const repeated: string[] = [];
  for (let r = 0; r < rounds; r++) {
    progress(`bind round ${r + 1}/${rounds}`);
    // Rotate the order each round, so no variant always runs first (or right after authbind).
    for (let i = 0; i < active.length; i++) {
      const v = active[(i + r) % active.length];
      if (v === undefined) continue;
      const n = roundSize(v);
      if (v.key === 'granted-logged') await caughtUp(loggedEvents, loggedBinds);
      let out = runClient(ws, client, v, v.port ?? PORT, n.iterations, n.warmup);
      // This kernel (6.18) now and then refuses one of 100,000 bind/close
      // rounds of one port with EADDRINUSE, in a private network namespace,
      // with or without lowport (seen with none loaded: 1 run in 60). It is
      // not what is measured: the run is repeated, and the report says so.
      for (let retry = 0; !out.ok && out.error.includes('EADDRINUSE') && retry < 3; retry++) {
        repeated.push(`${v.label}, round ${r + 1}: ${out.error}`);
        // The hook ran (and counted a grant) for each call, the failing one too.
        if (v.key === 'granted') grantedBinds += out.calls;
        out = runClient(ws, client, v, v.port ?? PORT, n.iterations, n.warmup);
      }
      if (!out.ok) throw new Error(`${v.label}: bind of port ${v.port ?? PORT} failed: ${out.error}`);
      if (v.key === 'granted') grantedBinds += n.iterations + n.warmup;
      if (v.key === 'granted-logged') loggedBinds += n.iterations + n.warmup;
      samples.get(v.key)?.push(out.sample);
      await checkpoint();
    }
  }
  const hitsAfter = grantHits(ws);
  const ruleHits = hitsBefore === undefined || hitsAfter === undefined ? undefined : hitsAfter - hitsBefore;
  return { samples, skipped, controls, grantedBinds, loggedBinds, ruleHits, repeated };
}

function roundSize(v: Variant): { iterations: number; warmup: number } {
  if (v.authbind === true) return SLOW;
  return v.key === 'granted-logged' ? LOGGED : FAST;
}

/** Waits until the audit trail's reader has printed `binds` events: the ring is empty again. */
async function caughtUp(events: () => number, binds: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (events() < binds) {
    if (Date.now() > deadline) throw new Error(`the audit trail's reader printed ${events()} events of ${binds} binds in 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await checkpoint();
  }
}

/** Binds lowport has counted for `grant 80 user nobody` (line 2 of the policy). */
function grantHits(ws: Workspace): number | undefined {
  return listJson(ws).rules.find((r) => r.line === 2)?.hits;
}

/** Profiled runs that had to be repeated, and why (reported: it is a finding about src/). */
const profileRetries: string[] = [];

type Profiles = Record<
  'apply (install)' | 'apply (re-apply: swap)' | 'list' | 'lowport --version' | 'grant (small policy)' | 'doctor (small policy)',
  ProfileSummary
>;

function profileCli(ws: Workspace): Profiles {
  const dir = join(ws.dir, 'profiles');
  mkdirSync(dir);
  const run = (name: string, args: string[], instance: string[] = ws.lowportArgs, okStatus: readonly number[] = [0]): ProfileSummary => {
    const flags = ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}.cpuprofile`];
    // The profiler's SIGPROF can make BPF_PROG_LOAD fail with EAGAIN: the
    // verifier gives up when a signal is pending (kernel/bpf/verifier.c,
    // do_check). libbpf retries that; lowport does not yet, so the bench does.
    for (let attempt = 1; ; attempt++) {
      try {
        // tsc's layout, not the bundle: the profile then names each source file (cpu-profile.ts).
        timeCommand(process.execPath, [...flags, SOURCE_CLI, ...args, ...instance], false, okStatus);
        break;
      } catch (e) {
        if (attempt >= 10 || !/BPF_PROG_LOAD\): EAGAIN/.test((e as Error).message)) throw e;
        profileRetries.push(`${name} attempt ${attempt}: BPF_PROG_LOAD EAGAIN`);
      }
    }
    return summarizeProfile(join(dir, `${name}.cpuprofile`));
  };
  lowport(ws, ['off']);
  const install = run('apply-install', ['apply']);
  const swap = run('apply-swap', ['apply']);
  const list = run('list', ['list']);
  // What every command pays before it starts its work: loading lowport's modules (and koffi's native addon).
  const version = run('version', ['--version'], []);
  const grant = run('grant-small', ['grant', '81', '--user', 'nobody'], ws.smallArgs);
  lowportSmall(ws, ['revoke', '81', '--user', 'nobody']);
  const doctor = run('doctor-small', ['doctor', '--port', '80', '--user', 'nobody'], ws.smallArgs, [0, 1]);
  return {
    'apply (install)': install,
    'apply (re-apply: swap)': swap,
    list,
    'lowport --version': version,
    'grant (small policy)': grant,
    'doctor (small policy)': doctor,
  };
}

// ---- the report ----------------------------------------------------------------

function bindTable(b: BindResults, rounds: number): { table: string; ratios: Map<string, { root: number; floor: number }> } {
  const rows: string[][] = [];
  const ratios = new Map<string, { root: number; floor: number }>();
  // Ratios per round (this variant against the other's run of the same round), then the median.
  const ratioTo = (s: BindSample[], key: string | undefined, pick: (x: BindSample) => number): number => {
    const other = key === undefined ? undefined : b.samples.get(key);
    return other === undefined ? NaN : median(s.map((x, i) => pick(x) / pick(other[i] ?? x)));
  };
  for (const v of VARIANTS) {
    const skip = b.skipped.get(v.key);
    if (skip !== undefined) {
      rows.push([`${v.label} (not run: ${skip})`, '', '', '', '', '', '', '', '']);
      continue;
    }
    const s = b.samples.get(v.key) ?? [];
    const calls = s.map((x) => x.medianNs);
    const [lo, hi] = range(calls);
    const toRoot = ratioTo(s, 'root', (x) => x.medianNs);
    const toFloor = ratioTo(s, v.floor, (x) => x.medianNs);
    ratios.set(v.key, { root: toRoot, floor: toFloor });
    const n = roundSize(v).iterations;
    rows.push([
      v.label,
      String(v.port ?? PORT),
      fmt(median(calls) / 1000),
      `${fmt(lo / 1000)}–${fmt(hi / 1000)}`,
      `${fmt(toRoot)}×`,
      v.floor === undefined ? '' : `${fmt(toFloor)}×`,
      fmt(median(s.map((x) => x.bindNs)) / 1000),
      fmt(median(s.map((x) => x.cycleNs)) / 1000),
      `${rounds} × ${n.toLocaleString('en')}`,
    ]);
  }
  const table = markdownTable(
    [
      'caller binding 127.0.0.1/tcp',
      'port',
      'bind() µs, median call',
      `range of ${rounds}`,
      'ratio to root, no program',
      'ratio to its floor',
      'bind() µs, mean',
      'socket+bind+close µs',
      'binds',
    ],
    rows,
    [false, true, true, true, true, true, true, true, true],
  );
  return { table, ratios };
}

/** The issue-13 verdicts: each lowport row against the trivial program for the same caller and port. */
function floorVerdicts(ratios: Map<string, { root: number; floor: number }>): string[] {
  const large = RULES > 10_000;
  const limit = (t: number): number => (large ? FLOOR_TARGET.large : t);
  const rows: [string, string, number][] = [
    ['hooked-8080', `port ${HIGH_PORT} without rules vs trivial \`r0 = 1\``, limit(FLOOR_TARGET.noRule)],
    ['hooked-0', 'port 0 (ephemeral) vs trivial `r0 = 1`', limit(FLOOR_TARGET.noRule)],
    ['granted', 'granted bind vs trivial `r0 = 3`', limit(FLOOR_TARGET.granted)],
    ['granted-logged', 'granted bind with logging on (`log all`) vs logging off', LOGGING_TARGET],
    ['root-hooked', 'root through lowport vs trivial `r0 = 1`', limit(FLOOR_TARGET.rootThrough)],
  ];
  return rows.map(([key, what, target]) => {
    const r = ratios.get(key)?.floor ?? NaN;
    // Three decimals: the verdict compares the unrounded ratio, and 1.05 rounded may be above 1.05.
    return verdict(r <= target, `${what}: ${r.toFixed(3)}× (target ≤ ${target}×, ${RULES.toLocaleString('en')} rules)`);
  });
}

function cliTable(times: Record<CliStep, number[]>): string {
  const start = times['node -e 0'];
  const rows = CLI_STEPS.map((step) => {
    const [lo, hi] = range(times[step]);
    // Against Node's own start-up in the same round: what lowport adds, which a loaded machine moves less than the total.
    const above = step === 'node -e 0' ? '' : fmt(median(times[step].map((ms, i) => ms - (start[i] ?? NaN))));
    return [step, fmt(median(times[step])), `${fmt(lo)}–${fmt(hi)}`, above];
  });
  return markdownTable(
    [`command (${RULES.toLocaleString('en')} rules live)`, 'wall ms, median', `range of ${start.length}`, 'ms above `node -e 0`, median'],
    rows,
    [false, true, true, true],
  );
}

function verdict(met: boolean, what: string): string {
  return `${met ? 'MET   ' : 'MISSED'}  ${what}`;
}

function profileReport(p: Profiles): string {
  const out: string[] = [];
  for (const [name, s] of Object.entries(p)) {
    out.push(`${name}: ${fmt(s.totalMs)} ms profiled (after Node's bootstrap); self time by area:`);
    for (const [area, ms] of s.areas.slice(0, 7)) out.push(`  ${fmt(ms).padStart(6)} ms  ${area}`);
    // The CLI's own wrappers (module top levels, main) only repeat the total.
    const functions = s.functions.filter(([fn]) => !fn.startsWith('(top level)') && !fn.startsWith('main  src/cli/main.js'));
    if (functions.length > 0) out.push('  lowport functions, inclusive:');
    for (const [fn, ms] of functions.slice(0, 10)) out.push(`  ${fmt(ms).padStart(6)} ms  ${fn}`);
    out.push('');
  }
  return out.join('\n');
}

// ---- main ------------------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '11' },
      'cli-rounds': { type: 'string', default: '5' },
      rules: { type: 'string', default: '10000' },
      'no-profile': { type: 'boolean' },
      'bind-only': { type: 'boolean' },
    },
  });
  const rounds = Number(values.rounds);
  const cliRounds = Number(values['cli-rounds']);
  RULES = Number(values.rules);
  if (![rounds, cliRounds, RULES].every((n) => Number.isInteger(n) && n >= 1))
    throw new Error('--rounds, --cli-rounds and --rules take a positive integer');
  VARIANTS = variants();
  const bindOnly = values['bind-only'] === true;
  if (process.geteuid?.() !== 0) {
    process.stderr.write('bench: needs root (cgroups, BPF, network namespaces): sudo npm run bench\n');
    return 1;
  }
  for (const tool of ['gcc', 'unshare', 'nsenter', 'setpriv', 'ip', 'sysctl']) if (!has(tool)) throw new Error(`bench needs ${tool}`);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: npm run build`);
  const authbindProblem = ensureAuthbind();

  const started = process.hrtime.bigint();
  const ws = new Workspace();
  try {
    const info = machine();
    progress(`workspace ${ws.dir}, cgroups ${ws.hooked} and ${ws.plain}, pins ${ws.pinDir}`);
    const client = buildClient(ws);
    await ws.openNetworkNamespaces(PORT);
    writeFileSync(ws.policy, benchPolicy(), { mode: 0o644 });

    const cli = bindOnly
      ? { times: Object.fromEntries(CLI_STEPS.map((step) => [step, [] as number[]])) as Record<CliStep, number[]>, entries: loadDirect(ws) }
      : await benchCli(ws, cliRounds);
    const floors = [attachTrivial(ws.floor1, 1), attachTrivial(ws.floor3, 3)];
    const logged = loadLogged(ws);
    let sizes: ProgramSize[];
    let binds: BindResults;
    let loggedEvents: number;
    try {
      sizes = [...floors.map((f) => f.size), ...lowportSizes(ws)];
      binds = await benchBinds(ws, client, rounds, authbindProblem, logged.events);
      await caughtUp(logged.events, binds.loggedBinds);
      loggedEvents = logged.events();
    } finally {
      for (const link of floors.flatMap((f) => f.links)) link.close();
      logged.reader.kill('SIGTERM');
    }
    const profiles = values['no-profile'] === true || bindOnly ? undefined : profileCli(ws);

    const { table, ratios } = bindTable(binds, rounds);
    const grantedRatio = ratios.get('granted')?.root ?? NaN;
    const applyInstall = median(cli.times['apply (install)']);
    const applySwap = median(cli.times['apply (re-apply: swap)']);
    const list = median(cli.times.list);
    const listJsonMs = median(cli.times['list --json']);
    const floor = median(cli.times['node -e 0']);
    const out: string[] = [
      '## Machine',
      '',
      ...Object.entries(info).map(([k, v]) => `- ${k}: ${v}`),
      '',
      `## bind() (${RULES.toLocaleString('en')} rules: ${cli.entries.toLocaleString('en')} map entries; median of ${rounds} interleaved rounds)`,
      '',
      table,
      '',
      'The programs, as the kernel runs them (BPF_OBJ_GET_INFO_BY_FD: xlated_prog_len / 8, jited_prog_len):',
      '',
      sizeTable(sizes),
      '',
      `Controls: ${binds.controls.join('; ')}.`,
      binds.ruleHits === undefined
        ? 'lowport did not report hits for the grant rule.'
        : `lowport counted ${binds.ruleHits.toLocaleString('en')} grants on \`grant 80 user nobody\` during the rounds; the granted client made ${binds.grantedBinds.toLocaleString('en')} binds.`,
      `With logging on, the client made ${binds.loggedBinds.toLocaleString('en')} binds and \`lowport log --follow\` printed ${loggedEvents.toLocaleString('en')} events ` +
        `(each round of ${LOGGED.iterations.toLocaleString('en')} + ${LOGGED.warmup.toLocaleString('en')} binds fits the ring, and starts once the reader has printed every earlier event).`,
      ...(binds.repeated.length > 0
        ? [
            '',
            `Runs repeated after a spurious EADDRINUSE (a kernel quirk, also without lowport; see bench/README.md): ${binds.repeated.join('; ')}.`,
          ]
        : []),
      '',
      ...(bindOnly ? [] : ['## CLI', '', cliTable(cli.times), '']),
      '## Targets',
      '',
      '```',
      ...floorVerdicts(ratios),
      verdict(grantedRatio <= TARGET.bindRatio, `granted bind() ${fmt(grantedRatio)}× root's (target ≤ ${TARGET.bindRatio}×)`),
      ...(bindOnly
        ? []
        : [
            verdict(
              applyInstall < TARGET.applyMs,
              `apply of ${RULES.toLocaleString('en')} rules, install ${fmt(applyInstall)} ms (target < ${TARGET.applyMs} ms)`,
            ),
            verdict(
              applySwap < TARGET.applyMs,
              `apply of ${RULES.toLocaleString('en')} rules, re-apply ${fmt(applySwap)} ms (target < ${TARGET.applyMs} ms)`,
            ),
            verdict(list < TARGET.listMs, `list ${fmt(list)} ms (target < ${TARGET.listMs} ms; node -e 0 alone: ${fmt(floor)} ms)`),
            verdict(listJsonMs < TARGET.listMs, `list --json ${fmt(listJsonMs)} ms (target < ${TARGET.listMs} ms)`),
            ...(['grant (small policy)', 'doctor (small policy)'] as const).map((step) => {
              const ms = median(cli.times[step]);
              return verdict(
                ms < TARGET.smallMs,
                `${step.replace(' (small policy)', '')} with a small policy ${fmt(ms)} ms (target < ${TARGET.smallMs} ms)`,
              );
            }),
          ]),
      '```',
    ];
    if (profiles !== undefined) {
      out.push('', '## Where the CLI time goes (node --cpu-prof, one run each)', '', '```', profileReport(profiles).trimEnd(), '```');
      if (profileRetries.length > 0) out.push('', `Profiled runs repeated: ${profileRetries.join('; ')}.`);
    }
    out.push('', `Benchmark wall time: ${fmt(Number(process.hrtime.bigint() - started) / 1e9)} s.`);
    process.stdout.write(`${out.join('\n')}\n`);
    return 0;
  } finally {
    ws.dispose((line) => process.stderr.write(`bench: ${line}\n`));
    const left = [...ws.cgroups, ws.pinDir, ws.dir].filter((p) => existsSync(p));
    const stages = readdirSync('/sys/fs/bpf').filter((n) => n.startsWith(`lowport_stage_${basename(ws.pinDir)}-`));
    if (left.length > 0 || stages.length > 0) process.stderr.write(`bench: WARNING: left behind: ${[...left, ...stages].join(', ')}\n`);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
