// Owns reconnect timing: exponential backoff with jitter, on injected randomness.

/** Options of {@linkcode Backoff}; defaults in brackets. */
export interface BackoffOptions {
  /** First delay before jitter [500 ms]. */
  baseMs?: number;
  /** Largest delay before jitter [30 s]. */
  maxMs?: number;
  /** Growth per attempt [2]. */
  factor?: number;
  /** Random source in [0, 1) [Math.random]. */
  random?: () => number;
}

/**
 * Delays for reconnect attempts: attempt n waits between half and all of
 * `min(maxMs, baseMs * factor^n)` ("equal jitter"), so clients dropped together by a server
 * restart spread out instead of returning in one wave, yet none waits much longer than planned.
 */
export class Backoff {
  #base: number;
  #max: number;
  #factor: number;
  #random: () => number;
  #attempt = 0;

  constructor(opts: BackoffOptions = {}) {
    this.#base = opts.baseMs ?? 500;
    this.#max = opts.maxMs ?? 30_000;
    this.#factor = opts.factor ?? 2;
    this.#random = opts.random ?? Math.random;
  }

  /** Attempts made since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt; advances the attempt counter. */
  next(): number {
    const ceiling = Math.min(this.#max, this.#base * this.#factor ** this.#attempt);
    this.#attempt++;
    const r = Math.min(Math.max(this.#random(), 0), 1);
    return Math.round(ceiling / 2 + (ceiling / 2) * r);
  }

  /** Starts over after a successful connection. */
  reset(): void {
    this.#attempt = 0;
  }
}
