/**
 * Kernel redirects and their lifecycle: added in one nft transaction, owned
 * by the process that asked for them (or by a policy file, with --persist),
 * removed when that process ends, and collected when it died without
 * cleaning up (SIGKILL, a crash, a power cut has no rules to leave).
 *
 * Every change to the table happens under one lock (nft.lock, policy-file/state.ts) and
 * starts from a fresh listing, so two lowport processes never delete each
 * other's rules, and the table itself is deleted only when its last rule
 * goes — no empty table stays behind.
 */
import { createHash } from 'node:crypto';
import { LowportError } from '../errors.js';
import type { DirFd } from '../os/dirfd.js';
import { systemNft, type NftRunner } from '../os/nft.js';
import {
  effectiveUid,
  findInPidNamespace,
  INIT_PID_NAMESPACE,
  pathState,
  pidNamespace,
  processCommandLine,
  processStartTime,
} from '../os/process.js';
import { relaySignals } from '../os/signals.js';
import type { ForwardRule } from '../policy/types.js';
import { stateLock, withStateDir } from '../policy-file/state.js';
import {
  addBatch,
  deleteCommands,
  deleteTableCommand,
  FAMILY,
  groupRedirects,
  explainNft,
  listedRules,
  overlaps,
  sameOwner,
  TABLE,
  type ListedRedirect,
  type ListedRule,
  type Owner,
  type RedirectSpec,
} from './nft.js';

export interface ForwardEntry extends RedirectSpec {
  owner: Owner;
  /** The owner still runs, or its policy file still exists (or that cannot be told from here). */
  alive: boolean;
  /** The owning process's pid as seen from here, when it runs and is visible. */
  pid?: number;
  /** The owner's command line, when it runs. */
  command?: string;
  /** The policy file of a persisted forward, when lowport recorded it. */
  policy?: string;
}

/** This process as an owner: pid, start time and pid namespace. */
export function processOwner(pid = process.pid): Owner {
  const start = processStartTime(pid);
  if (start === undefined) throw new LowportError('E_STATE', `cannot read /proc/${pid}/stat: is /proc mounted?`);
  const ns = pidNamespace();
  return { kind: 'pid', pid, start, ...(ns === undefined ? {} : { ns }) };
}

/** The owner of a policy file's persisted forwards: a short hash of its absolute path. */
export function policyOwner(policyPath: string): Owner {
  return { kind: 'policy', id: createHash('sha256').update(policyPath).digest('hex').slice(0, 8) };
}

/**
 * Which policy file each policy owner stands for (the rule comment has room
 * for a hash only): one small file per owner under /run/lowport, written when
 * the file's forwards go live and removed with them, gone at reboot like the
 * rules themselves.
 */
const POLICY_OWNERS = 'forward-owners';

/**
 * Runs `fn` in /run/lowport/forward-owners (root's alone, checked, no symlinks followed:
 * policy-file/state.ts); undefined when it is not there.
 */
function inOwnersDir<T>(create: boolean, fn: (dir: DirFd) => T): T | undefined {
  return withStateDir([POLICY_OWNERS], { create }, fn);
}

/** The records of which policy file each policy owner stands for. */
export interface PolicyOwnerRecords {
  /** The recorded file's path, or undefined (no record, or one that cannot be read). */
  read(id: string): string | undefined;
  write(id: string, policyPath: string): void;
  remove(id: string): void;
}

const runDirRecords: PolicyOwnerRecords = {
  read(id) {
    let saved: unknown;
    try {
      saved = inOwnersDir(false, (dir) => dir.readJson(`${id}.json`));
    } catch {
      return undefined;
    }
    const path = typeof saved === 'object' && saved !== null ? (saved as { path?: unknown }).path : undefined;
    return typeof path === 'string' ? path : undefined;
  },
  write(id, policyPath) {
    inOwnersDir(true, (dir) => dir.writeJson(`${id}.json`, { path: policyPath }));
  },
  remove(id) {
    inOwnersDir(false, (dir) => dir.unlink(`${id}.json`));
    withStateDir([], { create: false }, (r) => r.removeIfEmpty(POLICY_OWNERS));
  },
};

/**
 * What the lifecycle runs on: nftables, whether this process is root, and
 * the policy owner records. The system's by default; the unit tests put an
 * in-memory table and records in its place (setRedirectHost).
 */
export interface RedirectHost {
  nft: NftRunner;
  isRoot(): boolean;
  owners: PolicyOwnerRecords;
  /**
   * Serializes lowport's changes to its table between processes (a root-only
   * lock file under /run/lowport, which stays: removing a lock file races with
   * its next user). Without it, one process could delete the table, found
   * empty, just as another adds its rules to it.
   */
  lock(): { release: () => void };
}

/** The system's nft, its failures explained (forward/nft.ts explainNft). */
const explainedNft: NftRunner = {
  available: () => systemNft.available(),
  apply: (batch) => explainNft(() => systemNft.apply(batch)),
  listTable: (family, name) => explainNft(() => systemNft.listTable(family, name)),
};

