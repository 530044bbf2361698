// Owns delivery accounting: which receiver saw which (sender, sequence) — lost, duplicated, reordered.
import { LatencyHistogram } from "./histogram.ts";

/** Totals of a run's deliveries. */
export interface DeliveryCounts {
  /** Deliveries the workload owed (every receiver in the sender's room but the sender). */
  expected: number;
  /** First arrivals of an owed (receiver, sender, seq). */
  delivered: number;
  /** Owed deliveries that never arrived. */
  lost: number;
  /** Arrivals of a (receiver, sender, seq) already seen. */
  duplicated: number;
  /** Arrivals older than a later sequence number from the same sender already seen. */
  reordered: number;
  /** Bodies nobody owed this receiver (wrong room, unknown sender or sequence). */
  unexpected: number;
}

/**
 * Counts deliveries per (receiver, sender) with one bit per sequence number, in one flat byte
 * array (receivers × senders × ⌈messages/8⌉ bytes), so a million deliveries cost no allocation.
 * `owed(r, s)` says whether receiver r should get sender s's messages at all.
 */
export class DeliveryTracker {
  readonly latency = new LatencyHistogram();
  #receivers: number;
  #senders: number;
  #messages: number;
  #stride: number;
  #bits: Uint8Array;
  #maxSeq: Int32Array;
  #owed: (r: number, s: number) => boolean;
  #expected = 0;
  delivered = 0;
  duplicated = 0;
  reordered = 0;
  unexpected = 0;
  /** performance.now() of the latest first arrival. */
  lastDeliveryAt = 0;

  constructor(
    opts: {
      receivers: number;
      senders: number;
      messages: number;
      owed: (receiver: number, sender: number) => boolean;
    },
  ) {
    this.#receivers = opts.receivers;
    this.#senders = opts.senders;
    this.#messages = opts.messages;
    this.#stride = Math.ceil(opts.messages / 8);
    const bytes = opts.receivers * opts.senders * this.#stride;
    if (bytes > 1 << 30) {
      throw new RangeError(`Cannot track deliveries: ${bytes} bytes of bookkeeping needed`);
    }
    this.#bits = new Uint8Array(bytes);
    this.#maxSeq = new Int32Array(opts.receivers * opts.senders).fill(-1);
    this.#owed = opts.owed;
  }

  /** Deliveries owed by messages sent so far. */
  get expected(): number {
    return this.#expected;
  }

  /** Adds what one sent message owes: call once per message actually sent. */
  sent(sender: number, perMessage: number): void {
    void sender;
    this.#expected += perMessage;
  }

  /** Records that receiver `r` got message `seq` of sender `s`, sent `latencyMicros` ago. */
  arrived(r: number, s: number, seq: number, latencyMicros: number, now: number): void {
    if (
      s >= this.#senders || seq >= this.#messages || r >= this.#receivers || !this.#owed(r, s)
    ) {
      this.unexpected++;
      return;
    }
    const pair = r * this.#senders + s;
    const byte = pair * this.#stride + (seq >> 3);
    const bit = 1 << (seq & 7);
    if (this.#bits[byte] & bit) {
      this.duplicated++;
      return;
    }
    this.#bits[byte] |= bit;
    this.delivered++;
    this.lastDeliveryAt = now;
    this.latency.record(latencyMicros);
    if (seq < this.#maxSeq[pair]) this.reordered++;
    else this.#maxSeq[pair] = seq;
  }

  counts(): DeliveryCounts {
    return {
      expected: this.#expected,
      delivered: this.delivered,
      lost: this.#expected - this.delivered,
      duplicated: this.duplicated,
      reordered: this.reordered,
      unexpected: this.unexpected,
    };
  }
}
