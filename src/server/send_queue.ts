// Owns outbound flow control for one connection: a bounded, ordered byte queue and its writer loop.
import { setImmediate } from "node:timers";
import { concatBytes } from "../protocol/concat_bytes.ts";
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";

/** Where the queue writes; a Deno.Conn fits. */
export interface ByteSink {
  write(p: Uint8Array): Promise<number>;
}

/** Told of every queue and every change of its unsent bytes (the server's admission gate). */
export interface BacklogMeter {
  queues(delta: 1 | -1, maxBytes: number): void;
  report(before: number, after: number, maxBytes: number): void;
}

/** A chunk at least this long is written as it is; shorter ones are joined (up to `MAX_JOIN`). */
const WRITE_ALONE = 4 * 1024;
const MAX_JOIN = 64 * 1024;

/**
 * Outbound queue of one connection.
 *
 * 1. `enqueue` is synchronous and never blocks the caller (the hub fans out to thousands).
 * 2. One writer loop drains the queue; bytes leave in enqueue order, never reordered.
 * 3. Small chunks waiting when the writer wakes are coalesced into one write (fewer TLS records
 *    and syscalls under load); a large chunk (a fan-out batch) is written as it is, not copied.
 *    The writer first wakes in a microtask after the first `enqueue`, so everything a fan-out
 *    (or a group commit's batch of messages) enqueues in the same turn leaves in one write.
 * 4. Unsent bytes are bounded by `maxBytes`. Going over calls `onOverflow` once and drops all
 *    further output: the connection is then closed by the owner with a stated reason.
 * 5. The same Uint8Array may be enqueued on many queues (encode once, write to many): the queue
 *    MUST NOT modify chunks.
 * 6. `enqueue(chunk, { lazy: true })` (presence and other notices nobody waits for) does not wake
 *    the writer: lazy chunks wait for a shared timer, or for the next ordinary chunk, which takes
 *    them along in order. A login storm then costs each connection one write per interval
 *    instead of one per login. The interval is `LAZY_FLUSH_MS`, longer with many connections
 *    (1 ms per 20 open queues, at most `LAZY_FLUSH_MAX_MS`), so these writes stay a small,
 *    bounded share of the CPU at any scale.
 * 7. Every change of the unsent bytes is reported to the `meter`, if any (input flow control).
 * 8. Pacing, only under load: while the server is busy writing (more than `PACE_BUSY_WAKES`
 *    writer wake-ups asked for by the queues on these timers within the current or the last
 *    window of `PACE_MS`), an ordinary chunk queued less than `PACE_MS` after this queue's last
 *    write waits for a shared timer (at most `PACE_MS`), taking everything queued meanwhile in
 *    one write. Otherwise it is written at once: at low load nothing ever waits, and an idle
 *    connection is written at once at any load. While a write is in flight, what is queued
 *    waits for it and follows in one write (item 3), at any load.
 * 9. Writers start through one scheduler, at most `WRITES_PER_TURN` per step.
 * 10. Time (the pace, the lazy interval and their timers) comes from the `timers` given
 *     (default `REAL_TIMERS`); queues on the same `Timers` share one lazy and one pace timer.
 */
/** Wait of a lazy chunk with up to 1,000 open queues. */
export const LAZY_FLUSH_MS = 50;
/** Longest wait of a lazy chunk (reached at 20,000 open queues). */
export const LAZY_FLUSH_MAX_MS = 1000;

/** Queues waiting for one shared timer; when it fires, each is kicked (its writer started). */
class WakeGroup {
  #timers: Timers;
  #queues = new Set<SendQueue>();
  #timer: TimerHandle | undefined;

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  /** Adds `q`; the timer starts with the first queue added (`delayMs` of later ones is moot). */
  add(q: SendQueue, delayMs: number): void {
    this.#queues.add(q);
    this.#timer ??= this.#timers.setTimeout(() => this.#wake(), delayMs);
  }

