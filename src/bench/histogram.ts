// Owns latency recording for benchmarks: a log-linear (HDR-style) histogram of microseconds.

/** Sub-buckets per power of two: 2^7 = 128, so a recorded value is off by under 1%. */
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS;
/** Values up to 2^36 µs (about 19 hours) are kept exactly in their bucket; larger ones clamp. */
const MAX_EXP = 36;

/**
 * Counts values (microseconds, integers ≥ 0) in buckets whose width grows with the value, as
 * HdrHistogram does with two significant digits: `record` is O(1) with no allocation, memory is
 * fixed (about 30 KB), and percentiles are accurate to under 1% of the value. The exact maximum
 * and minimum are kept beside the buckets.
 */
export class LatencyHistogram {
  #counts = new Float64Array((MAX_EXP - SUB_BITS + 2) * SUB);
  #count = 0;
  #max = 0;
  #min = Number.POSITIVE_INFINITY;
  #sum = 0;

  /** Number of recorded values. */
  get count(): number {
    return this.#count;
  }

  /** Largest recorded value (0 when empty). */
  get max(): number {
    return this.#max;
  }

  /** Smallest recorded value (0 when empty). */
  get min(): number {
    return this.#count ? this.#min : 0;
  }

  /** Arithmetic mean (0 when empty). */
  get mean(): number {
    return this.#count ? this.#sum / this.#count : 0;
  }

  /** Records one value; negatives count as 0 (clock steps), fractions are truncated. */
  record(value: number): void {
    const v = value > 0 ? Math.floor(value) : 0;
    this.#counts[indexOf(v)]++;
    this.#count++;
    this.#sum += v;
    if (v > this.#max) this.#max = v;
    if (v < this.#min) this.#min = v;
  }

  /** Adds every value of `other`. */
  merge(other: LatencyHistogram): void {
    const o = other.#counts;
    for (let i = 0; i < o.length; i++) if (o[i]) this.#counts[i] += o[i];
    this.#count += other.#count;
    this.#sum += other.#sum;
    if (other.#max > this.#max) this.#max = other.#max;
    if (other.#count && other.#min < this.#min) this.#min = other.#min;
  }

  /**
   * The value below which `p` percent of the recorded values fall (the highest value of the
   * bucket that holds that rank, never above the exact maximum). 0 when empty.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.#count));
    let seen = 0;
    const c = this.#counts;
    for (let i = 0; i < c.length; i++) {
      seen += c[i];
      if (seen >= rank) return Math.min(highestIn(i), this.#max);
    }
    return this.#max;
  }
}

/** Bucket index of a value: linear below 2·SUB, then SUB buckets per power of two. */
function indexOf(v: number): number {
  if (v < SUB) return v;
  if (v < 0x80000000) { // the common case, in 32-bit integer arithmetic
    const shift = 31 - Math.clz32(v) - SUB_BITS;
    return ((shift + 1) << SUB_BITS) + (v >>> shift) - SUB;
  }
  // Exponent e such that 2^e ≤ v < 2^(e+1), e ≥ SUB_BITS.
  let e = Math.floor(Math.log2(v));
  if (e > MAX_EXP) {
    e = MAX_EXP;
    v = 2 ** (MAX_EXP + 1) - 1;
  }
  const shift = e - SUB_BITS;
  const sub = Math.floor(v / 2 ** shift) - SUB; // 0 … SUB-1
  return (shift + 1) * SUB + sub;
}

/** Highest value that lands in bucket `i`. */
function highestIn(i: number): number {
  if (i < SUB) return i;
  const shift = Math.floor(i / SUB) - 1;
  const sub = i % SUB;
  return (SUB + sub + 1) * 2 ** shift - 1;
}