const systemHost: RedirectHost = {
  nft: explainedNft,
  isRoot: () => effectiveUid() === 0,
  owners: runDirRecords,
  lock: () => stateLock('nft.lock'),
};
let host = systemHost;

/** Runs the lifecycle on `next` (undefined: the system again); returns the host it replaces. For tests. */
export function setRedirectHost(next: RedirectHost | undefined): RedirectHost {
  const previous = host;
  host = next ?? systemHost;
  return previous;
}

function recordPolicyOwner(policyPath: string): void {
  const owner = policyOwner(policyPath);
  if (owner.kind === 'policy') host.owners.write(owner.id, policyPath);
}

function forgetPolicyOwner(owner: Owner): void {
  if (owner.kind === 'policy') host.owners.remove(owner.id);
}

function policyPathOf(owner: Owner): string | undefined {
  return owner.kind === 'policy' ? host.owners.read(owner.id) : undefined;
}

/** The owner's pid as seen from here: its own, or found by its pid in its namespace; undefined when not visible. */
function visiblePid(owner: Owner & { kind: 'pid' }): number | undefined {
  if (owner.ns === undefined || owner.ns === pidNamespace()) return owner.pid;
  return findInPidNamespace(owner.ns, owner.pid);
}

/**
 * Whether a redirect's owner is alive. A process: the same pid with the same
 * start time, looked up in its own pid namespace. One that is not visible
 * from here is gone only if this is the initial namespace (which sees every
 * process); from inside a container it may be the host's, and is kept. A
 * policy file: alive unless lowport recorded its path and the file is gone
 * (a deleted test or scratch policy) — which only --gc acts on, since a file
 * may be missing for a moment (a config tool replacing it, a checkout).
 */
function ownerAlive(owner: Owner): boolean {
  if (owner.kind === 'policy') {
    const path = policyPathOf(owner);
    return path === undefined || pathState(path) !== 'absent';
  }
  const pid = visiblePid(owner);
  if (pid === undefined) return pidNamespace() !== INIT_PID_NAMESPACE;
  return processStartTime(pid) === owner.start;
}

/** What every change collects on its way: the rules of lowport processes that died. */
function deadProcess(r: ListedRedirect): boolean {
  return r.owner.kind === 'pid' && !ownerAlive(r.owner);
}

export function requireNftRoot(): void {
  if (!host.isRoot()) {
    throw new LowportError('E_NOT_ROOT', 'kernel redirects need root: nftables rules are reserved to root (CAP_NET_ADMIN)', {
      hint: 'Run it with sudo, or use `lowport forward serve` as a user granted the port.',
    });
  }
}

function readTable(): { redirects: ListedRedirect[]; foreign: ListedRule[]; total: number } {
  const listing = host.nft.listTable(FAMILY, TABLE);
  if (listing === undefined) return { redirects: [], foreign: [], total: 0 };
  const rules = listedRules(listing);
  return { ...groupRedirects(rules), total: rules.length };
}

/** Every redirect in lowport's table, with whether its owner still runs. No table (or no nft): none. */
export function listRedirects(): ForwardEntry[] {
  requireNftRoot();
  if (!host.nft.available()) return [];
  return readTable().redirects.map((r) => {
    const alive = ownerAlive(r.owner);
    const entry: ForwardEntry = { owner: r.owner, port: r.port, protocols: r.protocols, toPort: r.toPort, addrs: r.addrs, alive };
    const pid = alive && r.owner.kind === 'pid' ? visiblePid(r.owner) : undefined;
    const command = pid === undefined ? undefined : processCommandLine(pid);
    if (pid !== undefined) entry.pid = pid;
    if (command !== undefined) entry.command = command;
    const policy = policyPathOf(r.owner);
    if (policy !== undefined) entry.policy = policy;
    return entry;
  });
}

/**
 * Under the lock, from a fresh listing: deletes the redirects `drop` picks
 * and adds `add`, in one transaction. The table goes when nothing is left in
 * it; `check` may refuse the change by throwing, given what stays.
 */
function change(
  drop: (r: ListedRedirect) => boolean,
  add: { spec: RedirectSpec; owner: Owner }[],
  check: (staying: ListedRedirect[]) => void = () => {},
  committed: () => void = () => {},
): ListedRedirect[] {
  const lock = host.lock();
  try {
    const { redirects, total } = readTable();
    const dropped = redirects.filter((r) => drop(r) || deadProcess(r));
    const staying = redirects.filter((r) => !dropped.includes(r));
    check(staying);
    const handles = dropped.flatMap((r) => r.handles);
    if (add.length > 0) {
      host.nft.apply(addBatch(add, handles));
    } else if (handles.length > 0) {
      host.nft.apply({ nftables: handles.length === total ? [deleteTableCommand()] : deleteCommands(handles) });
    }
    // A policy owner with nothing left in the table needs no record of its path.
    for (const r of dropped) {
      if (r.owner.kind === 'policy' && !staying.some((s) => sameOwner(s.owner, r.owner)) && !add.some((a) => sameOwner(a.owner, r.owner)))
        forgetPolicyOwner(r.owner);
    }
    committed();
    return dropped;
  } finally {
    lock.release();
  }
}

