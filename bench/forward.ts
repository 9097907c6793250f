/**
 * `lowport forward` against its peers, side by side in one run: wrk against
 * nginx (one worker, a 612-byte page, no access log)
 *
 *   direct            127.0.0.1:8080, nginx itself: the limit
 *   lowport redirect  127.0.0.1:80  `lowport forward 80/tcp 8080` (nftables)
 *   nft by hand       127.0.0.1:81  the classic table with prerouting and output redirects
 *   socat fork        127.0.0.1:82  `socat TCP-LISTEN:82,fork,reuseaddr TCP:127.0.0.1:8080`
 *   lowport userspace 127.0.0.1:83  `lowport forward --userspace 83/tcp 8080` (as nobody)
 *   Node pipe()       127.0.0.1:85  the naive Node proxy, `client.pipe(backend).pipe(client)`, one process
 *
 * each with keep-alive and with a new connection per request (wrk
 * `-H 'Connection: close'`), interleaved over rounds so that a noisy moment
 * hits every variant alike; then the userspace forwarder's memory per idle
 * connection (RSS of its processes before and after opening them).
 *
 * Everything runs in a private network namespace (the script re-executes
 * itself under `unshare --net`): the machine's ruleset and ports are never
 * touched, and the namespace, with every rule in it, is gone at the end.
 *
 * Run as root: `npm run build && node dist/bench/forward.js [--duration S] [--rounds N]`
 * (about 2.5 minutes with the defaults). Installs wrk and socat with apt when
 * they are missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    idle: { type: 'string', default: '2000' },
  },
});
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const IDLE_CONNECTIONS = Number(values.idle);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const PATH = `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;

function sh(command: string, args: string[], input?: string): string {
  const r = spawnSync(command, args, { encoding: 'utf8', input, env: { ...process.env, PATH } });
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${r.stderr || r.error?.message || r.status}`);
  return r.stdout;
}

function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH } }).status === 0;
}

function ensureTools(): void {
  const wanted: [string, string][] = [
    ['wrk', 'wrk'],
    ['socat', 'socat'],
    ['nginx', 'nginx-light'],
    ['nft', 'nftables'],
  ];
  const missing = wanted.filter(([tool]) => !have(tool)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  process.stderr.write(`installing ${missing.join(' ')} with apt-get\n`);
  sh('apt-get', ['update', '-q']);
  sh('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing]);
}

function waitPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`port ${port} never opened`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

function wrk(port: number, close: boolean): number {
  const args = ['-t1', '-c32', `-d${DURATION}s`, ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}/index.html`];
  const out = sh('wrk', args);
  const m = /Requests\/sec:\s+([0-9.]+)/.exec(out);
  if (m === null) throw new Error(`wrk printed no rate:\n${out}`);
  return Number(m[1]);
}

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

function rssKb(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0), 0);
}

/**
 * A fresh forwarder (one process, no traffic before: a heap that has not
 * grown and shrunk with the throughput runs), then N idle connections.
 */
async function idleMemory(forwarder: ChildProcess): Promise<{ perConnectionKb: number; processes: number; baseKb: number }> {
  await waitPort(84);
  await new Promise((r) => setTimeout(r, 1000));
  const workers = childrenOf(forwarder.pid ?? -1);
  const before = rssKb(workers);
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from(
      { length: IDLE_CONNECTIONS },
      () =>
        new Promise<void>((resolve, reject) => {
          const s = net.connect(84, '127.0.0.1', () => resolve());
          s.on('error', reject);
          sockets.push(s);
        }),
    ),
  );
  await new Promise((r) => setTimeout(r, 2000));
  const after = rssKb(workers);
  for (const s of sockets) s.destroy();
  return { perConnectionKb: (after - before) / IDLE_CONNECTIONS, processes: workers.length, baseKb: before };
}

/** What a Node proxy in a few lines does: one process, the stream machinery on every chunk. */
const NAIVE_PROXY = `require('node:net').createServer({ allowHalfOpen: true }, (c) => {
  const b = require('node:net').connect({ port: 8080, host: '127.0.0.1', allowHalfOpen: true });
  c.pipe(b).pipe(c);
  c.on('error', () => b.destroy());
  b.on('error', () => c.destroy());
}).listen({ port: 85, backlog: 4096 });`;

