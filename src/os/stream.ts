/**
 * Non-blocking TCP sockets and epoll(7), bound through koffi, for the
 * userspace forwarder's event loop (forward/tcp-loop.ts). The hot calls
 * return their result or -errno and never throw: EAGAIN, EINPROGRESS and a
 * peer's reset are answers there, not failures. Setup calls (an epoll or
 * eventfd that cannot be made) throw SyscallError.
 *
 * Why not node:net: with a new connection per request, node:net spent about
 * as much CPU in JavaScript (two net.Socket objects, their streams and
 * timers) as the kernel spent on both TCP connections; these calls cost a
 * koffi transition (~0.1 µs) over the syscall itself (bench/README.md).
 *
 * The calls made per request (recv, send, epoll_wait, epoll_ctl, accept4,
 * connect) take the buffers that live as long as the loop as a RawBuffer,
 * by address: koffi turns a Buffer argument into a pointer at 0.4–0.7 µs of
 * CPU a call here, an integer at about 0.1 µs, and a keep-alive request
 * makes four such calls, a new connection ten.
 */
import { nativeLibc, O_CLOEXEC, SyscallError } from './libc.js';

export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
/** The peer's FIN is queued (Linux 2.6.17). */
export const EPOLLRDHUP = 0x2000;
/** Edge-triggered: an event when the state changes (bytes arrive, room frees up), not while it lasts. */
export const EPOLLET = 1 << 31;
/** Wake one of the epoll instances that wait on a shared listening socket, not all (Linux 4.5). */
export const EPOLLEXCLUSIVE = 1 << 28;

// The errno values the forwarder's loop tells apart (errno.ts, the one table).
export { EAGAIN, EINPROGRESS, EMFILE, ENFILE, ENOBUFS, ENOMEM, ETIMEDOUT } from './errno.js';

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const O_NONBLOCK = 0o4000;
const F_GETFL = 3;
const F_SETFL = 4;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_ERROR = 4;
const SO_LINGER = 13;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const SHUT_WR = 1;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;

/**
 * struct epoll_event is packed on x86 (12 bytes: u32 events, u64 data at
 * offset 4) and naturally aligned elsewhere (16 bytes, data at offset 8).
 * lowport keeps the fd in the data field's low 32 bits and a tag of its own
 * in the high ones, so that an event queued for a socket closed earlier in the
 * same batch is not taken for the new socket that got its fd number.
 */
const PACKED = process.arch === 'x64' || process.arch === 'ia32';
const EPOLL_EVENT_SIZE = PACKED ? 12 : 16;
const DATA_OFFSET = PACKED ? 4 : 8;

function bind() {
  const { koffi, libc } = nativeLibc();
  return {
    address: (b: Buffer) => Number(koffi.address(b)),
    // The same calls with pointers as integers (RawBuffer addresses).
    epoll_ctl_raw: libc.func('int epoll_ctl(int epfd, int op, int fd, intptr_t event)'),
    epoll_wait_raw: libc.func('int epoll_wait(int epfd, intptr_t events, int max, int timeout)'),
    accept4_raw: libc.func('int accept4(int fd, intptr_t addr, intptr_t len, int flags)'),
    connect_raw: libc.func('int connect(int fd, intptr_t addr, uint32_t len)'),
    recv_raw: libc.func('long recv(int fd, intptr_t buf, size_t n, int flags)'),
    send_raw: libc.func('long send(int fd, intptr_t buf, size_t n, int flags)'),
    pipe2: libc.func('int pipe2(_Out_ int *fds, int flags)'),
    splice: libc.func('long splice(int in, intptr_t offIn, int out, intptr_t offOut, size_t len, unsigned int flags)'),
    errno: () => koffi.errno(),
    sched_yield: libc.func('int sched_yield(void)'),
    epoll_create1: libc.func('int epoll_create1(int flags)'),
    eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
    read: libc.func('long read(int fd, void *buf, size_t n)'),
    write: libc.func('long write(int fd, void *buf, size_t n)'),
    accept4: libc.func('int accept4(int fd, void *addr, void *len, int flags)'),
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    send: libc.func('long send(int fd, void *buf, size_t n, int flags)'),
    shutdown: libc.func('int shutdown(int fd, int how)'),
    close: libc.func('int close(int fd)'),
    fcntl: libc.func('int fcntl(int fd, int cmd, int arg)'),
    setsockopt: libc.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
    getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    getsockname: libc.func('int getsockname(int fd, void *addr, void *len)'),
    getpeername: libc.func('int getpeername(int fd, void *addr, void *len)'),
  };
}

let calls: ReturnType<typeof bind> | undefined;

function c(): ReturnType<typeof bind> {
  calls ??= bind();
  return calls;
}

/** Result, or -errno when the call returned -1. */
function result(r: number): number {
  return r < 0 ? -c().errno() : r;
}

/**
 * A buffer passed to the hot calls by its address. Its bytes never move (a
 * Buffer of its own, whose ArrayBuffer's backing store is fixed) and stay
 * allocated while `buf` is referenced: whoever holds a RawBuffer keeps it,
 * and passes offsets and lengths within it.
 */
