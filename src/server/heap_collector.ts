// Owns the server's own full garbage collections during and after a password-hashing burst.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * V8's full collection, obtained at run time (no `--expose-gc` on the command line, and no `gc`
 * in the server's global scope): the flag is set only while one new context is made, which gets
 * V8's `gc` function; workers started later get none. Null where this is not possible. Made once
 * per process (the context lives as long as its function).
 */
export function v8FullCollection(): (() => void) | null {
  if (made === undefined) made = makeFullCollection();
  return made;
}

let made: (() => void) | null | undefined;

function makeFullCollection(): (() => void) | null {
  try {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc");
    return typeof gc === "function" ? () => gc() : null;
  } catch {
    return null;
  } finally {
    try {
      setFlagsFromString("--no-expose-gc");
    } catch { /* flags cannot be set here: nothing was changed either */ }
  }
}

/** Finished hash jobs between two looks at the heap during a burst. */
export const COLLECT_EVERY_JOBS = 100;
/** Heap growth since the last collection below which nothing is collected. */
export const COLLECT_MIN_GROWTH_BYTES = 8 * 1024 * 1024;

/**
 * Collects V8's heap in full at the two points of a login storm where V8 alone does not.
 *
 * Measured (docs/PERFORMANCE.md, "Memory per connection: where the bytes went"): V8 runs its first
 * full collection only when the old space reaches a limit set for a large heap, so a storm's
 * promoted garbage (about 40 KB per login) piles up in old space until its memory reducer runs,
 * seconds after the storm. One collection during the storm makes V8 size its limits from the live
 * heap, after which its own collections keep the heap near it; one after the storm returns what is
 * left before the server is idle.
 *
 * 1. `jobDone()`: every `everyJobs` finished hash jobs, the heap is looked at.
 * 2. `burstEnded()` (the hasher ended its idle workers): the heap is looked at.
 * 3. A look collects only when the heap used has grown by `minGrowthBytes` or more since the last
 *    collection (since construction at first). A collection pauses the event loop (about 40 ms
 *    for 1,000 sessions), so there are at most a few per storm and none in steady chat traffic.
 * 4. With `collect` null (no way to collect), nothing happens.
 */
export class HeapCollector {
  #collect: (() => void) | null;
  #heapUsed: () => number;
  #everyJobs: number;
  #minGrowth: number;
  #base: number;
  #jobs = 0;
  #collections = 0;

  constructor(
    opts: {
      collect: (() => void) | null;
      /** Bytes of heap in use. Default `Deno.memoryUsage().heapUsed`. */
      heapUsed?: () => number;
      /** Default `COLLECT_EVERY_JOBS`. */
      everyJobs?: number;
      /** Default `COLLECT_MIN_GROWTH_BYTES`. */
      minGrowthBytes?: number;
    },
  ) {
    this.#collect = opts.collect;
    this.#heapUsed = opts.heapUsed ?? (() => Deno.memoryUsage().heapUsed);
    this.#everyJobs = opts.everyJobs ?? COLLECT_EVERY_JOBS;
    this.#minGrowth = opts.minGrowthBytes ?? COLLECT_MIN_GROWTH_BYTES;
    this.#base = this.#collect ? this.#heapUsed() : 0;
  }

  /** Full collections made so far. */
  get collections(): number {
    return this.#collections;
  }

  jobDone(): void {
    if (++this.#jobs % this.#everyJobs === 0) this.#look();
  }

  burstEnded(): void {
    this.#look();
  }

  #look(): void {
    if (!this.#collect) return;
    if (this.#heapUsed() - this.#base < this.#minGrowth) return;
    this.#collect();
    this.#collections++;
    this.#base = this.#heapUsed();
  }
}
