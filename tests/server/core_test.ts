// End-to-end tests of the chat/1 server over real TLS on loopback with a real SQLite file.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { FakeClock } from "../harness/fake_clock.ts";
import { waitFor } from "../faults/helpers.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = <T extends ServerFrame["type"]>(t: T) => (f: ServerFrame): f is F<T> => f.type === t;

Deno.test("register, then login on a new connection; the name is unique without regard to case", async () => {
  await using ts = await startTestServer();
  (await WireClient.login(ts.port, ts.certPem, "Alice", { register: true })).close();
  await using b = await WireClient.connect(ts.port, ts.certPem);
  b.send({ type: "hello", version: 1 });
  b.send({ type: "login", user: "alice", password: "password-Alice", ref: "in" });
  const ok = await b.expect((f) => f.type === "ok" || f.type === "error") as F<"ok">;
  assertEquals([ok.type, ok.ref, ok.user], ["ok", "in", "Alice"], "login in another case");
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect(isType("hello"));
  c.send({ type: "register", user: "ALICE", password: "whatever123", ref: "r" });
  const err = await c.expect(isType("error")) as F<"error">;
  assertEquals([err.code, err.ref], ["user_exists", "r"]);
});

Deno.test("a wrong password and an unknown user get the same auth_failed", async () => {
  await using ts = await startTestServer();
  (await WireClient.login(ts.port, ts.certPem, "bob", { register: true })).close();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  c.send({ type: "login", user: "bob", password: "wrong-password" });
  const e1 = await c.expect(isType("error")) as F<"error">;
  c.send({ type: "login", user: "nobody", password: "wrong-password" });
  const e2 = await c.expect(isType("error")) as F<"error">;
  assertEquals(e1, e2);
  assertEquals(e1.code, "auth_failed");
});

Deno.test("failed logins are throttled per account, then the right password works once a token is back", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { loginFailuresPerAccount: 3, loginFailureRefillMsPerAccount: 400 },
  });
  (await WireClient.login(ts.port, ts.certPem, "carol", { register: true })).close();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  const codes: string[] = [];
  for (let i = 0; i < 4; i++) {
    c.send({ type: "login", user: "carol", password: "bad-password" });
    codes.push(((await c.expect(isType("error"))) as F<"error">).code);
  }
  assertEquals(codes, ["auth_failed", "auth_failed", "auth_failed", "throttled"]);
  c.send({ type: "login", user: "carol", password: "password-carol" });
  const t = await c.expect(isType("error")) as F<"error">;
  // Three failures emptied the bucket; the clock has not moved, so one token is 400 ms away.
  assertEquals([t.code, t.retryAfterMs], ["throttled", 400]);
  await clock.advance(399);
  c.send({ type: "login", user: "carol", password: "password-carol" });
  const early = await c.expect(isType("error")) as F<"error">;
  assertEquals([early.code, early.retryAfterMs], ["throttled", 1]);
  await clock.advance(1);
  c.send({ type: "login", user: "carol", password: "password-carol" });
  assertEquals((await c.expect((f) => f.type === "ok" || f.type === "error")).type, "ok");
});

Deno.test("a room message reaches the others, not the sender, and is acked after commit", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "ann", { register: true });
  await using b = await WireClient.login(ts.port, ts.certPem, "ben", { register: true });
  await using c = await WireClient.login(ts.port, ts.certPem, "cid", { register: true });
  const ack = await a.say("general", "hello all") as F<"ack">;
  assertEquals(ack.type, "ack");
  assert(ack.id > 0 && ack.ts > 0);
  for (const other of [b, c]) {
    const m = await other.expect(isType("msg")) as F<"msg">;
    assertEquals([m.id, m.room, m.from, m.body], [ack.id, "general", "ann", "hello all"]);
  }
  await a.expectNone(isType("msg"), "the sender got its own message back");
});

Deno.test("presence: join and leave are announced, who lists online users", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "amy", { register: true });
  const b = await WireClient.login(ts.port, ts.certPem, "bea", { register: true });
  const j = await a.expect((f) => f.type === "presence" && f.event === "join") as F<"presence">;
  assertEquals([j.room, j.user], ["general", "bea"]);
  a.send({ type: "who", room: "general", ref: "w" });
  const who = await a.expect(isType("who")) as F<"who">;
  assertEquals(who.users, ["amy", "bea"]);
  await b[Symbol.asyncDispose]();
  const l = await a.expect((f) => f.type === "presence" && f.event === "leave") as F<"presence">;
  assertEquals(l.user, "bea");
});

