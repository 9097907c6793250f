/**
 * The ring buffer's consumer protocol (bpf/ringbuf.ts) on a ring laid out in
 * plain memory as the kernel lays it out (kernel/bpf/ringbuf.c): positions,
 * 8-byte headers with BUSY and DISCARD, 8-byte rounding, a record that
 * wraps the end (readable in one piece because the data is mapped twice).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUSY_BIT, consumeTo, DISCARD_BIT, HDR_SZ, readRecords, recordLength, type RingView } from '../../../src/bpf/ringbuf.js';
import { encodeEvent, type BindEvent } from '../../../src/grants/events.js';
import { decodeAll, unreadableNote } from '../../../src/ops/log.js';

/** What the follower does (ops/log.ts): read, hand on, then give the space back once. */
function consume(view: RingView, max = Infinity): { samples: Buffer[]; position: bigint } {
  const read = readRecords(view, max);
  consumeTo(view, read.position);
  return read;
}

/** A producer writing as the kernel does, into a ring of `size` bytes whose data is "mapped twice" (copied to both halves). */
class FakeRing {
  readonly view: RingView;
  constructor(readonly size: number) {
    this.view = {
      consumer: new BigUint64Array(1),
      producer: new BigUint64Array(1),
      data: new Uint8Array(2 * size),
      size,
    };
  }

  /** Reserves and (unless busy) commits a record; returns its position. */
  write(sample: Buffer, { busy = false, discard = false } = {}): bigint {
    const pos = this.view.producer[0] ?? 0n;
    const offset = Number(pos % BigInt(this.size));
    const header = Buffer.alloc(HDR_SZ);
    header.writeUInt32LE((sample.length | (busy ? BUSY_BIT : 0) | (discard ? DISCARD_BIT : 0)) >>> 0, 0);
    const record = Buffer.concat([header, sample]);
    for (let i = 0; i < record.length; i++) {
      const at = (offset + i) % this.size;
      this.view.data[at] = record[i] ?? 0;
      this.view.data[at + this.size] = record[i] ?? 0;
    }
    this.view.producer[0] = pos + BigInt(recordLength(sample.length));
    return pos;
  }

  /** The producer finishes a busy record (clears BUSY_BIT). */
  commit(pos: bigint): void {
    const offset = Number(pos % BigInt(this.size));
    for (const at of [offset, offset + this.size]) {
      const v = new DataView(this.view.data.buffer);
      v.setUint32(at, v.getUint32(at, true) & ~BUSY_BIT, true);
    }
  }
}

const sample = (n: number, len = 12): Buffer => Buffer.alloc(len, n);

describe('the ring consumer', () => {
  it('rounds a record to 8 bytes with its header, ignoring the flag bits', () => {
    assert.equal(recordLength(1), 16);
    assert.equal(recordLength(8), 16);
    assert.equal(recordLength(72), 80);
    assert.equal(recordLength((72 | BUSY_BIT | DISCARD_BIT) >>> 0), 80);
  });

  it('reads records in order, and peeking moves nothing', () => {
    const ring = new FakeRing(4096);
    for (let i = 1; i <= 3; i++) ring.write(sample(i, i * 5));
    const peeked = readRecords(ring.view);
    assert.deepEqual(peeked.samples, [sample(1, 5), sample(2, 10), sample(3, 15)]);
    assert.equal(ring.view.consumer[0], 0n);
    assert.equal(peeked.position, ring.view.producer[0]);
    assert.deepEqual(readRecords(ring.view).samples.length, 3);
  });

  it('advances the consumer position past each record it read, and reads nothing twice', () => {
    const ring = new FakeRing(4096);
    ring.write(sample(1));
    ring.write(sample(2));
    assert.deepEqual(consume(ring.view, 1).samples, [sample(1)]);
    assert.equal(ring.view.consumer[0], 24n);
    assert.deepEqual(consume(ring.view).samples, [sample(2)]);
    assert.equal(ring.view.consumer[0], ring.view.producer[0]);
    assert.deepEqual(consume(ring.view).samples, []);
  });

  it('stops at a record the producer still writes, and reads it once committed', () => {
    const ring = new FakeRing(4096);
    ring.write(sample(1));
    const busy = ring.write(sample(2), { busy: true });
    ring.write(sample(3));
    assert.deepEqual(consume(ring.view).samples, [sample(1)]);
    assert.equal(ring.view.consumer[0], busy, 'the consumer waits at the busy record');
    ring.commit(busy);
    assert.deepEqual(consume(ring.view).samples, [sample(2), sample(3)]);
  });

  it('skips a discarded record but moves past it', () => {
    const ring = new FakeRing(4096);
    ring.write(sample(1), { discard: true });
    ring.write(sample(2));
    assert.deepEqual(consume(ring.view).samples, [sample(2)]);
    assert.equal(ring.view.consumer[0], ring.view.producer[0]);
  });

  it('reads a record that wraps around the end in one piece, positions growing past the size', () => {
    const ring = new FakeRing(64);
    for (let round = 0; round < 5; round++) {
      ring.write(sample(round, 20));
      ring.write(sample(round + 100, 4));
      assert.deepEqual(consume(ring.view).samples, [sample(round, 20), sample(round + 100, 4)]);
    }
    assert.equal(ring.view.consumer[0], 5n * (32n + 16n));
  });

  it("holds the program's IPv4 events in one 64-byte line each, IPv6 ones beside them, and counts a record of another layout", () => {
    const v4: BindEvent = {
      monotonicNs: 1n,
      cgroupId: 2n,
      pid: 3,
      uid: 65534,
      gid: 65534,
      line: 1,
      protocol: 'tcp',
      family: 4,
      address: '127.0.0.1',
      port: 80,
      verdict: 'granted',
      comm: 'python3',
    };
    const v6: BindEvent = { ...v4, family: 6, address: '::1', verdict: 'refused', protocol: 'udp' };
    const ring = new FakeRing(4096);
    assert.equal(ring.write(encodeEvent(v4)), 0n);
    assert.equal(ring.write(encodeEvent(v4)), 64n, 'the next IPv4 event starts on the next cache line');
    assert.equal(ring.write(encodeEvent(v6)), 128n);
    // A record of the layout before IPv4 events were 56 bytes (72 bytes, verdict at 36): not guessed at.
    ring.write(Buffer.alloc(72, 4));
    assert.equal(ring.view.producer[0], 128n + 80n + 80n);
    const { events, unreadable } = decodeAll(consume(ring.view).samples);
    assert.deepEqual(events, [v4, v4, v6]);
    assert.equal(unreadable, 1);
    assert.match(unreadableNote(unreadable), /^1 record in the audit trail is not an event this lowport can read .*Run `lowport apply`/);
  });
});
