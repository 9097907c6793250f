/**
 * The redirect lifecycle (forward/redirect.ts) on an in-memory nftables
 * table: what lowport sends is applied as nft would (one transaction per
 * batch, all or nothing; handles; an error for a missing rule or table), and
 * listed back in nft's JSON. No root, no nft. The owners are real processes
 * (this one, a child that ends), since liveness is read from /proc, which any
 * user may read.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LowportError } from '../../../src/errors.js';
import { addBatch, FAMILY, TABLE, type NftCommand, type Owner, type RedirectSpec } from '../../../src/forward/nft.js';
import {
  addRedirect,
  gcRedirects,
  holdRedirect,
  listRedirects,
  policyOwner,
  processOwner,
  removePersisted,
  removeRedirects,
  restorePersisted,
  setRedirectHost,
  type PolicyOwnerRecords,
} from '../../../src/forward/redirect.js';
import type { NftRunner } from '../../../src/os/nft.js';
import type { ForwardRule } from '../../../src/policy/types.js';

interface FakeRule {
  chain: string;
  handle: number;
  comment?: string;
  expr: unknown[];
}

interface FakeTable {
  chains: Set<string>;
  rules: FakeRule[];
}

/** An nftables that knows the commands lowport sends, and checks that every change is made under the lock. */
class FakeNft implements NftRunner {
  installed = true;
  tables = new Map<string, FakeTable>();
  batches: NftCommand[][] = [];
  private nextHandle = 1;
  private locked = false;

  available(): boolean {
    return this.installed;
  }

  lock(): { release: () => void } {
    assert.equal(this.locked, false, 'the nft lock taken twice');
    this.locked = true;
    return { release: () => (this.locked = false) };
  }

  listTable(family: string, name: string): unknown {
    const t = this.tables.get(`${family} ${name}`);
    if (t === undefined) return undefined;
    const rule = (r: FakeRule): unknown => ({
      rule: {
        family,
        table: name,
        chain: r.chain,
        handle: r.handle,
        ...(r.comment === undefined ? {} : { comment: r.comment }),
        expr: listedExpr(r.expr),
      },
    });
    return {
      nftables: [
        { metainfo: { version: '1.0.9', json_schema_version: 1 } },
        { table: { family, name, handle: 1 } },
        ...[...t.chains].map((c) => ({ chain: { family, table: name, name: c, handle: 2 } })),
        ...t.rules.map(rule),
      ],
    };
  }

  apply(batch: unknown): void {
    assert.ok(this.locked, 'a change applied outside the lock');
    const commands = (batch as { nftables: NftCommand[] }).nftables;
    this.batches.push(commands);
    // One transaction: work on a copy, keep it only when every command applied.
    const tables = new Map([...this.tables].map(([k, t]) => [k, { chains: new Set(t.chains), rules: [...t.rules] }]));
    let handle = this.nextHandle;
    for (const c of commands) {
      const [verb, body] = Object.entries(c)[0] ?? [];
      const [what, o] = Object.entries(body as Record<string, Record<string, unknown>>)[0] ?? [];
      if (o === undefined) throw new Error(`fake nft: empty command ${JSON.stringify(c)}`);
      const key = `${String(o.family)} ${String(what === 'table' ? o.name : o.table)}`;
      const table = tables.get(key);
      if (verb === 'add' && what === 'table') {
        if (table === undefined) tables.set(key, { chains: new Set(), rules: [] });
      } else if (verb === 'add' && what === 'chain') {
        if (table === undefined) throw new Error(`fake nft: no table ${key} for chain ${String(o.name)}`);
        table.chains.add(String(o.name));
      } else if (verb === 'add' && what === 'rule') {
        if (table === undefined || !table.chains.has(String(o.chain))) throw new Error(`fake nft: no chain ${String(o.chain)} in ${key}`);
        table.rules.push({
          chain: String(o.chain),
          handle: handle++,
          ...(typeof o.comment === 'string' ? { comment: o.comment } : {}),
          expr: o.expr as unknown[],
        });
      } else if (verb === 'delete' && what === 'rule') {
        const at = table?.rules.findIndex((r) => r.chain === o.chain && r.handle === o.handle) ?? -1;
        if (at < 0) throw new Error(`fake nft: Could not process rule: No such file or directory (handle ${String(o.handle)})`);
        table?.rules.splice(at, 1);
      } else if (verb === 'delete' && what === 'table') {
        if (!tables.delete(key)) throw new Error(`fake nft: Could not process rule: No such file or directory (table ${key})`);
      } else {
        throw new Error(`fake nft: lowport sent a command this fake does not know: ${JSON.stringify(c)}`);
      }
    }
    this.tables = tables;
    this.nextHandle = handle;
  }

