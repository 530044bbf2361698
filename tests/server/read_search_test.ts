// Read markers and search over the wire (docs/PROTOCOL.md §7.1, §7.2): markers move forward only,
// reach the user's other sessions (on every node), come back in the login `ok` with exact unread
// counts and survive a restart; search finds only what the user may read.
import { assert, assertEquals } from "../harness/assert.ts";
import { startCluster } from "../harness/cluster.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { convKey, UnreadCounts } from "../../src/protocol/unread.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

let refs = 0;
/** Sends `frame` with a fresh ref and resolves with the reply that carries it. */
async function ask(c: WireClient, frame: Record<string, unknown>): Promise<ServerFrame> {
  const ref = `r${++refs}`;
  c.send({ ...frame, ref });
  return await c.expect((f) => "ref" in f && f.ref === ref);
}

async function said(c: WireClient, room: string, body: string): Promise<number> {
  const a = await c.say(room, body, crypto.randomUUID()); // cids of a new connection start over
  assert(a.type === "ack", JSON.stringify(a));
  return a.id;
}

async function dm(c: WireClient, to: string, body: string): Promise<number> {
  const a = await ask(c, { type: "send", cid: crypto.randomUUID(), to, body });
  assert(a.type === "ack", JSON.stringify(a));
  return a.id;
}

function code(f: ServerFrame): string {
  return f.type === "error" ? f.code : f.type;
}

Deno.test("read: a marker moves forward only, is clamped to the newest message, and reaches the user's other sessions", async () => {
  await using ts = await startTestServer();
  await using a1 = await WireClient.login(ts.port, ts.certPem, "ann", { register: true });
  await using a2 = await WireClient.login(ts.port, ts.certPem, "ann");
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const m1 = await said(bob, "general", "one");
  await said(a1, "general", "mine"); // own messages are never unread
  const m3 = await said(bob, "general", "three");

  const ok = await ask(a1, { type: "read", room: "general", id: m1 }) as F<"ok">;
  assertEquals([ok.op, ok.room, ok.id, ok.unread, ok.through], ["read", "general", m1, 1, m3]);
  const ev = await a2.expect((f) => f.type === "read") as F<"read">;
  assertEquals(ev, { type: "read", room: "general", id: m1, unread: 1, through: m3 });
  await a1.expectNone((f) => f.type === "read", "the session that moved the marker is not told");

  // Lower: nothing moves, nobody is told. Past the newest: taken as the newest.
  const lower = await ask(a1, { type: "read", room: "general", id: 1 }) as F<"ok">;
  assertEquals([lower.id, lower.unread], [m1, 1]);
  const high = await ask(a2, { type: "read", room: "general", id: m3 + 1000 }) as F<"ok">;
  assertEquals([high.id, high.unread, high.through], [m3, 0, m3]);
  const ev2 = await a1.expect((f) => f.type === "read") as F<"read">;
  assertEquals([ev2.id, ev2.unread], [m3, 0]);
  await a2.expectNone((f) => f.type === "read" && f.id === 1, "a lower id is not announced");
  await bob.expectNone((f) => f.type === "read", "another user's marker is not sent");

  // DMs: one marker per conversation, named by the peer.
  const d1 = await dm(bob, "ann", "psst");
  const d = await ask(a1, { type: "read", with: "BOB", id: d1 }) as F<"ok">;
  assertEquals([d.with, d.id, d.unread], ["bob", d1, 0]);
  assertEquals(
    (await a2.expect((f) => f.type === "read" && f.with !== undefined) as F<"read">).id,
    d1,
  );

  // Refusals: not a member, no such room or user, bad frames.
  await ask(bob, { type: "join", room: "side" });
  assertEquals(code(await ask(a1, { type: "read", room: "side", id: 1 })), "not_member");
  assertEquals(code(await ask(a1, { type: "read", room: "nope", id: 1 })), "no_such_room");
  assertEquals(code(await ask(a1, { type: "read", with: "nobody", id: 1 })), "no_such_user");
  assertEquals(code(await ask(a1, { type: "read", id: 1 })), "bad_frame");
  assertEquals(code(await ask(a1, { type: "read", room: "general", id: -1 })), "bad_frame");
  assertEquals(code(await ask(a1, { type: "read", room: "general" })), "bad_frame");
});

