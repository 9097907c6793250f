/**
 * `lowport forward` against its peers, side by side in one run: wrk against
 * nginx (one worker, a 612-byte page, no access log)
 *
 *   direct            127.0.0.1:8080, nginx itself: the limit
 *   lowport redirect  127.0.0.1:80  `lowport forward add 80/tcp 8080` (nftables)
 *   nft by hand       127.0.0.1:81  the classic table with prerouting and output redirects
 *   socat fork        127.0.0.1:82  `socat TCP-LISTEN:82,fork,reuseaddr TCP:127.0.0.1:8080`
 *   lowport userspace 127.0.0.1:83  `lowport forward serve 83/tcp 8081 --workers 1 --proxy-protocol v2`
 *   haproxy           127.0.0.1:86  haproxy `mode tcp`, `nbthread 1`, `send-proxy-v2` to the same 8081
 *   lowport, 2 threads 127.0.0.1:84  the same with `--workers 2`
 *   haproxy, 2 threads 127.0.0.1:87  the same with `nbthread 2`
 *   Node pipe()       127.0.0.1:85  the naive Node proxy, `client.pipe(backend).pipe(client)`, one process
 *
 * (8081 is the same nginx server with `listen 8081 proxy_protocol`), each
 * with keep-alive and with a new connection per request (wrk
 * `-H 'Connection: close'`), interleaved over rounds so that a noisy moment
 * hits every variant alike; in each round also a bulk download (a 100 MiB
 * file, curl) direct, through lowport and through haproxy (one thread each),
 * with the CPU time the forwarder process spent on it (utime + stime from
 * /proc/PID/stat, before and after); then the userspace forwarder's memory
 * per idle connection (RSS of its processes before and after opening them).
 *
 * Everything runs in a private network namespace (the script re-executes
 * itself under `unshare --net`): the machine's ruleset and ports are never
 * touched, and the namespace, with every rule in it, is gone at the end.
 *
 * Run as root: `npm run build && node dist/bench/forward.js [--duration S] [--rounds N]`
 * (about 5 minutes with the defaults). Installs wrk, socat, curl and haproxy
 * with apt when they are missing; haproxy runs only as this script's own
 * process with its own configuration, never as the system's service.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const IDLE_PORT = 89;
const BULK_BYTES = 100 * 1048576;
/** USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;
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
    ['curl', 'curl'],
    ['haproxy', 'haproxy'],
  ];
  const missing = wanted.filter(([tool]) => !have(tool)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  process.stderr.write(`installing ${missing.join(' ')} with apt-get\n`);
  sh('apt-get', ['update', '-q']);
  sh('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing]);
  // Debian's package enables and starts haproxy.service: this benchmark runs
  // its own haproxy with its own configuration, and leaves none behind.
  if (missing.includes('haproxy') && have('systemctl') && existsSync('/run/systemd/system')) {
    spawnSync('systemctl', ['disable', '--now', 'haproxy.service'], { stdio: 'ignore', env: { ...process.env, PATH } });
  }
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

/** The CPU time a process (all its threads) has used, in seconds: utime + stime of /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** A 100 MiB download through `port` with curl: MiB/s, and the CPU seconds `pid` (the forwarder) spent meanwhile. */
function bulk(port: number, pid: number | undefined): { mibPerSecond: number; cpu: number } {
  const before = pid === undefined ? 0 : cpuSeconds(pid);
  const out = sh('curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', `http://127.0.0.1:${port}/bulk.bin`]);
  const after = pid === undefined ? 0 : cpuSeconds(pid);
  const [size, seconds] = out.trim().split(' ').map(Number);
  if (size !== BULK_BYTES) throw new Error(`bulk download through ${port}: ${size} bytes, not ${BULK_BYTES}`);
  return { mibPerSecond: BULK_BYTES / 1048576 / (seconds ?? NaN), cpu: after - before };
}

function rssKb(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0), 0);
}

/**
 * A fresh forwarder (one process, no traffic before: a heap that has not
 * grown and shrunk with the throughput runs), then N idle connections.
 */
