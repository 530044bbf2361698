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
 * 1. `jobDone()`: every `everyJobs` finished hash jobs, collects if the heap in use has grown by
 *    `minGrowthBytes` or more over the live heap after the last collection (at construction, before the first).
 *    After the first, V8's own collections keep it below that, so there are few per storm.
 * 2. `burstEnded()` (the hasher ended its idle workers), after a burst of `everyJobs` jobs or
 *    more: collects if the heap V8 holds (heapTotal: what RSS pays) is `minGrowthBytes` or more over
 *    that live heap, so a storm's garbage and the pages that held it go back now, not when V8's
 *    memory reducer runs seconds later. A few logins now and then never cause a collection.
 * 3. A collection pauses the event loop (about 40 ms for 1,000 sessions); none happens in steady
 *    chat traffic, which finishes no hash jobs.
 * 4. With `collect` null (no way to collect), nothing happens.
 */
export class HeapCollector {
  #collect: (() => void) | null;
  #heap: () => { heapUsed: number; heapTotal: number };
  #everyJobs: number;
  #minGrowth: number;
  #base: number;
  #jobs = 0;
  #burstJobs = 0;
  #collections = 0;

  constructor(
    opts: {
      collect: (() => void) | null;
      /** The heap's bytes in use and held. Default `Deno.memoryUsage`. */
      heap?: () => { heapUsed: number; heapTotal: number };
      /** Default `COLLECT_EVERY_JOBS`. */
      everyJobs?: number;
      /** Default `COLLECT_MIN_GROWTH_BYTES`. */
      minGrowthBytes?: number;
    },
  ) {
    this.#collect = opts.collect;
    this.#heap = opts.heap ?? (() => Deno.memoryUsage());
    this.#everyJobs = opts.everyJobs ?? COLLECT_EVERY_JOBS;
    this.#minGrowth = opts.minGrowthBytes ?? COLLECT_MIN_GROWTH_BYTES;
    this.#base = this.#collect ? this.#heap().heapUsed : 0;
  }

  /** Full collections made so far. */
  get collections(): number {
    return this.#collections;
  }

  jobDone(): void {
    this.#burstJobs++;
    if (++this.#jobs % this.#everyJobs === 0) this.#look("heapUsed");
  }

  burstEnded(): void {
    const jobs = this.#burstJobs;
    this.#burstJobs = 0;
    if (jobs >= this.#everyJobs) this.#look("heapTotal");
  }

  #look(measure: "heapUsed" | "heapTotal"): void {
    if (!this.#collect) return;
    if (this.#heap()[measure] - this.#base < this.#minGrowth) return;
    this.#collect();
    this.#collections++;
    this.#base = this.#heap().heapUsed;
  }
}
