// Owns the storm tools shared by delivery and cluster tests: a sender that keeps many sends in
// flight and records their acks, and the exactly-once-in-order check against those acks.
import { assertEquals } from "./assert.ts";
import type { WireClient } from "./wire_client.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * A sender that keeps `window` sends in flight until stopped, parsing only its acks and errors
 * (it is in the room too, and skips the storm's other messages without decoding them).
 */
export class StormSender {
  readonly acked = new Map<string, number>();
  readonly refused = new Map<string, string>();
  readonly sent: string[] = [];
  #conn: Deno.TlsConn;
  #inflight = 0;
  #wake: (() => void) | null = null;
  #stopped = false;
  #closed = false;
  #reader: Promise<void>;
  #loop: Promise<void> | null = null;
  #seq = 0;
  readonly name: string;
  /** Called after every ack is recorded (the `ackedAtLeast` barrier listens here). */
  onAck: (() => void) | null = null;

  private constructor(conn: Deno.TlsConn, name: string) {
    this.#conn = conn;
    this.name = name;
    this.#reader = this.#read();
  }

  static async login(
    port: number,
    certPem: string,
    name: string,
    register: boolean,
  ): Promise<StormSender> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [certPem],
      alpnProtocols: ["chat/1"],
    });
    const s = new StormSender(conn, name);
    await s.#write(
      JSON.stringify({ type: "hello", version: 1 }) + "\n" +
        JSON.stringify({
          type: register ? "register" : "login",
          user: name,
          password: `password-${name}`,
          ref: "login",
        }) + "\n",
    );
    await s.#loggedIn;
    return s;
  }

  #loginDone!: () => void;
  #loggedIn = new Promise<void>((r) => this.#loginDone = r);
  #joined: (() => void) | null = null;

  /** Joins (creating) a room, so a storm can go where only this sender reads it. */
  async join(room: string): Promise<void> {
    const done = new Promise<void>((r) => this.#joined = r);
    await this.#write(JSON.stringify({ type: "join", room, ref: "join" }) + "\n");
    await done;
  }

  async #write(text: string): Promise<void> {
    const bytes = enc.encode(text);
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** The `bye` code the server sent before closing, if any. */
  bye: string | null = null;

  async #read(): Promise<void> {
    const split = new LineSplitter(1 << 20);
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        for (const line of split.push(buf.subarray(0, n))) {
          // Only acks, errors and the login ok matter; msg frames start with {"type":"msg".
          if (line[9] === 0x6d && line[10] === 0x73) continue;
          const f = JSON.parse(dec.decode(line)) as ServerFrame & { ref?: string };
          if (f.type === "ok" && f.ref === "login") this.#loginDone();
          else if (f.type === "ok" && f.ref === "join") this.#joined?.();
          else if (f.type === "ack") {
            this.#answered(f.ref!, () => this.acked.set(f.cid, f.id));
            this.onAck?.();
          } else if (f.type === "error" && f.ref !== undefined && f.ref !== "login") {
            this.#answered(f.ref, () => this.refused.set(f.ref!, f.code));
          } else if (f.type === "bye") this.bye = f.code;
        }
      }
    } catch { /* reset */ }
    this.#closed = true;
    this.#wake?.();
    this.onAck?.(); // a barrier waiting on a closed sender re-checks (and gives up)
  }

  #answered(_ref: string, record: () => void): void {
    record();
    this.#inflight--;
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Sends to `room` (or DMs to `to`) with `window` in flight until stop(); at most `max`. */
  start(target: { room?: string; to?: string }, window = 16, max = 100_000): void {
    this.#loop = (async () => {
      while (!this.#stopped && !this.#closed && this.#seq < max) {
        while (this.#inflight >= window && !this.#closed) {
          await new Promise<void>((r) => this.#wake = r);
        }
        if (this.#stopped || this.#closed) break;
        const cid = `${this.name}-${++this.#seq}`;
        this.sent.push(cid);
        this.#inflight++;
        try {
          await this.#write(
            JSON.stringify({ type: "send", cid, ref: cid, body: `storm ${cid}`, ...target }) +
              "\n",
          );
        } catch {
          break;
        }
      }
    })();
  }

  /**
   * Sends `cids` again (bodies as the storm made them), as a client does after a reconnect,
   * and waits for every answer.
   */
  async resend(cids: string[], target: { room?: string; to?: string }): Promise<void> {
    let batch = "";
    for (const cid of cids) {
      this.sent.push(cid);
      this.#inflight++;
      batch += JSON.stringify({ type: "send", cid, ref: cid, body: `storm ${cid}`, ...target }) +
        "\n";
    }
    if (batch) await this.#write(batch);
    await this.finish();
  }

  /** Stops sending and waits until every send was answered (or the server closed). */
  stop(): Promise<void> {
    this.#stopped = true;
    return this.finish();
  }

  /** Waits until the sends (up to `max`) are out and every one was answered. */
  async finish(): Promise<void> {
    await this.#loop;
    while (this.#inflight > 0 && !this.#closed) {
      await new Promise<void>((r) => this.#wake = r);
    }
  }

  /** True once the server closed this sender's connection. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Waits for the server to close the connection. */
  closed(): Promise<void> {
    return this.#reader;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* gone */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#reader;
  }
}

/** Closes every client of every group (senders, readers) and waits until each has stopped reading. */
export async function closeAll(...groups: Iterable<AsyncDisposable>[]): Promise<void> {
  await Promise.all(groups.flatMap((g) => [...g].map((c) => c[Symbol.asyncDispose]())));
}

/**
 * Resolves once `senders` hold at least `n` acks between them; rejects when every sender is closed
 * first (no more acks can come). A barrier on the senders' ack callbacks, not a poll.
 */
export function ackedAtLeast(senders: StormSender[], n: number): Promise<void> {
  const count = () => senders.reduce((sum, s) => sum + s.acked.size, 0);
  return new Promise<void>((resolve, reject) => {
    const check = () => {
      if (count() >= n) {
        for (const s of senders) s.onAck = null;
        resolve();
      } else if (senders.every((s) => s.isClosed)) {
        for (const s of senders) s.onAck = null;
        reject(new Error(`every sender closed with ${count()} of ${n} acks`));
      }
    };
    for (const s of senders) s.onAck = check;
    check();
  });
}

/** The `msg` frames a client received, in arrival order (from everything it read). */
export function receivedMessages(c: WireClient): Extract<ServerFrame, { type: "msg" }>[] {
  const out: Extract<ServerFrame, { type: "msg" }>[] = [];
  for (const line of c.raw.split("\n")) {
    if (!line.startsWith('{"type":"msg"')) continue;
    out.push(JSON.parse(line));
  }
  return out;
}

/**
 * Checks that `ids` ascend strictly (no duplicate, no reordering) and hold every id of
 * `expected`; with `exact`, nothing else either.
 */
export function assertExactlyOnceInOrder(
  ids: number[],
  expected: number[],
  label: string,
  exact = true,
): void {
  const dups = ids.filter((id, i) => ids.indexOf(id) !== i);
  const have = new Set(ids);
  const missing = expected.filter((id) => !have.has(id));
  const outOfOrder = ids.filter((id, i) => i > 0 && id <= ids[i - 1]);
  assertEquals(
    { dups: dups.slice(0, 10), missing: missing.slice(0, 10), outOfOrder: outOfOrder.slice(0, 10) },
    { dups: [], missing: [], outOfOrder: [] },
    `${label}: ${ids.length} received, ${expected.length} expected`,
  );
  if (exact) assertEquals(ids.length, expected.length, label);
}
