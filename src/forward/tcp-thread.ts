/**
 * A TCP forwarding thread of a forwarder process (worker-main.ts): runs one
 * TcpLoop, blocked in epoll_wait between events. The controlling thread
 * posts commands (drain, stop, new backend addresses) on this thread's port
 * and then signals its eventfd, which wakes the loop; the loop reads them
 * with receiveMessageOnPort, since its own event loop never turns while it
 * runs; it answers 'unwatched' once it no longer watches the listening
 * sockets. The thread ends when the loop returns.
 */
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { TcpLoop, type LoopCommand, type LoopConfig } from './tcp-loop.js';
import { logLine } from './userspace.js';

export interface ThreadData {
  config: LoopConfig;
  port: MessagePort;
}

const { config, port } = workerData as ThreadData;
const loop = new TcpLoop(
  config,
  logLine,
  () => {
    const commands: LoopCommand[] = [];
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) commands.push(m.message as LoopCommand);
    return commands;
  },
  () => port.postMessage('unwatched'),
);
loop.run();
port.close();
