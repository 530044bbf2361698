// Paced, not refused (PROTOCOL.md §8): sends over the message rate wait for a token while the
// session stops reading; only a sustained flood is cut, with `bye` `flood`. Fake time throughout.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { advanceUntil as runUntil, FakeClock } from "../harness/fake_clock.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = <T extends ServerFrame["type"]>(t: T) => (f: ServerFrame): f is F<T> => f.type === t;

const acked = (c: WireClient, cid: string) => () =>
  c.frames.some((f) => f.type === "ack" && f.cid === cid);

function sends(c: WireClient, n: number, prefix: string): string {
  let text = "";
  for (let i = 0; i < n; i++) {
    text += JSON.stringify({
      type: "send",
      cid: `${prefix}${i}`,
      ref: `${prefix}${i}`,
      room: "general",
      body: `${prefix} ${i}`,
    }) + "\n";
  }
  c.writeRaw(text);
  return text;
}

Deno.test("pacing: sends over the rate wait for a token instead of being refused; later requests wait behind them", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 2, messageBurst: 3 },
  });
  await using a = await WireClient.login(ts.port, ts.certPem, "rat", { register: true });
  await using other = await WireClient.login(ts.port, ts.certPem, "other", { register: true });
  sends(a, 5, "r");
  a.send({ type: "ping" });
  for (const cid of ["r0", "r1", "r2"]) await a.expect((f) => f.type === "ack" && f.cid === cid);
  // The fourth needs a token 500 ms later: until then nothing more is handled, not even ping.
  await runUntil(clock, () => clock.pending > 0, 0);
  await clock.advance(499);
  assertEquals(a.frames.filter((f) => f.type !== "presence"), []);
  await clock.advance(1);
  await a.expect((f) => f.type === "ack" && f.cid === "r3");
  await runUntil(clock, acked(a, "r4"), 500);
  await a.expect(isType("pong"));
  assertEquals(a.frames.filter(isType("error")), [], "nothing refused");
  // Stored once each, in the order sent.
  other.send({ type: "history", room: "general", ref: "h" });
  const h = await other.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((m) => m.body), ["r 0", "r 1", "r 2", "r 3", "r 4"]);
});

Deno.test("pacing: a paste of 50 lines is delivered in full at the rate, nothing refused, the connection stays", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 10, messageBurst: 30 },
  });
  await using a = await WireClient.login(ts.port, ts.certPem, "paster", { register: true });
  await using reader = await WireClient.login(ts.port, ts.certPem, "reader", { register: true });
  sends(a, 50, "p");
  // 30 at once, 20 more at 10 per second: 2 s of fake time.
  await runUntil(clock, acked(a, "p49"), 100);
  assertEquals(a.frames.filter(isType("ack")).length, 50);
  assertEquals(a.frames.filter((f) => f.type === "error" || f.type === "bye"), []);
  await a.barrier();
  await reader.barrier();
  assertEquals(reader.frames.filter(isType("msg")).length, 50);
});

Deno.test("pacing: a sustained flood is cut with bye flood after messageFloodMs of waiting (draining at half speed)", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 2, messageBurst: 1, messageFloodMs: 2000 },
  });
  await using a = await WireClient.login(ts.port, ts.certPem, "flooder", { register: true });
  await using reader = await WireClient.login(ts.port, ts.certPem, "reader", { register: true });
  sends(a, 100, "f");
  // Each further send waits 500 ms; the waited time grows by 500 - 250 per send: over 2000 at
  // the eighth wait.
  await runUntil(clock, () => a.frames.some(isType("bye")), 500);
  const bye = await a.expect(isType("bye")) as F<"bye">;
  assertEquals(bye.code, "flood");
  await a.expectClosed();
  const ackedIds = a.frames.filter(isType("ack")).map((f) => f.id);
  assertEquals(ackedIds.length, 8, "the burst and seven paced sends");
  assertEquals(a.frames.filter((f) => f.type === "error" && f.code !== "shutting_down"), []);
  // What was acknowledged was delivered, and nothing else.
  await reader.barrier();
  assertEquals(reader.frames.filter(isType("msg")).map((m) => m.id), ackedIds);
});

Deno.test("pacing: sending at the rate is never cut, however long it goes on", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 2, messageBurst: 1, messageFloodMs: 1000 },
  });
  await using a = await WireClient.login(ts.port, ts.certPem, "steady", { register: true });
  // Two a second for 30 s of fake time, each a millisecond early: every send waits 1 ms.
  a.send({ type: "send", cid: "s0", ref: "s0", room: "general", body: "s 0" });
  await a.expect(isType("ack"));
  for (let i = 1; i < 60; i++) {
    await clock.advance(499);
    a.send({ type: "send", cid: `s${i}`, ref: `s${i}`, room: "general", body: `s ${i}` });
    await runUntil(clock, acked(a, `s${i}`), 1);
    await a.expect(isType("ack"));
  }
  assertEquals(a.frames.filter((f) => f.type === "bye" || f.type === "error"), []);
  assert(!a.frames.some(isType("bye")));
});
