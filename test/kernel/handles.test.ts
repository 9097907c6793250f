/**
 * Kernel tests (root): bpf/handles.ts with real objects, in the sandbox's own
 * bpffs and cgroup. A map, program and link handle each own their fd: closed
 * once, a use after close refused before it reaches the kernel, and the
 * object kept alive by its pin alone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Assembler, R0 } from '../../src/bpf/asm.js';
import { BPF_CGROUP_INET4_BIND, BPF_MAP_TYPE, BPF_PROG_TYPE_CGROUP_SOCK_ADDR } from '../../src/bpf/attr.js';
import { LinkHandle, MapHandle, OwnedFd, ProgramHandle, withHandle, withHandles } from '../../src/bpf/handles.js';
import { progQuery } from '../../src/bpf/syscall.js';
import { openDirChain, type DirFd } from '../../src/os/dirfd.js';
import { SyscallError } from '../../src/os/libc.js';
import { openDir } from '../../src/os/process.js';
import { kernelSkipReason, Sandbox } from './sandbox.js';

const skip = kernelSkipReason();

const usedAfterClose = (what: RegExp) => (e: unknown) => e instanceof SyscallError && e.errnoName === 'EBADF' && what.test(e.message);

/** A bind program that lets every bind through (return 1), named `name`. */
function passAll(name: string): ProgramHandle {
  return ProgramHandle.load({
    type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    insns: new Assembler().mov(R0, { imm: 1 }).exit().assemble(),
    expectedAttachType: BPF_CGROUP_INET4_BIND,
    name,
  });
}

describe('BPF handles', { skip }, () => {
  let box: Sandbox;
  let bpffs: DirFd;
  before(() => {
    box = new Sandbox('handles');
    const dir = openDirChain(box.bpffs, { create: false });
    assert.ok(dir !== undefined);
    bpffs = dir;
  });
  after(() => {
    bpffs?.close();
    box?.dispose();
  });

  it('a map: lookup, update, batch, delete, info; close twice; a use after close names the map', () => {
    const map = MapHandle.create({ type: BPF_MAP_TYPE.HASH, keySize: 4, valueSize: 8, maxEntries: 8, name: 'lowport_test' });
    const key = (n: number): Buffer => Buffer.from([n, 0, 0, 0]);
    try {
      assert.equal(map.lookup(key(1)), undefined);
      map.update(key(1), Buffer.alloc(8, 1));
      map.updateBatch(Buffer.concat([key(2), key(3)]), Buffer.alloc(16, 2), 2);
      assert.deepEqual(map.lookup(key(3)), Buffer.alloc(8, 2));
      assert.equal(map.lookupAll().count, 3);
      assert.equal(map.delete(key(1)), true);
      assert.equal(map.delete(key(1)), false);
      const info = map.info();
      assert.equal(info.name, 'lowport_test');
      // Opened by id, it reads its sizes from the kernel.
      const again = MapHandle.fromId(info.id);
      assert.ok(again !== undefined);
      assert.equal(
        withHandle(again, (m) => m.lookupAll().count),
        2,
      );
      assert.equal(again.closed, true);
    } finally {
      map.close();
      map.close();
    }
    assert.throws(() => map.lookup(key(2)), usedAfterClose(/^map lowport_test: used after close\(\)/));
  });

  it('a pinned map outlives its handle, and is found again through the directory’s fd', () => {
    const map = MapHandle.create({ type: BPF_MAP_TYPE.HASH, keySize: 4, valueSize: 4, maxEntries: 1, name: 'lowport_pin' });
    withHandle(map, (m) => m.pin(bpffs, 'm'));
    const pinned = MapHandle.openPinned(bpffs, 'm');
    assert.ok(pinned !== undefined);
    assert.equal(
      withHandle(pinned, (m) => m.info().name),
      'lowport_pin',
    );
    bpffs.unlink('m');
    assert.equal(MapHandle.openPinned(bpffs, 'm'), undefined);
    assert.equal(ProgramHandle.fromId(0x7ffffff0), undefined);
  });

  it('a link: attach, info, update to another program, pin; closed with the rest of the step', async () => {
    const cgroupFd = openDir(box.cgroup);
    const ids = withHandles((own) => {
      const cgroup = own(new OwnedFd(cgroupFd, `cgroup ${box.cgroup}`));
      const first = own(passAll('lowport_t1'));
      const second = own(passAll('lowport_t2'));
      const link = own(LinkHandle.attachCgroup(first, cgroup, BPF_CGROUP_INET4_BIND, 'bind4'));
      assert.equal(link.info().progId, first.info().id);
      link.update(second, first);
      assert.equal(link.info().progId, second.info().id);
      // Only if it still runs `first`: it does not.
      assert.throws(
        () => link.update(first, first),
        (e: unknown) => e instanceof SyscallError && e.errnoName === 'EPERM',
      );
      link.pin(bpffs, 'l');
      assert.deepEqual(progQuery(cgroup.fd, BPF_CGROUP_INET4_BIND).progIds, [second.info().id]);
      return { link, program: second.info().id };
    });
    assert.equal(ids.link.closed, true);
    assert.throws(() => ids.link.info(), usedAfterClose(/^link bind4: used after close\(\)/));
    // The pin holds the link: still attached with every fd closed.
    const attached = (): number[] =>
      withHandle(new OwnedFd(openDir(box.cgroup), 'cgroup'), (c) => progQuery(c.fd, BPF_CGROUP_INET4_BIND).progIds);
    assert.deepEqual(attached(), [ids.program]);
    const pinned = LinkHandle.openPinned(bpffs, 'l');
    assert.ok(pinned !== undefined);
    assert.equal(
      withHandle(pinned, (l) => l.info().progId),
      ids.program,
    );
    // Unpinned with no fd left, the link goes and the program with it
    // (bpffs drops its reference after an RCU grace period: wait for it).
    bpffs.unlink('l');
    for (let i = 0; i < 100 && attached().length > 0; i++) await sleep(10);
    assert.deepEqual(attached(), []);
  });
});
