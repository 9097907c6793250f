/** Machines where the BPF grant cannot work get a message that names what is missing and what to do instead. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requireKernel } from '../../../src/grants/target.js';
import { findCgroup2Root } from '../../../src/os/cgroup.js';
import { parseMountInfo } from '../../../src/os/mounts.js';

describe('support checks', () => {
  it('refuses a kernel older than 5.12, naming its version and the fallbacks', () => {
    assert.throws(() => requireKernel([5, 11], '5.11.0-foo'), (e: Error & { code?: string; hint?: string }) => {
      assert.equal(e.code, 'E_UNSUPPORTED');
      assert.match(e.message, /Linux 5\.11\.0-foo .*needs Linux 5\.12 or later/);
      assert.match(e.hint ?? '', /run --sockets|nftables|ip_unprivileged_port_start/);
      return true;
    });
    assert.throws(() => requireKernel([4, 19], '4.19.0'), /needs Linux 5\.12/);
  });

  it('accepts 5.12 and later', () => {
    requireKernel([5, 12], '5.12.0');
    requireKernel([6, 18], '6.18.44');
  });

  it('says when no cgroup v2 hierarchy is mounted, and how to mount one', () => {
    const v1only = parseMountInfo('31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n');
    assert.throws(() => findCgroup2Root(v1only), (e: Error & { code?: string; hint?: string }) => {
      assert.equal(e.code, 'E_UNSUPPORTED');
      assert.match(e.message, /no cgroup v2 hierarchy is mounted/);
      assert.match(e.hint ?? '', /mount -t cgroup2/);
      return true;
    });
  });

  it('finds cgroup v2 on a hybrid system at /sys/fs/cgroup/unified', () => {
    const hybrid = parseMountInfo(
      '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n',
    );
    assert.equal(findCgroup2Root(hybrid), '/sys/fs/cgroup/unified');
  });
});
