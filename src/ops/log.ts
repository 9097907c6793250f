/**
 * `lowport log`: the audit trail a policy's `log` statement turns on, read
 * from the ring buffer pinned at live/events (grants/live.ts).
 *
 * Who reads. The ring has one consumer position, and a record the consumer
 * has passed is gone. So there is one consumer, `lowport log --follow` (the
 * lowport-log service runs it with --journal, writing each event to the
 * journal), and it holds a lock (flock on the pin directory's live/) while it
 * reads: a second follower is refused with the name of the first's way to
 * read. `lowport log` without --follow only peeks: it prints the events still
 * in the ring (not yet consumed) and moves nothing, so it never takes an
 * event from the service. What the service has taken is in the journal, as
 * journald users expect (`journalctl -u lowport-log`); `peek` reports how many
 * bytes were consumed before, so the CLI can say where they went.
 */
import { LowportError } from '../errors.js';
import { originOf } from '../policy/origin.js';
import type { PolicyDocument } from '../policy/types.js';
import { consumeTo, MappedRing, readRecords, RingWaiter } from '../bpf/ringbuf.js';
import type { MapHandle } from '../bpf/handles.js';
import type { DirFd } from '../os/dirfd.js';
import { flock, SyscallError } from '../os/libc.js';
import { lookupGroups, lookupUsers } from '../os/nss.js';
import { decodeEvent, RING_BYTES, wallClock, type BindEvent } from '../grants/events.js';
import { liveLogging, openEventRing, readLivePolicy, type Logging } from '../grants/live.js';
import { liveTarget, policyPath, type LowportOptions } from '../grants/target.js';
import { appliedDocument, appliedIsLive } from './list.js';

const LOCK_EX_NB = 2 | 4;

export interface LoggedEvent extends BindEvent {
  time: Date;
  /** The user and group names, where NSS knows the ids. */
  user?: string;
  group?: string;
  /**
   * The file of the statement that decided (the policy file or a drop-in),
   * and `line` is then its line there. Absent for a `lowport run` scope
   * (line 0), and when the files of the live policy are not known (see
   * placeEvent): `line` then counts through the files of the applied policy
   * one after the other, as the program holds it.
   */
  file?: string;
}

/**
 * An event's line in its own file (`line 12` of the applied policy is line 2
 * of policy.d/audit.policy), from the document the live program was made
 * from, as `list` places its rules. Unplaced (as the program gave it) when
 * that document is not known, or holds no grant or reservation at that line
 * (an event of an earlier program, read after an apply). Pure.
 */
export function placeEvent(line: number, applied: PolicyDocument | undefined): { line: number; file: string | undefined } {
  if (applied === undefined || line <= 0 || !ruleLines(applied).has(line)) return { line, file: undefined };
  const at = originOf(applied, line);
  return { line: at.line, file: at.file };
}

const RULE_LINES = new WeakMap<PolicyDocument, ReadonlySet<number>>();

/** The lines of a document's grants and reservations, collected once per document (not once per event: a policy may hold 10,000 rules). */
function ruleLines(doc: PolicyDocument): ReadonlySet<number> {
  let lines = RULE_LINES.get(doc);
  if (lines === undefined) {
    lines = new Set(doc.rules.map((r) => r.line));
    RULE_LINES.set(doc, lines);
  }
  return lines;
}

/**
 * The document of the live policy, as `list` finds it: the applied text on
 * record, when its fingerprint is the live map's (not the file as it may be
 * by now: an edit not applied yet changes nothing live). Undefined when it
 * is not known: nothing live, applied by an older lowport, unreadable.
 */
function liveDocument(options: LowportOptions): PolicyDocument | undefined {
  try {
    const target = liveTarget(options);
    const live = readLivePolicy(target.pinDir);
    return live !== undefined && appliedIsLive(target, live) ? appliedDocument(target, policyPath(options)) : undefined;
  } catch {
    // Where the lines are is a help to the reader; the events are shown all the same, their lines marked as unplaced.
    return undefined;
  }
}

/** The live document to place events by (placeEvent), read again when older than RECHECK_MS (an apply makes another). */
export class LiveDocument {
  #doc: PolicyDocument | undefined;
  #read = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: LowportOptions) {}

  current(): PolicyDocument | undefined {
    if (Date.now() - this.#read > RECHECK_MS) {
      this.#doc = liveDocument(this.options);
      this.#read = Date.now();
    }
    return this.#doc;
  }
}

