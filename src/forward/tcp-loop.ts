/**
 * The userspace TCP forwarder's event loop: one per thread (tcp-thread.ts),
 * each with its own epoll instance on the shared listening sockets
 * (EPOLLEXCLUSIVE: a connection wakes one thread, not all). Every accepted
 * connection gets its own connection to the backend, optionally opened with
 * a PROXY protocol header (sent with the client's first bytes), and bytes
 * are copied both ways through one 64 KiB buffer per thread with plain
 * recv/send, until a read shows a bulk transfer (SPLICE_FROM): that
 * direction then goes through a pipe with splice(2), without copies.
 *
 * Each socket is registered once, edge-triggered, for reading and writing:
 * no epoll_ctl per state change (two per connection in all). A side that is
 * known to have bytes waiting (`readable`) is read when its peer can take
 * them; one that used its read budget goes on the `ready` list for the next
 * turn, since no new edge will come for bytes already there.
 *
 * What a proxy must get right, and how:
 *  - backpressure, both ways: what the destination does not take stays in
 *    that side's `pending` buffer (or its pipe), and the source is not read
 *    until it is written (the next EPOLLOUT edge), so a slow reader never
 *    makes the forwarder buffer more than one read;
 *  - half-close: a FIN from one side (recv returns 0) becomes shutdown(SHUT_WR)
 *    on the other once its pending bytes are written, and the other direction
 *    carries on; a socket is closed when both of its directions are done;
 *  - the backend refusing or not answering within the connect timeout (each
 *    of its resolved addresses is tried in turn): the client gets a FIN, not a
 *    reset, what it sends is read and dropped, and the reason is logged; an
 *    error once connected resets the other side (SO_LINGER 0), so that it
 *    learns the stream broke midway;
 *  - idle connections (no byte either way for the idle timeout) are closed;
 *  - a cap on connections, counted across threads: the ones over it are
 *    closed at once; EMFILE/ENFILE pause accepting for 100 ms rather than
 *    spin on a listening socket that stays readable;
 *  - drain: stop accepting, let open connections finish, then close what is
 *    left at the drain deadline.
 * Timers are a sweep every `tick` ms over the open connections, not one timer
 * per connection; the tick is a quarter of the shortest timeout (10 ms to 1 s).
 */
import { isIPv4 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errnoName } from '../os/libc.js';
import { AF_INET, AF_INET6, decodeSockaddr, sockaddrIn, sockaddrIn6 } from '../os/sockaddr.js';
import {
  accept,
  acceptedPeer,
  acceptWithPeer,
  closeSocket,
  closeWithReset,
  connect,
  EAGAIN,
  EINPROGRESS,
  EMFILE,
  ETIMEDOUT,
  ENFILE,
  ENOBUFS,
  ENOMEM,
  EPOLLERR,
  EPOLLET,
  EPOLLEXCLUSIVE,
  EPOLLHUP,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  epollAdd,
  epollCreate,
  epollDelete,
  EpollEvents,
  epollWait,
  yieldCpu,
  eventfdClear,
  localName,
  openStream,
  RawBuffer,
  receive,
  send,
  sendRaw,
  openPipe,
  splice,
  setNoDelay,
  setNonBlocking,
  shutdownWrite,
  socketError,
} from '../os/stream.js';
import { formatIPv6, parseIPv6 } from '../policy/address.js';
import { encodeHeader, encodeV2FromSockaddrs, type Endpoint } from './proxy-protocol.js';
import { formatEndpoint, type ForwarderConfig } from './userspace.js';

export interface LoopConfig extends ForwarderConfig {
  /** Listening TCP sockets, shared with the other threads. */
  listeners: number[];
  /** The backend's addresses (IP literals), tried in turn. */
  addresses: string[];
  /** An eventfd that the controlling thread signals after posting a command. */
  wakeFd: number;
  /** Connections open across all threads (Int32Array over a SharedArrayBuffer, index 0). */
  counter: Int32Array;
}

export type LoopCommand = { type: 'drain' } | { type: 'stop' } | { type: 'addresses'; addresses: string[] };

