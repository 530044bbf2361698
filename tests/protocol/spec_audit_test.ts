// Expectations taken from docs/PROTOCOL.md, checked over real TLS: the places where a client written
// from the document alone found the server saying something else.
import { assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";

const hasRef = (ref: string) => (f: ServerFrame) => "ref" in f && f.ref === ref;

Deno.test("spec §1: the hello reply and a pong echo the request's ref", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1, ref: "h1" });
  const hello = await c.expect((f) => f.type === "hello");
  assertEquals("ref" in hello ? hello.ref : undefined, "h1");
  c.send({ type: "ping", ref: "p1" });
  const pong = await c.expect((f) => f.type === "pong");
  assertEquals("ref" in pong ? pong.ref : undefined, "p1");
  // Without a ref, none comes back.
  c.send({ type: "ping" });
  assertEquals(await c.expect((f) => f.type === "pong"), { type: "pong" });
});

Deno.test("spec §1: a fatal bad_frame before login still echoes the request's ref", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect((f) => f.type === "hello");
  c.send({ type: "login", user: 5, password: "password-x", ref: "l1" });
  const e = await c.expect((f) => f.type === "error");
  assertEquals(
    e.type === "error" ? [e.code, e.ref] : [],
    ["bad_frame", "l1"],
  );
  await c.expectClosed();
});

Deno.test("spec §5: a duplicate cid sent to another room is acked with the stored message's room", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "dupsender", { register: true });
  a.send({ type: "join", room: "elsewhere", ref: "j" });
  await a.expect(hasRef("j"));
  const first = await a.say("elsewhere", "original", "same-cid");
  assertEquals(first.type, "ack");
  // The same cid again, naming general and another body: not stored again, and the ack says
  // where the stored message is, so the client does not think id N is in general.
  const again = await a.say("general", "something else", "same-cid");
  if (first.type !== "ack" || again.type !== "ack") throw new Error("expected acks");
  assertEquals(
    [again.id, again.ts, again.duplicate, "room" in again ? again.room : undefined],
    [first.id, first.ts, true, "elsewhere"],
  );
  // And as a DM: the ack names the room, not a recipient.
  a.send({ type: "send", cid: "same-cid", to: "dupsender", body: "x", ref: "d" });
  const dm = await a.expect(hasRef("d"));
  if (dm.type !== "ack") throw new Error(JSON.stringify(dm));
  assertEquals([dm.id, "room" in dm ? dm.room : undefined, "to" in dm], [
    first.id,
    "elsewhere",
    false,
  ]);
  a.send({ type: "history", room: "general", ref: "h" });
  const h = await a.expect(hasRef("h"));
  assertEquals(h.type === "history" ? h.messages : null, []);
});

Deno.test("spec §6: resume ids that are not non-negative integers are ignored; the login works", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "resumer", { register: true });
  assertEquals((await a.say("general", "one")).type, "ack");
  await using b = await WireClient.login(ts.port, ts.certPem, "resumer", {
    resume: { rooms: { general: 0, other: "7", neg: -1 }, dm: 1.5 },
  });
  const m = await b.expect((f) => f.type === "msg");
  assertEquals(m.type === "msg" ? m.body : null, "one");
  const r = await b.expect((f) => f.type === "resumed");
  assertEquals(r.type === "resumed" ? [r.room, r.count] : null, ["general", 1]);
  // dm was not a valid id, so no DM backlog was asked for.
  await b.expectNone((f) => f.type === "resumed", "a resumed for an ignored resume point");
});