  /** Rules a process left behind when it died (SIGKILL): in the table, as lowport writes them. */
  leftBehind(spec: RedirectSpec, owner: Owner): void {
    const lock = this.lock();
    try {
      this.apply(addBatch([{ spec, owner }]));
    } finally {
      lock.release();
    }
  }

  /** Someone else's rule in lowport's table (an admin's edit). */
  addForeignRule(chain: string): void {
    this.tables.get(`${FAMILY} ${TABLE}`)?.rules.push({ chain, handle: this.nextHandle++, expr: [{ accept: null }] });
  }

  /** Rule comments by chain, sorted: what is in the table. */
  comments(): string[] {
    return (this.tables.get(`${FAMILY} ${TABLE}`)?.rules ?? []).map((r) => `${r.chain}: ${r.comment ?? '(foreign)'}`).sort();
  }
}

/** nft lists a one-element set as the plain value: so does the fake, as the parser must cope. */
function listedExpr(expr: unknown[]): unknown[] {
  return expr.map((e) => {
    const m = (e as { match?: { left: unknown; right: unknown; op: string } }).match;
    const set = (m?.right as { set?: unknown[] } | undefined)?.set;
    return m !== undefined && set?.length === 1 ? { match: { ...m, right: set[0] } } : e;
  });
}

class FakeRecords implements PolicyOwnerRecords {
  readonly paths = new Map<string, string>();
  read(id: string): string | undefined {
    return this.paths.get(id);
  }
  write(id: string, policyPath: string): void {
    this.paths.set(id, policyPath);
  }
  remove(id: string): void {
    this.paths.delete(id);
  }
}

const spec = (port: number, toPort: number, addrs: string[] = [], protocols: ('tcp' | 'udp')[] = ['tcp']): RedirectSpec => ({
  port,
  protocols,
  toPort,
  addrs,
});
const forward = (port: number, toPort: number, line: number): ForwardRule => ({ port, protocols: ['tcp'], toPort, addrs: [], line });

/** The id in a policy owner's rule comments and record. */
function idOf(policyPath: string): string {
  const owner = policyOwner(policyPath);
  assert.ok(owner.kind === 'policy');
  return owner.id;
}

/** An owner whose process has ended: a child that ran and exited. */
async function deadOwner(): Promise<Owner> {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await once(child, 'spawn');
  const owner = processOwner(child.pid);
  child.kill('SIGKILL');
  await once(child, 'exit');
  return owner;
}

let nft: FakeNft;
let records: FakeRecords;
let root = true;
let dir: string;

beforeEach(() => {
  nft = new FakeNft();
  records = new FakeRecords();
  root = true;
  setRedirectHost({ nft, isRoot: () => root, owners: records, lock: () => nft.lock() });
  dir = mkdtempSync(join(tmpdir(), 'lowport-redirect-'));
});

afterEach(() => {
  setRedirectHost(undefined);
  rmSync(dir, { recursive: true, force: true });
});

