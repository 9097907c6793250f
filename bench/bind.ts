/**
 * lowport's benchmark (`sudo npm run bench`; about 75 s here). Side by side in
 * one run, on this machine:
 *
 *   bind()   cost for uid 65534 granted port 80 by lowport with 10,000 rules
 *            loaded, against root's own bind, root with lowport loaded (the
 *            hook on a pass-through), the ip_unprivileged_port_start sysctl and
 *            authbind; C client, private network namespaces, interleaved rounds
 *   apply    wall time of the built CLI loading the 10,000 rules: first
 *            install, and re-apply (the swap)
 *   list     wall time of `lowport list` and `list --json` with them live
 *   floors   `node -e 0` and `lowport --version` (Node start-up, and that plus
 *            loading lowport's modules), the part of any command that is not
 *            its work
 *
 * and, from `node --cpu-prof`, where apply's and list's time goes.
 * Targets (the issue): granted bind within 1.15x root's; apply under 1 s;
 * list under 200 ms. Results and method: bench/README.md.
 *
 * Options: --rounds N (bind rounds, default 11), --cli-rounds N (default 5),
 * --no-profile.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildClient, runClient, type BindSample, type Variant } from './bind-client.js';
import { summarizeProfile, type ProfileSummary } from './cpu-profile.js';
import { fmt, markdownTable, median, range, timeCommand } from './timing.js';
import { CLI, NOBODY, Workspace } from './workspace.js';

const RULES = 10_000;
const PORT = 80;
const FAST = { iterations: 50_000, warmup: 2_000 };
// authbind forks a setuid helper per bind (~3 ms): far fewer, or it alone would take minutes.
const SLOW = { iterations: 150, warmup: 5 };

const TARGET = { bindRatio: 1.15, applyMs: 1000, listMs: 200 };

const VARIANTS: Variant[] = [
  { key: 'root', label: 'root, no lowport (baseline)', uid: 0, cgroup: 'plain' },
  { key: 'granted', label: `uid 65534 granted by lowport (${RULES.toLocaleString('en')} rules)`, uid: NOBODY, cgroup: 'hooked' },
  { key: 'root-hooked', label: 'root, lowport loaded (hook passes)', uid: 0, cgroup: 'hooked' },
  // Diagnostic: no rule names port 8080, so the hook stops at the port-marker
  // lookup (after reading the outer map); against the two rows above it splits
  // the hook's cost into running a cgroup program at all and lowport's lookups.
  { key: 'root-hooked-8080', label: 'root, lowport loaded, port 8080 (no rule)', uid: 0, cgroup: 'hooked', port: 8080 },
  { key: 'sysctl', label: 'uid 65534, sysctl ip_unprivileged_port_start=80', uid: NOBODY, cgroup: 'plain', sysctl: true },
  { key: 'authbind', label: 'uid 65534, authbind --deep', uid: NOBODY, cgroup: 'plain', authbind: true },
];

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

const CLI_STEPS = ['apply (install)', 'apply (re-apply: swap)', 'list', 'list --json', 'node -e 0', 'lowport --version'] as const;
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

/** `grant 80 user nobody` and 9,999 single-port rules for other (numeric) uids. */
function benchPolicy(): string {
  const lines = ['# lowport benchmark policy (bench/bind.ts)', `grant ${PORT} user nobody`];
  for (let i = 1; i < RULES; i++) lines.push(`grant ${1 + ((i * 7) % 1023)} user ${20000 + i}`);
  return `${lines.join('\n')}\n`;
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
  ruleHits: number | undefined;
  /** Runs repeated after a spurious EADDRINUSE (see benchBinds). */
  repeated: string[];
}

async function benchBinds(ws: Workspace, client: string, rounds: number, authbindProblem: string | undefined): Promise<BindResults> {
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
  const repeated: string[] = [];
  for (let r = 0; r < rounds; r++) {
    progress(`bind round ${r + 1}/${rounds}`);
    // Rotate the order each round, so no variant always runs first (or right after authbind).
    for (let i = 0; i < active.length; i++) {
      const v = active[(i + r) % active.length];
      if (v === undefined) continue;
      const n = v.authbind === true ? SLOW : FAST;
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
      samples.get(v.key)?.push(out.sample);
      await checkpoint();
    }
  }
  const hitsAfter = grantHits(ws);
  const ruleHits = hitsBefore === undefined || hitsAfter === undefined ? undefined : hitsAfter - hitsBefore;
  return { samples, skipped, controls, grantedBinds, ruleHits, repeated };
}

/** Binds lowport has counted for `grant 80 user nobody` (line 2 of the policy). */
function grantHits(ws: Workspace): number | undefined {
  return listJson(ws).rules.find((r) => r.line === 2)?.hits;
}

/** Profiled runs that had to be repeated, and why (reported: it is a finding about src/). */
const profileRetries: string[] = [];