const CONNECTING = 0;
const OPEN = 1;
/** The backend could not be reached: the client has had a FIN; what it sends is dropped until it closes. */
const REFUSING = 2;
const DONE = 3;

/** How long a refused client may take to close its side before it is closed anyway. */
const REFUSE_LINGER_MS = 10_000;
const ACCEPT_PAUSE_MS = 100;
/** Connections taken per wake-up of a listening socket, and reads per wake-up of a connection: fairness. */
const ACCEPT_BATCH = 64;
const READS_PER_WAKE = 4;
const BUFFER_SIZE = 65_536;
/**
 * Room before the read buffer for a PROXY header (v1 at most 107 bytes, v2
 * 52), so that the header and the client's first bytes leave in one send.
 */
const HEADROOM = 128;
const NO_ADDRESS = Buffer.alloc(0);
/**
 * A read of this many bytes or more marks a bulk transfer: that direction
 * goes on through a pipe with splice(2), the bytes never copied into this
 * process. Below it, a pipe's own cost (pipe2 and two close, about 5 us on
 * this project's VM) is more than the copies it saves; haproxy's splice-auto
 * also starts at a few KiB, and Go measured splice slower at 1-2 KiB, 25%
 * faster at 4 KiB, 52% at 8 KiB.
 */
const SPLICE_FROM = 16_384;
/** A pipe that could not be made (EMFILE): that direction copies. */
const NO_PIPE = -2;
/** What every connection's socket is registered for, once. */
const WATCH = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

interface Side {
  fd: number;
  tag: number;
  role: 'client' | 'backend';
  flow: Flow;
  peer: Side;
  /** Bytes (or a FIN, or an error) are waiting to be read: set by an edge, cleared by a read that found the socket empty. */
  readable: boolean;
  /** EPOLLRDHUP came: the peer's FIN is queued behind whatever data is left. */
  finQueued: boolean;
  /** The peer sent its FIN (recv returned 0). */
  eof: boolean;
  /** We sent ours (shutdown SHUT_WR). */
  shut: boolean;
  closed: boolean;
  /** Bytes waiting to be written to this side. */
  pending: Buffer | null;
  /** Once the direction towards this side splices: its pipe (read and write ends; -1: none yet, NO_PIPE: none to be had). */
  pipeRead: number;
  pipeWrite: number;
  /** Bytes in that pipe, waiting to be written to this side (the pipe's `pending`). */
  piped: number;
  bytesRead: number;
}

interface Flow {
  client: Side;
  backend: Side;
  state: number;
  started: number;
  /** When the current connect attempt or, once open, the last byte either way. */
  since: number;
  /** Index into the backend addresses of the current attempt, and how many were tried. */
  address: number;
  attempts: number;
  /** `client -> local`, only when logging. */
  ends: string;
  reason: string | undefined;
}

export class TcpLoop {
  private readonly ep = epollCreate();
  private readonly events = new EpollEvents(256);
  /** Reads go to offset HEADROOM. */
  private readonly buffer = new RawBuffer(HEADROOM + BUFFER_SIZE);
  /**
   * The local address of each listening socket bound to one address: every
   * connection it accepts has that address, so the PROXY header needs no
   * getsockname (a wildcard listener's connections each have their own).
   */
  private readonly listenerAddress = new Map<number, Buffer>();
  /** Sides by fd. */
  private readonly sides: (Side | undefined)[] = [];
  private readonly flows = new Set<Flow>();
  /** Sides with bytes left after their read budget: read again next turn. */
  private ready: Side[] = [];
  private backends: { family: number; sockaddr: RawBuffer }[] = [];
  /** The address that answered last: new connections try it first. */
  private preferred = 0;
  /** The listening sockets this thread watches (none once it drains). */
  private listeners: number[];
  private tick: number;
  /** Monotonic ms (performance.now): a step of the wall clock neither expires nor stalls the timers. */
  private now = performance.now();
  private nextSweep = 0;
  private acceptPausedUntil = 0;
  private draining = false;
  private drainDeadline = 0;
  private stopped = false;
  private serial = 0;

