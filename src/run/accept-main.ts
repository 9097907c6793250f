/**
 * The accept loop of `lowport run --accept`: started by lowport (accept.ts)
 * as --user with every privilege dropped (os/launch.ts), with the listening
 * sockets lowport bound as fds 3, 4, ... and its settings in
 * LOWPORT_ACCEPT_CONFIG (ucspi.ts). It accepts, and starts the command once
 * per connection with the connection as fds 0 and 1 and this process's
 * stderr as fd 2 (as tcpserver does), in the UCSPI-TCP environment. The
 * programs inherit this process's identity: nothing is left to drop.
 *
 * Each program runs in a session of its own (setsid, Node's `detached`): ^C
 * or a hang-up never reaches it through a terminal, and its whole process
 * group can be ended at the end of a drain. This process closes its copy of
 * the connection as soon as the program has started, so the connection ends
 * when the program (and whatever it passed the fds to) closes them or exits.
 * Sockets are accepted paused (pauseOnConnect): this process never reads a
 * byte of them.
 *
 * A connection over --max-conns, or over --max-per-ip from one address, is
 * closed at once and logged (tcpserver defers accepting instead, which leaves
 * the client waiting in the backlog with no sign; xinetd closes too).
 *
 * SIGTERM, SIGINT or SIGHUP: stop accepting (the listening sockets are
 * closed, so the kernel refuses new connections) and wait for the running
 * programs; after --drain-timeout, or at a second signal a second or more
 * after the first, they get SIGTERM, and SIGKILL 2 s later. Exit 0 once none
 * is left. If lowport goes away (SIGKILL), the same drain starts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, writeSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { escapeControl } from '../text.js';
import { isolateChildren } from '../os/launch.js';
import { exitStatus } from '../os/process.js';
import { logLine } from '../forward/userspace.js';
import { ACCEPT_CONFIG_ENV, ConnectionCount, endpointText, KILL_GRACE_MS, ucspiEnvironment, type AcceptConfig } from './ucspi.js';

/** Signals this close together are one request (a group kill reaches this process directly and through lowport). */
const SAME_SIGNAL_MS = 1000;

/** The command's file: a path as it is, a name looked up in the programs' PATH; undefined when nothing there may be run. */
function executable(name: string, path: string): string | undefined {
  const candidates = name.includes('/') ? [name] : path.split(':').map((dir) => `${dir === '' ? '.' : dir}/${name}`);
  for (const file of candidates) {
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return undefined;
}

function main(): void {
  const text = process.env[ACCEPT_CONFIG_ENV];
  if (text === undefined) {
    process.stderr.write('lowport accept loop: started without its configuration; it is run by `lowport run --accept`\n');
    process.exit(2);
  }
  delete process.env[ACCEPT_CONFIG_ENV];
  const config = JSON.parse(text) as AcceptConfig;
  const [file, ...args] = config.command;
  // Checked here, as the user, before lowport says it serves: a command the user cannot run fails once, not per connection.
  if (file === undefined || executable(file, config.env.PATH ?? '') === undefined) {
    logLine(
      `lowport: ${escapeControl(file ?? '')}: no such program that ${escapeControl(config.env.USER ?? 'the user')} may run (PATH ${config.env.PATH ?? ''})`,
    );
    process.exit(127);
  }
  // The listening sockets and the ready pipe came without close-on-exec, and no program may get them: Node 20 marks
  // inherited fds close-on-exec at startup, which this does not rely on (it marks every fd from 3 up again).
  isolateChildren();

  const count = new ConnectionCount(config.maxConns, config.maxPerIp);
  const running = new Map<number, ChildProcess>();
  const servers: net.Server[] = [];
  let stopping = false;
  let stoppingSince = 0;
  let ending = false;

  const exitWhenIdle = (): void => {
    if (stopping && count.active === 0) {
      if (config.log) logLine('lowport: drained: no connection left');
      process.exit(0);
    }
  };

  const accepted = (socket: net.Socket, listener: string): void => {
    const local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    if (stopping || remote.address === '' || local.address === '') {
      // Reset before it was looked at, or accepted as the drain began.
      socket.destroy();
      return;
    }
    const peer = `${endpointText(remote)} to ${endpointText(local)}`;
    const over = count.admit(remote.address);
    if (over !== undefined) {
      socket.destroy();
      logLine(`lowport: refused ${escapeControl(peer)}: ${over}`);
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        stdio: [socket, socket, 'inherit'],
        env: { ...config.env, ...ucspiEnvironment(local, remote) },
        detached: true,
      });
    } catch (e) {
      count.release(remote.address);
      socket.destroy();
      logLine(`lowport: ${escapeControl(peer)}: cannot start ${escapeControl(file)}: ${escapeControl(String(e))}`);
      return;
    }
    // The program has its copy: the connection is its alone, and ends when it closes it.
    socket.destroy();
    const pid = child.pid;
    if (pid !== undefined) running.set(pid, child);
    if (config.log && pid !== undefined)
      logLine(`lowport: ${escapeControl(peer)}: pid ${pid} (${count.active}/${config.maxConns}, ${listener})`);
    let done = false;
    const finish = (how: string): void => {
      if (done) return;
      done = true;
      if (pid !== undefined) running.delete(pid);
      count.release(remote.address);
      if (config.log || pid === undefined) logLine(`lowport: ${escapeControl(peer)}: ${how} (${count.active}/${config.maxConns})`);
      exitWhenIdle();
    };
    child.once('error', (e: NodeJS.ErrnoException) => finish(`cannot start ${escapeControl(file)}: ${e.code ?? e.message}`));
    child.once('exit', (code, signal) => finish(`pid ${pid ?? '?'} ended, status ${exitStatus(code, signal)}`));
  };

  for (const l of config.listeners) {
    const server = net.createServer({ pauseOnConnect: true }, (socket) => accepted(socket, l.what));
    // accept(2) errors other than EMFILE (which libuv absorbs): logged, and the loop goes on.
    server.on('error', (e: NodeJS.ErrnoException) => logLine(`lowport: ${l.what}: ${e.code ?? e.message}`));
    server.listen({ fd: l.fd, backlog: config.backlog });
    servers.push(server);
  }

  /** The end of a drain: SIGTERM to each program's process group, SIGKILL to what is left 2 s later. */
  const endPrograms = (): void => {
    if (ending) return;
    ending = true;
    if (running.size > 0) logLine(`lowport: ending ${running.size} program(s) still running (SIGTERM, then SIGKILL)`);
    const signal = (sig: NodeJS.Signals): void => {
      for (const pid of running.keys()) {
        try {
          process.kill(-pid, sig);
        } catch {
          // gone already
        }
      }
    };
    signal('SIGTERM');
    setTimeout(() => signal('SIGKILL'), KILL_GRACE_MS).unref();
  };

  const stop = (why: string): void => {
    if (stopping) {
      if (performance.now() - stoppingSince >= SAME_SIGNAL_MS) endPrograms();
      return;
    }
    stopping = true;
    stoppingSince = performance.now();
    for (const s of servers) s.close();
    logLine(`lowport: draining (${why}): no new connections; ${count.active} running`);
    exitWhenIdle();
    if (config.drainTimeoutMs === 0) endPrograms();
    else setTimeout(endPrograms, config.drainTimeoutMs).unref();
  };

  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
  // Run by root, its stderr may be a pipe to lowport: with lowport gone, a write fails with EPIPE, which must not end a drain.
  process.stderr.on('error', () => undefined);
  writeSync(config.readyFd, 'ready\n');
  closeSync(config.readyFd);
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent && !stopping) stop('lowport exited');
  }, 1000).unref();
}

main();
