/**
 * A forwarder process: started by `lowport forward --userspace` with its
 * listening sockets as fds 3, 4, ... (already bound by lowport, as root or as
 * a granted user) and its settings in LOWPORT_FORWARD_CONFIG. When lowport ran
 * as root, this process runs as --user with every privilege dropped
 * (kernel/launch.ts); it never binds anything itself.
 *
 * SIGTERM, SIGINT or SIGHUP: drain (stop accepting, let connections finish
 * until the drain deadline), then exit 0. A second signal exits at once. If
 * the lowport process that started it goes away (SIGKILL), it drains too, so
 * no forwarder is left serving on its own.
 */
import dgram from 'node:dgram';
import { CONFIG_ENV, TcpForwarder, type WorkerConfig } from './userspace.js';
import { UdpForwarder } from './udp.js';

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

function main(): void {
  const text = process.env[CONFIG_ENV];
  if (text === undefined) {
    process.stderr.write('lowport forward worker: started without its configuration; it is run by `lowport forward --userspace`\n');
    process.exit(2);
  }
  delete process.env[CONFIG_ENV];
  const config = JSON.parse(text) as WorkerConfig;
  const tcp = new TcpForwarder(config, log);
  const udp = new UdpForwarder(config, log);
  for (const l of config.listeners) {
    if (l.protocol === 'tcp') {
      tcp.createServer().listen({ fd: l.fd });
    } else {
      const socket = dgram.createSocket(l.family === 6 ? 'udp6' : 'udp4');
      socket.bind({ fd: l.fd });
      udp.attach(socket);
    }
  }

  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) {
      tcp.closeAll();
      udp.closeAll();
      process.exit(0);
    }
    stopping = true;
    if (config.log) log(`draining (${why}): ${tcp.active} connection(s) open`);
    udp.closeAll('forwarder stopping');
    void tcp.drain().then(() => process.exit(0));
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop('lowport exited');
  }, 1000).unref();
}

main();
