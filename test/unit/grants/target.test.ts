/** Machines where the BPF grant cannot work get a message that names what is missing and what to do instead. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SyscallError } from '../../../src/os/libc.js';
import { refusal } from '../../../src/bpf/probes.js';
import { bindHookByVersion, cgroup2Root, requireBpfFeatures } from '../../../src/grants/target.js';
import { findCgroup2Root } from '../../../src/os/cgroup.js';
import { parseMountInfo } from '../../../src/os/mounts.js';

describe('support checks', () => {
  it('stands in the version for the probes where they cannot run: 5.12 and later', () => {
    assert.equal(bindHookByVersion([5, 11]), false);
    assert.equal(bindHookByVersion([4, 19]), false);
    assert.equal(bindHookByVersion([5, 12]), true);
    assert.equal(bindHookByVersion([6, 1]), true);
    assert.equal(bindHookByVersion([6, 18]), true);
  });

  it('says when no cgroup v2 hierarchy is mounted, and how to mount one', () => {
    const v1only = parseMountInfo('31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n');
    assert.throws(
      () => cgroup2Root(v1only),
      (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, 'E_UNSUPPORTED');
        assert.match(e.message, /no cgroup v2 hierarchy is mounted/);
        assert.match(e.hint ?? '', /mount -t cgroup2/);
        return true;
      },
    );
  });

  it('finds cgroup v2 on a hybrid system at /sys/fs/cgroup/unified', () => {
    const hybrid = parseMountInfo(
      '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n',
    );
    assert.equal(findCgroup2Root(hybrid), '/sys/fs/cgroup/unified');
  });

  it('passes when every feature probe passed', () => {
    requireBpfFeatures(undefined, '6.1.0-57-cloud-amd64');
  });

  it('names the failed probe, its errno and the verifier line, and says to upgrade or fall back', () => {
    const old = {
      name: 'bind-return-3' as const,
      tried: 'load `r0 = 3; exit` for BPF_CGROUP_INET4_BIND',
      ok: false,
      errno: 'EINVAL',
      verifier: 'At program exit the register R0 has value (0x3; 0x0) should have been in (0x0; 0x1)',
    };
    assert.throws(
      () => requireBpfFeatures(old, '5.10.0-28-amd64'),
      (e: Error & { code?: string; hint?: string }) => {
        assert.equal(e.code, 'E_UNSUPPORTED');
        assert.equal(
          e.message,
          'Linux 5.10.0-28-amd64 cannot grant ports from a bind hook (a return value of 3, Linux 5.12): load `r0 = 3; exit` for BPF_CGROUP_INET4_BIND: EINVAL (verifier: At program exit the register R0 has value (0x3; 0x0) should have been in (0x0; 0x1))',
        );
        assert.match(e.hint ?? '', /^Upgrade the kernel, or use a fallback: `lowport run --sockets`/);
        return true;
      },
    );
  });

  it('tells a refusal of BPF itself (EPERM: lockdown, a container) from a missing feature, and points to doctor', () => {
    const refused = { name: 'hash-map' as const, tried: 'create a BPF_MAP_TYPE_HASH', ok: false, errno: 'EPERM' };
    assert.throws(
      () => requireBpfFeatures(refused, '6.8.0'),
      (e: Error & { hint?: string }) => {
        assert.match(
          e.message,
          /^the kernel does not let this process use BPF \(create a BPF_MAP_TYPE_HASH: EPERM\): kernel lockdown, a container without CAP_BPF/,
        );
        assert.match(e.hint ?? '', /^Run `lowport doctor` to see what is refused/);
        return true;
      },
    );
  });

  it('takes the last line of the verifier, not its statistics, from a refusal', () => {
    const e = new SyscallError('bpf(BPF_PROG_LOAD)', 22, {
      detail:
        'verifier log:\n0: (b7) r0 = 3\n1: (95) exit\nAt program exit the register R0 has value (0x3; 0x0) should have been in (0x0; 0x1)\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0',
    });
    assert.deepEqual(refusal(e), {
      errno: 'EINVAL',
      verifier: 'At program exit the register R0 has value (0x3; 0x0) should have been in (0x0; 0x1)',
    });
    assert.deepEqual(refusal(new SyscallError('bpf(BPF_MAP_CREATE)', 1)), { errno: 'EPERM' });
  });
});