Deno.test("read: the login ok carries markers with exact unread counts, and they survive a restart", async () => {
  await using tmp = await tempDir("chat-read-restart-");
  const first = await startTestServer({ dataDir: tmp.path });
  const port = first.port;
  const ids: Record<string, number> = {};
  {
    await using cat = await WireClient.login(port, first.certPem, "cat", { register: true });
    await using dan = await WireClient.login(port, first.certPem, "dan", { register: true });
    await using eve = await WireClient.login(port, first.certPem, "eve", { register: true });
    await ask(cat, { type: "join", room: "ops" });
    await ask(dan, { type: "join", room: "ops" });
    ids.g1 = await said(dan, "general", "g1");
    ids.g2 = await said(dan, "general", "g2");
    ids.o1 = await said(dan, "ops", "o1");
    ids.d1 = await dm(dan, "cat", "d1");
    ids.d2 = await dm(dan, "cat", "d2");
    ids.e1 = await dm(eve, "cat", "e1");
    await ask(cat, { type: "read", room: "general", id: ids.g1 });
    await ask(cat, { type: "read", with: "dan", id: ids.d1 });
    await ask(cat, { type: "read", with: "eve", id: ids.e1 });
    const ok = (await WireClient.login(port, first.certPem, "cat")).loginOk as F<"ok">;
    assertEquals(ok.markers, {
      rooms: { general: { read: ids.g1, count: 1 }, ops: { read: 0, count: 1 } },
      dm: { dan: { read: ids.d1, count: 1 } },
    });
  }
  await first.stop();
  await using second = await startTestServer({ dataDir: tmp.path, config: { port } });
  await using cat = await WireClient.login(port, second.certPem, "cat");
  const ok = cat.loginOk as F<"ok">;
  assertEquals(ok.markers, {
    rooms: { general: { read: ids.g1, count: 1 }, ops: { read: 0, count: 1 } },
    dm: { dan: { read: ids.d1, count: 1 } },
  });

  // A client keeping counts by the rule of §7.1 agrees with the server after live traffic.
  const counts = new UnreadCounts();
  counts.reset("cat", ok.markers, ok.latest);
  await using dan = await WireClient.login(port, second.certPem, "dan");
  const g3 = await said(dan, "general", "g3");
  const live = await cat.expect((f) => f.type === "msg" && f.id === g3) as F<"msg">;
  counts.message(live);
  assertEquals(counts.count(convKey({ room: "general" })), 2);
  const r = await ask(cat, { type: "read", room: "general", id: g3 }) as F<"ok">;
  counts.readUpTo(convKey({ room: "general" }), g3);
  counts.marker(r as F<"ok"> & { id: number; unread: number; through: number });
  assertEquals(counts.count(convKey({ room: "general" })), 0);
  assertEquals(counts.count(convKey({ with: "Dan" })), 1);
});

Deno.test("search: own rooms and own DMs only, never a private room of others or another user's DM", async () => {
  await using ts = await startTestServer({ limits: { sendQueueBytes: 64 * 1024 } });
  await using fay = await WireClient.login(ts.port, ts.certPem, "fay", { register: true });
  await using gus = await WireClient.login(ts.port, ts.certPem, "gus", { register: true });
  await using hal = await WireClient.login(ts.port, ts.certPem, "hal", { register: true });
  await ask(gus, { type: "join", room: "secret", private: true });
  await ask(hal, { type: "join", room: "public" }); // fay is not a member: not searched either
  const inGeneral = await said(gus, "general", "the Zebra report is late");
  await said(gus, "secret", "zebra in the secret room");
  await said(hal, "public", "zebra where fay never joined");
  const toFay = await dm(gus, "fay", "zebra for fay");
  await dm(gus, "hal", "zebra for hal only");
  const fromFay = await dm(fay, "hal", "zebras, fay to hal");

  const all = await ask(fay, { type: "search", text: "zebra*" }) as F<"search">;
  assertEquals(all.messages.map((m) => m.id), [fromFay, toFay, inGeneral]);
  assertEquals(all.more, false);
  assertEquals(all.messages[0].to, "hal");
  assertEquals(all.messages[2].room, "general");
  // Words, not syntax; case and accents ignored.
  const exact = await ask(fay, { type: "search", text: "ZÉBRA report" }) as F<"search">;
  assertEquals(exact.messages.map((m) => m.id), [inGeneral]);
  assertEquals((await ask(fay, { type: "search", text: '" OR -' }) as F<"search">).messages, []);
  // One room; a limit and `more`.
  const one = await ask(fay, { type: "search", text: "zebra*", room: "general" }) as F<"search">;
  assertEquals(one.messages.map((m) => m.id), [inGeneral]);
  const first = await ask(fay, { type: "search", text: "zebra*", limit: 2 }) as F<"search">;
  assertEquals([first.messages.map((m) => m.id), first.more], [[fromFay, toFay], true]);
  // Rooms fay may not read give history's refusals.
  assertEquals(
    code(await ask(fay, { type: "search", text: "zebra", room: "secret" })),
    "no_such_room",
  );
  assertEquals(
    code(await ask(fay, { type: "search", text: "zebra", room: "public" })),
    "not_member",
  );
  assertEquals(code(await ask(fay, { type: "search", text: "zebra", limit: 101 })), "bad_frame");
  // The owner of the private room finds it there.
  const gusSees = await ask(gus, { type: "search", text: "secret" }) as F<"search">;
  assertEquals(gusSees.messages.length, 1);

  // Every reply fits its bound: 20 bodies of 3,000 bytes are more than a quarter of 64 KiB.
  for (let i = 0; i < 20; i++) await said(gus, "general", `bulky ${"x".repeat(3000)} ${i}`);
  const big = await ask(fay, { type: "search", text: "bulky", limit: 20 }) as F<"search">;
  assert(big.messages.length > 0 && big.messages.length < 20, `${big.messages.length} messages`);
  assertEquals(big.more, true);
  await fay.barrier();
});

Deno.test({
  name: "read: a marker moved on one node reaches the user's session on another node",
  ignore: !NATS_AVAILABLE,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats });
    const [n0, n1] = c.nodes;
    await using on0 = await WireClient.login(n0.port, c.certPem, "ivy", { register: true });
    await using on1 = await WireClient.login(n1.port, c.certPem, "ivy");
    await using jon = await WireClient.login(n1.port, c.certPem, "jon", { register: true });
    const id = await said(jon, "general", "across nodes");
    await on0.expect((f) => f.type === "msg" && f.id === id, 10_000);
    const ok = await ask(on0, { type: "read", room: "general", id }) as F<"ok">;
    assertEquals([ok.id, ok.unread], [id, 0]);
    const ev = await on1.expect((f) => f.type === "read", 10_000) as F<"read">;
    assertEquals(ev, { type: "read", room: "general", id, unread: 0, through: id });
  },
});