  constructor(
    private readonly config: LoopConfig,
    private readonly logLine: (line: string) => void,
    /** Called when the wake fd fires: the commands posted since. */
    private readonly commands: () => LoopCommand[],
    /** Called once this thread no longer watches the listening sockets (after a drain or stop): they may be closed. */
    private readonly unwatched: () => void = () => {},
  ) {
    this.setAddresses(config.addresses);
    this.listeners = [...config.listeners];
    this.tick = tickFor(Math.min(config.connectTimeoutMs, config.idleTimeoutMs > 0 ? config.idleTimeoutMs : Infinity));
    for (const fd of this.listeners) {
      setNonBlocking(fd);
      setNoDelay(fd); // accepted sockets inherit it
      const local = localName(fd);
      if (local !== undefined && !isWildcard(local)) this.listenerAddress.set(fd, local);
    }
    this.watchListeners();
    epollAdd(this.ep, config.wakeFd, EPOLLIN);
  }

  private setAddresses(addresses: string[]): void {
    this.backends = addresses.map((a) =>
      isIPv4(a)
        ? { family: AF_INET, sockaddr: RawBuffer.from(sockaddrIn(a, this.config.backend.port)) }
        : { family: AF_INET6, sockaddr: RawBuffer.from(sockaddrIn6(parseIPv6(a), this.config.backend.port)) },
    );
    this.preferred = 0;
  }

  private watchListeners(): void {
    for (const fd of this.listeners) epollAdd(this.ep, fd, EPOLLIN | EPOLLEXCLUSIVE);
  }

  /** Runs until a stop command, or a drain that has nothing left to wait for. */
  run(): void {
    const { events } = this;
    while (!this.stopped) {
      const timeout = this.ready.length > 0 ? 0 : Math.max(0, this.nextSweep - this.now);
      // Before going to sleep, let the peers run: on a machine where the
      // client, the backend and this thread share the CPUs, they are often
      // runnable right now with the next bytes. sched_yield hands them this
      // CPU; the look that follows then finds their events without a sleep
      // and a wake-up (two context switches). bench/README.md, "Profile":
      // one thread slept 0.48 times per keep-alive request against
      // haproxy's 0.16, and this made it ~14% faster there. On an idle
      // machine the yield returns at once.
      let n = epollWait(this.ep, events, 0);
      if (n === 0 && timeout !== 0) {
        yieldCpu();
        n = epollWait(this.ep, events, 0);
        if (n === 0) n = epollWait(this.ep, events, timeout);
      }
      this.now = performance.now();
      for (let i = 0; i < n; i++) {
        const fd = events.fd(i);
        const side = this.sides[fd];
        if (side !== undefined && side.tag === events.tag(i)) this.onSide(side, events.events(i));
        else if (fd === this.config.wakeFd) this.onWake();
        else if (events.tag(i) === 0 && this.listeners.includes(fd)) this.acceptFrom(fd);
      }
      if (this.ready.length > 0) this.readAgain();
      if (this.now >= this.nextSweep) {
        this.sweep();
        this.nextSweep = this.now + this.tick;
      }
    }
  }

  private onWake(): void {
    eventfdClear(this.config.wakeFd);
    for (const c of this.commands()) {
      if (c.type === 'addresses') this.setAddresses(c.addresses);
      else if (c.type === 'stop') this.stop();
      else this.drain();
    }
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.drainDeadline = this.now + this.config.drainTimeoutMs;
    this.tick = Math.min(this.tick, tickFor(this.config.drainTimeoutMs));
    this.nextSweep = Math.min(this.nextSweep, this.drainDeadline);
    this.unwatchListeners();
    if (this.flows.size === 0) this.stopped = true;
  }

  private stop(): void {
    for (const f of this.flows) this.close(f, 'forwarder stopped');
    this.unwatchListeners();
    this.stopped = true;
  }