Deno.test("rooms: join creates, messages stay in the room, part leaves, general cannot be parted", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "al", { register: true });
  await using b = await WireClient.login(ts.port, ts.certPem, "bo", { register: true });
  a.send({ type: "join", room: "Ops", ref: "j" });
  const ok = await a.expect(isType("ok")) as F<"ok">;
  assertEquals([ok.op, ok.room], ["join", "ops"]);
  await a.say("ops", "ops only");
  await b.expectNone(isType("msg"), "a non-member received a room message");
  b.send({ type: "send", cid: "x", room: "ops", body: "hi", ref: "s" });
  assertEquals((await b.expect(isType("error")) as F<"error">).code, "not_member");
  a.send({ type: "rooms", ref: "r" });
  const rooms = await a.expect(isType("rooms")) as F<"rooms">;
  assertEquals(rooms.rooms.map((r) => [r.name, r.joined]), [["general", true], ["ops", true]]);
  a.send({ type: "part", room: "general", ref: "p1" });
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "cannot_part");
  a.send({ type: "part", room: "ops", ref: "p2" });
  assertEquals((await a.expect(isType("ok")) as F<"ok">).op, "part");
  a.send({ type: "send", cid: "y", room: "ops", body: "gone", ref: "s2" });
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "not_member");
});

Deno.test("direct messages reach only the recipient and appear in history with", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "dana", { register: true });
  await using b = await WireClient.login(ts.port, ts.certPem, "dave", { register: true });
  await using c = await WireClient.login(ts.port, ts.certPem, "dora", { register: true });
  a.send({ type: "send", cid: "d1", to: "Dave", body: "psst", ref: "d1" });
  const ack = await a.expect(isType("ack")) as F<"ack">;
  assertEquals(ack.to, "dave");
  const m = await b.expect(isType("msg")) as F<"msg">;
  assertEquals([m.from, m.to, m.body, m.room], ["dana", "dave", "psst", undefined]);
  await c.expectNone(isType("msg"), "a DM reached a third user");
  b.send({ type: "history", with: "dana", ref: "h" });
  const h = await b.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((x) => [x.from, x.to, x.body]), [["dana", "dave", "psst"]]);
  a.send({ type: "send", cid: "d2", to: "nobody", body: "x", ref: "d2" });
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "no_such_user");
});

Deno.test("history pages: last N, then before an id, oldest first", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "hal", { register: true });
  const ids: number[] = [];
  for (let i = 1; i <= 7; i++) ids.push((await a.say("general", `m${i}`) as F<"ack">).id);
  a.send({ type: "history", room: "general", limit: 3, ref: "h1" });
  const p1 = await a.expect(isType("history")) as F<"history">;
  assertEquals(p1.messages.map((m) => m.body), ["m5", "m6", "m7"]);
  assertEquals(p1.more, true);
  a.send({ type: "history", room: "general", limit: 10, before: ids[4], ref: "h2" });
  const p2 = await a.expect(isType("history")) as F<"history">;
  assertEquals(p2.messages.map((m) => m.body), ["m1", "m2", "m3", "m4"]);
  assertEquals(p2.more, false);
  a.send({ type: "history", room: "general", limit: 100000, ref: "h3" });
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "bad_frame");
});

Deno.test("a resent cid is stored once and acked with the original id", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "ida", { register: true });
  await using b = await WireClient.login(ts.port, ts.certPem, "ivo", { register: true });
  const first = await a.say("general", "once", "same-cid") as F<"ack">;
  const again = await a.say("general", "once", "same-cid") as F<"ack">;
  assertEquals([again.id, again.ts, again.duplicate], [first.id, first.ts, true]);
  await b.expect(isType("msg"));
  await b.expectNone(isType("msg"), "the duplicate was delivered again");
  a.send({ type: "history", room: "general", ref: "h" });
  const h = await a.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.length, 1);
});