export interface LogPeek {
  pinDir: string;
  /** What the live program logs; undefined when lowport is off. */
  logging: Logging | undefined;
  /** Whether a ring buffer exists (a policy with `log` was live since `off`). */
  ring: boolean;
  events: LoggedEvent[];
  /** Records in the ring that are not events of this lowport's layout (UNREADABLE says why). */
  unreadable: number;
  /** Bytes a consumer (the lowport-log service, a follower) has already taken from the ring. */
  consumedBytes: bigint;
}

/** User and group names by id, looked up once each. */
export class NameCache {
  readonly #users = new Map<number, string | undefined>();
  readonly #groups = new Map<number, string | undefined>();

  /** Looks up, in one call per database, the ids not seen yet. */
  prime(events: readonly BindEvent[]): void {
    const uids = [...new Set(events.map((e) => e.uid))].filter((u) => !this.#users.has(u));
    const gids = [...new Set(events.map((e) => e.gid))].filter((g) => !this.#groups.has(g));
    if (uids.length > 0) {
      const found = lookupUsers(uids.map(String));
      for (const uid of uids) this.#users.set(uid, found.get(String(uid))?.name);
    }
    if (gids.length > 0) {
      const found = lookupGroups(gids.map(String));
      for (const gid of gids) this.#groups.set(gid, found.get(String(gid))?.name);
    }
  }

  /**
   * The events as logged: their names, their wall-clock time (one reading of
   * the clocks for them all) and their place in the policy files. The events
   * become the logged ones: decodeAll made them for this reader alone, and
   * adding the fields in place, in one order, keeps the reader fast (an
   * object spread per event cost more than all the rest; bench/README.md).
   */
  logged(events: readonly BindEvent[], applied: LiveDocument): LoggedEvent[] {
    this.prime(events);
    const doc = applied.current();
    const now = Date.now();
    const monotonicNow = process.hrtime.bigint();
    return events.map((e) => {
      const at = placeEvent(e.line, doc);
      const l = e as LoggedEvent;
      l.time = wallClock(e.monotonicNs, now, monotonicNow);
      l.user = this.#users.get(e.uid);
      l.group = this.#groups.get(e.gid);
      l.line = at.line;
      l.file = at.file;
      return l;
    });
  }
}

/** What a record that is not an event of this layout means, and what to do. */
export function unreadableNote(count: number): string {
  return (
    `${count} record${count === 1 ? '' : 's'} in the audit trail ${count === 1 ? 'is' : 'are'} not ${count === 1 ? 'an event' : 'events'} this lowport can read ` +
    "(written by another lowport version's bind program): skipped. Run `lowport apply` to load this version's program."
  );
}

export function decodeAll(samples: readonly Buffer[]): { events: BindEvent[]; unreadable: number } {
  const events: BindEvent[] = [];
  for (const s of samples) {
    const e = decodeEvent(s);
    if (e !== undefined) events.push(e);
  }
  return { events, unreadable: samples.length - events.length };
}

/** The events in the ring, without consuming them. */
export function peekLog(options: LowportOptions = {}): LogPeek {
  const { pinDir } = liveTarget(options);
  const logging = liveLogging(pinDir);
  const opened = openEventRing(pinDir);
  if (opened === undefined) return { pinDir, logging, ring: false, events: [], unreadable: 0, consumedBytes: 0n };
  try {
    const mapped = new MappedRing(opened.ring.fd, ringSize(opened.ring), false);
    try {
      const consumedBytes = Atomics.load(mapped.view.consumer, 0);
      const { events, unreadable } = decodeAll(readRecords(mapped.view).samples);
      const names = new NameCache();
      const applied = new LiveDocument(options);
      return { pinDir, logging, ring: true, events: names.logged(events, applied), unreadable, consumedBytes };
    } finally {
      mapped.close();
    }
  } finally {
    opened.ring.close();
    opened.live.close();
  }
}

function ringSize(ring: MapHandle): number {
  const size = ring.info().maxEntries;
  return size > 0 ? size : RING_BYTES;
}

export interface FollowOptions {
  /** Called with each batch of events, in order; the ring moves past them only after this returns. */
  onEvents: (events: readonly LoggedEvent[]) => void;
  /** Stops the loop (SIGINT, SIGTERM). */
  signal: AbortSignal;
  /** Called when there is no ring yet, or it was replaced (after `off` and an apply): once per change. */
  onWaiting?: (why: string) => void;
  /** Called with each batch's count of records that are not events of this layout (unreadableNote), which are skipped. */
  onUnreadable?: (count: number) => void;
}

/** How often the follower checks that its ring is still the pinned one (`off` and an apply make a new one). */
const RECHECK_MS = 2000;
/**
 * How long the reader waits for a wake-up before it looks again: for signals
 * and to see a new ring pinned. Events do not wait for it: the program wakes
 * the reader for the first event written after it emptied the ring.
 */
const WAIT_MS = 200;
/**
 * After a wake-up, how long the reader lets events gather before it reads
 * them: the program wakes it only for an event written to a ring it had
 * emptied, so one wake-up (an interrupt the binding process pays, and a
 * context switch) serves every event of these milliseconds, not just one.
 * The ring holds 16,384 IPv4 events: it takes 1.6 million binds a second to
 * fill it in this time; the reader's own pace (about 70,000 events a second
 * on a small VM, bench/README.md) is what a long burst meets first. It is
 * also the most an event waits to be read.
 */
const GATHER_MS = 10;
/** Events handed on at a time: one write of their lines, one move of the consumer position. */
const BATCH = 512;

/**
 * The one consumer: reads and consumes every event as it comes, until the
 * signal aborts. Holds the consumer lock while it reads; a second consumer
 * is refused.
 */
export async function followLog(options: LowportOptions, follow: FollowOptions): Promise<void> {
  const { pinDir } = liveTarget(options);
  const names = new NameCache();
  const applied = new LiveDocument(options);
  let said: string | undefined;
  const waiting = (why: string): void => {
    if (why !== said) follow.onWaiting?.(why);
    said = why;
  };
  while (!follow.signal.aborted) {
    const opened = openEventRing(pinDir);
    if (opened === undefined) {
      waiting(`no audit trail at ${pinDir} yet (no policy with a 'log' statement applied): waiting for one`);
      await sleep(RECHECK_MS, follow.signal);
      continue;
    }
    said = undefined;
    try {
      lockConsumer(opened.live, pinDir);
      await consume(opened.ring, pinDir, (events) => names.logged(events, applied), follow);
    } finally {
      opened.ring.close();
      opened.live.close();
    }
  }
}

function lockConsumer(live: DirFd, pinDir: string): void {
  try {
    flock(live.fd, LOCK_EX_NB);
  } catch (e) {
    if (e instanceof SyscallError && (e.errnoName === 'EWOULDBLOCK' || e.errnoName === 'EAGAIN')) {
      throw new LowportError(
        'E_STATE',
        `another reader consumes the audit trail at ${pinDir} (the lowport-log service, or a \`lowport log --follow\`)`,
        {
          hint: 'A ring buffer has one consumer. Read what the service wrote with `journalctl -u lowport-log -f`, or stop it first; `lowport log` without --follow shows what is in the ring without taking it.',
        },
      );
    }
    throw e;
  }
}

/** Consumes one ring until it is no longer the pinned one, or the signal aborts. */
async function consume(
  ring: MapHandle,
  pinDir: string,
  logged: (events: readonly BindEvent[]) => LoggedEvent[],
  follow: FollowOptions,
): Promise<void> {
  const id = ring.info().id;
  const mapped = new MappedRing(ring.fd, ringSize(ring), true);
  const waiter = new RingWaiter(ring.fd);
  try {
    let checked = Date.now();
    while (!follow.signal.aborted) {
      // A batch at a time: the consumer position moves past events only once they were handed on
      // (a reader killed in between leaves them to the next one), and once per batch (consumeTo).
      for (;;) {
        const { samples, position } = readRecords(mapped.view, BATCH);
        if (samples.length > 0) {
          const { events, unreadable } = decodeAll(samples);
          if (unreadable > 0) follow.onUnreadable?.(unreadable);
          follow.onEvents(logged(events));
        }
        const moved = position !== mapped.view.consumer[0];
        consumeTo(mapped.view, position);
        if (!moved) break;
      }
      if (Date.now() - checked > RECHECK_MS) {
        checked = Date.now();
        if (!isPinned(pinDir, id)) return;
      }
      if (waiter.wait(WAIT_MS)) await sleep(GATHER_MS, follow.signal);
      // Let signal handlers and pending writes run between waits.
      else await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    waiter.close();
    mapped.close();
  }
}

function isPinned(pinDir: string, id: number): boolean {
  const opened = openEventRing(pinDir);
  if (opened === undefined) return false;
  try {
    return opened.ring.info().id === id;
  } finally {
    opened.ring.close();
    opened.live.close();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
