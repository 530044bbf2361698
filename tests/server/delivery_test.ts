// The delivery model under live traffic (docs/PROTOCOL.md §5–§6): resume racing a storm of
// pipelining senders, long backlogs of rooms and direct messages, and SIGTERM mid-storm. Every
// expectation is the spec's: each message once, in id order, nothing acknowledged lost.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { ChildServer, openDb } from "../faults/helpers.ts";
import type { Store } from "../../src/store/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * A sender that keeps `window` sends in flight until stopped, parsing only its acks and errors
 * (it is in the room too, and skips the storm's other messages without decoding them).
 */
class StormSender {
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

  async #write(text: string): Promise<void> {
    const bytes = enc.encode(text);
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

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
          else if (f.type === "ack") this.#answered(f.ref!, () => this.acked.set(f.cid, f.id));
          else if (f.type === "error" && f.ref !== undefined && f.ref !== "login") {
            this.#answered(f.ref, () => this.refused.set(f.ref!, f.code));
          }
        }
      }
    } catch { /* reset */ }
    this.#closed = true;
    this.#wake?.();
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
}

/** The `msg` frames a client received, in arrival order (from everything it read). */
function receivedMessages(c: WireClient): Extract<ServerFrame, { type: "msg" }>[] {
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
function assertExactlyOnceInOrder(
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

/** Resumes `reps` times during a storm of 8 pipelining senders (backlogs below and above a page). */
async function resumeDuringStorm(reps: number, wrapStore?: (s: Store) => Store): Promise<void> {
  const PAGE = 100;
  await using ts = await startTestServer({
    // The senders read the whole storm too (they are in the room); a big queue keeps a sender
    // that falls behind on a busy machine from being cut, which would leave its sends unacked.
    limits: {
      resumeMaxMessages: PAGE,
      messagesPerSecond: 100_000,
      messageBurst: 100_000,
      sendQueueBytes: 64 * 1024 * 1024,
    },
    wrapStore,
  });
  const senders = await Promise.all(
    Array.from({ length: 8 }, (_, i) => StormSender.login(ts.port, ts.certPem, `storm${i}`, true)),
  );
  (await WireClient.login(ts.port, ts.certPem, "reader", { register: true }))
    .conn.close();
  const allAcked = () => senders.flatMap((s) => [...s.acked.values()]);
  const waitAcked = async (n: number) => {
    while (allAcked().length < n) await new Promise((r) => setTimeout(r, 5));
  };
  try {
    for (const s of senders) s.start({ room: "general" });
    for (let rep = 0; rep < reps; rep++) {
      // Resume from the newest acked id, after letting a backlog of about half a page (even
      // reps) or two and a half pages (odd reps) build up behind it.
      await waitAcked(1);
      const from = Math.max(...allAcked());
      const backlog = rep % 2 === 0 ? PAGE / 2 : PAGE * 2.5;
      await waitAcked(allAcked().length + backlog);
      const reader = await WireClient.login(ts.port, ts.certPem, "reader", {
        resume: { rooms: { general: from } },
      });
      try {
        const resumed = await reader.expect((f) => f.type === "resumed", 20_000);
        assertEquals(resumed.type === "resumed" && resumed.more, false);
        // Some live traffic after the hand-over, then the storm pauses for the check.
        const after = allAcked().length + 50;
        await waitAcked(after);
        if (rep === 39) { for (const s of senders) await s.stop(); }
        const expected = allAcked().filter((id) => id > from).sort((a, b) => a - b);
        const refusedCodes = senders.flatMap((s) => [...s.refused.values()]);
        assertEquals(refusedCodes.slice(0, 5), [], "a send was refused");
        assertEquals(senders.filter((s) => s.isClosed).map((s) => s.name), [], "a sender was cut");
        const newest = expected[expected.length - 1];
        await reader.expect((f) => f.type === "msg" && f.id >= newest, 20_000);
        const ids = receivedMessages(reader).map((m) => m.id).filter((id) => id <= newest);
        // While the storm goes on, a message may be delivered before its sender has its ack:
        // then only the acked ones are known to exist. The last rep stops the storm first.
        assertExactlyOnceInOrder(
          ids,
          expected,
          `rep ${rep} (backlog ${backlog})`,
          rep === reps - 1,
        );
      } finally {
        reader.conn.close();
        await reader.closed;
      }
    }
  } finally {
    for (const s of senders) {
      await s.stop();
      s.close();
      await s.closed();
    }
  }
}

Deno.test("delivery: resume during a storm of 8 pipelining senders, backlogs below and above a page, 40 times: every message once, in order", () =>
  resumeDuringStorm(40));

Deno.test("delivery: the same, 10 times, through a store that answers 0-3 ms late and out of order", async () => {
  const { SlowStore } = await import("../store/slow_store.ts");
  await resumeDuringStorm(10, (s) => new SlowStore(s));
});

Deno.test("delivery: a direct-message backlog of 1,500 arrives whole, once, in order, while more DMs keep coming", async () => {
  await using ts = await startTestServer({
    limits: { messagesPerSecond: 100_000, messageBurst: 100_000 },
  });
  const alice = await StormSender.login(ts.port, ts.certPem, "alice", true);
  const bob0 = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  bob0.conn.close();
  await bob0.closed;
  try {
    alice.start({ to: "bob" }, 32, 1500);
    await alice.finish();
    assertEquals([alice.acked.size, [...alice.refused.values()].slice(0, 3)], [1500, []]);
    alice.start({ to: "bob" }, 8, 1800);
    const bob = await WireClient.login(ts.port, ts.certPem, "bob", { resume: { dm: 0 } });
    try {
      const resumed = await bob.expect((f) => f.type === "resumed", 20_000);
      assert(resumed.type === "resumed" && resumed.dm === true && resumed.more === false);
      assert(resumed.count >= 1500, `resumed ${resumed.count}`);
      await alice.finish();
      const expected = [...alice.acked.values()].sort((a, b) => a - b);
      assertEquals(expected.length, 1800);
      await bob.expect((f) => f.type === "msg" && f.id === expected[expected.length - 1], 20_000);
      const ids = receivedMessages(bob).map((m) => m.id);
      assertExactlyOnceInOrder(ids, expected, "bob's DMs");
    } finally {
      bob.conn.close();
      await bob.closed;
    }
  } finally {
    alice.close();
    await alice.closed();
  }
});

Deno.test("delivery: SIGTERM mid-storm answers every send the server read; acked ones are stored, refused ones are not", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-delivery-term-" });
  const env = {
    CHAT_LIMIT_MESSAGES_PER_SECOND: "100000",
    CHAT_LIMIT_MESSAGE_BURST: "100000",
    CHAT_LIMIT_REGISTRATIONS_PER_ADDRESS: "100",
  };
  try {
    const senders: StormSender[] = [];
    {
      await using srv = await ChildServer.start({ dataDir, env });
      for (let i = 0; i < 8; i++) {
        senders.push(await StormSender.login(srv.port, srv.certPem, `term${i}`, true));
      }
      for (const s of senders) s.start({ room: "general" }, 32);
      while (senders.reduce((n, s) => n + s.acked.size, 0) < 2000) {
        await new Promise((r) => setTimeout(r, 5));
      }
      srv.kill("SIGTERM");
      await Promise.all(senders.map((s) => s.closed()));
      const status = await srv.wait();
      assertEquals([status.code, status.signal], [0, null]);
    }
    const db = openDb(`${dataDir}/chat.db`);
    try {
      const stored = new Map<string, number>();
      for (
        const r of db.prepare("SELECT cid, id FROM messages").all() as { cid: string; id: number }[]
      ) {
        stored.set(String(r.cid), Number(r.id));
      }
      let unanswered = 0;
      let refused = 0;
      for (const s of senders) {
        for (const [cid, id] of s.acked) assertEquals(stored.get(cid), id, `acked ${cid}`);
        for (const [cid, code] of s.refused) {
          refused++;
          assertEquals(code, "shutting_down", cid);
          assert(!stored.has(cid), `refused ${cid} was stored`);
        }
        // What got no answer was never read by the server: it must not be stored either (the
        // client resends it after reconnecting).
        for (const cid of s.sent) {
          if (s.acked.has(cid) || s.refused.has(cid)) continue;
          unanswered++;
          assert(!stored.has(cid), `${cid} was stored but never acknowledged`);
        }
      }
      // Not asserted: how many were refused or unread depends on timing; logged for the record.
      console.log(`acked ${stored.size}, refused ${refused}, never read ${unanswered}`);
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("delivery: through a store that answers 0-3 ms late and out of order, one session's acks and every stream's deliveries keep their order", async () => {
  const { SlowStore } = await import("../store/slow_store.ts");
  let seed = 0;
  await using ts = await startTestServer({
    limits: { messagesPerSecond: 100_000, messageBurst: 100_000 },
    wrapStore: (s) => {
      const slow = new SlowStore(s);
      seed = slow.seed;
      return slow;
    },
  });
  const reader = await WireClient.login(ts.port, ts.certPem, "watcher", { register: true });
  const peer = await WireClient.login(ts.port, ts.certPem, "peer", { register: true });
  const a = await WireClient.login(ts.port, ts.certPem, "piper", { register: true });
  try {
    // 60 pipelined sends, room messages and DMs mixed, written at once.
    const cids: string[] = [];
    let batch = "";
    for (let i = 0; i < 60; i++) {
      const cid = `p${i}`;
      cids.push(cid);
      const target = i % 3 === 2 ? { to: "peer" } : { room: "general" };
      batch += JSON.stringify({ type: "send", cid, ref: cid, body: `m${i}`, ...target }) + "\n";
    }
    await a.writeAll(batch);
    const lastAck = await a.expect((f) => f.type === "ack" && f.cid === "p59", 20_000);
    assert(lastAck.type === "ack");
    const acks = a.raw.split("\n").filter((l) => l.startsWith('{"type":"ack"')).map((l) =>
      JSON.parse(l) as { cid: string; id: number; room?: string }
    );
    assertEquals(acks.map((x) => x.cid), cids, `acks in request order (seed ${seed})`);
    // Stored in the order sent: ids increase with the request order, per stream and overall.
    const ids = acks.map((x) => x.id);
    assertEquals([...ids].sort((x, y) => x - y), ids, `ids in request order (seed ${seed})`);
    const roomIds = acks.filter((x) => x.room).map((x) => x.id);
    const dmIds = acks.filter((x) => !x.room).map((x) => x.id);
    await reader.expect((f) => f.type === "msg" && f.id === roomIds[roomIds.length - 1], 20_000);
    await peer.expect((f) => f.type === "msg" && f.id === dmIds[dmIds.length - 1], 20_000);
    assertExactlyOnceInOrder(
      receivedMessages(reader).filter((m) => m.room === "general").map((m) => m.id),
      roomIds,
      `the room, in order (seed ${seed})`,
    );
    assertExactlyOnceInOrder(
      receivedMessages(peer).filter((m) => m.to !== undefined).map((m) => m.id),
      dmIds,
      `the DMs, in order (seed ${seed})`,
    );
  } finally {
    for (const c of [reader, peer, a]) {
      c.conn.close();
      await c.closed;
    }
  }
});