Deno.test("resume after reconnect: exactly the missed messages, no gap, no duplicate", async () => {
  await using ts = await startTestServer();
  await using sender = await WireClient.login(ts.port, ts.certPem, "sam", { register: true });
  const r = await WireClient.login(ts.port, ts.certPem, "rex", { register: true });
  await sender.say("general", "before-1");
  const seen = await r.expect(isType("msg")) as F<"msg">;
  await r[Symbol.asyncDispose]();
  for (let i = 1; i <= 5; i++) await sender.say("general", `missed-${i}`);
  sender.send({ type: "send", cid: "dm1", to: "rex", body: "missed-dm", ref: "dm1" });
  await sender.expect(isType("ack"));
  // Live traffic keeps flowing while rex reconnects.
  const live = (async () => {
    for (let i = 1; i <= 5; i++) await sender.say("general", `live-${i}`);
  })();
  await using r2 = await WireClient.login(ts.port, ts.certPem, "rex", {
    resume: { rooms: { general: seen.id }, dm: 0 },
  });
  await live;
  await r2.expect((f) => f.type === "resumed" && f.room === "general");
  await r2.expect((f) => f.type === "resumed" && f.dm === true);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && r2.frames.filter((f) => f.type === "msg" && f.room).length < 10) {
    await new Promise((res) => setTimeout(res, 20));
  }
  const bodies = r2.frames.filter((f): f is F<"msg"> => f.type === "msg" && !!f.room).map((f) =>
    f.body
  );
  assertEquals(bodies, [
    "missed-1",
    "missed-2",
    "missed-3",
    "missed-4",
    "missed-5",
    "live-1",
    "live-2",
    "live-3",
    "live-4",
    "live-5",
  ]);
  const ids = r2.frames.filter((f): f is F<"msg"> => f.type === "msg" && !!f.room).map((f) => f.id);
  assertEquals([...ids].sort((x, y) => x - y), ids, "out of order");
  assert(
    r2.frames.some((f) => f.type === "msg" && f.body === "missed-dm"),
    "the DM was not resumed",
  );
});

Deno.test("restart keeps users, rooms, memberships and messages", async () => {
  await using tmp = await tempDir("chat-restart-");
  const dataDir = tmp.path;
  {
    await using ts = await startTestServer({ dataDir, keepData: true });
    await using a = await WireClient.login(ts.port, ts.certPem, "pat", { register: true });
    a.send({ type: "join", room: "dev", ref: "j" });
    await a.expect(isType("ok"));
    await a.say("dev", "persisted");
  }
  await using ts2 = await startTestServer({ dataDir, keepData: true });
  await using a2 = await WireClient.login(ts2.port, ts2.certPem, "pat");
  a2.send({ type: "history", room: "dev", ref: "h" });
  const h = await a2.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((m) => m.body), ["persisted"]);
});

Deno.test("frames before login are refused; garbage before login closes the connection", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  c.send({ type: "send", cid: "x", room: "general", body: "hi", ref: "s" });
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "not_authenticated");
  c.writeRaw("GET / HTTP/1.1\r\n");
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "bad_frame");
  await c.expectClosed();
});

Deno.test("hello is required first and the version is checked", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "login", user: "x1", password: "y1234567" });
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "hello_required");
  await c.expectClosed();
  await using d = await WireClient.connect(ts.port, ts.certPem);
  d.send({ type: "hello", version: 2 });
  assertEquals((await d.expect(isType("error")) as F<"error">).code, "unsupported_version");
  await d.expectClosed();
});

Deno.test("a line over maxLineBytes gets line_too_long and the connection is closed", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "lin", { register: true });
  const max = ts.config.limits.maxLineBytes;
  // Within the line limit but over the body limit: read and answered, connection kept.
  const body = "y".repeat(max - 100);
  const frame = JSON.stringify({ type: "send", cid: "big", room: "general", body, ref: "big" });
  assert(frame.length <= max);
  a.writeRaw(frame + "\n");
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "too_large");
  a.writeRaw("z".repeat(max + 1) + "\n");
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "line_too_long");
  await a.expectClosed();
});

Deno.test("control characters and escape sequences in a body are refused, nothing stored", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "eve", { register: true });
  for (const body of ["\u001b[2Jgotcha", "a\u0000b", "", "   ", "x\u202ey"]) {
    const r = await a.say("general", body) as F<"error">;
    assertEquals(r.code, "invalid_text", JSON.stringify(body));
  }
  a.send({ type: "history", room: "general", ref: "h" });
  assertEquals((await a.expect(isType("history")) as F<"history">).messages, []);
});