  /**
   * The listening sockets are the process's, shared by every thread: each
   * thread stops watching them and says so, and the controlling thread closes
   * them once all have (the kernel then refuses new connections). Closed
   * earlier, their fd numbers could go to new sockets of another thread
   * while this one still watched them.
   */
  private unwatchListeners(): void {
    if (this.listeners.length === 0) return;
    if (this.acceptPausedUntil === 0) for (const fd of this.listeners) epollDelete(this.ep, fd);
    this.listeners = [];
    this.unwatched();
  }

  private acceptFrom(listener: number): void {
    const { config } = this;
    // Only the log and the PROXY header need the client's address: then accept4 gives it, saving a getpeername.
    const withPeer = config.log || config.proxyProtocol !== undefined;
    for (let k = 0; k < ACCEPT_BATCH; k++) {
      const fd = withPeer ? acceptWithPeer(listener) : accept(listener);
      if (fd < 0) {
        if (fd === -EAGAIN) return;
        if (fd === -EMFILE || fd === -ENFILE || fd === -ENOBUFS || fd === -ENOMEM) {
          this.logLine(
            `tcp accept: ${errnoName(-fd)}; not accepting for ${ACCEPT_PAUSE_MS} ms (raise the open-files limit, or lower --max-conns)`,
          );
          for (const l of this.listeners) epollDelete(this.ep, l);
          this.acceptPausedUntil = this.now + ACCEPT_PAUSE_MS;
          this.nextSweep = Math.min(this.nextSweep, this.acceptPausedUntil);
          return;
        }
        continue; // ECONNABORTED and the like: that connection is gone, others may wait
      }
      if (Atomics.add(config.counter, 0, 1) >= config.maxConnections) {
        Atomics.sub(config.counter, 0, 1);
        if (config.log) this.logLine(`tcp ${endpointText(acceptedPeer())} refused: connection cap (${config.maxConnections}) reached`);
        closeSocket(fd);
        continue;
      }
      this.open(fd, listener);
    }
  }

  /** A tag for a new registration: never 0, which marks the listening sockets and the wake fd. */
  private nextTag(): number {
    this.serial = (this.serial + 1) >>> 0 || 1;
    return this.serial;
  }

  private newSide(fd: number, role: Side['role'], flow: Flow): Side {
    return {
      fd,
      tag: this.nextTag(),
      role,
      flow,
      peer: undefined as unknown as Side,
      readable: false,
      finQueued: false,
      eof: false,
      shut: false,
      closed: false,
      pending: null,
      pipeRead: -1,
      pipeWrite: -1,
      piped: 0,
      bytesRead: 0,
    };
  }

  private open(fd: number, listener: number): void {
    const { config } = this;
    const flow: Flow = {
      client: undefined as unknown as Side,
      backend: undefined as unknown as Side,
      state: CONNECTING,
      started: this.now,
      since: this.now,
      address: this.preferred,
      attempts: 0,
      ends: '',
      reason: undefined,
    };
    const client = this.newSide(fd, 'client', flow);
    const backend = this.newSide(-1, 'backend', flow);
    client.peer = backend;
    backend.peer = client;
    flow.client = client;
    flow.backend = backend;
    this.sides[fd] = client;
    this.flows.add(flow);
    epollAdd(this.ep, fd, WATCH, client.tag);
    // Only the log and the PROXY header need the addresses: the peer's came
    // with accept4, the local one is the listener's when it has one address,
    // else getsockname.
    if (config.log || config.proxyProtocol !== undefined) {
      const peer = acceptedPeer();
      const local = this.listenerAddress.get(listener) ?? localName(fd) ?? NO_ADDRESS;
      if (config.proxyProtocol === 'v2') backend.pending = encodeV2FromSockaddrs(peer, local);
      if (config.log || config.proxyProtocol === 'v1') {
        const source = endpointOf(peer);
        const destination = endpointOf(local);
        if (config.log)
          flow.ends = `${formatEndpoint(source?.address, source?.port)} -> ${formatEndpoint(destination?.address, destination?.port)}`;
        if (config.proxyProtocol === 'v1') {
          backend.pending = encodeHeader('v1', {
            transport: 'tcp',
            source: source ?? { address: '', port: 0 },
            destination: destination ?? { address: '', port: 0 },
          });
        }
      }
    }
    this.connectBackend(flow);
  }

