/**
 * The forwarder process: started by `lowport forward serve` with its
 * listening sockets as fds 3, 4, ... (already bound by lowport, as root or as
 * a granted user) and its settings in LOWPORT_FORWARD_CONFIG. When lowport ran
 * as root, this process runs as --user with every privilege dropped
 * (os/launch.ts); it never binds anything itself.
 *
 * TCP runs in `threads` threads (tcp-thread.ts), each an epoll loop on the
 * shared listening sockets; this thread keeps Node's own event loop for UDP
 * (udp.ts), signals, and the backend name's periodic lookup.
 *
 * SIGTERM, SIGINT or SIGHUP: drain (stop accepting, let connections finish
 * until the drain deadline), then exit 0. A second signal, a second or more
 * after the first, closes everything and exits. If the lowport process that started it goes away (SIGKILL), it
 * drains too, so no forwarder is left serving on its own. A thread that
 * fails takes the process down (exit 1) rather than leave it serving at a
 * fraction.
 */
import dgram from 'node:dgram';
import { closeSync, writeSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { closeRawFd } from '../os/libc.js';
import { eventfdCreate, eventfdSignal } from '../os/stream.js';
import type { LoopCommand, LoopConfig } from './tcp-loop.js';
import type { ThreadData } from './tcp-thread.js';
import { UdpForwarder } from './udp.js';
import { CONFIG_ENV, logLine, type WorkerConfig } from './userspace.js';

const THREAD = new URL('./tcp-thread.js', import.meta.url);
/** Signals this close together are one request (see stop()). */
const SAME_SIGNAL_MS = 1000;
/** How often a backend given by name is looked up again. */
const LOOKUP_INTERVAL_MS = 30_000;

interface Thread {
  port: MessagePort;
  wakeFd: number;
}

function main(): void {
  const text = process.env[CONFIG_ENV];
  if (text === undefined) {
    process.stderr.write('lowport forward worker: started without its configuration; it is run by `lowport forward serve`\n');
    process.exit(2);
  }
  delete process.env[CONFIG_ENV];
  // Run by root, its output goes through pipes to lowport (never root's
  // terminal): with lowport gone, a write fails with EPIPE, which must not
  // end a drain.
  for (const out of [process.stdout, process.stderr]) out.on('error', () => undefined);
  const config = JSON.parse(text) as WorkerConfig;

  const udp = new UdpForwarder(config, logLine);
  for (const l of config.listeners) {
    if (l.protocol !== 'udp') continue;
    const socket = dgram.createSocket(l.family === 6 ? 'udp6' : 'udp4');
    socket.bind({ fd: l.fd });
    udp.attach(socket);
  }

  const tcpFds = config.listeners.filter((l) => l.protocol === 'tcp').map((l) => l.fd);
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const threads: Thread[] = [];
  let status = 0;
  let stopping = false;
  let running = 0;
  let watching = 0;
  let listenersOpen = true;
  // Once no thread watches them (every one said 'unwatched', or ended), the
  // listening sockets are closed: the kernel refuses new connections then.
  const closeListeners = (): void => {
    if (!listenersOpen || watching > 0) return;
    listenersOpen = false;
    for (const fd of tcpFds) closeRawFd(fd);
  };

  const command = (c: LoopCommand): void => {
    for (const t of threads) {
      t.port.postMessage(c);
      eventfdSignal(t.wakeFd);
    }
  };
  let stoppingSince = 0;
  const stop = (why: string): void => {
    if (stopping) {
      // A signal sent to the whole group (systemd's default KillMode) reaches
      // this process twice at once, directly and relayed by lowport: that is
      // one request to drain. A second one a moment later closes everything.
      if (performance.now() - stoppingSince >= SAME_SIGNAL_MS) command({ type: 'stop' });
      return;
    }
    stopping = true;
    stoppingSince = performance.now();
    if (config.log) logLine(`draining (${why}): ${Atomics.load(counter, 0)} connection(s) open`);
    udp.closeAll('forwarder stopping');
    command({ type: 'drain' });
    closeListeners();
    if (running === 0) process.exit(status);
  };

  if (tcpFds.length > 0) {
    for (let i = 0; i < Math.max(1, config.threads); i++) {
      const { port1, port2 } = new MessageChannel();
      const wakeFd = eventfdCreate();
      const loopConfig: LoopConfig = { ...config, listeners: tcpFds, wakeFd, counter };
      const data: ThreadData = { config: loopConfig, port: port2 };
      const worker = new Worker(THREAD, { workerData: data, transferList: [port2] });
      threads.push({ port: port1, wakeFd });
      running++;
      watching++;
      let watched = true;
      const unwatched = (): void => {
        if (!watched) return;
        watched = false;
        watching--;
        closeListeners();
      };
      port1.on('message', unwatched);
      worker.on('error', (e) => {
        logLine(`forwarder thread failed: ${e.stack ?? e.message}`);
        status = 1;
      });
      worker.on('exit', () => {
        running--;
        unwatched();
        if (!stopping) {
          // A loop ends on its own only after an error.
          status = status === 0 ? 1 : status;
          stop('a forwarding thread ended');
        }
        if (running === 0) process.exit(status);
      });
    }
  }

  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  // Serving: lowport's startup wait ends (a failure before this line is a startup failure).
  writeSync(config.readyFd, 'ready\n');
  closeSync(config.readyFd);
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop('lowport exited');
  }, 1000).unref();

  const { host } = config.backend;
  if (tcpFds.length > 0 && isIP(host) === 0) {
    // A name may move (a container restarted, DNS changed): look it up again now and then.
    let last = config.addresses.join(' ');
    setInterval(() => {
      lookup(host, { all: true }).then(
        (found) => {
          const addresses = found.map((a) => a.address);
          if (addresses.length === 0 || addresses.join(' ') === last || stopping) return;
          last = addresses.join(' ');
          if (config.log) logLine(`backend ${host} now resolves to ${addresses.join(', ')}`);
          command({ type: 'addresses', addresses });
        },
        (e: NodeJS.ErrnoException) => {
          if (config.log) logLine(`backend ${host}: lookup failed (${e.code ?? e.message}); keeping ${last}`);
        },
      );
    }, LOOKUP_INTERVAL_MS).unref();
  }
}

main();
