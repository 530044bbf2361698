// Regression for issue 12 item 1: a removed account's id must never go to the next registration.
import { assert, assertEquals, assertNotEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { SlowStore } from "../store/slow_store.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import type { UserDetail } from "../../src/admin/admin_service.ts";
import { adminJson, adminOk } from "./helpers.ts";

type Frame = ServerFrame & Record<string, unknown>;

/** Sends a request with a ref and waits for its answer (a reply or an error). */
async function ask(c: WireClient, frame: Record<string, unknown>, ref: string): Promise<Frame> {
  c.send({ ...frame, ref });
  return await c.expect((f) => "ref" in f && f.ref === ref) as Frame;
}

for (const slow of [false, true]) {
  Deno.test(`a removed account's id, messages and conversations never pass to the next registration${slow ? " (store answering late: SlowStore)" : ""}`, () =>
    removedUser(slow));
}

async function removedUser(slow: boolean): Promise<void> {
  let seed: number | undefined;
  await using ts = await startTestServer({
    wrapStore: slow
      ? (s) => {
        const w = new SlowStore(s);
        seed = w.seed;
        return w;
      }
      : undefined,
  });
  try {
    await scenario(ts);
  } catch (err) {
    if (seed !== undefined && err instanceof Error) err.message += ` [SlowStore seed ${seed}]`;
    throw err;
  }
}

async function scenario(ts: TestServer): Promise<void> {
  const d = ["--data", ts.dataDir];
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  const bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const bobId = (await adminJson<UserDetail>(["users", "show", "bob", ...d])).id;

  const toAlice = await ask(bob, { type: "send", cid: "b1", to: "alice", body: "for alice" }, "b1");
  assertEquals([toAlice.type, toAlice.duplicate ?? false], ["ack", false]);
  const reply = await ask(alice, { type: "send", cid: "a1", to: "bob", body: "for bob" }, "a1");
  assertEquals(reply.type, "ack");
  const inRoom = await ask(
    bob,
    { type: "send", cid: "g1", room: "general", body: "bob here" },
    "g1",
  );
  assertEquals(inRoom.type, "ack");

  assertEquals(
    await adminOk(["users", "remove", "bob", "--yes", ...d]),
    "Removed bob; closed 1 session.\n",
  );
  await bob.expectClosed();
  bob.close();

  await using mallory = await WireClient.login(ts.port, ts.certPem, "mallory", {
    register: true,
  });
  const malloryId = (await adminJson<UserDetail>(["users", "show", "mallory", ...d])).id;
  assertNotEquals(malloryId, bobId, "mallory got bob's id");
  assert(malloryId > bobId, "a new account's id is above every id handed out before");

  // Mallory's conversation with alice is new: bob's DMs are not in it.
  const dms = await ask(mallory, { type: "history", with: "alice" }, "h1");
  assertEquals([dms.type, dms.messages], ["history", []]);

  // Bob's message in general still says it came from a removed account, not from mallory.
  const general = await ask(mallory, { type: "history", room: "general" }, "h2");
  assertEquals(general.type, "history");
  const old = (general.messages as { id: number; from: string; body: string }[])
    .find((m) => m.id === inRoom.id);
  assertEquals(old && [old.from, old.body], ["(removed)", "bob here"]);

  // Alice keeps her conversation with bob; on resume both sides of it name "(removed)".
  await using again = await WireClient.login(ts.port, ts.certPem, "alice", { resume: { dm: 0 } });
  await again.expect((f) => f.type === "resumed");
  const backlog = again.frames.filter((f) => f.type === "msg") as Frame[];
  assertEquals(backlog.map((m) => [m.from, m.to, m.body]), [
    ["(removed)", "alice", "for alice"],
    ["alice", "(removed)", "for bob"],
  ]);

  // Bob's old cid is mallory's own: stored as a new message, with a new id, delivered to alice.
  const fresh = await ask(
    mallory,
    { type: "send", cid: "g1", room: "general", body: "mallory here" },
    "m1",
  );
  assertEquals([fresh.type, fresh.duplicate ?? false], ["ack", false], "acked as a duplicate");
  assert((fresh.id as number) > (inRoom.id as number));
  const seen = await alice.expect((f) => f.type === "msg" && "id" in f && f.id === fresh.id);
  assertEquals([(seen as Frame).from, (seen as Frame).body], ["mallory", "mallory here"]);

  // A new "bob" is a new account too: bob's DMs with alice are not his either.
  await using bob2 = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const bob2Id = (await adminJson<UserDetail>(["users", "show", "bob", ...d])).id;
  assert(bob2Id > malloryId);
  const bob2Dms = await ask(bob2, { type: "history", with: "alice" }, "h4");
  assertEquals([bob2Dms.type, bob2Dms.messages], ["history", []]);
  const room = await ask(bob2, { type: "history", room: "general" }, "h5");
  const mine = (room.messages as { id: number; from: string }[]).find((m) => m.id === inRoom.id);
  assertEquals(mine?.from, "(removed)", "the old bob's message is not the new bob's");
}
