/**
 * lowport's nftables table, as JSON objects (libnftables-json(5)): pure
 * builders for the batches that add and delete redirects, and a reader of the
 * table's listing. Nothing here runs nft; src/forward/redirect.ts does, through
 * os/nft.ts.
 *
 * The table `inet lowport` is lowport's alone: lowport never touches another
 * table, and other tools (iptables-nft, firewalld, an admin's rules) never
 * need to touch this one. One inet table covers IPv4 and IPv6. Two base
 * chains of type nat:
 *
 *   prerouting  hook prerouting priority -100   packets from other hosts
 *   output      hook output     priority -100   packets from this host (local clients)
 *
 * -100 is `dstnat`, written as a number because nft 1.0.6 (Debian 12) refuses
 * `priority dstnat` on an inet output chain. Every rule matches only packets
 * addressed to this host (`fib daddr type local`), so forwarded and routed
 * traffic passes untouched, then the protocol, the port and optionally the
 * destination address, and redirects to the target port (the kernel rewrites
 * the destination to a local address and conntrack keeps the client's source
 * address, so the program sees the real client).
 *
 * Each rule's comment names its owner and what it does, e.g.
 * `lowport pid=4242@98765 80/tcp,udp>8080`: the process that holds it (pid
 * and start time, so a reused pid is not mistaken for it), or
 * `lowport policy=1a2b3c4d 80/tcp>8080` for a forward persisted in a policy
 * file (a hash of the file's path). That is what `forward list` shows and
 * what `--gc` checks.
 */
import { isIPv4 } from 'node:net';
import { LowportError } from '../errors.js';
import { NftError } from '../os/nft.js';
import type { Protocol } from '../policy/types.js';

export const TABLE = 'lowport';
export const FAMILY = 'inet';
export const CHAINS = ['prerouting', 'output'] as const;
export type ChainName = (typeof CHAINS)[number];
/** NF_IP_PRI_NAT_DST: where `priority dstnat` puts a nat chain. */
const DSTNAT_PRIORITY = -100;

export interface RedirectSpec {
  port: number;
  protocols: Protocol[];
  toPort: number;
  /** Destination addresses to redirect; empty: every local address. */
  addrs: string[];
}

/**
 * Who holds a redirect: a lowport process (its pid and start time, and its pid
 * namespace, since a lowport in a container that shares the host's network
 * but not its pids writes into the same table), or a policy file (a hash of
 * its path, with --persist).
 */
export type Owner = { kind: 'pid'; pid: number; start: number; ns?: number } | { kind: 'policy'; id: string };

/** One nftables JSON command: `{ add: { rule: {...} } }` and the like. */
export type NftCommand = Record<string, unknown>;

export interface NftBatch {
  nftables: NftCommand[];
}

/** The comment that marks a rule as lowport's: owner and spec, short enough for nft's 128-byte limit. */
export function ruleComment(owner: Owner, spec: RedirectSpec): string {
  const who =
    owner.kind === 'pid' ? `pid=${owner.pid}@${owner.start}${owner.ns === undefined ? '' : `~${owner.ns}`}` : `policy=${owner.id}`;
  return `lowport ${who} ${spec.port}/${spec.protocols.join(',')}>${spec.toPort}`;
}

export interface CommentInfo {
  owner: Owner;
  port: number;
  protocols: Protocol[];
  toPort: number;
}

/** The owner and spec of a rule comment, or undefined for a comment lowport did not write. */
export function parseComment(comment: string): CommentInfo | undefined {
  const m = /^lowport (?:pid=(\d+)@(\d+)(?:~(\d+))?|policy=([0-9a-f]+)) (\d+)\/((?:tcp|udp)(?:,(?:tcp|udp))?)>(\d+)$/.exec(comment);
  if (m === null) return undefined;
  const owner: Owner =
    m[4] !== undefined
      ? { kind: 'policy', id: m[4] }
      : { kind: 'pid', pid: Number(m[1]), start: Number(m[2]), ...(m[3] === undefined ? {} : { ns: Number(m[3]) }) };
  return { owner, port: Number(m[5]), protocols: (m[6] ?? '').split(',') as Protocol[], toPort: Number(m[7]) };
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.kind === 'pid'
    ? b.kind === 'pid' && a.pid === b.pid && a.start === b.start && a.ns === b.ns
    : b.kind === 'policy' && a.id === b.id;
}