  /** Starts a connect to the flow's current backend address, or gives up when every address failed. */
  private connectBackend(f: Flow): void {
    const b = f.backend;
    const target = this.backends[f.address % this.backends.length];
    if (target === undefined) {
      this.refuse(f, 'backend has no address');
      return;
    }
    f.attempts++;
    f.since = this.now;
    const fd = openStream(target.family);
    if (fd < 0) {
      this.refuse(f, `backend error ${errnoName(-fd)}`);
      return;
    }
    b.fd = fd;
    // A new socket may get the old one's fd number: a new tag tells their events apart.
    b.tag = this.nextTag();
    b.closed = false;
    b.readable = false;
    b.finQueued = false;
    this.sides[fd] = b;
    epollAdd(this.ep, fd, WATCH, b.tag);
    const r = connect(fd, target.sockaddr);
    if (r === 0) this.connected(f);
    else if (r !== -EINPROGRESS) this.connectFailed(f, -r);
  }

  private connectFailed(f: Flow, errno: number): void {
    this.dropSide(f.backend, false);
    if (f.attempts < this.backends.length) {
      f.address = (f.address + 1) % this.backends.length;
      this.connectBackend(f);
    } else {
      this.refuse(f, `backend error ${errnoName(errno)}`);
    }
  }

  private connected(f: Flow): void {
    f.state = OPEN;
    f.since = this.now;
    this.preferred = f.address % this.backends.length;
    const { client, backend } = f;
    if (backend.pending !== null && !(client.readable ? this.sendWithHeader(f) : this.flush(backend))) return;
    // The client has often sent its request already: read it now rather than
    // after another round through epoll_wait. And a server that speaks first
    // (SSH, SMTP), or answers and closes at once, may have done so with the
    // same edge that ended the connect: no other edge comes for those bytes.
    this.pump(client, backend);
    if (f.state === OPEN && backend.readable) this.pump(backend, client);
    if (f.state === OPEN) this.settle(f);
  }

  /**
   * The PROXY header (the backend's pending bytes) and the client's first
   * bytes in one send: one system call and one segment for the backend to
   * parse, not two. A header alone still goes at once when the client has
   * sent nothing yet (a server that speaks first waits for it). False when
   * the flow ended on an error.
   */
  private sendWithHeader(f: Flow): boolean {
    const { client, backend } = f;
    const header = backend.pending;
    if (header === null || header.length > HEADROOM) return this.flush(backend);
    const n = receive(client.fd, this.buffer, HEADROOM, BUFFER_SIZE);
    if (n <= 0) {
      if (n === 0) client.eof = true;
      else if (n !== -EAGAIN) {
        this.abort(f, `client error ${errnoName(-n)}`);
        return false;
      }
      client.readable = false;
      return this.flush(backend);
    }
    client.bytesRead += n;
    const start = HEADROOM - header.length;
    header.copy(this.buffer.buf, start);
    const total = header.length + n;
    const w = sendRaw(backend.fd, this.buffer, start, total);
    if (w < 0 && w !== -EAGAIN) {
      this.abort(f, `backend error ${errnoName(-w)}`);
      return false;
    }
    backend.pending = w === total ? null : Buffer.from(this.buffer.buf.subarray(start + Math.max(0, w), HEADROOM + n));
    if (n < BUFFER_SIZE && !client.finQueued) client.readable = false;
    return true;
  }

  /** The backend cannot be reached: FIN to the client, drop what it sends until it closes. */
  private refuse(f: Flow, reason: string): void {
    f.reason ??= reason;
    if (!f.backend.closed && f.backend.fd >= 0) this.dropSide(f.backend, false);
    f.state = REFUSING;
    f.since = this.now;
    const { client } = f;
    shutdownWrite(client.fd);
    client.shut = true;
    client.pending = null;
    if (client.readable) this.discard(f);
  }