describe('redirects: add and remove', () => {
  it('adds a redirect as one rule per chain, with the table and chains, in one transaction', () => {
    const me = processOwner();
    addRedirect(spec(80, 8080), me);
    assert.equal(nft.batches.length, 1);
    const comment = `lowport pid=${me.kind === 'pid' ? `${me.pid}@${me.start}${me.ns === undefined ? '' : `~${me.ns}`}` : ''} 80/tcp>8080`;
    assert.deepEqual(nft.comments(), [`output: ${comment}`, `prerouting: ${comment}`]);
    const [listed] = listRedirects();
    assert.deepEqual(listed && [listed.port, listed.toPort, listed.protocols, listed.addrs, listed.alive, listed.pid], [
      80,
      8080,
      ['tcp'],
      [],
      true,
      process.pid,
    ]);
  });

  it('adds one rule per address family and chain for a redirect with addresses, and lists the addresses back', () => {
    addRedirect(spec(53, 5353, ['127.0.0.1', '::1', '10.0.0.1'], ['udp']), processOwner());
    assert.equal(nft.comments().length, 4);
    assert.deepEqual(
      listRedirects().map((r) => [...r.addrs].sort()),
      [['10.0.0.1', '127.0.0.1', '::1']],
    );
  });

  it('refuses a redirect that overlaps a live one, naming the owner, and changes nothing', () => {
    addRedirect(spec(80, 8080), processOwner());
    const before = nft.comments();
    assert.throws(
      () => addRedirect(spec(80, 9090, ['127.0.0.1']), policyOwner('/etc/lowport/other')),
      (e: unknown) =>
        e instanceof LowportError &&
        e.code === 'E_STATE' &&
        /port 80\/tcp is already redirected to 8080 by lowport pid \d+/.test(e.message),
    );
    assert.equal(nft.batches.length, 1, 'no transaction for a refused redirect');
    assert.deepEqual(nft.comments(), before);
  });

  it('takes redirects that do not overlap: another port, another protocol, other addresses', () => {
    const me = processOwner();
    addRedirect(spec(80, 8080, ['127.0.0.1']), me);
    addRedirect(spec(81, 8081), me);
    addRedirect(spec(80, 8082, [], ['udp']), me);
    addRedirect(spec(80, 8083, ['::1']), me);
    assert.deepEqual(
      listRedirects()
        .map((r) => r.toPort)
        .sort(),
      [8080, 8081, 8082, 8083],
    );
  });

  it('removes only the given owner’s redirects, and deletes the table with the last rule', () => {
    const me = processOwner();
    const file = policyOwner('/etc/lowport/policy');
    addRedirect(spec(80, 8080), me);
    addRedirect(spec(443, 8443), file);
    assert.deepEqual(
      removeRedirects(me).map((r) => r.port),
      [80],
    );
    assert.deepEqual(
      listRedirects().map((r) => r.port),
      [443],
    );
    assert.deepEqual(nft.batches.at(-1), [
      { delete: { rule: { family: FAMILY, table: TABLE, chain: 'prerouting', handle: 1 } } },
      { delete: { rule: { family: FAMILY, table: TABLE, chain: 'output', handle: 2 } } },
    ]);
    removeRedirects(file);
    assert.deepEqual(nft.batches.at(-1), [{ delete: { table: { family: FAMILY, name: TABLE } } }]);
    assert.equal(nft.tables.size, 0, 'no empty table stays behind');
  });

  it('keeps the table when a rule lowport did not write is in it, deleting only its own', () => {
    const me = processOwner();
    addRedirect(spec(80, 8080), me);
    nft.addForeignRule('output');
    removeRedirects(me);
    assert.deepEqual(nft.comments(), ['output: (foreign)']);
  });

  it('touches nothing when the owner has no redirects', () => {
    addRedirect(spec(80, 8080), policyOwner('/a'));
    const batches = nft.batches.length;
    assert.deepEqual(removeRedirects(policyOwner('/b')), []);
    assert.equal(nft.batches.length, batches);
  });

  it('refuses to add without root, saying so, and sends nothing', () => {
    root = false;
    assert.throws(
      () => addRedirect(spec(80, 8080), processOwner()),
      (e: unknown) => e instanceof LowportError && e.code === 'E_NOT_ROOT',
    );
    assert.throws(
      () => listRedirects(),
      (e: unknown) => e instanceof LowportError && e.code === 'E_NOT_ROOT',
    );
    assert.equal(nft.batches.length, 0);
  });
});