export class RawBuffer {
  readonly buf: Buffer;
  readonly address: number;

  constructor(size: number) {
    this.buf = Buffer.alloc(size);
    this.address = c().address(this.buf);
  }

  static from(bytes: Buffer): RawBuffer {
    const r = new RawBuffer(bytes.length);
    bytes.copy(r.buf);
    return r;
  }
}

const ONE = Buffer.from([1, 0, 0, 0]);
/** struct linger { int l_onoff = 1; int l_linger = 0; }: close sends a reset. */
const LINGER_RESET = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);

/** An epoll instance (close-on-exec). */
export function epollCreate(): number {
  const fd = c().epoll_create1(O_CLOEXEC) as number;
  if (fd < 0) throw new SyscallError('epoll_create1', c().errno());
  return fd;
}

/** A reusable buffer for epoll_wait and epoll_ctl, with readers for its entries. */
export class EpollEvents {
  readonly raw: RawBuffer;
  readonly buf: Buffer;

  constructor(readonly max: number) {
    this.raw = new RawBuffer(max * EPOLL_EVENT_SIZE);
    this.buf = this.raw.buf;
  }

  events(i: number): number {
    return this.buf.readUInt32LE(i * EPOLL_EVENT_SIZE);
  }

  fd(i: number): number {
    return this.buf.readUInt32LE(i * EPOLL_EVENT_SIZE + DATA_OFFSET);
  }

  tag(i: number): number {
    return this.buf.readUInt32LE(i * EPOLL_EVENT_SIZE + DATA_OFFSET + 4);
  }
}

let ctlEvent: RawBuffer | undefined;

function ctl(epfd: number, op: number, fd: number, events: number, tag: number): number {
  ctlEvent ??= new RawBuffer(EPOLL_EVENT_SIZE);
  const b = ctlEvent.buf;
  b.writeUInt32LE(events >>> 0, 0);
  b.writeUInt32LE(fd, DATA_OFFSET);
  b.writeUInt32LE(tag >>> 0, DATA_OFFSET + 4);
  return result(c().epoll_ctl_raw(epfd, op, fd, ctlEvent.address) as number);
}

export function epollAdd(epfd: number, fd: number, events: number, tag = 0): number {
  return ctl(epfd, EPOLL_CTL_ADD, fd, events, tag);
}

export function epollDelete(epfd: number, fd: number): number {
  return ctl(epfd, EPOLL_CTL_DEL, fd, 0, 0);
}

/** Gives this CPU to another runnable thread, if there is one (sched_yield(2)); returns at once otherwise. */
export function yieldCpu(): void {
  c().sched_yield();
}

/** Waits up to `timeoutMs` (-1: forever); the number of ready entries, or -errno (EINTR after a signal). */
export function epollWait(epfd: number, events: EpollEvents, timeoutMs: number): number {
  return result(c().epoll_wait_raw(epfd, events.raw.address, events.max, timeoutMs) as number);
}

/** A non-blocking eventfd: another thread's `eventfdSignal` makes it readable, waking an epoll_wait. */
export function eventfdCreate(): number {
  const fd = c().eventfd(0, O_NONBLOCK | O_CLOEXEC) as number;
  if (fd < 0) throw new SyscallError('eventfd', c().errno());
  return fd;
}

const EVENTFD_ONE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);
const eventfdScratch = Buffer.alloc(8);

export function eventfdSignal(fd: number): void {
  c().write(fd, EVENTFD_ONE, 8);
}

export function eventfdClear(fd: number): void {
  c().read(fd, eventfdScratch, 8);
}

/** Makes a (listening) socket non-blocking; 0 or -errno. */
export function setNonBlocking(fd: number): number {
  const flags = c().fcntl(fd, F_GETFL, 0) as number;
  if (flags < 0) return -c().errno();
  return result(c().fcntl(fd, F_SETFL, flags | O_NONBLOCK) as number);
}

/** TCP_NODELAY: a forwarder writes what it read at once. Sockets accepted from a listener with it inherit it. */
export function setNoDelay(fd: number): number {
  return result(c().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, ONE, 4) as number);
}

/** accept4, non-blocking and close-on-exec: the new fd, or -errno (-EAGAIN when none is waiting). */
export function accept(fd: number): number {
  return result(c().accept4(fd, null, null, O_NONBLOCK | O_CLOEXEC) as number);
}

const PEER_ADDRESS_SIZE = 128;
/** accept4's sockaddr (128 bytes: sockaddr_storage), then its socklen_t. */
let peer: RawBuffer | undefined;

/**
 * accept4 that also keeps the peer's struct sockaddr, which would otherwise
 * cost a getpeername: the new fd, or -errno. `acceptedPeer()` reads that
 * address until the next call (one buffer per thread: module state is per
 * worker thread).
 */