async function main(): Promise<void> {
  sh('ip', ['link', 'set', 'lo', 'up']);
  // With a new connection per request, nginx (which closes first) piles up
  // TIME_WAIT sockets, and wrk's reused ports soon hit them: every variant
  // without NAT then stalls on SYN retries, a loopback artifact that decides
  // nothing about forwarding. A small TIME_WAIT table (this namespace's own
  // sysctls) keeps every variant out of it.
  sh('sysctl', ['-qw', 'net.ipv4.ip_local_port_range=10000 65000', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.tcp_max_tw_buckets=2000']);
  const dir = mkdtempSync(join(tmpdir(), 'lowport-bench-forward-'));
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  const start = (command: string, args: string[]): ChildProcess => {
    const c = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PATH } });
    children.push(c);
    return c;
  };
  try {
    writeFileSync(
      join(dir, 'index.html'),
      `<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body>${'x'.repeat(520)}</body></html>\n`.padEnd(612, ' '),
      { mode: 0o644 },
    );
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log stderr;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 10000000;
  client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp; uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp;
  server { listen 8080; listen [::]:8080; root ${dir}; }
}
`,
    );
    start('nginx', ['-c', join(dir, 'nginx.conf')]);
    await waitPort(8080);
    const redirect = start(process.execPath, [CLI, 'forward', '80/tcp', '8080']);
    sh(
      'nft',
      ['-f', '-'],
      `table inet handmade {
  chain prerouting { type nat hook prerouting priority -100; fib daddr type local tcp dport 81 redirect to :8080; }
  chain output { type nat hook output priority -100; fib daddr type local tcp dport 81 redirect to :8080; }
}
`,
    );
    start('socat', ['TCP-LISTEN:82,fork,reuseaddr,backlog=4096', 'TCP:127.0.0.1:8080']);
    const userspace = start(process.execPath, [CLI, 'forward', '--userspace', '83/tcp', '8080']);
    start(process.execPath, ['-e', NAIVE_PROXY]);
    for (const port of [80, 81, 82, 83, 85]) await waitPort(port);
    await new Promise((r) => setTimeout(r, 500));

    const variants = [
      { name: 'direct to nginx (the limit)', port: 8080 },
      { name: 'lowport forward (nftables redirect)', port: 80 },
      { name: 'nft redirect written by hand', port: 81 },
      { name: 'socat fork', port: 82 },
      { name: 'lowport forward --userspace', port: 83 },
      { name: 'Node pipe() proxy, for reference', port: 85 },
    ];
    const results = variants.map(() => ({ keep: [] as number[], close: [] as number[] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (const close of [false, true]) {
        variants.forEach((v, i) => {
          const rate = wrk(v.port, close);
          results[i]?.[close ? 'close' : 'keep'].push(rate);
          process.stderr.write(
            `round ${round + 1}/${ROUNDS} ${close ? 'new connection' : 'keep-alive'} ${v.name}: ${rate.toFixed(0)} req/s\n`,
          );
        });
      }
    }
    const memory = await idleMemory(start(process.execPath, [CLI, 'forward', '--userspace', '84/tcp', '8080', '--workers', '1']));
    void redirect;
    void userspace;

    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.floor(s.length / 2)] ?? 0;
    };
    const direct = results[0] ?? { keep: [], close: [] };
    const dk = median(direct.keep);
    const dc = median(direct.close);
    const kernel = sh('uname', ['-r']).trim();
    process.stdout.write(
      `\nwrk -t1 -c32 -d${DURATION}s, median of ${ROUNDS} interleaved rounds; Linux ${kernel}, ${cpus().length} CPUs, nginx 1 worker.\n\n` +
        '| path | keep-alive req/s | ratio | new connection req/s | ratio |\n|---|---:|---:|---:|---:|\n' +
        variants
          .map((v, i) => {
            const r = results[i] ?? { keep: [], close: [] };
            const k = median(r.keep);
            const c = median(r.close);
            return `| ${v.name} | ${k.toFixed(0)} | ${(k / dk).toFixed(2)} | ${c.toFixed(0)} | ${(c / dc).toFixed(3)} |`;
          })
          .join('\n') +
        `\n\nlowport forward --userspace, ${IDLE_CONNECTIONS} idle connections: ${memory.perConnectionKb.toFixed(1)} kB of RSS each ` +
        `(a fresh forwarder, ${memory.processes} process, ${(memory.baseKb / 1024).toFixed(0)} MB before; two sockets per connection; kernel socket buffers not included).\n`,
    );
  } finally {
    // SIGTERM, so that lowport removes its rules itself; the namespace goes anyway.
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env.LOWPORT_BENCH_NETNS === undefined) {
  if (process.geteuid?.() !== 0) {
    process.stderr.write('bench/forward.ts needs root (nftables, port 80, a network namespace): sudo node dist/bench/forward.js\n');
    process.exit(1);
  }
  ensureTools();
  const r = spawnSync('unshare', ['--net', '--', process.execPath, SELF, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, PATH, LOWPORT_BENCH_NETNS: '1' },
  });
  process.exit(r.status ?? 1);
} else {
  await main();
}