describe('redirects: dead owners', () => {
  it('counts an owner dead when its pid is gone, or reused by a process with another start time', async () => {
    const gone = await deadOwner();
    const me = processOwner();
    assert.ok(me.kind === 'pid');
    const reused: Owner = { ...me, start: me.start - 1 };
    nft.leftBehind(spec(80, 8080), gone);
    nft.leftBehind(spec(81, 8081), reused);
    addRedirect(spec(82, 8082), me);
    // Adding collected them on its way already.
    assert.deepEqual(
      listRedirects().map((r) => r.port),
      [82],
    );
    nft.leftBehind(spec(80, 8080), gone);
    nft.leftBehind(spec(81, 8081), reused);
    assert.deepEqual(
      listRedirects()
        .map((r) => [r.port, r.alive])
        .sort(),
      [
        [80, false],
        [81, false],
        [82, true],
      ],
    );
    assert.deepEqual(
      gcRedirects()
        .map((r) => r.port)
        .sort(),
      [80, 81],
    );
    assert.deepEqual(
      listRedirects().map((r) => r.port),
      [82],
    );
  });

  it('collects dead processes’ redirects on the way of any change, in the same transaction', async () => {
    const gone = await deadOwner();
    nft.leftBehind(spec(80, 8080), gone);
    // The dead owner's port is free again: the new redirect takes it, and the old rules go in the same batch.
    addRedirect(spec(80, 9090), processOwner());
    const last = nft.batches.at(-1) ?? [];
    assert.equal(last.filter((c) => 'delete' in c).length, 2);
    assert.equal(last.filter((c) => 'add' in c && 'rule' in (c.add as object)).length, 2);
    assert.deepEqual(
      listRedirects().map((r) => r.toPort),
      [9090],
    );
  });

  it('collects a policy file’s redirects once the file is gone, on --gc only; unknown files count as alive', () => {
    const kept = join(dir, 'kept');
    const deleted = join(dir, 'deleted');
    writeFileSync(kept, '');
    restorePersisted(kept, [forward(80, 8080, 1)]);
    restorePersisted(deleted, [forward(81, 8081, 1)]);
    restorePersisted('/nowhere/unrecorded', [forward(82, 8082, 1)]);
    records.remove(idOf('/nowhere/unrecorded'));
    // Another change does not collect it: a file may be missing for a moment.
    addRedirect(spec(90, 9090), processOwner());
    assert.deepEqual(
      listRedirects()
        .map((r) => r.port)
        .sort(),
      [80, 81, 82, 90],
    );
    assert.deepEqual(
      gcRedirects().map((r) => r.port),
      [81],
    );
    assert.deepEqual(
      listRedirects()
        .map((r) => r.port)
        .sort(),
      [80, 82, 90],
    );
    assert.equal(records.read(idOf(deleted)), undefined, 'the record of a collected file goes too');
  });
});