  private onSide(s: Side, ev: number): void {
    const f = s.flow;
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) s.readable = true;
    if ((ev & (EPOLLRDHUP | EPOLLHUP)) !== 0) s.finQueued = true;
    if (f.state === CONNECTING) {
      if (s === f.backend) {
        // Writable and nothing else means connected, without asking SO_ERROR.
        const error = (ev & (EPOLLERR | EPOLLHUP)) === 0 ? 0 : socketError(s.fd);
        if (error !== 0) this.connectFailed(f, error);
        else if ((ev & EPOLLOUT) !== 0) this.connected(f);
      } else if ((ev & EPOLLERR) !== 0) {
        this.abort(f, `client error ${errnoName(socketError(s.fd))}`);
      }
      // The client's bytes wait (readable) until the backend answers.
      return;
    }
    if (f.state === REFUSING) {
      if (s === f.client && s.readable) this.discard(f);
      return;
    }
    if ((ev & EPOLLERR) !== 0) {
      this.abort(f, `${s.role} error ${errnoName(socketError(s.fd))}`);
      return;
    }
    if ((ev & EPOLLOUT) !== 0 && (s.pending !== null || s.piped > 0) && !this.flush(s)) return;
    if (s.readable) {
      this.pump(s, s.peer);
      if (f.state !== OPEN) return;
    }
    this.settle(f);
  }

  /** Reads again the sides that had bytes left after their budget (no edge will come for those). */
  private readAgain(): void {
    const sides = this.ready;
    this.ready = [];
    for (const s of sides) {
      if (s.closed || !s.readable) continue;
      const f = s.flow;
      if (f.state === REFUSING) this.discard(f);
      else if (f.state === OPEN) {
        this.pump(s, s.peer);
        if (f.state === OPEN) this.settle(f);
      }
    }
  }

  /**
   * Reads `from` and writes to `to` until `from` is empty, `to` is full, or
   * the read budget is spent (then `from` is read again next turn). A short
   * read means `from` is empty (a new edge comes with new bytes), unless its
   * FIN is queued, which the next read then takes now rather than after
   * another epoll_wait (a server that answers and closes: one round less per
   * connection).
   */
  private pump(from: Side, to: Side): void {
    if (to.pipeRead >= 0) {
      this.splicePump(from, to);
      return;
    }
    const { buffer } = this;
    for (let reads = 0; reads < READS_PER_WAKE; reads++) {
      if (!from.readable || from.eof || to.pending !== null) return;
      const n = receive(from.fd, buffer, HEADROOM, BUFFER_SIZE);
      if (n > 0) {
        from.bytesRead += n;
        from.flow.since = this.now;
        const w = sendRaw(to.fd, buffer, HEADROOM, n);
        if (w < 0 && w !== -EAGAIN) {
          this.abort(from.flow, `${to.role} error ${errnoName(-w)}`);
          return;
        }
        if (w !== n) {
          to.pending = Buffer.from(buffer.buf.subarray(HEADROOM + Math.max(0, w), HEADROOM + n));
          return;
        }
        // A big read, written whole, marks a bulk transfer: from the next read on, this direction splices. Short
        // reads count too (a loaded machine seldom fills 64 KiB): only a partial write, kept in `pending`, does not.
        const bulk = n >= SPLICE_FROM && this.startSplice(to);
        if (n < BUFFER_SIZE && !from.finQueued) {
          from.readable = false;
          return;
        }
        if (bulk) {
          this.splicePump(from, to);
          return;
        }
        continue;
      }
      if (n === 0) {
        from.eof = true;
        from.readable = false;
        if (to.pending === null) this.finishWriting(to);
        return;
      }
      if (n === -EAGAIN) from.readable = false;
      else this.abort(from.flow, `${from.role} error ${errnoName(-n)}`);
      return;
    }
    if (from.readable && !from.eof && to.pending === null) this.ready.push(from);
  }

  /** A pipe for the direction towards `to`, made once; false when none can be had (it copies then). */
  private startSplice(to: Side): boolean {
    if (to.pipeRead !== -1) return to.pipeRead >= 0;
    const pipe = openPipe();
    if (typeof pipe === 'number') {
      to.pipeRead = NO_PIPE;
      return false;
    }
    [to.pipeRead, to.pipeWrite] = pipe;
    return true;
  }

  /**
   * pump() for a direction that splices: `from` into `to`'s pipe, the pipe
   * into `to`, while the pipe is empty (backpressure: what `to` does not
   * take stays in the pipe, and `from` is not read until it is written).
   * With the pipe empty, EAGAIN from the first splice means `from` is
   * empty. A short splice does not: it may stop at the pipe's 16 slots with
   * bytes still queued, so only EAGAIN (or the FIN) ends the reading, not
   * the short read that pump() trusts.
   */
  private splicePump(from: Side, to: Side): void {
    for (let reads = 0; reads < READS_PER_WAKE; reads++) {
      if (!from.readable || from.eof || to.pending !== null || to.piped > 0) return;
      const n = splice(from.fd, to.pipeWrite, BUFFER_SIZE);
      if (n > 0) {
        from.bytesRead += n;
        from.flow.since = this.now;
        to.piped = n;
        if (!this.drainPipe(to) || to.piped > 0) return;
        continue;
      }
      if (n === 0) {
        from.eof = true;
        from.readable = false;
        this.finishWriting(to);
        return;
      }
      if (n === -EAGAIN) from.readable = false;
      else this.abort(from.flow, `${from.role} error ${errnoName(-n)}`);
      return;
    }
    if (from.readable && !from.eof && to.piped === 0) this.ready.push(from);
  }

  /** Writes what `s`'s pipe holds to `s`, as far as `s` takes it; false when the flow ended on an error. */
  private drainPipe(s: Side): boolean {
    const w = splice(s.pipeRead, s.fd, s.piped);
    if (w > 0) {
      s.piped -= w;
      s.flow.since = this.now;
      return true;
    }
    if (w === -EAGAIN) return true;
    this.abort(s.flow, `${s.role} error ${errnoName(-w)}`);
    return false;
  }

  /** Writes `to`'s pending bytes (a buffer, or its pipe); false when the flow ended on an error. */
  private flush(to: Side): boolean {
    if (to.piped > 0) {
      if (!this.drainPipe(to)) return false;
      if (to.piped > 0) return true;
      if (to.peer.eof) this.finishWriting(to);
      else if (to.peer.readable && to.flow.state === OPEN) this.pump(to.peer, to);
      return to.flow.state !== DONE;
    }
    const p = to.pending;
    if (p === null) return true;
    const w = send(to.fd, p, p.length);
    if (w === p.length) {
      to.pending = null;
      to.flow.since = this.now;
      if (to.peer.eof) this.finishWriting(to);
      // The direction that waited for this write may go on: no edge will come for bytes already waiting.
      else if (to.peer.readable && to.flow.state === OPEN) this.pump(to.peer, to);
      return to.flow.state !== DONE;
    }
    if (w < 0 && w !== -EAGAIN) {
      this.abort(to.flow, `${to.role} error ${errnoName(-w)}`);
      return false;
    }
    if (w > 0) {
      to.pending = p.subarray(w);
      to.flow.since = this.now;
    }
    return true;
  }

  /** Our FIN to `s`. When `s` has sent its own already, settle() closes it next, and close(2) sends the FIN: no shutdown call. */
  private finishWriting(s: Side): void {
    if (s.shut) return;
    if (!s.eof) shutdownWrite(s.fd);
    s.shut = true;
  }

  /** Closes the sockets whose two directions are done, and ends the flow when both are closed. */
  private settle(f: Flow): void {
    const { client, backend } = f;
    if (!client.closed && client.eof && client.shut && client.pending === null && client.piped === 0) this.dropSide(client, false);
    if (!backend.closed && backend.eof && backend.shut && backend.pending === null && backend.piped === 0) this.dropSide(backend, false);
    if (client.closed && backend.closed) this.finish(f);
  }

  /** Closes one socket of a flow (close(2) also takes it out of epoll). */
  private dropSide(s: Side, reset: boolean): void {
    if (s.closed || s.fd < 0) return;
    if (this.sides[s.fd] === s) this.sides[s.fd] = undefined;
    if (reset) closeWithReset(s.fd);
    else closeSocket(s.fd);
    if (s.pipeRead >= 0) {
      closeSocket(s.pipeRead);
      closeSocket(s.pipeWrite);
    }
    s.pipeRead = -1;
    s.pipeWrite = -1;
    s.piped = 0;
    s.closed = true;
    s.readable = false;
  }

  /** Reads and drops what a refused client still sends, until it closes. */
  private discard(f: Flow): void {
    const { client } = f;
    for (let reads = 0; reads < READS_PER_WAKE; reads++) {
      const n = receive(client.fd, this.buffer, HEADROOM, BUFFER_SIZE);
      if (n === -EAGAIN) {
        client.readable = false;
        return;
      }
      if (n <= 0) {
        this.dropSide(client, false);
        this.finish(f);
        return;
      }
    }
    this.ready.push(client);
  }

  /** An error on one side: both are closed with a reset. */
  private abort(f: Flow, reason: string): void {
    f.reason ??= reason;
    this.dropSide(f.client, true);
    this.dropSide(f.backend, true);
    this.finish(f);
  }

  /** Closes both sides (FIN): idle timeout, drain deadline, stop. */
  private close(f: Flow, reason: string): void {
    f.reason ??= reason;
    this.dropSide(f.client, false);
    this.dropSide(f.backend, false);
    this.finish(f);
  }

  private finish(f: Flow): void {
    if (f.state === DONE) return;
    f.state = DONE;
    this.flows.delete(f);
    Atomics.sub(this.config.counter, 0, 1);
    if (this.config.log) {
      const { host, port } = this.config.backend;
      this.logLine(
        `tcp ${f.ends} => ${formatEndpoint(host, port)} up=${f.client.bytesRead} down=${f.backend.bytesRead} ${Math.round(this.now - f.started)}ms ${f.reason ?? 'closed'}`,
      );
    }
    if (this.draining && this.flows.size === 0) this.stopped = true;
  }

  private sweep(): void {
    const { config, now } = this;
    if (this.acceptPausedUntil !== 0 && now >= this.acceptPausedUntil) {
      this.acceptPausedUntil = 0;
      this.watchListeners();
    }
    const idle = config.idleTimeoutMs;
    const deadline = this.draining && now >= this.drainDeadline;
    for (const f of this.flows) {
      if (deadline) this.close(f, 'closed at the drain deadline');
      else if (f.state === CONNECTING && now - f.since >= config.connectTimeoutMs) {
        // The next address, if there is one left to try; else the client gets its FIN.
        if (f.attempts < this.backends.length) this.connectFailed(f, ETIMEDOUT);
        else {
          this.dropSide(f.backend, false);
          this.refuse(f, `backend connect timeout (${config.connectTimeoutMs} ms)`);
        }
      } else if (f.state === OPEN && idle > 0 && now - f.since >= idle) this.close(f, `idle timeout (${idle} ms)`);
      else if (f.state === REFUSING && now - f.since >= REFUSE_LINGER_MS) {
        this.dropSide(f.client, false);
        this.finish(f);
      }
    }
  }
}

/** The sweep's period for the shortest timeout: a quarter of it, 10 ms to 1 s. */
function tickFor(shortestMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(shortestMs / 4)));
}

function endpointOf(sockaddr: Buffer | undefined): Endpoint | undefined {
  const d = sockaddr === undefined ? undefined : decodeSockaddr(sockaddr);
  if (d === undefined) return undefined;
  return { address: d.family === 4 ? d.address : formatIPv6(d.groups), port: d.port };
}

/** 0.0.0.0 or :: (a listener on every address). */
function isWildcard(sockaddr: Buffer): boolean {
  const d = decodeSockaddr(sockaddr);
  return d === undefined || (d.family === 4 ? d.address === '0.0.0.0' : d.groups.every((g) => g === 0));
}

function endpointText(sockaddr: Buffer | undefined): string {
  const e = endpointOf(sockaddr);
  return formatEndpoint(e?.address, e?.port);
}
