/**
 * A BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8) read from user space
 * through mmap, as libbpf's ringbuf.c does (tools/lib/bpf/ringbuf.c), with
 * the kernel's layout (kernel/bpf/ringbuf.c):
 *
 *   offset 0          one page, read-write: the consumer position (u64 at 0)
 *   offset PAGE_SIZE  one page, read-only: the producer position (u64 at 0),
 *                     then the data pages, mapped twice in a row so that a
 *                     record that wraps around the end reads as one piece
 *
 * Positions count bytes since the ring was made; `pos & (size - 1)` is the
 * offset in the data. A record is an 8-byte header (u32 length with
 * BUSY_BIT while the producer still writes it and DISCARD_BIT for a record
 * given up, u32 page offset for the kernel) and the sample, padded to 8 bytes.
 *
 * Ordering. The producer fills a record, then clears BUSY_BIT with a store
 * release; it advances producer_pos (store release) when it reserves. The
 * consumer must load producer_pos, then each header, with acquire semantics,
 * read the sample only after seeing the header without BUSY_BIT, and publish
 * consumer_pos with a store release after it is done with the sample (the
 * producer then reuses the space). Node has no acquire/release over memory it
 * did not allocate, but it has Atomics on an integer typed array over any
 * ArrayBuffer, shared or not (ECMA-262 ValidateIntegerTypedArray), including
 * one koffi.view makes over the mapping: V8 compiles Atomics.load and
 * Atomics.store to sequentially consistent accesses (x86: a plain mov load
 * and an xchg store, already acquire/release by TSO; arm64: ldar/stlr), which
 * are at least acquire and release. Every position and header is read with
 * Atomics.load and the consumer position written with Atomics.store; the
 * sample's bytes are copied with plain loads after the header's load, which
 * the acquire orders. Both positions and every header are 8-byte aligned, so
 * a BigUint64Array / Uint32Array view reads them whole.
 *
 * Consumers: one at a time (the kernel has one consumer position). A reader
 * that only peeks (`advance` false) maps the consumer page read-only and
 * never moves it, so it cannot take events from the consumer.
 */
import { nativeLibc, SyscallError } from '../os/libc.js';
import { EPOLLIN, EpollEvents, epollAdd, epollCreate, epollWait } from '../os/stream.js';
import { closeFd } from './syscall.js';

export const BUSY_BIT = 0x8000_0000;
export const DISCARD_BIT = 0x4000_0000;
export const HDR_SZ = 8;

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const SC_PAGESIZE = 30; // glibc's _SC_PAGESIZE on Linux

/** The ring as the consumer sees it; plain typed arrays in the unit tests. */
export interface RingView {
  /** [0] = consumer_pos. */
  consumer: BigUint64Array;
  /** [0] = producer_pos. */
  producer: BigUint64Array;
  /** The data area, twice its size (mapped twice). */
  data: Uint8Array;
  /** The data area's size, a power of two. */
  size: number;
}

/** A record's whole length in the ring: header and sample, rounded up to 8 (libbpf's roundup_len). */
export function recordLength(header: number): number {
  const len = (header & ~(BUSY_BIT | DISCARD_BIT)) >>> 0;
  return (len + HDR_SZ + 7) & ~7;
}

/**
 * Reads the records between the consumer and producer positions, in order:
 * a copy of each sample that was submitted (discarded ones skipped), up to
 * the first one the producer is still writing. Moves nothing: a consumer
 * hands the samples on, then gives the space back with consumeTo(position).
 * Returns the samples and the position read up to.
 */
export function readRecords(ring: RingView, max = Infinity): { samples: Buffer[]; position: bigint } {
  const samples: Buffer[] = [];
  const mask = BigInt(ring.size - 1);
  let cons = Atomics.load(ring.consumer, 0);
  const headers = new Uint32Array(ring.data.buffer, ring.data.byteOffset, ring.data.byteLength >>> 2);
  for (;;) {
    let progressed = false;
    const prod = Atomics.load(ring.producer, 0);
    while (cons < prod && samples.length < max) {
      const offset = Number(cons & mask);
      const header = Atomics.load(headers, offset >>> 2);
      if ((header & BUSY_BIT) !== 0) return { samples, position: cons };
      progressed = true;
      const len = (header & ~(BUSY_BIT | DISCARD_BIT)) >>> 0;
      if ((header & DISCARD_BIT) === 0) {
        const start = ring.data.byteOffset + offset + HDR_SZ;
        samples.push(Buffer.from(new Uint8Array(ring.data.buffer, start, len)));
      }
      cons += BigInt(recordLength(header));
    }
    if (!progressed || samples.length >= max) return { samples, position: cons };
  }
}

/**
 * Moves the consumer position to `position` (from readRecords), handing the
 * space before it back to the producer. Once per batch, not per record: the
 * producer reads this cache line on every reserve, and a store per record
 * from another CPU makes each of those a miss while the reader drains.
 */
export function consumeTo(ring: RingView, position: bigint): void {
  if (position !== Atomics.load(ring.consumer, 0)) Atomics.store(ring.consumer, 0, position);
}

function pageSize(): number {
  const { libc } = nativeLibc();
  return Number(libc.func('long sysconf(int name)')(SC_PAGESIZE));
}

/** A ring buffer map's memory, mapped from its fd. `advance` maps the consumer page writable (see the header). */
export class MappedRing {
  readonly view: RingView;
  #maps: { address: unknown; length: number }[] = [];
  #closed = false;

  constructor(mapFd: number, size: number, advance: boolean) {
    const { koffi, libc } = nativeLibc();
    const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)');
    const page = pageSize();
    const map = (length: number, prot: number, offset: number): ArrayBuffer => {
      const p = mmap(null, length, prot, MAP_SHARED, mapFd, offset) as unknown;
      const address = p === null ? 0n : koffi.address(p);
      // MAP_FAILED is (void *)-1.
      if (address === 0n || address === 0xffff_ffff_ffff_ffffn) throw new SyscallError('mmap(BPF ring buffer)', koffi.errno());
      this.#maps.push({ address: p, length });
      return koffi.view(p, length);
    };
    try {
      const consumer = map(page, advance ? PROT_READ | PROT_WRITE : PROT_READ, 0);
      const rest = map(page + 2 * size, PROT_READ, page);
      this.view = {
        consumer: new BigUint64Array(consumer, 0, 1),
        producer: new BigUint64Array(rest, 0, 1),
        data: new Uint8Array(rest, page, 2 * size),
        size,
      };
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Unmaps: the views must not be read after this (the process would fault). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const { libc } = nativeLibc();
    const munmap = libc.func('int munmap(void *addr, size_t len)');
    for (const m of this.#maps) munmap(m.address, m.length);
    this.#maps = [];
  }

  get closed(): boolean {
    return this.#closed;
  }
}

/** Waits on a ring buffer map's fd: it is readable (EPOLLIN) when records are there (the kernel wakes a waiting consumer). */
export class RingWaiter {
  readonly #epfd: number;
  readonly #events = new EpollEvents(1);

  constructor(mapFd: number) {
    this.#epfd = epollCreate();
    const r = epollAdd(this.#epfd, mapFd, EPOLLIN);
    if (r < 0) {
      closeFd(this.#epfd);
      throw new SyscallError('epoll_ctl(BPF ring buffer)', -r);
    }
  }

  /** Up to `timeoutMs`; true when the ring has records (or a signal woke it: read anyway). */
  wait(timeoutMs: number): boolean {
    return epollWait(this.#epfd, this.#events, timeoutMs) !== 0;
  }

  close(): void {
    closeFd(this.#epfd);
  }
}
