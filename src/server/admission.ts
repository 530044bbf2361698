// Owns input flow control: how much the server takes on before what it took is delivered.
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";

/** Sends accepted and not yet finished (stored, fanned out, acknowledged), server-wide. */
export const MAX_INFLIGHT_SENDS = 512;
/** The output backlog bound never exceeds this (however many queues are open). */
export const MAX_BACKLOG = 16 * 1024 * 1024;
/** Longest a send waits for the output backlog; then it is admitted anyway. */
export const MAX_WAIT_MS = 1000;

interface Waiter {
  admit: () => void;
  bytes: number;
  since: number;
}

/**
 * The gate every send passes before it becomes work (`admit`), and the meter every send queue
 * reports its unsent bytes to (`report`). Each queue has a "cap": a quarter of its bound.
 *
 * 1. In flight (accepted, not yet stored, fanned out and acknowledged), server-wide: at most
 *    `maxInflight` sends, and at most the smallest cap in request bytes. One group commit, and
 *    the fan-out after it, then hold at most that much: one turn of the event loop stays short
 *    however many clients pipeline sends at once, and one batch fills no receiver's queue.
 * 2. While the output backlog is over its bound, no send is admitted: receivers are behind (the
 *    kernel no longer takes their bytes), and taking on more would only grow their queues until
 *    they are closed as slow consumers. Each queue counts with at most its cap; the bound is a
 *    quarter of all caps together (every queue a quarter full, or a quarter of them full), at
 *    least the largest cap and at most `maxBacklog`. So one slow reader cannot close the gate
 *    alone (it counts at most the bound): it overflows and is closed as before, while the gate
 *    paces senders to the receivers that do read.
 * 3. A session waiting here does not read its socket, so TCP pushes back on the client.
 * 4. Waiters are admitted first come, first served, on a fresh turn of the event loop (a timer),
 *    so a commit's fan-out and the next batch's decoding do not share one long turn.
 * 5. Progress: with nothing in flight a send is admitted whatever its size, and no send waits
 *    for the backlog longer than `maxWaitMs` (receivers that still do not read then overflow and
 *    are closed).
 * 6. Its waits (the fresh turn of 4, the patience of 5) run on the `timers` given (default
 *    `REAL_TIMERS`).
 */
export class Admission {
  readonly maxInflight: number;
  readonly maxBacklog: number;
  readonly maxWaitMs: number;
  #inflight = 0;
  #inflightBytes = 0;
  #backlog = 0;
  /** Caps of the open queues summed, the largest and the smallest seen. */
  #capSum = 0;
  #capMax = 0;
  #capMin = Number.MAX_SAFE_INTEGER;
  #bound = 0;
  #waiters: Waiter[] = [];
  #timers: Timers;
  #timer: TimerHandle | undefined;
  #timerDue = 0;
  /** Sends that had to wait, for stats. */
  waited = 0;

  constructor(
    opts: { maxInflight?: number; maxBacklog?: number; maxWaitMs?: number; timers?: Timers } = {},
  ) {
    this.#timers = opts.timers ?? REAL_TIMERS;
    this.maxInflight = opts.maxInflight ?? MAX_INFLIGHT_SENDS;
    this.maxBacklog = opts.maxBacklog ?? MAX_BACKLOG;
    this.maxWaitMs = opts.maxWaitMs ?? MAX_WAIT_MS;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Output backlog as counted (each queue up to its cap). */
  get backlog(): number {
    return this.#backlog;
  }

  /** The backlog above which sends wait, for the queues open now. */
  get bound(): number {
    return this.#bound;
  }

  /**
   * Takes a slot for one send of `bytes` request bytes: undefined when admitted now (no promise
   * on the fast path), else a promise that resolves once admitted. Every admission MUST be
   * paired with one `done(bytes)`.
   */
  admit(bytes: number): Promise<void> | undefined {
    if (this.#waiters.length === 0 && this.#fits(bytes) && this.#backlog <= this.#bound) {
      this.#take(bytes);
      return undefined;
    }
    this.waited++;
    return new Promise((admit) => {
      this.#waiters.push({ admit, bytes, since: this.#timers.now() });
      this.#schedule();
    });
  }

  /** Releases the slot of a finished send. */
  done(bytes: number): void {
    this.#inflight--;
    this.#inflightBytes -= bytes;
    if (this.#waiters.length > 0) this.#schedule();
  }

  /** A send queue with bound `maxBytes` opened (`+1`) or closed (`-1`). */
  queues(delta: 1 | -1, maxBytes: number): void {
    const cap = maxBytes >> 2;
    this.#capSum += delta * cap;
    if (cap > this.#capMax) this.#capMax = cap;
    if (cap < this.#capMin) this.#capMin = cap;
    this.#bound = Math.min(this.maxBacklog, Math.max(this.#capMax, this.#capSum >> 2));
  }

  /**
   * A queue with bound `maxBytes` changed its unsent bytes from `before` to `after`. Called by
   * SendQueue on every change, so it must stay cheap.
   */
  report(before: number, after: number, maxBytes: number): void {
    const cap = maxBytes >> 2;
    this.#backlog += (after < cap ? after : cap) - (before < cap ? before : cap);
    if (this.#waiters.length > 0 && this.#backlog <= this.#bound) this.#schedule();
  }

  #fits(bytes: number): boolean {
    return this.#inflight === 0 ||
      (this.#inflight < this.maxInflight && this.#inflightBytes + bytes <= this.#capMin);
  }

  #take(bytes: number): void {
    this.#inflight++;
    this.#inflightBytes += bytes;
  }

  #schedule(delay = 0): void {
    const due = this.#timers.now() + delay;
    if (this.#timer !== undefined) {
      if (this.#timerDue <= due) return;
      this.#timers.clearTimeout(this.#timer);
    }
    this.#timerDue = due;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#wake();
    }, delay);
  }

  #wake(): void {
    const now = this.#timers.now();
    while (this.#waiters.length > 0) {
      const first = this.#waiters[0];
      if (!this.#fits(first.bytes)) return; // a done() schedules the next look
      if (this.#backlog > this.#bound && now - first.since < this.maxWaitMs) {
        // Look again when its patience runs out (a queue draining below the bound reschedules
        // earlier).
        this.#schedule(Math.max(1, this.maxWaitMs - (now - first.since)));
        return;
      }
      this.#waiters.shift();
      this.#take(first.bytes);
      first.admit();
    }
  }
}