const match = (left: unknown, right: unknown): NftCommand => ({ match: { op: '==', left, right } });

/** The expressions of one rule: local destination, [address family and addresses], protocol, port, redirect. */
function ruleExpressions(spec: RedirectSpec, family: 4 | 6 | undefined, addrs: string[]): NftCommand[] {
  const expr: NftCommand[] = [match({ fib: { result: 'type', flags: ['daddr'] } }, 'local')];
  if (family !== undefined) expr.push(match({ payload: { protocol: family === 4 ? 'ip' : 'ip6', field: 'daddr' } }, { set: addrs }));
  expr.push(match({ meta: { key: 'l4proto' } }, spec.protocols.length === 1 ? spec.protocols[0] : { set: [...spec.protocols] }));
  expr.push(match({ payload: { protocol: 'th', field: 'dport' } }, spec.port));
  expr.push({ redirect: { port: spec.toPort } });
  return expr;
}

/** The table and its two chains; `add` leaves them as they are when they exist. */
export function tableCommands(): NftCommand[] {
  return [
    { add: { table: { family: FAMILY, name: TABLE } } },
    ...CHAINS.map((name) => ({
      add: { chain: { family: FAMILY, table: TABLE, name, type: 'nat', hook: name, prio: DSTNAT_PRIORITY, policy: 'accept' } },
    })),
  ];
}

/** The rules of one redirect: per chain, one rule (every address) or one per address family named. */
export function ruleCommands(spec: RedirectSpec, owner: Owner): NftCommand[] {
  const comment = ruleComment(owner, spec);
  const v4 = spec.addrs.filter((a) => isIPv4(a));
  const v6 = spec.addrs.filter((a) => !isIPv4(a));
  const variants: [4 | 6 | undefined, string[]][] =
    spec.addrs.length === 0
      ? [[undefined, []]]
      : [...(v4.length > 0 ? [[4, v4] as [4, string[]]] : []), ...(v6.length > 0 ? [[6, v6] as [6, string[]]] : [])];
  return CHAINS.flatMap((chain) =>
    variants.map(([family, addrs]) => ({
      add: { rule: { family: FAMILY, table: TABLE, chain, comment, expr: ruleExpressions(spec, family, addrs) } },
    })),
  );
}

/** One transaction: the table and chains (if missing) and the redirects' rules. */
export function addBatch(redirects: { spec: RedirectSpec; owner: Owner }[], deleteHandles: readonly RuleHandle[] = []): NftBatch {
  return { nftables: [...tableCommands(), ...deleteCommands(deleteHandles), ...redirects.flatMap((r) => ruleCommands(r.spec, r.owner))] };
}

export interface RuleHandle {
  chain: string;
  handle: number;
}

/** Deletes rules by chain and handle. */
export function deleteCommands(handles: readonly RuleHandle[]): NftCommand[] {
  return handles.map((h) => ({ delete: { rule: { family: FAMILY, table: TABLE, chain: h.chain, handle: h.handle } } }));
}

export function deleteTableCommand(): NftCommand {
  return { delete: { table: { family: FAMILY, name: TABLE } } };
}

/** A rule of lowport's table, as listed. */
export interface ListedRule {
  chain: string;
  handle: number;
  comment: string | undefined;
  /** Parsed from the comment; undefined for a rule lowport did not write (someone edited the table). */
  info: CommentInfo | undefined;
  /** Destination addresses the rule matches (empty: every local address). */
  addrs: string[];
}

/** The rules in a `nft -j -a list table inet lowport` listing. */
export function listedRules(listing: unknown): ListedRule[] {
  const items = (listing as { nftables?: unknown[] } | undefined)?.nftables ?? [];
  const out: ListedRule[] = [];
  for (const item of items) {
    const rule = (item as { rule?: { chain?: string; handle?: number; comment?: string; expr?: unknown[] } }).rule;
    if (rule === undefined || typeof rule.handle !== 'number') continue;
    out.push({
      chain: rule.chain ?? '',
      handle: rule.handle,
      comment: rule.comment,
      info: rule.comment === undefined ? undefined : parseComment(rule.comment),
      addrs: destinationAddresses(rule.expr ?? []),
    });
  }
  return out;
}