type Profiles = Record<'apply (install)' | 'apply (re-apply: swap)' | 'list' | 'lowport --version', ProfileSummary>;

function profileCli(ws: Workspace): Profiles {
  const dir = join(ws.dir, 'profiles');
  mkdirSync(dir);
  const run = (name: string, args: string[], withWorkspace = true): ProfileSummary => {
    const flags = ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}.cpuprofile`];
    // The profiler's SIGPROF can make BPF_PROG_LOAD fail with EAGAIN: the
    // verifier gives up when a signal is pending (kernel/bpf/verifier.c,
    // do_check). libbpf retries that; lowport does not yet, so the bench does.
    for (let attempt = 1; ; attempt++) {
      try {
        timeCommand(process.execPath, [...flags, CLI, ...args, ...(withWorkspace ? ws.lowportArgs : [])]);
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
  const version = run('version', ['--version'], false);
  return { 'apply (install)': install, 'apply (re-apply: swap)': swap, list, 'lowport --version': version };
}

// ---- the report ----------------------------------------------------------------

function bindTable(b: BindResults, rounds: number): { table: string; grantedRatio: number } {
  const root = b.samples.get('root') ?? [];
  const rows: string[][] = [];
  let grantedRatio = NaN;
  for (const v of VARIANTS) {
    const skip = b.skipped.get(v.key);
    if (skip !== undefined) {
      rows.push([`${v.label} (not run: ${skip})`, '', '', '', '', '', '']);
      continue;
    }
    const s = b.samples.get(v.key) ?? [];
    // Ratios per round (this variant against root's run of the same round), then the median.
    const ratio = (pick: (x: BindSample) => number): number => median(s.map((x, i) => pick(x) / pick(root[i] ?? x)));
    const bind = s.map((x) => x.bindNs);
    const [lo, hi] = range(bind);
    const bindRatio = ratio((x) => x.bindNs);
    if (v.key === 'granted') grantedRatio = bindRatio;
    const n = v.authbind === true ? SLOW.iterations : FAST.iterations;
    rows.push([
      v.label,
      fmt(median(bind) / 1000),
      `${fmt(lo / 1000)}–${fmt(hi / 1000)}`,
      `${fmt(bindRatio)}×`,
      fmt(median(s.map((x) => x.cycleNs)) / 1000),
      `${fmt(ratio((x) => x.cycleNs))}×`,
      `${rounds} × ${n.toLocaleString('en')}`,
    ]);
  }
  const table = markdownTable(
    [
      'caller binding 127.0.0.1:80/tcp',
      'bind() µs',
      `range of ${rounds}`,
      'ratio to root',
      'socket+bind+close µs',
      'ratio to root',
      'binds',
    ],
    rows,
    [false, true, true, true, true, true, true],
  );
  return { table, grantedRatio };
}

function cliTable(times: Record<CliStep, number[]>): string {
  const rows = CLI_STEPS.map((step) => {
    const [lo, hi] = range(times[step]);
    return [step, fmt(median(times[step])), `${fmt(lo)}–${fmt(hi)}`];
  });
  return markdownTable(['command (10,000 rules live)', 'wall ms, median', `range of ${times['node -e 0'].length}`], rows, [
    false,
    true,
    true,
  ]);
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
      'no-profile': { type: 'boolean' },
    },
  });
  const rounds = Number(values.rounds);
  const cliRounds = Number(values['cli-rounds']);
  if (![rounds, cliRounds].every((n) => Number.isInteger(n) && n >= 1))
    throw new Error('--rounds and --cli-rounds take a positive integer');
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

    const cli = await benchCli(ws, cliRounds);
    const binds = await benchBinds(ws, client, rounds, authbindProblem);
    const profiles = values['no-profile'] === true ? undefined : profileCli(ws);

    const { table, grantedRatio } = bindTable(binds, rounds);
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
      `Controls: ${binds.controls.join('; ')}.`,
      binds.ruleHits === undefined
        ? 'lowport did not report hits for the grant rule.'
        : `lowport counted ${binds.ruleHits.toLocaleString('en')} grants on \`grant 80 user nobody\` during the rounds; the granted client made ${binds.grantedBinds.toLocaleString('en')} binds.`,
      ...(binds.repeated.length > 0
        ? [
            '',
            `Runs repeated after a spurious EADDRINUSE (a kernel quirk, also without lowport; see bench/README.md): ${binds.repeated.join('; ')}.`,
          ]
        : []),
      '',
      '## CLI',
      '',
      cliTable(cli.times),
      '',
      '## Targets',
      '',
      '```',
      verdict(grantedRatio <= TARGET.bindRatio, `granted bind() ${fmt(grantedRatio)}× root's (target ≤ ${TARGET.bindRatio}×)`),
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
    const left = [ws.hooked, ws.plain, ws.pinDir, ws.dir].filter((p) => existsSync(p));
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