Deno.test("connections per address are limited", async () => {
  await using ts = await startTestServer({ limits: { maxConnectionsPerAddress: 2 } });
  await using a = await WireClient.connect(ts.port, ts.certPem);
  await using b = await WireClient.connect(ts.port, ts.certPem);
  for (const c of [a, b]) {
    c.send({ type: "hello", version: 1 });
    await c.expect(isType("hello"));
  }
  await using c = await WireClient.connect(ts.port, ts.certPem);
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "too_many_connections");
  await c.expectClosed();
});

Deno.test("too many frames before login close the connection", async () => {
  await using ts = await startTestServer({ limits: { preAuthMaxFrames: 5 } });
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  for (let i = 0; i < 10; i++) c.send({ type: "ping" });
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "too_many_frames");
  await c.expectClosed();
});

Deno.test("a client that never logs in is closed after authTimeoutMs", async () => {
  await using ts = await startTestServer({ limits: { authTimeoutMs: 300 } });
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "auth_timeout");
  await c.expectClosed();
});

Deno.test("auth_timeout never cuts a login waiting in the hash queue; the client's own time still runs out", async () => {
  const clock = new FakeClock();
  const authTimeoutMs = 1000;
  await using ts = await startTestServer({
    clock,
    // One worker and a queue long enough for everyone: the registrations wait behind each other.
    limits: { authTimeoutMs, hashWorkers: 1, hashQueue: 64 },
  });
  const open = async () => {
    const c = await WireClient.connect(ts.port, ts.certPem);
    c.send({ type: "hello", version: 1 });
    await c.expect(isType("hello"));
    return c;
  };
  const n = 24;
  await using idle = await open();
  const waiting = await Promise.all(Array.from({ length: n }, () => open()));
  await using failer = await open();
  try {
    waiting.forEach((c, i) =>
      c.send({ type: "register", user: `q${i}`, password: `queued-pw-${i}` })
    );
    failer.send({ type: "login", user: "nobody-here", password: "wrong-password" });
    await waitFor(() => ts.server.hasher.stats.queued >= n - 1, "the registrations to queue");
    await clock.advance(authTimeoutMs + 1);
    // The idle client's own time ran out: the sweep has run with the clock past every deadline.
    assertEquals((await idle.expect(isType("error")) as F<"error">).code, "auth_timeout");
    assert(
      ts.server.hasher.stats.queued > 0,
      "the hash queue drained before the sweep ran: nothing was tested",
    );
    const replies = await Promise.all(
      waiting.map((c) => c.expect((f) => f.type === "ok" || f.type === "error", 60_000)),
    );
    assertEquals(replies.filter((f) => f.type !== "ok"), []);
    assertEquals((await failer.expect(isType("error"), 60_000) as F<"error">).code, "auth_failed");
    // Time in the queue was not charged to the failed login's client: it is still connected ...
    await failer.barrier();
    // ... until its own time runs out.
    await clock.advance(authTimeoutMs + 1);
    assertEquals((await failer.expect(isType("error")) as F<"error">).code, "auth_timeout");
    await failer.expectClosed();
  } finally {
    await Promise.all(waiting.map((c) => c[Symbol.asyncDispose]()));
  }
});

Deno.test("a socket that never starts TLS is dropped after handshakeTimeoutMs; others still connect", async () => {
  await using ts = await startTestServer({ limits: { handshakeTimeoutMs: 300 } });
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: ts.port });
  try {
    const until = Date.now() + 1000;
    while (ts.server.stats.connections === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(ts.server.stats.connections, 1);
    const deadline = Date.now() + 5000;
    while (ts.server.stats.connections > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // Deno keeps the socket itself open until the peer acts (docs/RELIABILITY.md); the server
    // no longer tracks it, and it does not block anyone else.
    assertEquals(ts.server.stats.connections, 0);
    await using ok = await WireClient.login(ts.port, ts.certPem, "hsok", { register: true });
    assertEquals((await ok.say("general", "not blocked")).type, "ack");
  } finally {
    tcp.close();
  }
});

Deno.test("keepalive: a silent client is pinged, then closed with idle_timeout", async () => {
  await using ts = await startTestServer({ limits: { pingIntervalMs: 200, idleTimeoutMs: 600 } });
  await using a = await WireClient.login(ts.port, ts.certPem, "kim", { register: true });
  await a.expect(isType("ping"), 3000);
  const bye = await a.expect(isType("bye"), 3000) as F<"bye">;
  assertEquals(bye.code, "idle_timeout");
  await a.expectClosed();
});

