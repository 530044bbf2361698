// Owns the server's view of elapsed time for pacing and waits: a monotonic clock and its timers.

/** What `Timers.setTimeout` returns: opaque, only ever passed back to its `clearTimeout`. */
export type TimerHandle = unknown;

/**
 * A monotonic clock in milliseconds and timers on it, injected into everything that waits (send
 * queue pacing and lazy flushes, the admission gate) so tests drive time with a fake one
 * (tests/harness/fake_clock.ts) instead of sleeping.
 *
 * 1. `now()` never goes backwards; only differences between its values mean anything.
 * 2. `setTimeout(fn, ms)` calls `fn` once, on a later turn, no earlier than `ms` after `now()`
 *    at the call; `clearTimeout` before then means it is never called.
 */
export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The runtime's: `performance.now()` and the global timers. */
export const REAL_TIMERS: Timers = Object.freeze({
  now: () => performance.now(),
  setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms),
  clearTimeout: (handle: TimerHandle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
});
