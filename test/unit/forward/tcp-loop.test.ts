/**
 * The userspace TCP forwarder's loop (tcp-loop.ts), run as lowport runs it:
 * in a worker thread (tcp-thread.ts, the real entry), on a listening socket
 * made here, commanded through a message port and an eventfd as
 * worker-main.ts does. Over loopback on ports the kernel picks, with real
 * backends in this thread: no root.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, it } from 'node:test';
import { MessageChannel, Worker } from 'node:worker_threads';
import type { LoopCommand, LoopConfig } from '../../../src/forward/tcp-loop.js';
import type { ThreadData } from '../../../src/forward/tcp-thread.js';
import { closeRawFd, openBoundSocket } from '../../../src/os/libc.js';
import { AF_INET, decodeSockaddr, SOCK_STREAM, sockaddrIn } from '../../../src/os/sockaddr.js';
import { eventfdCreate, eventfdSignal, localName } from '../../../src/os/stream.js';

const THREAD = new URL('../../../src/forward/tcp-thread.js', import.meta.url);

interface Forwarder {
  /** The port clients connect to. */
  port: number;
  command(c: LoopCommand): void;
  /** Resolves when the loop says it no longer watches the listening socket. */
  unwatched: Promise<unknown>;
  /** Resolves when the thread ends (the loop returned). */
  exited: Promise<unknown>;
  hasExited(): boolean;
  /** Closes the listening socket, as worker-main.ts does once no thread watches it. */
  closeListener(): void;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Starts a forwarding thread to `addresses` on backendPort. */
function startForwarder(backendPort: number, options: Partial<LoopConfig> & { addresses?: string[] } = {}): Forwarder {
  const listener = openBoundSocket(AF_INET, SOCK_STREAM, sockaddrIn('127.0.0.1', 0), {
    backlog: 128,
    v6Only: false,
    what: 'test listener',
  });
  const name = localName(listener);
  const local = name === undefined ? undefined : decodeSockaddr(name);
  assert.ok(local !== undefined);
  const wakeFd = eventfdCreate();
  const config: LoopConfig = {
    backend: { host: '127.0.0.1', port: backendPort },
    connectTimeoutMs: 2000,
    idleTimeoutMs: 0,
    maxConnections: 100,
    drainTimeoutMs: 10_000,
    udpTimeoutMs: 1000,
    log: false,
    addresses: ['127.0.0.1'],
    ...options,
    listeners: [listener],
    wakeFd,
    counter: new Int32Array(new SharedArrayBuffer(4)),
  };
  const { port1, port2 } = new MessageChannel();
  const data: ThreadData = { config, port: port2 };
  const worker = new Worker(THREAD, { workerData: data, transferList: [port2] });
  let exited = false;
  const exitedPromise = once(worker, 'exit').then(() => (exited = true));
  let listenerOpen = true;
  const closeListener = (): void => {
    if (listenerOpen) closeRawFd(listener);
    listenerOpen = false;
  };
  const f: Forwarder = {
    port: local.port,
    command(c) {
      port1.postMessage(c);
      eventfdSignal(wakeFd);
    },
    unwatched: once(port1, 'message'),
    exited: exitedPromise,
    hasExited: () => exited,
    closeListener,
  };
  cleanups.push(async () => {
    if (!exited) f.command({ type: 'stop' });
    await exitedPromise;
    port1.close();
    closeListener();
    closeRawFd(wakeFd);
  });
  return f;
}

/** A backend on 127.0.0.1 and a kernel-chosen port; closed after the test. */
async function backend(
  onConnection: (s: Socket) => void,
  options: { pauseOnConnect?: boolean } = {},
): Promise<{ server: Server; port: number }> {
  const connections = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, ...options }, (s) => {
    connections.add(s);
    s.on('close', () => connections.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    // A half-open connection would keep close() waiting.
    for (const s of connections) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port: (server.address() as AddressInfo).port };
}

const echo = (s: Socket): void => {
  s.pipe(s);
};

function client(port: number): Socket {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  cleanups.push(() => {
    s.destroy();
  });
  return s;
}

/**
 * What the sockets between a client, the forwarder and a backend may hold at
 * most: two connections, each with a send and a receive buffer at their
 * sysctl maxima, and the forwarder's pipes.
 */
function socketsHold(): number {
  const max = (file: string): number => Number(readFileSync(`/proc/sys/net/ipv4/${file}`, 'utf8').trim().split(/\s+/)[2]);
  return 2 * (max('tcp_wmem') + max('tcp_rmem')) + 2 * 65_536;
}

/** Everything a socket reads until its peer's FIN, and how it ended: 'end' (a FIN) or an error code. */
function readAll(s: Socket): Promise<{ data: Buffer; ended: string }> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => {
    s.once('end', () => resolve({ data: Buffer.concat(chunks), ended: 'end' }));
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), ended: e.code ?? e.message }));
  });
}

