/**
 * The nft(8) runner: nftables JSON in, JSON out, through `nft -j -f -` so that
 * a batch of commands is one transaction (all of it applies, or none). Rules
 * are built as objects in src/forward/nft.ts; nothing here writes rule text.
 */
import { spawnSync } from 'node:child_process';
import { LowportError } from '../errors.js';
import { systemTool, systemToolEnv } from './process.js';

/** The nft binary, or undefined when nftables is not installed. */
export function findNft(): string | undefined {
  return systemTool('nft');
}

/**
 * A failure of nft(8), as facts: not installed (`missing`, E_UNSUPPORTED),
 * a listing refused for want of CAP_NET_ADMIN (`not-permitted`, E_NOT_ROOT),
 * a batch nft rejected (`rejected`, E_NFT, with the first lines nft wrote on
 * stderr), or another failure (`failed`, E_NFT).
 * forward/nft.ts (explainNft) says what to do about each.
 */
export class NftError extends LowportError {
  constructor(
    readonly reason: 'missing' | 'not-permitted' | 'rejected' | 'failed',
    message: string,
    readonly stderr = '',
    options: { cause?: unknown } = {},
  ) {
    super(reason === 'missing' ? 'E_UNSUPPORTED' : reason === 'not-permitted' ? 'E_NOT_ROOT' : 'E_NFT', message, options);
  }
}

function nftPath(): string {
  const nft = findNft();
  if (nft === undefined) throw new NftError('missing', 'nft(8) is not installed');
  return nft;
}

function run(args: string[], input: string, program: string): string {
  const r = spawnSync(program, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000, env: systemToolEnv() });
  if (r.error !== undefined) throw new NftError('failed', `nft -j -f -: ${r.error.message}`, '', { cause: r.error });
  if (r.status !== 0) {
    const why = r.stderr.trim().split('\n').slice(0, 6).join('\n');
    throw new NftError('rejected', `nft -j -f - failed (exit ${r.status ?? r.signal}): ${why}`, why);
  }
  return r.stdout;
}

/**
 * Runs one nftables JSON batch (`{ nftables: [...] }`) as a single
 * transaction, with `nft -j -f -`. nft opens /dev/stdin, which fails (ENXIO)
 * on the socketpair Node gives a child as stdin, so the JSON goes through
 * cat and a real pipe.
 */
function nftApply(batch: unknown): void {
  run(['-c', 'cat | exec "$0" -j -f -', nftPath()], JSON.stringify(batch), '/bin/sh');
}

/**
 * `nft -j list table FAMILY NAME` parsed, or undefined when there is no such
 * table (in this network namespace).
 */
function nftListTable(family: string, name: string): unknown {
  const nft = nftPath();
  const r = spawnSync(nft, ['-j', '-a', 'list', 'table', family, name], { encoding: 'utf8', timeout: 30_000, env: systemToolEnv() });
  if (r.status !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    if (/Operation not permitted/.test(r.stderr))
      throw new NftError('not-permitted', 'reading the nftables ruleset needs root (CAP_NET_ADMIN)', r.stderr.trim());
    throw new NftError('failed', `nft list table ${family} ${name} failed: ${r.stderr.trim()}`, r.stderr.trim());
  }
  return JSON.parse(r.stdout) as unknown;
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
}

export const systemNft: NftRunner = {
  available: () => findNft() !== undefined,
  apply: nftApply,
  listTable: nftListTable,
};