/** `lowport forward gc`: removes the redirects whose owner died, or whose policy file is gone; returns them. */
export function gcRedirects(): ListedRedirect[] {
  requireNftRoot();
  if (!host.nft.available()) return [];
  return change((r) => !ownerAlive(r.owner), []);
}

function conflictCheck(spec: RedirectSpec, except: (r: ListedRedirect) => boolean): (staying: ListedRedirect[]) => void {
  return (staying) => {
    const clash = staying.find((r) => !except(r) && overlaps(r, spec));
    if (clash === undefined) return;
    const by =
      clash.owner.kind === 'pid' ? `by lowport pid ${clash.owner.pid}${describeCommand(clash.owner.pid)}` : 'by a policy file (--persist)';
    throw new LowportError('E_STATE', `port ${spec.port}/${spec.protocols.join(',')} is already redirected to ${clash.toPort} ${by}`, {
      hint:
        clash.owner.kind === 'pid'
          ? `Stop that forward first (kill ${clash.owner.pid}), or pick another port. \`lowport forward list\` shows every redirect.`
          : `Remove it with \`lowport forward remove ${spec.port}\`, or edit the policy file and run \`lowport apply\`.`,
    });
  };
}

function describeCommand(pid: number): string {
  const cmd = processCommandLine(pid);
  return cmd === undefined ? '' : ` (${cmd.length > 60 ? `${cmd.slice(0, 57)}...` : cmd})`;
}

/** Adds a redirect owned by `owner`, after collecting dead owners' rules; refuses one that overlaps a live redirect. */
export function addRedirect(spec: RedirectSpec, owner: Owner): void {
  requireNftRoot();
  change(
    () => false,
    [{ spec, owner }],
    conflictCheck(spec, () => false),
  );
}

/** Removes every redirect of `owner` (and dead owners'). Synchronous, so it can run in an exit handler. */
export function removeRedirects(owner: Owner): ListedRedirect[] {
  return change((r) => sameOwner(r.owner, owner), []);
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * `lowport forward PORT TO`: adds the redirect, then holds it until SIGINT,
 * SIGTERM or SIGHUP (or the process exits any other way but SIGKILL; then
 * the next `forward` or `--gc` collects it). Resolves to the exit status.
 */
export function holdRedirect(spec: RedirectSpec, note: (text: string) => void = () => {}): Promise<number> {
  const owner = processOwner();
  addRedirect(spec, owner);
  let removed = false;
  const cleanup = (): void => {
    if (removed) return;
    removed = true;
    removeRedirects(owner);
  };
  // An exception thrown anywhere later still ends in 'exit': the rules go with the process.
  process.on('exit', cleanup);
  note(
    `forwarding ${describeSpec(spec)} (nftables table ${FAMILY} ${TABLE}, pid ${owner.kind === 'pid' ? owner.pid : ''}); stop with Ctrl-C or SIGTERM`,
  );
  return new Promise((resolve, reject) => {
    // Nothing else keeps the event loop alive while the kernel does the work.
    const keepAlive = setInterval(() => {}, 1 << 30);
    const stop = relaySignals(SIGNALS, (signal) => {
      clearInterval(keepAlive);
      stop();
      try {
        cleanup();
        process.off('exit', cleanup);
        note(`stopped (${signal}): redirect of ${spec.port} removed`);
        resolve(0);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

export function describeSpec(spec: RedirectSpec): string {
  const on = spec.addrs.length === 0 ? 'every local address' : spec.addrs.join(', ');
  return `${spec.port}/${spec.protocols.join(',')} -> ${spec.toPort} on ${on}`;
}

function forwardToSpec(f: Pick<ForwardRule, 'port' | 'protocols' | 'toPort' | 'addrs'>): RedirectSpec {
  return { port: f.port, protocols: [...f.protocols], toPort: f.toPort, addrs: [...f.addrs] };
}

/**
 * Makes the policy file's `forward` statements the live persisted redirects of
 * that file: the old ones go and the new ones come in one transaction. With no
 * statements and nothing live, nothing is touched (nft need not even be
 * installed). Returns how many are live.
 */
export function restorePersisted(policyPath: string, forwards: readonly ForwardRule[]): number {
  const owner = policyOwner(policyPath);
  if (forwards.length === 0 && !host.nft.available()) return 0;
  requireNftRoot();
  const specs = forwards.map(forwardToSpec);
  const mine = (r: ListedRedirect): boolean => sameOwner(r.owner, owner);
  change(
    mine,
    specs.map((spec) => ({ spec, owner })),
    (staying) => {
      for (const spec of specs) conflictCheck(spec, mine)(staying);
    },
    // Under the nft lock, like the forgetting: no other lowport removes the record's directory meanwhile.
    () => {
      if (specs.length > 0) recordPolicyOwner(policyPath);
    },
  );
  return specs.length;
}

/** Removes a policy file's persisted redirects from the kernel (the file stays): for `lowport off`. */
export function removePersisted(policyPath: string): number {
  if (!host.nft.available() || !host.isRoot()) return 0;
  return removeRedirects(policyOwner(policyPath)).filter((r) => sameOwner(r.owner, policyOwner(policyPath))).length;
}
