/**
 * The ownership rules of bpf/handles.ts, without root: OwnedFd (the base of
 * every map, program and link handle) over ordinary files. The same rules
 * with real maps, programs and links: test/kernel/handles.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, openSync } from 'node:fs';
import { describe, it } from 'node:test';
import { OwnedFd, withHandle, withHandles, type Closable } from '../../../src/bpf/handles.js';
import { SyscallError } from '../../../src/os/libc.js';

const isOpen = (fd: number): boolean => existsSync(`/proc/self/fd/${fd}`);
const openNull = (what = 'file /dev/null'): OwnedFd => new OwnedFd(openSync('/dev/null', 'r'), what);

describe('a handle owns its fd', () => {
  it('closes it once: a second close() does not close the file that got the number meanwhile', () => {
    const h = openNull();
    const n = h.fd;
    h.close();
    assert.equal(h.closed, true);
    assert.equal(isOpen(n), false);
    // The kernel hands out the lowest free number: the next open gets the same one.
    const other = openSync('/dev/null', 'r');
    try {
      assert.equal(other, n);
      h.close();
      assert.equal(isOpen(other), true, 'a second close() closed someone else’s fd');
    } finally {
      new OwnedFd(other, 'other').close();
    }
  });

  it('refuses a use after close with an error that names the object', () => {
    const h = openNull('map lowport_policy');
    h.close();
    assert.throws(
      () => h.fd,
      (e: unknown) =>
        e instanceof SyscallError &&
        e.errnoName === 'EBADF' &&
        e.message.startsWith('map lowport_policy: used after close()') &&
        e.hint !== undefined,
    );
  });
});

describe('withHandle and withHandles', () => {
  it('withHandle closes after the step, when it throws too', () => {
    const h = openNull();
    assert.equal(
      withHandle(h, (x) => x.fd >= 0),
      true,
    );
    assert.equal(h.closed, true);
    const g = openNull();
    assert.throws(
      () =>
        withHandle(g, () => {
          throw new Error('step failed');
        }),
      /step failed/,
    );
    assert.equal(g.closed, true);
  });

  it('withHandles closes everything taken, last first, however the step ends', () => {
    const order: string[] = [];
    const tracked = (name: string): Closable & OwnedFd => {
      const h = openNull(name);
      const close = h.close.bind(h);
      h.close = () => {
        order.push(name);
        close();
      };
      return h;
    };
    let taken: OwnedFd[] = [];
    assert.throws(
      () =>
        withHandles((own) => {
          taken = [own(tracked('outer')), own(tracked('cgroup')), own(tracked('program'))];
          throw new Error('link create failed');
        }),
      /link create failed/,
    );
    assert.deepEqual(order, ['program', 'cgroup', 'outer']);
    assert.ok(taken.every((h) => h.closed));
    const kept = withHandles((own) => own(openNull()).fd);
    assert.equal(isOpen(kept), false);
  });
});
