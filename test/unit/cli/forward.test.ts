/**
 * `lowport forward add|remove|serve` arguments to requests, the usage errors that stop a typo
 * before anything runs, and the old spellings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../../src/errors.js';
import { parseAddArgs, parseBackend, parseRemoveArgs, parseServeArgs } from '../../../src/cli/forward.js';
import { runMain } from '../../run-main.js';

describe('lowport forward arguments', () => {
  it('reads a kernel redirect: one port (both protocols without a suffix), a target port, addresses', () => {
    assert.deepEqual(parseAddArgs({}, ['80', '8080']), {
      mode: 'kernel',
      spec: { port: 80, protocols: ['tcp', 'udp'], toPort: 8080, addrs: [] },
      persist: false,
    });
    assert.deepEqual(parseAddArgs({ addr: ['127.0.0.1,::1'], persist: true }, ['53/udp', '5353']), {
      mode: 'kernel',
      spec: { port: 53, protocols: ['udp'], toPort: 5353, addrs: ['127.0.0.1', '::1'] },
      persist: true,
    });
  });

  it('reads the userspace forwarder with its defaults and options', () => {
    const r = parseServeArgs({ 'proxy-protocol': 'v2', 'idle-timeout': '0', 'connect-timeout': '1.5', workers: '2', log: true }, [
      '80/tcp',
      '[::1]:8080',
    ]);
    assert.equal(r.mode, 'userspace');
    assert.deepEqual(r.backend, { host: '::1', port: 8080 });
    assert.equal(r.proxyProtocol, 'v2');
    assert.equal(r.idleTimeoutMs, 0);
    assert.equal(r.connectTimeoutMs, 1500);
    assert.equal(r.workers, 2);
    assert.equal(r.log, true);
    assert.equal(r.user, undefined);
  });

  it('reads backends: a bare port is 127.0.0.1, host:port, [v6]:port', () => {
    assert.deepEqual(parseBackend('8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseBackend('backend.internal:80'), { host: 'backend.internal', port: 80 });
    assert.deepEqual(parseBackend('[2001:db8::1]:443'), { host: '2001:db8::1', port: 443 });
    assert.throws(() => parseBackend('::1:80'), /brackets/);
    assert.throws(() => parseBackend('host:99999'), /not a port/);
  });

  it('reads the port to remove', () => {
    assert.deepEqual(parseRemoveArgs(['443/tcp']), { mode: 'remove', port: 443, protocols: ['tcp'] });
  });

  const refused: [string, () => unknown, RegExp][] = [
    ['a port range', () => parseAddArgs({}, ['80-81', '8080']), /one port/],
    ['two ports', () => parseAddArgs({}, ['80,443', '8080']), /one port/],
    ['a missing target', () => parseAddArgs({}, ['80']), /forward add needs a port and where it goes/],
    ['a host for a kernel redirect', () => parseAddArgs({}, ['80', '10.0.0.5:8080']), /forward serve 80 HOST:PORT/],
    ['a port forwarded to itself', () => parseAddArgs({}, ['80', '80']), /to itself/],
    ['a v4-mapped --addr for nftables', () => parseAddArgs({ addr: ['::ffff:127.0.0.1'] }, ['80', '8080']), /127\.0\.0\.1/],
    ['extra words', () => parseAddArgs({}, ['80', '8080', 'now']), /unexpected 'now'/],
    ['remove without a port', () => parseRemoveArgs([]), /forward remove needs the port/],
    ['remove with more', () => parseRemoveArgs(['80', '81']), /takes nothing else/],
    ['an unknown PROXY protocol version', () => parseServeArgs({ 'proxy-protocol': 'v3' }, ['80', '8080']), /v1 or v2/],
    ['a negative timeout', () => parseServeArgs({ 'idle-timeout': '-1' }, ['80', '8080']), /seconds/],
    ['zero workers', () => parseServeArgs({ workers: '0' }, ['80', '8080']), /at least 1/],
    [
      'a zero connect timeout, saying what 0 means where it may be',
      () => parseServeArgs({ 'connect-timeout': '0' }, ['80', '8080']),
      /^--connect-timeout takes seconds, up to \d+, not '0'/,
    ],
    [
      'a bad drain timeout, with what 0 means there',
      () => parseServeArgs({ 'drain-timeout': 'soon' }, ['80', '8080']),
      /\(0: close them at once\)/,
    ],
    ['a link-local backend with a zone', () => parseServeArgs({}, ['80', '[fe80::1%eth0]:8080']), /zone \(%\).*global or unique-local/],
    ['a missing backend', () => parseServeArgs({}, ['80']), /forward serve needs a port and where it goes/],
  ];
  for (const [what, parse, message] of refused) {
    it(`refuses ${what} with a usage error`, () => {
      assert.throws(parse, (e: unknown) => e instanceof UsageError && message.test(`${e.message} ${e.hint ?? ''}`));
    });
  }

  // Through the CLI, as a normal user: a usage error (2) comes before the offer of sudo (1, no terminal).
  const cli: [string, string[], RegExp][] = [
    ['--persist with the forwarder', ['forward', 'serve', '80', '8080', '--persist'], /lowport forward serve has no option '--persist'/],
    ['--user with a kernel redirect', ['forward', 'add', '80', '8080', '--user', 'nobody'], /lowport forward add has no option '--user'/],
    ['mode flags of the old spelling together', ['forward', '--list', '--gc'], /give only one of --list, --gc/],
    ['an unknown subcommand', ['forward', 'frob'], /unknown command 'lowport forward frob'/],
    ['an old spelling with a bad port, after its note', ['forward', '80-90', '8080'], /now `lowport forward add PORT TO`[^]*one port/],
    // An option's value before the port is not the port (review: `--addr fd00::1 80 8080` was an unknown command).
    [
      'an old spelling with --addr before the port, and a bad port',
      ['forward', '--addr', 'fd00::1', '80-90', '8080'],
      /now `lowport forward add PORT TO`[^]*one port/,
    ],
  ];
  for (const [what, args, message] of cli) {
    it(`exits 2 on ${what}`, async () => {
      const r = await runMain(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }

  // Each old spelling, with a mistake that only its new command reports (tests may run as root: nothing may run).
  const old: [string[], RegExp, RegExp][] = [
    [['forward', '--list', 'now'], /`lowport forward --list` is now `lowport forward list`/, /lowport forward list takes no arguments/],
    [['forward', '--gc', 'now'], /`lowport forward --gc` is now `lowport forward gc`/, /lowport forward gc takes no arguments/],
    [['forward', '--remove', '80-90'], /`lowport forward --remove` is now `lowport forward remove`/, /the port to remove is one port/],
    [
      ['forward', '--remove=80', '81'],
      /`lowport forward --remove` is now `lowport forward remove`/,
      /lowport forward remove PORT takes nothing else/,
    ],
    [
      ['forward', '--userspace', '80'],
      /`lowport forward --userspace` is now `lowport forward serve`/,
      /forward serve needs a port and where it goes/,
    ],
    [
      ['forward', '80', '8080', '--persist', '--userspace'],
      /`lowport forward --userspace` is now `lowport forward serve`/,
      /lowport forward serve has no option '--persist'/,
    ],
    [
      ['forward', '80', '8080', '--bogus'],
      /`lowport forward PORT TO` is now `lowport forward add PORT TO`/,
      /lowport forward add has no option '--bogus'/,
    ],
  ];
  for (const [args, note, error] of old) {
    it(`keeps \`lowport ${args.join(' ')}\` for one release, with a note naming the new spelling`, async () => {
      const r = await runMain(args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^lowport: note: ${note.source}; the old spelling goes away in the next release\n`));
      assert.match(r.stderr, error);
    });
  }

  it('exits 2 on a usage error through the CLI, before needing root', async () => {
    const r = await runMain(['forward', 'add', '80-90', '8080']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /one port/);
  });

  it('shows its help', async () => {
    const r = await runMain(['forward', 'serve', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--proxy-protocol v1\|v2/);
    const group = await runMain(['forward', '--help']);
    assert.equal(group.code, 0);
    for (const sub of ['add', 'remove', 'list', 'gc', 'serve']) assert.match(group.stdout, new RegExp(`\\n  ${sub} +\\S`), sub);
  });
});
