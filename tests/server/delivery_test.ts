// The delivery model under live traffic (docs/PROTOCOL.md §5–§6): resume racing a storm of
// pipelining senders, long backlogs of rooms and direct messages, and SIGTERM mid-storm. Every
// expectation is the spec's: each message once, in id order, nothing acknowledged lost.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import {
  ackedAtLeast,
  assertExactlyOnceInOrder,
  receivedMessages,
  StormSender,
} from "../harness/storm.ts";
import { ChildServer, openDb } from "../faults/helpers.ts";
import type { Store } from "../../src/store/store.ts";

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
  const waitAcked = (n: number) => ackedAtLeast(senders, n);
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
        if (rep === reps - 1) { for (const s of senders) await s.stop(); }
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
    CHAT_LIMIT_SHUTDOWN_GRACE_MS: "20000",
  };
  try {
    const senders: StormSender[] = [];
    {
      await using srv = await ChildServer.start({ dataDir, env });
      for (let i = 0; i < 8; i++) {
        senders.push(await StormSender.login(srv.port, srv.certPem, `term${i}`, true));
      }
      // Each sender storms a room of its own: the senders then read only their acks, so every
      // one of them takes its answers and its bye in time on a busy machine.
      for (const [i, s] of senders.entries()) await s.join(`term-room-${i}`);
      for (const [i, s] of senders.entries()) s.start({ room: `term-room-${i}` }, 32);
      await ackedAtLeast(senders, 2000);
      srv.kill("SIGTERM");
      await Promise.all(senders.map((s) => s.closed()));
      assertEquals(
        senders.map((s) => s.bye),
        senders.map(() => "shutdown"),
        "every sender got bye",
      );
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
