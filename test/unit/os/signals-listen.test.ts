import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { describe, it } from 'node:test';
import { EAGAIN, ENOENT, errnoName } from '../../../src/os/errno.js';
import { SyscallError } from '../../../src/os/libc.js';
import { closeListeners, listenerName, openListener } from '../../../src/os/listen.js';
import { exitStatus } from '../../../src/os/process.js';
import { relaySignals } from '../../../src/os/signals.js';
import { localName } from '../../../src/os/stream.js';

describe('errno: one table, Node’s', () => {
  it('has the platform’s values and names', () => {
    assert.equal(ENOENT, 2);
    assert.equal(EAGAIN, 11);
    assert.equal(errnoName(ENOENT), 'ENOENT');
    assert.equal(errnoName(0), 'errno 0');
    assert.equal(new SyscallError('bpf(BPF_OBJ_GET)', ENOENT).errnoName, 'ENOENT');
  });
});

describe('exitStatus: as a shell reports it', () => {
  it('is the exit code, or 128+N for a death by signal N', () => {
    assert.equal(exitStatus(3, null), 3);
    assert.equal(exitStatus(null, 'SIGTERM'), 143);
    assert.equal(exitStatus(null, 'SIGKILL'), 137);
    assert.equal(exitStatus(null, null), 128);
  });
});

describe('relaySignals', () => {
  it('passes each signal on while it relays, and removes every handler when stopped', () => {
    const before = { usr2: process.listenerCount('SIGUSR2'), winch: process.listenerCount('SIGWINCH') };
    const seen: string[] = [];
    const stop = relaySignals(['SIGUSR2', 'SIGWINCH'], (signal) => seen.push(signal));
    assert.equal(process.listenerCount('SIGUSR2'), before.usr2 + 1);
    process.emit('SIGUSR2');
    process.emit('SIGWINCH');
    assert.deepEqual(seen, ['SIGUSR2', 'SIGWINCH']);
    stop();
    stop();
    assert.equal(process.listenerCount('SIGUSR2'), before.usr2);
    assert.equal(process.listenerCount('SIGWINCH'), before.winch);
  });

  it('may be stopped from its own handler (a one-shot hold)', () => {
    const seen: string[] = [];
    const stop = relaySignals(['SIGUSR2'], (signal) => {
      stop();
      seen.push(signal);
    });
    process.emit('SIGUSR2');
    process.emit('SIGUSR2');
    assert.deepEqual(seen, ['SIGUSR2']);
  });
});

describe('openListener', () => {
  it('binds and listens on loopback, IPv4 and IPv6, and names what it bound', async () => {
    const v4 = openListener('tcp', '127.0.0.1', 0, { backlog: 8, v6Only: false });
    const v6 = openListener('udp', '::1', 0, { backlog: 8, v6Only: true });
    try {
      assert.equal(v4.family, 4);
      assert.equal(v4.what, 'tcp 127.0.0.1:0');
      assert.equal(v6.family, 6);
      assert.equal(v6.what, 'udp [::1]:0');
      assert.equal(listenerName('tcp', '::', 80), 'tcp [::]:80');
    } finally {
      closeListeners([v4, v6]);
    }
    // A port in use: the kernel's errno, named, with the socket's name in the call.
    const first = openListener('tcp', '127.0.0.1', 0, { backlog: 8, v6Only: false });
    try {
      const port = localName(first.fd)?.readUInt16BE(2) ?? 0;
      assert.ok(port > 0);
      // It listens: a connect succeeds.
      await new Promise<void>((resolve, reject) => {
        const c = createConnection({ host: '127.0.0.1', port }, () => {
          c.destroy();
          resolve();
        });
        c.on('error', reject);
      });
      assert.throws(
        () => openListener('tcp', '127.0.0.1', port, { backlog: 8, v6Only: false }),
        (e: unknown) => e instanceof SyscallError && e.errnoName === 'EADDRINUSE' && e.call === `bind(tcp 127.0.0.1:${port})`,
      );
    } finally {
      closeListeners([first]);
    }
  });

  it('refuses text that is no IPv6 address', () => {
    assert.throws(
      () => openListener('tcp', 'not-an-address', 0, { backlog: 8, v6Only: false }),
      (e: unknown) => e instanceof SyscallError && e.errnoName === 'EINVAL',
    );
  });
});