/** One line sent, its echo read back. */
async function roundTrip(s: Socket, text: string): Promise<string> {
  let onEnd = (): void => {};
  const got = new Promise<string>((resolve, reject) => {
    onEnd = () => reject(new Error(`the connection ended before the echo of ${JSON.stringify(text)}`));
    s.once('data', (c: Buffer) => resolve(String(c)));
    s.once('end', onEnd);
  });
  s.write(text);
  try {
    return await got;
  } finally {
    s.off('end', onEnd);
  }
}

/** A failure here must not hang the file: each test has its own deadline. */
const PER_TEST = { timeout: 20_000 };

/** A promise and its resolve, for what a backend's handler sees. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => {};
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('TCP forwarder loop, in a worker thread over loopback', () => {
  it(
    'carries the client’s half-close: the backend reads the whole request and the FIN, and its answer still comes back',
    PER_TEST,
    async () => {
      const got = deferred<number>();
      const { port } = await backend((s) => {
        const hash = createHash('sha256');
        let bytes = 0;
        s.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        s.on('end', () => {
          got.resolve(bytes);
          // Answers after the client's FIN: the other direction must still be open.
          s.end(`${bytes} ${hash.digest('hex')}`);
        });
      });
      const f = startForwarder(port);
      const payload = randomBytes(3 * 1024 * 1024 + 17);
      const c = client(f.port);
      const reply = readAll(c);
      c.end(payload);
      assert.equal(await got.promise, payload.length);
      const { data, ended } = await reply;
      assert.equal(data.toString(), `${payload.length} ${createHash('sha256').update(payload).digest('hex')}`);
      assert.equal(ended, 'end');
    },
  );

  it('carries the backend’s half-close: the client gets the FIN and can still send, and the backend reads it all', PER_TEST, async () => {
    const received = deferred<Promise<{ data: Buffer; ended: string }>>();
    const { port } = await backend((s) => {
      received.resolve(readAll(s));
      // A server that answers and closes its side at once.
      s.end('hello\n');
    });
    const f = startForwarder(port);
    const c = client(f.port);
    const fromBackend = await readAll(c);
    assert.deepEqual([fromBackend.data.toString(), fromBackend.ended], ['hello\n', 'end']);
    const late = randomBytes(256 * 1024);
    c.end(late);
    const got = await received.promise;
    assert.equal(got.ended, 'end');
    assert.ok(got.data.equals(late), `the backend got ${got.data.length} of ${late.length} bytes`);
  });

  it(
    'stops reading a client whose backend stops reading, buffering no more than the kernel does, then delivers every byte',
    PER_TEST,
    async () => {
      const kernelBound = socketsHold();
      const total = Math.max(64 << 20, 2 * kernelBound);
      const connected = deferred<Socket>();
      const done = deferred<void>();
      const received = createHash('sha256');
      let receivedBytes = 0;
      const { port } = await backend(
        (s) => {
          s.on('data', (c: Buffer) => {
            received.update(c);
            receivedBytes += c.length;
          });
          s.on('end', () => done.resolve());
          connected.resolve(s);
        },
        { pauseOnConnect: true },
      );
      const f = startForwarder(port);
      const c = client(f.port);
      await once(c, 'connect');
      const sent = createHash('sha256');
      let handed = 0;
      // Writes as the socket takes them (on drain), so that what the client holds itself stays small.
      const writeMore = (): void => {
        while (handed < total) {
          const chunk = randomBytes(Math.min(65_536, total - handed));
          sent.update(chunk);
          handed += chunk.length;
          if (!c.write(chunk)) return;
        }
        c.end();
      };
      c.on('drain', writeMore);
      writeMore();
      const backendSide = await connected.promise;
      // Wait until the client no longer gets rid of its bytes: what left it is in the kernel or the forwarder.
      const accepted = (): number => handed - c.writableLength;
      let last = -1;
      for (let still = 0; still < 3;) {
        await sleep(150);
        still = accepted() === last ? still + 1 : 0;
        last = accepted();
      }
      assert.ok(accepted() < total, 'the client handed over everything: nothing held it back');
      assert.ok(
        accepted() <= kernelBound,
        `${accepted()} bytes left the client, more than the ${kernelBound} the sockets on the way can hold`,
      );
      assert.equal(receivedBytes, 0);
      const clientEvents: string[] = [];
      for (const e of ['end', 'error', 'close']) c.on(e, () => clientEvents.push(e));
      backendSide.resume();
      await done.promise;
      await sleep(50);
      // The backend has not closed its side: the client's stays open for it.
      assert.deepEqual(clientEvents, []);
      assert.equal(receivedBytes, total);
      assert.equal(received.digest('hex'), sent.digest('hex'));
    },
  );

  it(
    'splices a bulk download through a pipe (no byte copied into the process): a slow client gets every byte, and the backend is held back meanwhile',
    PER_TEST,
    async () => {
      // More than the sockets on the way can hold (tcp_rmem's maximum is 32 MiB on Debian 12: one client
      // socket may take a fixed 32 MiB whole, and then nothing holds the backend back).
      const kernelBound = socketsHold();
      const total = Math.max(32 * 1024 * 1024, kernelBound) + 5;
      const body = randomBytes(total);
      let backendHanded = -1;
      const { port } = await backend((s) => {
        // Writes as the socket takes them, so that how far it got shows the backpressure.
        let offset = 0;
        const more = (): void => {
          while (offset < total) {
            const end = Math.min(total, offset + 65_536);
            const ok = s.write(body.subarray(offset, end));
            offset = end;
            backendHanded = offset - s.writableLength;
            if (!ok) return;
          }
          s.end();
        };
        s.on('drain', more);
        more();
      });
      const pipes = (): number =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:');
          } catch {
            return false;
          }
        }).length;
      const f = startForwarder(port);
      const c = client(f.port);
      c.pause();
      // The client reads nothing for a while: the backend must stall at what the sockets on the way hold.
      let last = -2;
      for (let still = 0; still < 3;) {
        await sleep(150);
        still = backendHanded === last ? still + 1 : 0;
        last = backendHanded;
      }
      assert.ok(backendHanded > 0 && backendHanded < total, `the backend handed over ${backendHanded} of ${total} bytes`);
      assert.ok(
        backendHanded <= kernelBound,
        `${backendHanded} bytes left the backend, more than the ${kernelBound} the sockets on the way hold`,
      );
      const during = pipes();
      const got = readAll(c);
      c.resume();
      const { data, ended } = await got;
      assert.equal(ended, 'end');
      assert.equal(data.length, total);
      assert.equal(createHash('sha256').update(data).digest('hex'), createHash('sha256').update(body).digest('hex'));
      // The forwarder (a thread of this process) held a pipe for the download, and closes it with the connection.
      c.end();
      await once(c, 'close');
      for (let i = 0; i < 40 && pipes() > during - 2; i++) await sleep(50);
      assert.ok(pipes() <= during - 2, `pipe fds: ${during} during the download, ${pipes()} after it`);
    },
  );

  it('tries the backend’s next address when one refuses, and gives the client a FIN (not a reset) when all do', PER_TEST, async () => {
    const { port } = await backend(echo);
    // Nothing listens on 127.0.0.2 (the backend is on 127.0.0.1 only): that connect is refused.
    const f = startForwarder(port, { addresses: ['127.0.0.2', '127.0.0.1'] });
    for (let i = 0; i < 2; i++) {
      const c = client(f.port);
      assert.equal(await roundTrip(c, `ping ${i}`), `ping ${i}`);
      c.end();
    }
    const none = startForwarder(port, { addresses: ['127.0.0.2', '127.0.0.3'] });
    const c = client(none.port);
    c.write('anyone?');
    const r = await readAll(c);
    assert.deepEqual([r.data.length, r.ended], [0, 'end']);
  });

  it('drains: stops accepting, lets an open connection finish, and ends when it has', PER_TEST, async () => {
    const { port } = await backend(echo);
    const f = startForwarder(port);
    const open = client(f.port);
    assert.equal(await roundTrip(open, 'before'), 'before');
    f.command({ type: 'drain' });
    await f.unwatched;
    f.closeListener();
    const late = client(f.port);
    const refused = await readAll(late);
    assert.equal(refused.ended, 'ECONNREFUSED');
    // The open connection is still served, and the loop waits for it.
    assert.equal(await roundTrip(open, 'during'), 'during');
    await sleep(100);
    assert.equal(f.hasExited(), false, 'the loop ended with a connection still open');
    const rest = readAll(open);
    open.end();
    assert.equal((await rest).ended, 'end');
    await f.exited;
  });

  it('closes what is still open at the drain deadline', PER_TEST, async () => {
    const { port } = await backend(echo);
    const f = startForwarder(port, { drainTimeoutMs: 300 });
    const open = client(f.port);
    assert.equal(await roundTrip(open, 'x'), 'x');
    const start = performance.now();
    f.command({ type: 'drain' });
    const r = await readAll(open);
    const waited = performance.now() - start;
    assert.ok(waited >= 250, `closed after ${Math.round(waited)} ms, before the deadline`);
    assert.ok(r.ended === 'end' || r.ended === 'ECONNRESET', r.ended);
    await f.exited;
  });

  it('closes a connection idle for the idle timeout, and not one that keeps talking', PER_TEST, async () => {
    const { port } = await backend(echo);
    const f = startForwarder(port, { idleTimeoutMs: 400 });
    const idle = client(f.port);
    const talking = client(f.port);
    assert.equal(await roundTrip(idle, 'a'), 'a');
    const start = performance.now();
    const idleEnd = readAll(idle);
    let talkingClosed = false;
    talking.on('close', () => (talkingClosed = true));
    // 1.2 s of a message every 100 ms: three idle timeouts' worth.
    for (let i = 0; i < 12; i++) {
      assert.equal(await roundTrip(talking, `t${i}`), `t${i}`);
      await sleep(100);
    }
    const r = await idleEnd;
    assert.ok(r.ended === 'end' || r.ended === 'ECONNRESET', r.ended);
    assert.ok(performance.now() - start >= 350);
    assert.equal(talkingClosed, false);
  });
});
