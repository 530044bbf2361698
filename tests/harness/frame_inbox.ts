// Owns a test client's received frames: they wait here until a test takes one by predicate.
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { assertSettlesWithin } from "./assert.ts";

export type Pred = (f: ServerFrame) => boolean;

/** Frames received and not yet taken, and the tests waiting for one. Clients extend it. */
export abstract class FrameInbox {
  /** Received frames nobody has taken yet, in arrival order (tests may read or clear it). */
  readonly frames: ServerFrame[] = [];
  #waiters: { pred: Pred; resolve: (f: ServerFrame) => void }[] = [];
  #expectTimeoutMs: number;
  #cidPrefix: string;
  #cid = 0;

  constructor(expectTimeoutMs: number, cidPrefix: string) {
    this.#expectTimeoutMs = expectTimeoutMs;
    this.#cidPrefix = cidPrefix;
  }

  /** Resolves when the server closed the connection (EOF or reset). */
  abstract readonly closed: Promise<void>;

  /** A fresh client id for a `send`. */
  nextCid(): string {
    return `${this.#cidPrefix}${++this.#cid}`;
  }

  /** Sends a message and waits for its ack (or error). */
  async say(room: string, body: string, cid = this.nextCid()): Promise<ServerFrame> {
    this.send({ type: "send", cid, room, body, ref: cid });
    return await this.expect((f) =>
      (f.type === "ack" || f.type === "error") && "ref" in f && f.ref === cid
    );
  }

  /** Waits for the server to close the connection (by default as long as `expect` waits). */
  async expectClosed(timeoutMs = this.#expectTimeoutMs): Promise<void> {
    await assertSettlesWithin(this.closed, timeoutMs, "server did not close the connection");
  }

  /** A frame arrived: the first waiter it matches takes it, else it waits in `frames`. */
  protected receive(f: ServerFrame): void {
    const i = this.#waiters.findIndex((w) => w.pred(f));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(f);
    else this.frames.push(f);
  }

  /** Writes one frame to the server as a JSON line. */
  abstract send(frame: Record<string, unknown>): void;

  /**
   * Resolves once the server has handled every line this client sent before, and everything it
   * queued for this client until then has arrived: sends `ping` and waits for its `pong` (the
   * server handles a connection's lines in order and never reorders its output, docs/PROTOCOL.md
   * §2). Not for a `send`, which is only started in order (its `ack` may follow the `pong`): wait
   * for the ack. A `pong` left untaken from an earlier `ping` would end it early.
   */
  async barrier(timeoutMs?: number): Promise<void> {
    this.send({ type: "ping" });
    await this.expect((f) => f.type === "pong", timeoutMs);
  }

  /**
   * Fails when a frame matching `pred` arrived, after a `barrier()`: the way to assert that
   * something did not happen, without sleeping. When it would come from another client's
   * request, wait for that request's reply (its `ack`) first; deliveries to others are queued
   * before it.
   */
  async expectNone(pred: Pred, what = "an unexpected frame arrived"): Promise<void> {
    await this.barrier();
    const got = this.frames.filter(pred);
    if (got.length > 0) throw new Error(`${what}: ${JSON.stringify(got)}`);
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