Deno.test("a client that never reads is cut at its queue bound; others keep receiving", async () => {
  await using ts = await startTestServer({ limits: { sendQueueBytes: 256 * 1024 } });
  // The stalled client logs in over a raw socket and then never reads a byte.
  const stalled = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: ts.port,
    caCerts: [ts.certPem],
    alpnProtocols: ["chat/1"],
  });
  await stalled.write(new TextEncoder().encode(
    JSON.stringify({ type: "hello", version: 1 }) + "\n" +
      JSON.stringify({ type: "register", user: "zed", password: "password-zed" }) + "\n",
  ));
  await using reader = await WireClient.login(ts.port, ts.certPem, "yan", { register: true });
  await using sender = await WireClient.login(ts.port, ts.certPem, "xia", { register: true });
  const zedOnline = () => ts.server.hub.online(1).includes("zed");
  const deadline = Date.now() + 10_000;
  while (!zedOnline() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert(zedOnline(), "zed never came online");
  const body = "b".repeat(3000);
  let sent = 0;
  // Bounded: at most 4000 x 3 KB; the kernel buffers a few MB before the server's queue grows.
  while (zedOnline() && sent < 4000) {
    for (let i = 0; i < 20; i++, sent++) {
      sender.send({ type: "send", cid: `f${sent}`, room: "general", body, ref: `f${sent}` });
    }
    await sender.expect((f) => f.type === "ack" && f.ref === `f${sent - 1}`, 10_000);
    assertEquals(sender.frames.filter(isType("error")), [], "the sender got errors");
    sender.frames.length = 0;
  }
  assert(!zedOnline(), `the stalled client was not cut after ${sent} messages`);
  // The reader got everything, in order (every send was acked, so its deliveries are queued).
  await reader.barrier(10_000);
  const ids = reader.frames.filter(isType("msg")).map((m) => (m as F<"msg">).id);
  assertEquals(ids.length, sent);
  assertEquals([...ids].sort((x, y) => x - y), ids, "out of order");
  stalled.close();
});

Deno.test("a burst of pipelined sends from every client is paced, not dropped: small queues, nobody cut", async () => {
  // 8 clients each send 300 messages at once: every receiver is owed 2,100 messages (~600 KB),
  // ten times its 64 KiB queue. Input waits at the admission gate instead.
  await using ts = await startTestServer({ limits: { sendQueueBytes: 64 * 1024 } });
  const clients: WireClient[] = [];
  for (let i = 0; i < 8; i++) {
    clients.push(await WireClient.login(ts.port, ts.certPem, `burst${i}`, { register: true }));
  }
  try {
    const body = "x".repeat(200);
    for (const [i, c] of clients.entries()) {
      const lines: string[] = [];
      for (let k = 0; k < 300; k++) {
        lines.push(JSON.stringify({ type: "send", cid: `${i}.${k}`, room: "general", body }));
      }
      await c.writeAll(lines.join("\n") + "\n");
    }
    const owed = 7 * 300;
    const until = Date.now() + 30_000;
    const counts = () => clients.map((c) => c.frames.filter(isType("msg")).length);
    while (
      counts().some((n) => n < owed) && ts.server.stats.sessions === 8 && Date.now() < until
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(counts(), clients.map(() => owed));
    assertEquals(clients.map((c) => c.frames.filter(isType("ack")).length), clients.map(() => 300));
    assertEquals(clients.flatMap((c) => c.frames.filter(isType("bye"))), []);
    assertEquals(ts.server.stats.sessions, 8);
    assert(ts.server.hub.admission.waited > 0, "the burst never had to wait");
  } finally {
    for (const c of clients) c.close();
  }
});

Deno.test("shutdown: clients get bye shutdown, acked messages survive", async () => {
  await using tmp = await tempDir("chat-shutdown-");
  const dataDir = tmp.path;
  const ts = await startTestServer({ dataDir, keepData: true });
  await using a = await WireClient.login(ts.port, ts.certPem, "sue", { register: true });
  const ack = await a.say("general", "last words") as F<"ack">;
  await ts.stop();
  const bye = await a.expect(isType("bye")) as F<"bye">;
  assertEquals(bye.code, "shutdown");
  await a.expectClosed();
  await using ts2 = await startTestServer({ dataDir, keepData: true });
  await using b = await WireClient.login(ts2.port, ts2.certPem, "sue");
  b.send({ type: "history", room: "general", ref: "h" });
  const h = await b.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((m) => m.id), [ack.id]);
});