export function acceptWithPeer(fd: number): number {
  peer ??= new RawBuffer(PEER_ADDRESS_SIZE + 4);
  peer.buf.writeUInt32LE(PEER_ADDRESS_SIZE, PEER_ADDRESS_SIZE);
  return result(c().accept4_raw(fd, peer.address, peer.address + PEER_ADDRESS_SIZE, O_NONBLOCK | O_CLOEXEC) as number);
}

/** The peer address of the last acceptWithPeer, a view valid until the next one. */
export function acceptedPeer(): Buffer {
  if (peer === undefined) return Buffer.alloc(0);
  return peer.buf.subarray(0, Math.min(PEER_ADDRESS_SIZE, peer.buf.readUInt32LE(PEER_ADDRESS_SIZE)));
}

/** A non-blocking TCP socket with TCP_NODELAY, for `family` (AF_INET or AF_INET6): its fd or -errno. */
export function openStream(family: number): number {
  const fd = result(c().socket(family, SOCK_STREAM | O_NONBLOCK | O_CLOEXEC, 0) as number);
  if (fd >= 0) setNoDelay(fd);
  return fd;
}

/** Starts a connect: 0 when done already, -EINPROGRESS while it goes on (EPOLLOUT ends it), or -errno. */
export function connect(fd: number, sockaddr: RawBuffer): number {
  return result(c().connect_raw(fd, sockaddr.address, sockaddr.buf.length) as number);
}

/** The socket's pending error (SO_ERROR, which reading clears): 0 once a connect succeeded. */
export function socketError(fd: number): number {
  const value = Buffer.alloc(4);
  const length = Buffer.from([4, 0, 0, 0]);
  if ((c().getsockopt(fd, SOL_SOCKET, SO_ERROR, value, length) as number) < 0) return c().errno();
  return value.readInt32LE(0);
}

/** Bytes read into `buf` at `offset` (0: the peer's FIN), or -errno. */
export function receive(fd: number, buf: RawBuffer, offset: number, length: number): number {
  return result(c().recv_raw(fd, buf.address + offset, length, MSG_DONTWAIT) as number);
}

/** send() of `length` bytes of `buf` from `offset`: bytes written, or -errno; never raises SIGPIPE. */
export function sendRaw(fd: number, buf: RawBuffer, offset: number, length: number): number {
  return result(c().send_raw(fd, buf.address + offset, length, MSG_DONTWAIT | MSG_NOSIGNAL) as number);
}

/** Bytes written, or -errno; never raises SIGPIPE. */
export function send(fd: number, buf: Buffer, length: number): number {
  return result(c().send(fd, buf, length, MSG_DONTWAIT | MSG_NOSIGNAL) as number);
}

/** Sends a FIN after what is queued; reading goes on. */
export function shutdownWrite(fd: number): number {
  return result(c().shutdown(fd, SHUT_WR) as number);
}

export function closeSocket(fd: number): void {
  c().close(fd);
}

/** Closes with a reset (SO_LINGER 0), so the peer learns the stream broke rather than ended. */
export function closeWithReset(fd: number): void {
  c().setsockopt(fd, SOL_SOCKET, SO_LINGER, LINGER_RESET, 8);
  c().close(fd);
}

const addressBuf = Buffer.alloc(128);
const addressLength = Buffer.alloc(4);

function name(call: 'getpeername' | 'getsockname', fd: number): Buffer | undefined {
  addressLength.writeUInt32LE(addressBuf.length, 0);
  if ((c()[call](fd, addressBuf, addressLength) as number) < 0) return undefined;
  return Buffer.from(addressBuf.subarray(0, Math.min(addressBuf.length, addressLength.readUInt32LE(0))));
}

/** The peer's struct sockaddr (sockaddr.ts decodes it), or undefined once it is gone. */
export function peerName(fd: number): Buffer | undefined {
  return name('getpeername', fd);
}

/** The local struct sockaddr. */
export function localName(fd: number): Buffer | undefined {
  return name('getsockname', fd);
}

/**
 * A non-blocking, close-on-exec pipe for splice(2): [read end, write end],
 * or -errno (EMFILE: the caller copies instead).
 */
export function openPipe(): [number, number] | number {
  const fds = [0, 0];
  const r = c().pipe2(fds, O_NONBLOCK | O_CLOEXEC) as number;
  if (r < 0) return -c().errno();
  return [fds[0] ?? -1, fds[1] ?? -1];
}

/**
 * Moves up to `length` bytes from `from` to `to` in the kernel (one of them a
 * pipe) without copying them through this process: bytes moved (0: the
 * socket's FIN), or -errno (EAGAIN: nothing to read, or no room). splice has
 * no MSG_NOSIGNAL: a write to a socket whose peer is gone raises SIGPIPE,
 * which Node ignores (it sets SIGPIPE to SIG_IGN at start), so it is EPIPE.
 */
export function splice(from: number, to: number, length: number): number {
  return result(c().splice(from, 0, to, 0, length, SPLICE_F_MOVE | SPLICE_F_NONBLOCK) as number);
}
