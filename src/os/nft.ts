/**
 * The nft(8) runner: nftables JSON in, JSON out, through `nft -j -f -` so that
 * a batch of commands is one transaction (all of it applies, or none). Rules
 * are built as objects in src/forward/nft.ts; nothing here writes rule text.
 * Also the lock that serializes lowport's own changes to its table.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { LowportError } from '../errors.js';
import { lockFile } from './files.js';
import { systemTool, systemToolEnv } from './process.js';

/** The nft binary, or undefined when nftables is not installed. */
export function findNft(): string | undefined {
  return systemTool('nft');
}

function nftPath(): string {
  const nft = findNft();
  if (nft === undefined) {
    throw new LowportError('E_UNSUPPORTED', 'nft(8) is not installed; lowport forward installs its redirects with it', {
      hint: 'Install nftables (apt-get install nftables), or use `lowport forward --userspace`, which needs no kernel rules.',
    });
  }
  return nft;
}

function run(args: string[], input: string, program: string): string {
  const r = spawnSync(program, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000, env: systemToolEnv() });
  if (r.error !== undefined) throw new LowportError('E_NFT', `nft -j -f -: ${r.error.message}`, { cause: r.error });
  if (r.status !== 0) {
    const why = r.stderr.trim().split('\n').slice(0, 6).join('\n');
    throw new LowportError('E_NFT', `nft -j -f - failed (exit ${r.status ?? r.signal}): ${why}`, {
      hint: /Operation not permitted/.test(why)
        ? 'nftables needs root (CAP_NET_ADMIN): run it with sudo.'
        : /No such file|does not exist|Could not process rule/.test(why) && /nat|redirect|fib/.test(why)
          ? 'The kernel may lack nftables NAT support (modules nft_nat, nft_redir, nft_fib_inet); `modprobe nft_redir nft_fib_inet` or use --userspace.'
          : 'See the message from nft above; `nft list ruleset` shows what is loaded.',
    });
  }
  return r.stdout;
}

/**
 * Runs one nftables JSON batch (`{ nftables: [...] }`) as a single
 * transaction, with `nft -j -f -`. nft opens /dev/stdin, which fails (ENXIO)
 * on the socketpair Node gives a child as stdin, so the JSON goes through
 * cat and a real pipe.
 */
export function nftApply(batch: unknown): void {
  run(['-c', 'cat | exec "$0" -j -f -', nftPath()], JSON.stringify(batch), '/bin/sh');
}

/**
 * `nft -j list table FAMILY NAME` parsed, or undefined when there is no such
 * table (in this network namespace).
 */
export function nftListTable(family: string, name: string): unknown {
  const nft = nftPath();
  const r = spawnSync(nft, ['-j', '-a', 'list', 'table', family, name], { encoding: 'utf8', timeout: 30_000, env: systemToolEnv() });
  if (r.status !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    if (/Operation not permitted/.test(r.stderr)) {
      throw new LowportError('E_NOT_ROOT', 'reading the nftables ruleset needs root (CAP_NET_ADMIN)', { hint: 'Run it with sudo.' });
    }
    throw new LowportError('E_NFT', `nft list table ${family} ${name} failed: ${r.stderr.trim()}`);
  }
  return JSON.parse(r.stdout) as unknown;
}

/** lowport's runtime directory: root's only (/run is not writable by others). */
const LOCK_DIR = '/run/lowport';

/**
 * Serializes lowport's changes to its nftables table between processes
 * (flock(2) on a root-only lock file, which stays: removing a lock file races
 * with its next user). Without it, one process could delete the table, found
 * empty, just as another adds its rules to it.
 */
export function lockNft(): { release: () => void } {
  mkdirSync(LOCK_DIR, { recursive: true, mode: 0o700 });
  return lockFile(`${LOCK_DIR}/nft.lock`);
}

/**
 * What the redirect lifecycle (forward/redirect.ts) asks of nftables, as one
 * interface, so that the lifecycle can run against an in-memory table in the
 * unit tests (no root, no nft). `systemNft` is the real one.
 */
export interface NftRunner {
  /** Whether nft(8) is installed. */
  available(): boolean;
  /** Runs one JSON batch (`{ nftables: [...] }`) as a single transaction. */
  apply(batch: unknown): void;
  /** `nft -j -a list table FAMILY NAME` parsed, or undefined when there is no such table. */
  listTable(family: string, name: string): unknown;
  /** Serializes lowport's changes to its table between processes. */
  lock(): { release: () => void };
}

export const systemNft: NftRunner = {
  available: () => findNft() !== undefined,
  apply: nftApply,
  listTable: nftListTable,
  lock: lockNft,
};