  /** Takes `q` out; the timer stops when no queue is left. */
  delete(q: SendQueue): void {
    if (this.#queues.delete(q) && this.#queues.size === 0 && this.#timer !== undefined) {
      this.#timers.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #wake(): void {
    this.#timer = undefined;
    const queues = [...this.#queues];
    this.#queues.clear();
    for (const q of queues) q.kick();
  }
}

/**
 * What the queues on one `Timers` share: its clock, the two wake groups, the open count, and the
 * write load that decides whether pacing is on.
 */
class QueueClock {
  readonly timers: Timers;
  /** Queues holding only lazy chunks. */
  readonly lazy: WakeGroup;
  /** Queues waiting out their pace. */
  readonly pace: WakeGroup;
  /** Queues not yet closed: the lazy interval grows with them. */
  open = 0;
  /** Start of the current load window, and writer wake-ups asked for in it and the one before. */
  #windowStart = -Infinity;
  #wakes = 0;
  #lastWakes = 0;

  constructor(timers: Timers) {
    this.timers = timers;
    this.lazy = new WakeGroup(timers);
    this.pace = new WakeGroup(timers);
  }

  /**
   * Counts one wake-up asked for at `now` (an ordinary chunk for a queue not writing: written
   * at once or paced, the demand is the same, so pacing does not switch itself off) and says
   * whether the server is busy writing: over `PACE_BUSY_WAKES` in this window or the last.
   */
  wake(now: number): boolean {
    if (now - this.#windowStart >= PACE_MS) {
      // A window with no wake-up at all between means the last one saw none.
      this.#lastWakes = now - this.#windowStart < 2 * PACE_MS ? this.#wakes : 0;
      this.#windowStart = now;
      this.#wakes = 0;
    }
    this.#wakes++;
    return this.#wakes > PACE_BUSY_WAKES || this.#lastWakes > PACE_BUSY_WAKES;
  }
}

const queueClocks = new WeakMap<Timers, QueueClock>();

function queueClockOf(timers: Timers): QueueClock {
  let c = queueClocks.get(timers);
  if (!c) queueClocks.set(timers, c = new QueueClock(timers));
  return c;
}

/**
 * A queue that wrote less than this many ms ago waits until then before its next write. Each TLS
 * write costs about 5 µs whatever its size, so a connection that gets a message every few ms
 * (1,000 clients in a busy room) costs far less as one write per interval.
 */
export const PACE_MS = 10;

/**
 * Pacing is on while the queues ask for more writer wake-ups than this per `PACE_MS` (25,600 a
 * second: at ~5 µs a TLS write, about an eighth of a core). Below it every chunk is written at
 * once, as an IRC daemon does; above it the writes saved are worth the wait (docs/PERFORMANCE.md).
 */
export const PACE_BUSY_WAKES = 256;

/**
 * At most this many queues start a write per step; the rest follow in an immediate. Note: Deno
 * runs an immediate queued by an immediate in the same batch, before timers and I/O, so today this
 * splits the work but does not yet let other tasks in between (a MessageChannel or setTimeout hop
 * measured no better; docs/PERFORMANCE.md, change 11).
 */
export const WRITES_PER_TURN = 256;

/** Queues whose writer is due to start, oldest first. */
let ready: SendQueue[] = [];
let readyScheduled = false;

function scheduleWrite(q: SendQueue): void {
  ready.push(q);
  if (!readyScheduled) {
    readyScheduled = true;
    queueMicrotask(startWrites); // the first slice leaves in the turn that queued it
  }
}

function startWrites(): void {
  const batch = ready.length > WRITES_PER_TURN ? ready.slice(0, WRITES_PER_TURN) : ready;
  ready = ready.length > WRITES_PER_TURN ? ready.slice(WRITES_PER_TURN) : [];
  for (const q of batch) q.startWriter();
  if (ready.length > 0) setImmediate(startWrites); // the rest on the next turn
  else readyScheduled = false;
}

export class SendQueue {
  #sink: ByteSink;
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  #maxBytes: number;
  #writing = false;
  #closed = false;
  #overflowed = false;
  #onOverflow: () => void;
  #onError: (err: unknown) => void;
  #idle: (() => void)[] = [];
  #counted = true;
  #meter: BacklogMeter | undefined;
  #clock: QueueClock;
  /** `timers.now()` when the last write began, and whether a pace timer holds this queue. */
  #lastWrite = -Infinity;
  #paced = false;

  constructor(opts: {
    sink: ByteSink;
    maxBytes: number;
    onOverflow: () => void;
    onError: (err: unknown) => void;
    meter?: BacklogMeter;
    /** Clock and timers of pacing and lazy flushes. Default: `REAL_TIMERS`. */
    timers?: Timers;
  }) {
    this.#clock = queueClockOf(opts.timers ?? REAL_TIMERS);
    this.#sink = opts.sink;
    this.#maxBytes = opts.maxBytes;
    this.#meter = opts.meter;
    this.#meter?.queues(1, this.#maxBytes);
    this.#onOverflow = opts.onOverflow;
    this.#onError = opts.onError;
    this.#clock.open++;
  }

  /** Unsent bytes. */
  get bytes(): number {
    return this.#bytes;
  }

  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** Queues bytes; returns false when they were dropped (closed or over the bound). */
  enqueue(chunk: Uint8Array, opts?: { lazy?: boolean }): boolean {
    if (this.#closed || this.#overflowed) return false;
    if (this.#bytes + chunk.length > this.#maxBytes) {
      this.#overflowed = true;
      this.#chunks = [];
      this.#setBytes(0);
      this.#onOverflow();
      return false;
    }
    this.#chunks.push(chunk);
    this.#setBytes(this.#bytes + chunk.length);
    if (this.#writing) return true;
    const clock = this.#clock;
    if (opts?.lazy) {
      clock.lazy.add(this, Math.min(LAZY_FLUSH_MAX_MS, Math.max(LAZY_FLUSH_MS, clock.open / 20)));
      return true;
    }
    clock.lazy.delete(this);
    if (this.#paced) return true;
    const now = clock.timers.now();
    const busy = clock.wake(now);
    const since = now - this.#lastWrite;
    if (busy && since < PACE_MS) {
      this.#paced = true;
      clock.pace.add(this, PACE_MS - since);
      return true;
    }
    this.#writing = true;
    scheduleWrite(this);
    return true;
  }

  /** Starts writing what waits (the lazy and pace timers' call). */
  kick(): void {
    this.#paced = false;
    if (this.#writing || this.#closed || this.#chunks.length === 0) return;
    this.#writing = true;
    scheduleWrite(this);
  }

  /** Runs the writer loop (called by the write scheduler, once per `scheduleWrite`). */
  startWriter(): void {
    void this.#drain();
  }

  #setBytes(n: number): void {
    const before = this.#bytes;
    this.#bytes = n;
    this.#meter?.report(before, n, this.#maxBytes);
  }

  async #drain(): Promise<void> {
    try {
      while (this.#chunks.length > 0 && !this.#closed) {
        const chunks = this.#chunks;
        this.#chunks = [];
        let i = 0;
        while (i < chunks.length) {
          // One write: a large chunk alone, or a run of small ones joined.
          let j = i + 1;
          let size = chunks[i].length;
          if (size < WRITE_ALONE) {
            while (
              j < chunks.length && chunks[j].length < WRITE_ALONE &&
              size + chunks[j].length <= MAX_JOIN
            ) size += chunks[j++].length;
          }
          const buf = j === i + 1 ? chunks[i] : concatBytes(chunks.slice(i, j), size);
          this.#lastWrite = this.#clock.timers.now();
          let off = 0;
          while (off < buf.length) {
            off += await this.#sink.write(off === 0 ? buf : buf.subarray(off));
          }
          if (this.#closed) return; // close() dropped the rest and zeroed the count
          this.#setBytes(this.#bytes - size);
          i = j;
        }
      }
    } catch (err) {
      this.#closed = true;
      this.#chunks = [];
      this.#setBytes(0);
      this.#onError(err);
    } finally {
      this.#writing = false;
      const waiters = this.#idle;
      this.#idle = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves when everything queued so far has been written (or the queue failed). */
  flushed(): Promise<void> {
    if (!this.#writing && this.#chunks.length === 0) return Promise.resolve();
    if (!this.#writing) { // only lazy or paced chunks wait: write them now
      this.#clock.lazy.delete(this);
      this.#clock.pace.delete(this);
      this.kick();
    }
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops writing; queued bytes are dropped. */
  close(): void {
    this.#clock.lazy.delete(this);
    this.#clock.pace.delete(this);
    this.#paced = false;
    if (this.#counted) {
      this.#counted = false;
      this.#clock.open--;
      this.#meter?.queues(-1, this.#maxBytes);
    }
    this.#closed = true;
    this.#chunks = [];
    this.#setBytes(0);
  }
}