describe('redirects: held by a process', () => {
  it('holds the redirect until a signal ends it, then removes it and its handlers', async () => {
    const listeners = (): number[] => ['exit', 'SIGINT', 'SIGTERM', 'SIGHUP'].map((e) => process.listenerCount(e));
    const before = listeners();
    const notes: string[] = [];
    const held = holdRedirect(spec(80, 8080), (n) => notes.push(n));
    assert.deepEqual(
      listRedirects().map((r) => [r.port, r.pid]),
      [[80, process.pid]],
    );
    assert.match(notes[0] ?? '', /^forwarding 80\/tcp -> 8080 on every local address/);
    process.kill(process.pid, 'SIGHUP');
    assert.equal(await held, 0);
    assert.deepEqual(nft.tables.size, 0);
    assert.match(notes[1] ?? '', /stopped \(SIGHUP\): redirect of 80 removed/);
    assert.deepEqual(listeners(), before);
  });

  it('refuses to hold a port another live owner redirects, and installs no handlers', async () => {
    addRedirect(spec(80, 9090), policyOwner('/etc/lowport/policy'));
    const before = process.listenerCount('exit');
    let outcome: unknown;
    try {
      outcome = holdRedirect(spec(80, 8080));
    } catch (e) {
      outcome = e;
    }
    // Held after all (a broken check): end it, so that this test fails instead of hanging.
    if (outcome instanceof Promise) {
      process.kill(process.pid, 'SIGHUP');
      await outcome;
    }
    assert.ok(outcome instanceof LowportError && /already redirected to 9090 by a policy file/.test(outcome.message), String(outcome));
    assert.equal(process.listenerCount('exit'), before);
  });
});

describe('redirects: persisted by a policy file', () => {
  it('restores a file’s forwards, records the file, and replaces them in one transaction when the file changes', () => {
    const file = join(dir, 'policy');
    writeFileSync(file, '');
    const id = idOf(file);
    assert.equal(restorePersisted(file, [forward(80, 8080, 1), forward(443, 8443, 2)]), 2);
    assert.equal(records.read(id), file);
    assert.deepEqual(
      listRedirects()
        .map((r) => [r.port, r.toPort, r.policy, r.alive])
        .sort(),
      [
        [443, 8443, file, true],
        [80, 8080, file, true],
      ],
    );
    const batches = nft.batches.length;
    // The file now moves 80 elsewhere: an overlap with its own old rule, which is not a conflict.
    restorePersisted(file, [forward(80, 8081, 1)]);
    assert.equal(nft.batches.length, batches + 1);
    assert.deepEqual(
      listRedirects().map((r) => [r.port, r.toPort]),
      [[80, 8081]],
    );
  });

  it('removes a file’s forwards with removePersisted and with an empty restore, forgetting the file and deleting the table', () => {
    const file = join(dir, 'policy');
    const id = idOf(file);
    restorePersisted(file, [forward(80, 8080, 1)]);
    assert.equal(removePersisted(file), 1);
    assert.equal(records.read(id), undefined);
    assert.equal(nft.tables.size, 0);
    restorePersisted(file, [forward(80, 8080, 1)]);
    assert.equal(restorePersisted(file, []), 0);
    assert.equal(records.read(id), undefined);
    assert.equal(nft.tables.size, 0);
  });

  it('refuses a file’s forward that overlaps another owner’s live redirect, and keeps the file’s old ones', () => {
    const file = join(dir, 'policy');
    restorePersisted(file, [forward(443, 8443, 1)]);
    addRedirect(spec(80, 9090), processOwner());
    assert.throws(
      () => restorePersisted(file, [forward(80, 8080, 1)]),
      (e: unknown) => e instanceof LowportError && /already redirected to 9090 by lowport pid/.test(e.message),
    );
    assert.deepEqual(
      listRedirects()
        .map((r) => r.port)
        .sort(),
      [443, 80],
    );
  });

  it('touches nothing with no forwards when nft is not installed, and removes nothing without root', () => {
    nft.installed = false;
    assert.equal(restorePersisted(join(dir, 'policy'), []), 0);
    nft.installed = true;
    restorePersisted(join(dir, 'policy'), [forward(80, 8080, 1)]);
    root = false;
    assert.equal(removePersisted(join(dir, 'policy')), 0);
    assert.equal(nft.comments().length, 2);
  });
});
