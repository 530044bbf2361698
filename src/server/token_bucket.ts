// Owns rate limiting: token buckets on an injected clock, alone or keyed (per account, per address).

/** A clock in milliseconds; tests pass a fake one. */
export type Clock = () => number;

/** A token bucket: `capacity` tokens, one more every `refillMs`. */
export class TokenBucket {
  #capacity: number;
  #refillMs: number;
  #tokens: number;
  #updated: number;
  #clock: Clock;

  constructor(opts: { capacity: number; refillMs: number; clock: Clock }) {
    this.#capacity = opts.capacity;
    this.#refillMs = opts.refillMs;
    this.#clock = opts.clock;
    this.#tokens = opts.capacity;
    this.#updated = opts.clock();
  }

  #refill(now: number): void {
    if (this.#refillMs <= 0) {
      this.#tokens = this.#capacity;
    } else if (now > this.#updated) {
      this.#tokens = Math.min(
        this.#capacity,
        this.#tokens + (now - this.#updated) / this.#refillMs,
      );
    }
    this.#updated = now;
  }

  /** Takes one token; returns 0 on success, else the milliseconds until one is available. */
  take(): number {
    const now = this.#clock();
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return this.#wait();
  }

  /** Milliseconds until a token is available, without taking one. */
  peek(): number {
    this.#refill(this.#clock());
    return this.#tokens >= 1 ? 0 : this.#wait();
  }

  /**
   * Whole ms until the next token (at least 1). The fraction of a token is a float: 499 ms into
   * a 500 ms refill it computes 1.0000000000000009 ms, which must not round up to 2.
   */
  #wait(): number {
    return Math.max(1, Math.ceil((1 - this.#tokens) * this.#refillMs - 1e-6));
  }

  /** True when the bucket is full again (safe to forget). */
  get full(): boolean {
    this.#refill(this.#clock());
    return this.#tokens >= this.#capacity;
  }
}

/**
 * Token buckets by key, e.g. per account or per address. Memory is bounded: full buckets are
 * forgotten, and past `maxKeys` the oldest keys are dropped (an attacker cycling keys then only
 * resets buckets it could have filled anyway).
 */
export class KeyedBuckets {
  #buckets = new Map<string, TokenBucket>();
  #opts: { capacity: number; refillMs: number; clock: Clock };
  #maxKeys: number;

  constructor(opts: { capacity: number; refillMs: number; clock: Clock; maxKeys?: number }) {
    this.#opts = { capacity: opts.capacity, refillMs: opts.refillMs, clock: opts.clock };
    this.#maxKeys = opts.maxKeys ?? 100_000;
  }

  #bucket(key: string): TokenBucket {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) this.#sweep();
      b = new TokenBucket(this.#opts);
      this.#buckets.set(key, b);
    }
    return b;
  }

  #sweep(): void {
    for (const [k, b] of this.#buckets) if (b.full) this.#buckets.delete(k);
    while (this.#buckets.size >= this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest === undefined) break;
      this.#buckets.delete(oldest);
    }
  }

  take(key: string): number {
    return this.#bucket(key).take();
  }

  peek(key: string): number {
    const b = this.#buckets.get(key);
    return b ? b.peek() : 0;
  }

  get size(): number {
    return this.#buckets.size;
  }
}
