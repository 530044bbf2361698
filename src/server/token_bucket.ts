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

  /** Gives one token back (e.g. a charged attempt that succeeded), never past the capacity. */
  refund(): void {
    this.#refill(this.#clock());
    this.#tokens = Math.min(this.#capacity, this.#tokens + 1);
  }

  /** True when the bucket is full again (safe to forget). */
  get full(): boolean {
    this.#refill(this.#clock());
    return this.#tokens >= this.#capacity;
  }

  /** Milliseconds until the bucket is full again (0 when full). */
  msUntilFull(): number {
    this.#refill(this.#clock());
    if (this.#tokens >= this.#capacity) return 0;
    return Math.max(1, Math.ceil((this.#capacity - this.#tokens) * this.#refillMs));
  }
}

/**
 * Token buckets by key, e.g. per account or per address.
 *
 * 1. Memory is bounded by `maxKeys` (default 100,000). Only full buckets are ever forgotten: a
 *    forgotten key starts again from a full bucket, so forgetting a full one changes nothing.
 * 2. A charged (not full) bucket is never evicted, so an attacker cycling keys cannot reset a
 *    victim's bucket. When every slot holds a charged bucket, a new key is refused as if its
 *    bucket were empty (`take` and `peek` return the wait until some bucket is full again): the
 *    limit fails closed, and only for keys not seen yet.
 * 3. Looking for full buckets scans the table, at most once per wait it computes, so keys
 *    arriving while the table is full cost O(1) each.
 */
export class KeyedBuckets {
  #buckets = new Map<string, TokenBucket>();
  #opts: { capacity: number; refillMs: number; clock: Clock };
  #maxKeys: number;
  /** While the table is full of charged buckets: clock time before which no sweep can help. */
  #fullUntil = 0;

  constructor(opts: { capacity: number; refillMs: number; clock: Clock; maxKeys?: number }) {
    this.#opts = { capacity: opts.capacity, refillMs: opts.refillMs, clock: opts.clock };
    this.#maxKeys = opts.maxKeys ?? 100_000;
  }

  /** The key's bucket, or the wait in ms when it has none and there is no room for one. */
  #bucket(key: string): TokenBucket | number {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) {
        const wait = this.#sweep();
        if (wait > 0) return wait;
      }
      b = new TokenBucket(this.#opts);
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** Forgets full buckets; returns 0 when there is room now, else the wait until there may be. */
  #sweep(): number {
    const now = this.#opts.clock();
    if (now < this.#fullUntil) return this.#fullUntil - now;
    let soonest = Infinity;
    for (const [k, b] of this.#buckets) {
      const ms = b.msUntilFull();
      if (ms === 0) this.#buckets.delete(k);
      else soonest = Math.min(soonest, ms);
    }
    if (this.#buckets.size < this.#maxKeys) return 0;
    const wait = Number.isFinite(soonest) ? soonest : Math.max(1, this.#opts.refillMs);
    this.#fullUntil = now + wait;
    return wait;
  }

  /** Takes one token from the key's bucket; returns 0 on success, else the wait in ms. */
  take(key: string): number {
    const b = this.#bucket(key);
    return typeof b === "number" ? b : b.take();
  }

  /** The wait in ms before `take(key)` could succeed, without taking. */
  peek(key: string): number {
    const b = this.#buckets.get(key);
    if (b) return b.peek();
    if (this.#buckets.size < this.#maxKeys) return 0;
    return Math.max(0, this.#fullUntil - this.#opts.clock());
  }

  /** Gives one token back to the key's bucket (nothing when it has none: it is full). */
  refund(key: string): void {
    this.#buckets.get(key)?.refund();
  }

  get size(): number {
    return this.#buckets.size;
  }
}
