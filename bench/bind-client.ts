/**
 * The bind() measurement: builds bench/bind-client.c, and runs it as each
 * variant's caller (identity, capabilities, cgroup, sysctl, authbind) in one of
 * the workspace's private network namespaces, so port 80 there is nobody
 * else's.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NOBODY, type Workspace } from './workspace.js';

/** The C source stays in bench/ (tsc does not copy it to dist/bench). */
const SOURCE = fileURLToPath(new URL('../../bench/bind-client.c', import.meta.url));

export interface Variant {
  key: string;
  /** As shown in the results table. */
  label: string;
  uid: 0 | typeof NOBODY;
  /** The cgroup the client runs in: lowport's links are attached to 'hooked' only, the trivial programs to 'floor1' and 'floor3'. */
  cgroup: 'hooked' | 'plain' | 'floor1' | 'floor3' | 'logged';
  /** Run in the network namespace where net.ipv4.ip_unprivileged_port_start is lowered to the bench port. */
  sysctl?: boolean;
  /** The port to bind, when not the benchmark's (80); 0 lets the kernel pick an ephemeral port. */
  port?: number;
  /** The row whose run in the same round this one is compared with (a floor: the trivial program for the same caller and port). */
  floor?: string;
  /** Run the client through `authbind --deep`. */
  authbind?: boolean;
}

export interface BindSample {
  /** Mean ns inside bind(), the clock-read overhead subtracted. */
  bindNs: number;
  /** The median call's ns inside bind(), the clock-read overhead subtracted: what a preempted call does not move. */
  medianNs: number;
  /** Mean ns of a whole socket + bind + close round. */
  cycleNs: number;
  /** The clock-read overhead that was subtracted. */
  clockNs: number;
}

/** Compiles the client into the workspace (readable and runnable by uid 65534); returns its path. */
export function buildClient(ws: Workspace): string {
  const src = join(ws.dir, 'bind-client.c');
  const bin = join(ws.dir, 'bind-client');
  copyFileSync(SOURCE, src);
  // Dynamically linked on purpose: authbind's LD_PRELOAD must see bind().
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', bin, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  chmodSync(bin, 0o755);
  return bin;
}

/**
 * argv that runs `argv` as the variant's caller: in the variant's network
 * namespace, moved into its cgroup, then the identity.
 */
function callerCommand(ws: Workspace, v: Variant, argv: string[]): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  const netns = v.sysctl === true ? ws.netns.sysctl : ws.netns.main;
  const script = 'echo $$ > "$BENCH_CGROUP/cgroup.procs" && exec "$@"';
  let identity: string[] = [];
  if (v.uid === NOBODY && v.authbind === true) {
    // authbind's helper is setuid root: it needs the bounding set and no
    // no_new_privs, or it could not bind for us. That is how authbind works.
    identity = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', 'authbind', '--deep'];
  } else if (v.uid === NOBODY) {
    identity = [
      'setpriv',
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      '--clear-groups',
      '--inh-caps=-all',
      '--bounding-set=-all',
      '--no-new-privs',
    ];
  }
  return {
    command: 'nsenter',
    args: [`--net=/proc/${netns}/ns/net`, '--', 'sh', '-c', script, 'sh', ...identity, ...argv],
    env: { ...process.env, BENCH_CGROUP: ws[v.cgroup] },
  };
}

/** A failed run says which call failed: `calls` bind() calls were made, the last one failing. */
export type RunOutcome = { ok: true; sample: BindSample } | { ok: false; error: string; calls: number };

/** Runs the client as `v`: `iterations` timed binds of 127.0.0.1:port after `warmup` untimed ones. */
export function runClient(ws: Workspace, client: string, v: Variant, port: number, iterations: number, warmup: number): RunOutcome {
  const { command, args, env } = callerCommand(ws, v, [client, String(port), String(iterations), String(warmup)]);
  const r = spawnSync(command, args, { encoding: 'utf8', env });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let out: {
    bind_ns?: number;
    bind_median_ns?: number;
    cycle_ns?: number;
    clock_ns?: number;
    error?: string;
    call?: string;
    iteration?: number;
  };
  try {
    out = JSON.parse(line) as typeof out;
  } catch {
    throw new Error(`the bind client (${v.label}) failed, exit ${r.status ?? r.signal}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  if (out.error !== undefined) {
    const calls = (out.iteration ?? 0) + 1;
    return { ok: false, error: `${out.call ?? 'bind'}: ${out.error} (call ${calls} of ${iterations + warmup})`, calls };
  }
  const clockNs = out.clock_ns ?? 0;
  return {
    ok: true,
    sample: { bindNs: (out.bind_ns ?? 0) - clockNs, medianNs: (out.bind_median_ns ?? 0) - clockNs, cycleNs: out.cycle_ns ?? 0, clockNs },
  };
}