Deno.test("shutdown: each client gets bye, not first the leaves of those closed before it", async () => {
  await using ts = await startTestServer();
  const clients: WireClient[] = [];
  try {
    for (const name of ["ann", "ben", "cat", "dan"]) {
      clients.push(await WireClient.login(ts.port, ts.certPem, name, { register: true }));
    }
    // Every join notice owed so far has arrived (presence goes out before the pong).
    for (const c of clients) {
      await c.barrier();
      c.frames.length = 0;
    }
    await ts.stop();
    for (const c of clients) {
      const bye = await c.expect(isType("bye")) as F<"bye">;
      assertEquals(bye.code, "shutdown");
      assertEquals(c.frames.filter(isType("presence")), [], "no leave of another before bye");
      await c.expectClosed();
    }
  } finally {
    for (const c of clients) c.close();
  }
});

Deno.test("listening on :: accepts IPv4 and IPv6 clients and sees plain IPv4 addresses", async () => {
  await using ts = await startTestServer({ config: { host: "::" } });
  await using v4 = await WireClient.login(ts.port, ts.certPem, "four", { register: true });
  await using v6 = await WireClient.login(ts.port, ts.certPem, "six", {
    register: true,
    hostname: "::1",
  });
  await v4.say("general", "over v4");
  assertEquals((await v6.expect(isType("msg")) as F<"msg">).body, "over v4");
});

Deno.test("connections over maxConnections get server_full", async () => {
  await using ts = await startTestServer({ limits: { maxConnections: 1 } });
  await using a = await WireClient.connect(ts.port, ts.certPem);
  a.send({ type: "hello", version: 1 });
  await a.expect(isType("hello"));
  await using b = await WireClient.connect(ts.port, ts.certPem);
  assertEquals((await b.expect(isType("error")) as F<"error">).code, "server_full");
  await b.expectClosed();
});

Deno.test("login ok carries the newest ids per room and for DMs, the resume point of a fresh client", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "lena", { register: true });
  (await WireClient.login(ts.port, ts.certPem, "liam", { register: true })).close();
  const m1 = await a.say("general", "one") as F<"ack">;
  a.send({ type: "send", cid: "dm", to: "liam", body: "psst", ref: "dm" });
  const dm = await a.expect((f) => f.type === "ack" && f.ref === "dm") as F<"ack">;
  await using l = await WireClient.connect(ts.port, ts.certPem);
  l.send({ type: "hello", version: 1 });
  l.send({ type: "login", user: "liam", password: "password-liam", ref: "in" });
  const ok = await l.expect(isType("ok")) as F<"ok">;
  assertEquals(ok.latest, { rooms: { general: m1.id }, dm: dm.id });
});

Deno.test("listeners: a second listener serves the protocols its config names, on its own port", async () => {
  const port2 = await freePort();
  await using ts = await startTestServer({
    config: {
      listeners: [
        { host: "127.0.0.1", port: 0, alpn: { "chat/1": "chat/1", "": "seed" } },
        { host: "127.0.0.1", port: port2, alpn: { "": "seed" } },
      ],
    } as never,
  });
  assertEquals(ts.server.addrs.map((a) => a.port).slice(1), [port2]);
  // The seed-only port greets a client without ALPN with the seed dialogue…
  const seed = await WireClient.connect(port2, ts.certPem, { alpn: [] });
  await waitFor(() => seed.raw.includes("AUTH_REQUIRED"), "the seed greeting");
  seed.conn.close();
  // A listener that names no ALPN id negotiates none: a client offering chat/1 gets no ALPN
  // back (so a chat/1 client knows it is not talking chat/1) and the seed protocol.
  const c = await WireClient.connect(port2, ts.certPem);
  const hs = await c.conn.handshake();
  assertEquals(hs.alpnProtocol, null);
  c.conn.close();
  // The chat port still refuses an ALPN offer it does not list.
  let refused = false;
  try {
    const other = await WireClient.connect(ts.port, ts.certPem, { alpn: ["h2"] });
    await other.conn.handshake();
    other.conn.close();
  } catch {
    refused = true;
  }
  assert(refused, "an unlisted ALPN id was accepted on the chat port");
});

function freePort(): Promise<number> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return Promise.resolve(port);
}
