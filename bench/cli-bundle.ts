/**
 * The CLI bundle against tsc's layout: the same commands run by
 * dist/bundle/main.js (what `lowport` is, package.json's bin) and by
 * dist/src/cli/main.js, in interleaved rounds (the order of the two flips each
 * round), on a small instance of its own (bench/workspace.ts: its own cgroup,
 * pin directory and policy; never the machine's setup). Each run's wall time
 * and CPU time (user + system of the child, from wait4's rusage, through
 * python3: Node's spawnSync does not report a child's rusage). Medians.
 *
 *   node dist/bench/cli-bundle.js [--rounds N]    (root; bench/README.md, "The CLI bundle")
 *
 * Run it under the kernel lock where other kernel jobs share the machine.
 */
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { CLI as BUNDLED, SOURCE_CLI as UNBUNDLED, Workspace } from './workspace.js';
import { fmt, markdownTable, median, range } from './timing.js';

/** Runs argv, waits with wait4: wall ms, and the child's user+system CPU ms (its whole tree, as waited for). */
const WAIT4 = `
import os, sys, time, json
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, '/dev/null', os.O_WRONLY, 0)])
_, status, ru = os.wait4(pid, 0)
wall = (time.perf_counter() - t) * 1000
print(json.dumps({"wall": wall, "cpu": (ru.ru_utime + ru.ru_stime) * 1000, "status": os.waitstatus_to_exitcode(status)}))
`;

interface Sample {
  wall: number;
  cpu: number;
}

function measure(argv: string[], okStatus: readonly number[] = [0]): Sample {
  const r = spawnSync('python3', ['-c', WAIT4, ...argv], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 (the wait4 timer) failed: ${r.stderr}`);
  const s = JSON.parse(r.stdout) as Sample & { status: number };
  if (!okStatus.includes(s.status)) throw new Error(`${argv.join(' ')}: exit ${s.status}`);
  return s;
}

function main(): number {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '11' } } });
  const rounds = Number(values.rounds);
  const ws = new Workspace();
  const node = process.execPath;
  const small = ws.smallArgs;
  const steps: { name: string; args: string[]; ok?: number[] }[] = [
    { name: 'lowport --version', args: ['--version'] },
    { name: 'grant 81 (small policy)', args: ['grant', '81', '--user', 'nobody', ...small] },
    { name: 'revoke 81 (small policy)', args: ['revoke', '81', '--user', 'nobody', ...small] },
    { name: 'list (small policy)', args: ['list', ...small] },
    { name: 'doctor --port 80 --user nobody (small policy)', args: ['doctor', '--port', '80', '--user', 'nobody', ...small], ok: [0, 1] },
  ];
  const layouts = { unbundled: UNBUNDLED, bundled: BUNDLED } as const;
  type Layout = keyof typeof layouts;
  const samples: Record<string, Record<Layout | 'node', Sample[]>> = {};
  for (const s of [{ name: 'node -e 0' }, ...steps]) samples[s.name] = { unbundled: [], bundled: [], node: [] };
  try {
    // The small policy, as bench/bind.ts has it.
    for (const args of [
      ['grant', '80', '--user', 'nobody'],
      ['grant', '443', '--user', 'nobody', '--addr', '127.0.0.1'],
    ])
      measure([node, UNBUNDLED, ...args, ...small]);
    for (const cli of [UNBUNDLED, BUNDLED]) for (const s of steps) measure([node, cli, ...s.args], s.ok); // warm the page cache
    for (let r = 0; r < rounds; r++) {
      process.stderr.write(`cli-bundle: round ${r + 1}/${rounds}\n`);
      samples['node -e 0']?.node.push(measure([node, '-e', '0']));
      const order: Layout[] = r % 2 === 0 ? ['unbundled', 'bundled'] : ['bundled', 'unbundled'];
      for (const layout of order) for (const s of steps) samples[s.name]?.[layout].push(measure([node, layouts[layout], ...s.args], s.ok));
    }
  } finally {
    ws.dispose((line) => process.stderr.write(`${line}\n`));
  }
  const cell = (xs: Sample[], k: keyof Sample): string => {
    const v = xs.map((x) => x[k]);
    const [lo, hi] = range(v);
    return `${fmt(median(v))} (${fmt(lo)}–${fmt(hi)})`;
  };
  const ratio = (a: Sample[], b: Sample[], k: keyof Sample): string => (median(b.map((x) => x[k])) / median(a.map((x) => x[k]))).toFixed(2);
  const rows = Object.entries(samples).map(([name, s]) =>
    name === 'node -e 0'
      ? [name, cell(s.node, 'wall'), '', '', cell(s.node, 'cpu'), '', '']
      : [
          name,
          cell(s.unbundled, 'wall'),
          cell(s.bundled, 'wall'),
          ratio(s.unbundled, s.bundled, 'wall'),
          cell(s.unbundled, 'cpu'),
          cell(s.bundled, 'cpu'),
          ratio(s.unbundled, s.bundled, 'cpu'),
        ],
  );
  process.stdout.write(
    `${markdownTable(['command', 'wall ms, dist/src', 'wall ms, bundle', 'ratio', 'CPU ms, dist/src', 'CPU ms, bundle', 'ratio'], rows, [
      false,
      true,
      true,
      true,
      true,
      true,
      true,
    ])}\n\nmedians (range) of ${rounds} interleaved rounds; CPU = user + system of the child (wait4)\n`,
  );
  return 0;
}

process.exitCode = main();
