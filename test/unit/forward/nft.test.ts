/** The nftables JSON lowport sends and reads back: shape of the batch, comments, and the listing parser. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LowportError } from '../../../src/errors.js';
import { NftError } from '../../../src/os/nft.js';
import {
  addBatch,
  deleteCommands,
  explainNft,
  groupRedirects,
  listedRules,
  overlaps,
  parseComment,
  ruleComment,
  ruleCommands,
  sameOwner,
  tableCommands,
  type Owner,
} from '../../../src/forward/nft.js';

const me: Owner = { kind: 'pid', pid: 4242, start: 98765 };
const spec = { port: 80, protocols: ['tcp', 'udp'] as ('tcp' | 'udp')[], toPort: 8080, addrs: [] as string[] };

describe('nftables batch', () => {
  it('creates only lowport\'s inet table with nat chains on prerouting and output at priority -100 (not "dstnat")', () => {
    assert.deepEqual(tableCommands(), [
      { add: { table: { family: 'inet', name: 'lowport' } } },
      {
        add: {
          chain: { family: 'inet', table: 'lowport', name: 'prerouting', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' },
        },
      },
      { add: { chain: { family: 'inet', table: 'lowport', name: 'output', type: 'nat', hook: 'output', prio: -100, policy: 'accept' } } },
    ]);
  });

  it('builds one rule per chain: local destination, protocols, port, redirect, with the owner in the comment', () => {
    const rules = ruleCommands(spec, me);
    assert.equal(rules.length, 2);
    assert.deepEqual(rules[1], {
      add: {
        rule: {
          family: 'inet',
          table: 'lowport',
          chain: 'output',
          comment: 'lowport pid=4242@98765 80/tcp,udp>8080',
          expr: [
            { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } },
            { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: ['tcp', 'udp'] } } },
            { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: 80 } },
            { redirect: { port: 8080 } },
          ],
        },
      },
    });
  });

  it('splits addresses by family: an ip daddr rule and an ip6 daddr rule in each chain', () => {
    const rules = ruleCommands(
      { port: 53, protocols: ['udp'], toPort: 5353, addrs: ['127.0.0.1', '::1', '10.0.0.1'] },
      { kind: 'policy', id: 'ab12cd34' },
    );
    assert.equal(rules.length, 4);
    const exprs = rules.map((r) => JSON.stringify(r));
    assert.match(exprs[0] ?? '', /"protocol":"ip","field":"daddr"\}\},"right":\{"set":\["127.0.0.1","10.0.0.1"\]\}/);
    assert.match(exprs[1] ?? '', /"protocol":"ip6","field":"daddr"\}\},"right":\{"set":\["::1"\]\}/);
    assert.match(exprs[0] ?? '', /"key":"l4proto"\}\},"right":"udp"/);
    assert.match(exprs[0] ?? '', /"comment":"lowport policy=ab12cd34 53\/udp>5353"/);
  });

  it('puts deletions before additions in one batch, so a replacement is one transaction', () => {
    const batch = addBatch([{ spec, owner: me }], [{ chain: 'output', handle: 7 }]);
    const kinds = batch.nftables.map((c) => Object.keys(c)[0]);
    assert.deepEqual(kinds, ['add', 'add', 'add', 'delete', 'add', 'add']);
    assert.deepEqual(deleteCommands([{ chain: 'output', handle: 7 }]), [
      { delete: { rule: { family: 'inet', table: 'lowport', chain: 'output', handle: 7 } } },
    ]);
  });

  it('carries each address as a value of its own, never spliced into other text', () => {
    const batch = addBatch([{ spec: { ...spec, addrs: ['::1', '127.0.0.2'] }, owner: me }]);
    const strings: string[] = [];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') strings.push(v);
      else if (Array.isArray(v)) v.forEach(walk);
      else if (v !== null && typeof v === 'object') Object.values(v).forEach(walk);
    };
    walk(batch);
    for (const addr of ['::1', '127.0.0.2']) {
      const holding = strings.filter((t) => t.includes(addr));
      assert.ok(holding.length > 0, `${addr} is missing from the batch`);
      assert.deepEqual([...new Set(holding)], [addr], `${addr} appears inside other text: ${holding.join(' | ')}`);
    }
  });
});

describe('rule comments', () => {
  it('round-trip owner and spec, and ignore comments lowport did not write', () => {
    assert.deepEqual(parseComment(ruleComment(me, spec)), { owner: me, port: 80, protocols: ['tcp', 'udp'], toPort: 8080 });
    assert.deepEqual(parseComment('lowport policy=0badf00d 443/tcp>8443'), {
      owner: { kind: 'policy', id: '0badf00d' },
      port: 443,
      protocols: ['tcp'],
      toPort: 8443,
    });
    assert.equal(parseComment('my own rule'), undefined);
    assert.equal(parseComment('lowport pid=1 80/tcp>81'), undefined);
  });

  it("carry the owner's pid namespace when it has one, and read comments written without it", () => {
    const inContainer: Owner = { kind: 'pid', pid: 12, start: 345, ns: 4026532177 };
    assert.equal(
      ruleComment(inContainer, { port: 80, protocols: ['tcp'], toPort: 8080, addrs: [] }),
      'lowport pid=12@345~4026532177 80/tcp>8080',
    );
    assert.deepEqual(parseComment('lowport pid=12@345~4026532177 80/tcp>8080')?.owner, inContainer);
    assert.deepEqual(parseComment('lowport pid=12@345 80/tcp>8080')?.owner, { kind: 'pid', pid: 12, start: 345 });
    assert.equal(sameOwner(inContainer, { kind: 'pid', pid: 12, start: 345 }), false);
  });

  it("stay under nft's 128-byte comment limit at their longest", () => {
    const longest = ruleComment(
      { kind: 'pid', pid: 4194304, start: 99999999999999, ns: 4294967295 },
      { port: 65535, protocols: ['tcp', 'udp'], toPort: 65535, addrs: [] },
    );
    assert.ok(longest.length < 128, longest);
  });
});

describe('reading the table back', () => {
  // What `nft -j -a list table inet lowport` printed on nft 1.0.6 (one-element sets come back as plain values).
  const listing = {
    nftables: [
      { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
      { table: { family: 'inet', name: 'lowport', handle: 1 } },
      { chain: { family: 'inet', table: 'lowport', name: 'output', handle: 2, type: 'nat', hook: 'output', prio: -100, policy: 'accept' } },
      {
        rule: {
          family: 'inet',
          table: 'lowport',
          chain: 'output',
          handle: 4,
          comment: 'lowport pid=4242@98765 81/tcp>8080',
          expr: [
            { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } },
            { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: '::1' } },
            { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 81 } },
            { redirect: { port: 8080 } },
          ],
        },
      },
      {
        rule: {
          family: 'inet',
          table: 'lowport',
          chain: 'prerouting',
          handle: 5,
          comment: 'lowport pid=4242@98765 81/tcp>8080',
          expr: [
            { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { set: ['127.0.0.1', '127.0.0.2'] } } },
          ],
        },
      },
      { rule: { family: 'inet', table: 'lowport', chain: 'output', handle: 9, expr: [] } },
    ],
  };

  it('groups rules by comment into redirects, with their handles and addresses', () => {
    const { redirects, foreign } = groupRedirects(listedRules(listing));
    assert.equal(redirects.length, 1);
    assert.deepEqual(redirects[0], {
      owner: me,
      port: 81,
      protocols: ['tcp'],
      toPort: 8080,
      addrs: ['::1', '127.0.0.1', '127.0.0.2'],
      handles: [
        { chain: 'output', handle: 4 },
        { chain: 'prerouting', handle: 5 },
      ],
    });
    assert.deepEqual(
      foreign.map((r) => r.handle),
      [9],
    );
  });

  it('has no rules in an empty listing', () => {
    assert.deepEqual(listedRules(undefined), []);
    assert.deepEqual(listedRules({ nftables: [] }), []);
  });
});

describe('overlaps', () => {
  it('is true for the same port and a shared protocol on shared (or all) addresses', () => {
    assert.equal(overlaps(spec, { port: 80, protocols: ['tcp'], toPort: 9090, addrs: ['::1'] }), true);
    assert.equal(overlaps({ ...spec, addrs: ['127.0.0.1'] }, { ...spec, addrs: ['::1'] }), false);
    assert.equal(overlaps({ ...spec, protocols: ['udp'] }, { ...spec, protocols: ['tcp'] }), false);
    assert.equal(overlaps(spec, { ...spec, port: 81 }), false);
  });
});

describe('explainNft: what an nft failure means for lowport forward', () => {
  const cases: [string, NftError, string, RegExp, RegExp | undefined][] = [
    [
      'not installed',
      new NftError('missing', 'nft(8) is not installed'),
      'E_UNSUPPORTED',
      /^nft\(8\) is not installed; lowport forward installs its redirects with it$/,
      /apt-get install nftables.*forward serve/,
    ],
    [
      'listing as a user',
      new NftError('not-permitted', 'reading the nftables ruleset needs root (CAP_NET_ADMIN)'),
      'E_NOT_ROOT',
      /needs root/,
      /^Run it with sudo\.$/,
    ],
    [
      'batch refused for want of root',
      new NftError('rejected', 'nft -j -f - failed (exit 1): Operation not permitted', 'Operation not permitted'),
      'E_NFT',
      /exit 1/,
      /CAP_NET_ADMIN/,
    ],
    [
      'no NAT support',
      new NftError(
        'rejected',
        'nft -j -f - failed (exit 1): x',
        'Error: Could not process rule: No such file or directory\nredirect to :8080',
      ),
      'E_NFT',
      /exit 1/,
      /nft_redir/,
    ],
    [
      'anything else nft says',
      new NftError('rejected', 'nft -j -f - failed (exit 1): syntax', 'syntax error'),
      'E_NFT',
      /syntax/,
      /nft list ruleset/,
    ],
    ['a listing that failed', new NftError('failed', 'nft list table inet lowport failed: boom', 'boom'), 'E_NFT', /boom/, undefined],
  ];
  for (const [name, error, code, message, hint] of cases) {
    it(name, () => {
      assert.throws(
        () =>
          explainNft(() => {
            throw error;
          }),
        (e: unknown) => {
          assert.ok(e instanceof LowportError);
          assert.equal(e.code, code);
          assert.match(e.message, message);
          if (hint === undefined) assert.equal(e.hint, undefined);
          else assert.match(e.hint ?? '', hint);
          return true;
        },
      );
    });
  }
  it('passes other errors and results through', () => {
    assert.equal(
      explainNft(() => 7),
      7,
    );
    const other = new Error('x');
    assert.throws(
      () =>
        explainNft(() => {
          throw other;
        }),
      (e) => e === other,
    );
  });
});