async function idleMemory(forwarder: ChildProcess): Promise<{ perConnectionKb: number; processes: number; baseKb: number }> {
  await waitPort(IDLE_PORT);
  await new Promise((r) => setTimeout(r, 1000));
  const workers = childrenOf(forwarder.pid ?? -1);
  const before = rssKb(workers);
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from(
      { length: IDLE_CONNECTIONS },
      () =>
        new Promise<void>((resolve, reject) => {
          const s = net.connect(IDLE_PORT, '127.0.0.1', () => resolve());
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
    // Random bytes: nothing on the path may shortcut a repeated pattern.
    writeFileSync(join(dir, 'bulk.bin'), randomBytes(BULK_BYTES), { mode: 0o644 });
    writeFileSync(
      join(dir, 'nginx.conf'),
      `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log stderr;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 10000000; sendfile on;
  client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp; uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp;
  server { listen 8080; listen [::]:8080; listen 8081 proxy_protocol; root ${dir}; }
}
`,
    );
    // haproxy as a user would write it for this job: TCP mode, PROXY v2 to
    // the backend, and splice(2) where it pays (splice-auto: from about 4 KiB
    // up, haproxy's own rule). maxconn: the open-files limit it may raise to.
    for (const threads of [1, 2]) {
      writeFileSync(
        join(dir, `haproxy${threads}.cfg`),
        `global
  nbthread ${threads}
  maxconn 4000
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 300s
  timeout server 300s
listen forward
  bind 127.0.0.1:${threads === 1 ? 86 : 87}
  server nginx 127.0.0.1:8081 send-proxy-v2
`,
      );
    }
    start('nginx', ['-c', join(dir, 'nginx.conf')]);
    await waitPort(8080);
    start(process.execPath, [CLI, 'forward', 'add', '80/tcp', '8080']);
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
    // The same settings as haproxy: the same address, PROXY v2 to the same nginx port, one thread or two.
    const serve = (port: number, workers: number): ChildProcess =>
      start(process.execPath, [
        CLI,
        'forward',
        'serve',
        `${port}/tcp`,
        '8081',
        '--addr',
        '127.0.0.1',
        '--proxy-protocol',
        'v2',
        '--workers',
        `${workers}`,
      ]);
    const lowport1 = serve(83, 1);
    serve(84, 2);
    const haproxy1 = start('haproxy', ['-f', join(dir, 'haproxy1.cfg')]);
    start('haproxy', ['-f', join(dir, 'haproxy2.cfg')]);
    start(process.execPath, ['-e', NAIVE_PROXY]);
    for (const port of [80, 81, 82, 83, 84, 85, 86, 87]) await waitPort(port);
    await new Promise((r) => setTimeout(r, 500));
    // lowport's forwarder is the child of `lowport forward serve` (which only waits for it); haproxy is one process.
    const forwarderPid = childrenOf(lowport1.pid ?? -1)[0];
    if (forwarderPid === undefined) throw new Error('lowport forward serve started no forwarder process');

    const variants = [
      { name: 'direct to nginx (the limit)', port: 8080 },
      { name: 'lowport forward add (nftables redirect)', port: 80 },
      { name: 'nft redirect written by hand', port: 81 },
      { name: 'socat fork', port: 82 },
      { name: 'lowport forward serve --workers 1 --proxy-protocol v2', port: 83 },
      { name: 'haproxy nbthread 1, send-proxy-v2', port: 86 },
      { name: 'lowport forward serve --workers 2 --proxy-protocol v2', port: 84 },
      { name: 'haproxy nbthread 2, send-proxy-v2', port: 87 },
      { name: 'Node pipe() proxy, for reference', port: 85 },
    ];
    const bulkPaths = [
      { name: 'direct to nginx', port: 8080, pid: undefined },
      { name: 'lowport forward serve --workers 1 --proxy-protocol v2', port: 83, pid: forwarderPid },
      { name: 'haproxy nbthread 1, send-proxy-v2, splice-auto', port: 86, pid: haproxy1.pid },
    ];
    const results = variants.map(() => ({ keep: [] as number[], close: [] as number[] }));
    const bulkResults = bulkPaths.map(() => ({ rate: [] as number[], cpu: [] as number[] }));
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
      bulkPaths.forEach((b, i) => {
        const r = bulk(b.port, b.pid);
        bulkResults[i]?.rate.push(r.mibPerSecond);
        bulkResults[i]?.cpu.push(r.cpu);
        process.stderr.write(
          `round ${round + 1}/${ROUNDS} 100 MiB ${b.name}: ${r.mibPerSecond.toFixed(0)} MiB/s, ${r.cpu.toFixed(2)} CPU s\n`,
        );
      });
    }
    const memory = await idleMemory(start(process.execPath, [CLI, 'forward', 'serve', `${IDLE_PORT}/tcp`, '8080', '--workers', '1']));

    const median = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s[Math.floor(s.length / 2)] ?? 0;
    };
    const spread = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
    const direct = results[0] ?? { keep: [], close: [] };
    const dk = median(direct.keep);
    const dc = median(direct.close);
    const kernel = sh('uname', ['-r']).trim();
    const haproxyVersion = /version (\S+)/.exec(sh('haproxy', ['-v']))?.[1] ?? '?';
    const ratio = (i: number, close: boolean): number => median(results[i]?.[close ? 'close' : 'keep'] ?? []) / (close ? dc : dk);
    // Each lowport row against the haproxy row of the same thread count.
    const verdict = (lowport: number, haproxy: number, close: boolean): string =>
      `${ratio(lowport, close).toFixed(3)} vs ${ratio(haproxy, close).toFixed(3)}: ${ratio(lowport, close) >= ratio(haproxy, close) ? 'MET' : 'MISSED'}`;
    const bulkLine = (i: number): string => {
      const b = bulkResults[i] ?? { rate: [], cpu: [] };
      return `| ${bulkPaths[i]?.name ?? ''} | ${median(b.rate).toFixed(0)} | ${spread(b.rate)} | ${i === 0 ? '(nginx)' : median(b.cpu).toFixed(2)} |`;
    };
    const lowportBulk = bulkResults[1] ?? { rate: [], cpu: [] };
    const haproxyBulk = bulkResults[2] ?? { rate: [], cpu: [] };
    process.stdout.write(
      `\nwrk -t1 -c32 -d${DURATION}s, median of ${ROUNDS} interleaved rounds (range in brackets); Linux ${kernel}, ${cpus().length} CPUs, ` +
        `nginx 1 worker, haproxy ${haproxyVersion}.\n\n` +
        '| path | keep-alive req/s | ratio | new connection req/s | ratio |\n|---|---:|---:|---:|---:|\n' +
        variants
          .map((v, i) => {
            const r = results[i] ?? { keep: [], close: [] };
            const k = median(r.keep);
            const c = median(r.close);
            return `| ${v.name} | ${k.toFixed(0)} (${spread(r.keep)}) | ${(k / dk).toFixed(2)} | ${c.toFixed(0)} (${spread(r.close)}) | ${(c / dc).toFixed(3)} |`;
          })
          .join('\n') +
        `\n\n100 MiB download (curl, one connection), median of ${ROUNDS}:\n\n` +
        '| path | MiB/s | range | forwarder CPU s |\n|---|---:|---:|---:|\n' +
        [0, 1, 2].map(bulkLine).join('\n') +
        '\n\nTargets, lowport against haproxy in this run (ratio to direct; bulk: MiB/s and CPU s):\n' +
        `  1 thread,  keep-alive:     ${verdict(4, 5, false)}\n` +
        `  1 thread,  new connection: ${verdict(4, 5, true)}\n` +
        `  2 threads, keep-alive:     ${verdict(6, 7, false)}\n` +
        `  2 threads, new connection: ${verdict(6, 7, true)}\n` +
        `  bulk MiB/s:                ${median(lowportBulk.rate).toFixed(0)} vs ${median(haproxyBulk.rate).toFixed(0)}: ` +
        `${median(lowportBulk.rate) >= median(haproxyBulk.rate) ? 'MET' : 'MISSED'}\n` +
        `  bulk CPU s:                ${median(lowportBulk.cpu).toFixed(2)} vs ${median(haproxyBulk.cpu).toFixed(2)}: ` +
        `${median(lowportBulk.cpu) <= median(haproxyBulk.cpu) ? 'MET' : 'MISSED'}\n` +
        `\nlowport forward serve, ${IDLE_CONNECTIONS} idle connections: ${memory.perConnectionKb.toFixed(1)} kB of RSS each ` +
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
  // The forwarder runs as its own system user, `lowport`, created on first use
  // (src/forward/forwarder-user.ts). One the benchmark created goes with it.
  const hadUser = spawnSync('getent', ['passwd', 'lowport'], { stdio: 'ignore' }).status === 0;
  const r = spawnSync('unshare', ['--net', '--', process.execPath, SELF, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, PATH, LOWPORT_BENCH_NETNS: '1' },
  });
  if (!hadUser && spawnSync('getent', ['passwd', 'lowport'], { stdio: 'ignore' }).status === 0) {
    const del = spawnSync('userdel', ['lowport'], { encoding: 'utf8' });
    process.stderr.write(
      del.status === 0 ? 'removed the lowport user this run created\n' : `userdel lowport failed: ${del.stderr.trim()}\n`,
    );
  }
  process.exit(r.status ?? 1);
} else {
  await main();
}