/** The `ip daddr` / `ip6 daddr` values of a rule's expressions (nft lists a one-element set as a plain value). */
function destinationAddresses(expr: unknown[]): string[] {
  const out: string[] = [];
  for (const e of expr) {
    const m = (e as { match?: { left?: { payload?: { protocol?: string; field?: string } }; right?: unknown } }).match;
    const p = m?.left?.payload;
    if (p === undefined || p.field !== 'daddr' || (p.protocol !== 'ip' && p.protocol !== 'ip6')) continue;
    const right = m?.right;
    if (typeof right === 'string') out.push(right);
    else if (Array.isArray((right as { set?: unknown[] } | undefined)?.set))
      for (const v of (right as { set: unknown[] }).set) if (typeof v === 'string') out.push(v);
  }
  return out;
}

/** A redirect found in the table: its owner, what it does, and the handles of its rules. */
export interface ListedRedirect extends RedirectSpec {
  owner: Owner;
  handles: RuleHandle[];
}

/** Groups lowport's rules by comment (owner and spec) into redirects; rules it did not write are returned apart. */
export function groupRedirects(rules: ListedRule[]): { redirects: ListedRedirect[]; foreign: ListedRule[] } {
  const byComment = new Map<string, ListedRedirect>();
  const foreign: ListedRule[] = [];
  for (const r of rules) {
    if (r.info === undefined || r.comment === undefined) {
      foreign.push(r);
      continue;
    }
    let entry = byComment.get(r.comment);
    if (entry === undefined) {
      entry = { owner: r.info.owner, port: r.info.port, protocols: r.info.protocols, toPort: r.info.toPort, addrs: [], handles: [] };
      byComment.set(r.comment, entry);
    }
    entry.handles.push({ chain: r.chain, handle: r.handle });
    for (const a of r.addrs) if (!entry.addrs.includes(a)) entry.addrs.push(a);
  }
  return { redirects: [...byComment.values()], foreign };
}

/** Whether two redirects would catch the same packets (same port, a shared protocol, overlapping addresses). */
export function overlaps(a: RedirectSpec, b: RedirectSpec): boolean {
  if (a.port !== b.port || !a.protocols.some((p) => b.protocols.includes(p))) return false;
  return a.addrs.length === 0 || b.addrs.length === 0 || a.addrs.some((x) => b.addrs.includes(x));
}

/**
 * Runs `fn` (a call of os/nft.ts), and words an nft failure for the user of
 * `lowport forward`: what it means here, and what to do (install nftables,
 * sudo, the NAT modules, or the userspace forwarder). Other errors pass.
 */
export function explainNft<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof NftError)) throw e;
    if (e.reason === 'missing') {
      throw new LowportError('E_UNSUPPORTED', 'nft(8) is not installed; lowport forward installs its redirects with it', {
        hint: 'Install nftables (apt-get install nftables), or use `lowport forward serve`, which needs no kernel rules.',
        cause: e,
      });
    }
    const hint =
      e.reason === 'not-permitted'
        ? 'Run it with sudo.'
        : e.reason !== 'rejected'
          ? undefined
          : /Operation not permitted/.test(e.stderr)
            ? 'nftables needs root (CAP_NET_ADMIN): run it with sudo.'
            : /No such file|does not exist|Could not process rule/.test(e.stderr) && /nat|redirect|fib/.test(e.stderr)
              ? 'The kernel may lack nftables NAT support (modules nft_nat, nft_redir, nft_fib_inet); `modprobe nft_redir nft_fib_inet` or use --userspace.'
              : 'See the message from nft above; `nft list ruleset` shows what is loaded.';
    throw new LowportError(e.code, e.message, { ...(hint === undefined ? {} : { hint }), cause: e });
  }
}
