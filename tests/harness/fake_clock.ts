// Owns fake time for tests: a clock that moves only when told, and the timers that run on it.
import { setImmediate } from "node:timers";
import type { TimerHandle, Timers } from "../../src/server/clock.ts";

interface Due {
  id: number;
  at: number;
  fn: () => void;
}

/** Timers firing in a row before `advance` gives up (a timer that keeps rescheduling itself). */
const MAX_TIMERS_PER_ADVANCE = 100_000;

/**
 * One real turn of the event loop (an immediate): every microtask queued so far, and every
 * immediate queued before it, has run when it resolves. Not a sleep: no time needs to pass.
 */
export const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * A fake clock for tests. Serves as `Timers` (send queue, admission gate) and, through `now`, as a
 * server `Clock` (`startTestServer({ clock })`: rate limiters, deadlines, timestamps).
 *
 * 1. `now()` returns the start time (default: the real `Date.now()` at construction, so
 *    timestamps look current) until `advance` moves it; nothing else moves it.
 * 2. `advance(ms)` runs every timer due up to `now() + ms` in due order (ties in the order they
 *    were set), with `now()` at each timer's due time while it runs, including timers those
 *    timers set. After each timer it waits one real turn, so the microtasks and immediates it
 *    caused run before the next one (as between real timers). Then `now()` is `now() + ms`.
 * 3. A timer never runs outside `advance`, so a test that never advances sees none fire.
 */
export class FakeClock implements Timers {
  #now: number;
  #nextId = 1;
  /** Pending timers, ordered by due time, then by id. */
  #due: Due[] = [];

  constructor(start = Date.now()) {
    this.#now = start;
  }

  /** The fake time in ms; a bound function, so `clock: fake.now` works where a Clock is wanted. */
  readonly now = (): number => this.#now;

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const at = this.#now + (ms > 0 ? ms : 0);
    const t: Due = { id: this.#nextId++, at, fn };
    let i = this.#due.length;
    while (i > 0 && this.#due[i - 1].at > at) i--;
    this.#due.splice(i, 0, t);
    return t.id;
  }

  clearTimeout(handle: TimerHandle): void {
    const i = this.#due.findIndex((t) => t.id === handle);
    if (i >= 0) this.#due.splice(i, 1);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.#due.length;
  }

  /** Moves time forward by `ms` (≥ 0), running the timers that fall due on the way. */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ms must be >= 0, got ${ms}`);
    const until = this.#now + ms;
    for (let n = 0; this.#due.length > 0 && this.#due[0].at <= until; n++) {
      if (n >= MAX_TIMERS_PER_ADVANCE) {
        throw new Error(`FakeClock.advance: over ${MAX_TIMERS_PER_ADVANCE} timers in one advance`);
      }
      const t = this.#due.shift()!;
      if (t.at > this.#now) this.#now = t.at;
      t.fn();
      await turn();
    }
    this.#now = until;
    await turn();
  }
}

/**
 * Advances `clock` by `stepMs` whenever something waits on it (a timer is pending), until `done`
 * says so. For waits that start only after the network delivered something (a session waiting
 * for a message token): the network is outside the fake clock, so in between this polls, with a
 * deadline of `timeoutMs` real time.
 */
export async function advanceUntil(
  clock: FakeClock,
  done: () => boolean,
  stepMs: number,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`advanceUntil: not done after ${timeoutMs} ms`);
    if (clock.pending > 0) await clock.advance(stepMs);
    else await new Promise((r) => setTimeout(r, 2));
  }
}
