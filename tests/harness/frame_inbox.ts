// Owns a test client's received frames: they wait here until a test takes one by predicate.
import type { ServerFrame } from "../../src/protocol/frames.ts";

export type Pred = (f: ServerFrame) => boolean;

/** Frames received and not yet taken, and the tests waiting for one. Clients extend it. */
export class FrameInbox {
  /** Received frames nobody has taken yet, in arrival order (tests may read or clear it). */
  readonly frames: ServerFrame[] = [];
  #waiters: { pred: Pred; resolve: (f: ServerFrame) => void }[] = [];
  #expectTimeoutMs: number;

  constructor(expectTimeoutMs: number) {
    this.#expectTimeoutMs = expectTimeoutMs;
  }

  /** A frame arrived: the first waiter it matches takes it, else it waits in `frames`. */
  protected receive(f: ServerFrame): void {
    const i = this.#waiters.findIndex((w) => w.pred(f));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(f);
    else this.frames.push(f);
  }

  /** The first frame (already received or future) matching `pred`; consumes it. */
  expect(pred: Pred, timeoutMs = this.#expectTimeoutMs): Promise<ServerFrame> {
    const i = this.frames.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out waiting for a frame; got: ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      const done = (f: ServerFrame) => {
        clearTimeout(timer);
        resolve(f);
      };
      this.#waiters.push({ pred, resolve: done });
    });
  }
}
