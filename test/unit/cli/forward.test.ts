/** `lowport forward` arguments to requests, and the usage errors that stop a typo before anything runs. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../../src/errors.js';
import { parseBackend, parseForwardArgs } from '../../../src/cli/forward.js';
import { runMain } from '../../run-main.js';

describe('lowport forward arguments', () => {
  it('reads a kernel redirect: one port (both protocols without a suffix), a target port, addresses', () => {
    assert.deepEqual(parseForwardArgs({}, ['80', '8080']), { mode: 'kernel', spec: { port: 80, protocols: ['tcp', 'udp'], toPort: 8080, addrs: [] }, persist: false });
    assert.deepEqual(parseForwardArgs({ addr: ['127.0.0.1,::1'], persist: true }, ['53/udp', '5353']), {
      mode: 'kernel',
      spec: { port: 53, protocols: ['udp'], toPort: 5353, addrs: ['127.0.0.1', '::1'] },
      persist: true,
    });
  });

  it('reads the userspace forwarder with its defaults and options', () => {
    const r = parseForwardArgs({ userspace: true, 'proxy-protocol': 'v2', 'idle-timeout': '0', 'connect-timeout': '1.5', workers: '2', log: true }, ['80/tcp', '[::1]:8080']);
    assert.equal(r.mode, 'userspace');
    if (r.mode !== 'userspace') return;
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

  it('reads --list, --gc and --remove', () => {
    assert.deepEqual(parseForwardArgs({ list: true }, []), { mode: 'list' });
    assert.deepEqual(parseForwardArgs({ gc: true }, []), { mode: 'gc' });
    assert.deepEqual(parseForwardArgs({ remove: '443/tcp' }, []), { mode: 'remove', port: 443, protocols: ['tcp'] });
  });

  const refused: [string, Record<string, string | boolean | string[]>, string[], RegExp][] = [
    ['a port range', {}, ['80-81', '8080'], /one port/],
    ['two ports', {}, ['80,443', '8080'], /one port/],
    ['a missing target', {}, ['80'], /needs a port and where it goes/],
    ['a host for a kernel redirect', {}, ['80', '10.0.0.5:8080'], /--userspace/],
    ['a port forwarded to itself', {}, ['80', '80'], /to itself/],
    ['a v4-mapped --addr for nftables', { addr: ['::ffff:127.0.0.1'] }, ['80', '8080'], /127\.0\.0\.1/],
    ['--persist with --userspace', { userspace: true, persist: true }, ['80', '8080'], /run it as a service/],
    ['--user without --userspace', { user: 'nobody' }, ['80', '8080'], /--user goes with --userspace/],
    ['--list with --gc', { list: true, gc: true }, [], /only one of/],
    ['an unknown PROXY protocol version', { userspace: true, 'proxy-protocol': 'v3' }, ['80', '8080'], /v1 or v2/],
    ['a negative timeout', { userspace: true, 'idle-timeout': '-1' }, ['80', '8080'], /seconds/],
    ['zero workers', { userspace: true, workers: '0' }, ['80', '8080'], /at least 1/],
    ['a zero connect timeout, saying what 0 means where it may be', { userspace: true, 'connect-timeout': '0' }, ['80', '8080'], /^--connect-timeout takes seconds, up to \d+, not '0'/],
    ['a bad drain timeout, with what 0 means there', { userspace: true, 'drain-timeout': 'soon' }, ['80', '8080'], /\(0: close them at once\)/],
    ['a link-local backend with a zone', { userspace: true }, ['80', '[fe80::1%eth0]:8080'], /zone \(%\).*global or unique-local/],
    ['extra words', {}, ['80', '8080', 'now'], /unexpected 'now'/],
  ];
  for (const [what, values, positionals, message] of refused) {
    it(`refuses ${what} with a usage error`, () => {
      assert.throws(() => parseForwardArgs(values, positionals), (e: unknown) => e instanceof UsageError && message.test(`${e.message} ${e.hint ?? ''}`));
    });
  }

  it('exits 2 on a usage error through the CLI, before needing root', async () => {
    const r = await runMain(['forward', '80-90', '8080']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /one port/);
  });

  it('shows its help', async () => {
    const r = await runMain(['forward', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--proxy-protocol v1\|v2/);
  });
});
