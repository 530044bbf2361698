// Private rooms, roles and room management over the wire (docs/PROTOCOL.md §7): who sees, joins,
// reads and is told what; invite, kick and topic; the admin tool's view; the audit trail.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { AdminClient } from "../../src/admin/admin_client.ts";
import type { RoomInfo, ServerFrame } from "../../src/protocol/frames.ts";
import { SqliteStore } from "../../src/store/sqlite_store.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const ACTOR = "admin:tester";

let refs = 0;
/** Sends `frame` with a fresh ref and resolves with the reply that carries it. */
async function ask(c: WireClient, frame: Record<string, unknown>): Promise<ServerFrame> {
  const ref = `r${++refs}`;
  c.send({ ...frame, ref });
  return await c.expect((f) => "ref" in f && f.ref === ref);
}

function code(f: ServerFrame): string {
  return f.type === "error" ? f.code : f.type;
}

async function admin(ts: TestServer): Promise<AdminClient> {
  const a = await AdminClient.connect(ts.dataDir);
  assert(a !== null, "no admin socket");
  return a;
}

/** Registers `name`, makes it an administrator and logs in again (roles are read at login). */
async function loginAdmin(ts: TestServer, name: string): Promise<WireClient> {
  (await WireClient.login(ts.port, ts.certPem, name, { register: true })).close();
  const a = await admin(ts);
  try {
    await a.call("users.role", ACTOR, { name, role: "admin" });
  } finally {
    a.close();
  }
  return await WireClient.login(ts.port, ts.certPem, name);
}

const names = (f: ServerFrame) => (f as F<"rooms">).rooms.map((r: RoomInfo) => r.name);

Deno.test("rooms: a private room is invisible to non-members: not listed, not joinable, refused like a missing room", async () => {
  await using ts = await startTestServer();
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using eve = await WireClient.login(ts.port, ts.certPem, "eve", { register: true });
  const made = await ask(alice, { type: "join", room: "board", private: true }) as F<"ok">;
  assertEquals([made.type, made.room, made.private], ["ok", "board", true]);
  assertEquals((await alice.say("board", "q3 numbers")).type, "ack");
  await ask(alice, { type: "join", room: "lobby" });

  const listed = await ask(alice, { type: "rooms" }) as F<"rooms">;
  assertEquals(names(listed), ["board", "general", "lobby"]);
  assertEquals(listed.rooms.find((r) => r.name === "board")?.private, true);
  assertEquals(listed.more, false);
  assertEquals(names(await ask(eve, { type: "rooms" })), ["general", "lobby"]);

  // Every request names it as if it did not exist: same code, same message.
  const missing = [
    await ask(eve, { type: "history", room: "nowhere" }),
    await ask(eve, { type: "who", room: "nowhere" }),
    await ask(eve, { type: "send", cid: "m1", room: "nowhere", body: "hi" }),
  ];
  const hidden = [
    await ask(eve, { type: "history", room: "board" }),
    await ask(eve, { type: "who", room: "board" }),
    await ask(eve, { type: "send", cid: "m2", room: "board", body: "hi" }),
  ];
  for (let i = 0; i < 3; i++) {
    const [m, h] = [missing[i] as F<"error">, hidden[i] as F<"error">];
    assertEquals(h.code, "no_such_room");
    assertEquals(h.message, m.message.replace("nowhere", "board"));
  }
  const join = await ask(eve, { type: "join", room: "board" }) as F<"error">;
  assertEquals([join.code, join.message], ["no_such_room", "Cannot join board: no such room"]);
  assertEquals(
    code(await ask(eve, { type: "invite", room: "board", user: "eve" })),
    "no_such_room",
  );
  // Nothing of it leaked into eve's stream either.
  await eve.expectNone((f) => f.type === "msg" || f.type === "presence" && f.room === "board");
});

Deno.test("rooms: resume naming a private room of others yields nothing; its presence reaches members only", async () => {
  await using ts = await startTestServer();
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  (await WireClient.login(ts.port, ts.certPem, "eve", { register: true })).close();
  await ask(alice, { type: "join", room: "board", private: true });
  await alice.say("board", "secret one");
  await using eve = await WireClient.login(ts.port, ts.certPem, "eve", {
    resume: { rooms: { board: 0, general: 0 } },
  });
  const resumed = await eve.expect((f) => f.type === "resumed") as F<"resumed">;
  assertEquals(resumed.room, "general");
  // bob, a member, comes online in board: alice is told, eve (online in general only) is not.
  (await WireClient.login(ts.port, ts.certPem, "bob", { register: true })).close();
  assertEquals(code(await ask(alice, { type: "invite", room: "board", user: "bob" })), "ok");
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob");
  await alice.expect((f) => f.type === "presence" && f.room === "board" && f.user === "bob");
  await eve.expectNone((f) => f.type === "presence" && f.room === "board", "board presence");
  await eve.expectNone((f) => f.type === "resumed" || f.type === "msg", "a private backlog");
  bob.close();
});

Deno.test("rooms: invite lets a user in live; leaving ends access to new messages and old history", async () => {
  await using ts = await startTestServer();
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  await ask(alice, { type: "join", room: "board", private: true });
  await alice.say("board", "before bob");
  const inv = await ask(alice, { type: "invite", room: "board", user: "bob" }) as F<"ok">;
  assertEquals([inv.type, inv.op, inv.room, inv.user], ["ok", "invite", "board", "bob"]);
  const told = await bob.expect((f) => f.type === "membership") as F<"membership">;
  assertEquals([told.room, told.event, told.by], ["board", "added", "alice"]);
  // bob's open session is in the room now: live messages, history, the listing.
  await alice.say("board", "hello bob");
  assertEquals((await bob.expect((f) => f.type === "msg") as F<"msg">).body, "hello bob");
  const h = await ask(bob, { type: "history", room: "board" }) as F<"history">;
  assertEquals(h.messages.map((m) => m.body), ["before bob", "hello bob"]);
  assert(names(await ask(bob, { type: "rooms" })).includes("board"));

  assertEquals(code(await ask(bob, { type: "part", room: "board" })), "ok");
  const ack = await alice.say("board", "after bob left");
  assertEquals(ack.type, "ack");
  await bob.expectNone((f) => f.type === "msg", "a message after leaving");
  assertEquals(code(await ask(bob, { type: "history", room: "board" })), "no_such_room");
  assertEquals(code(await ask(bob, { type: "join", room: "board" })), "no_such_room");
  assert(!names(await ask(bob, { type: "rooms" })).includes("board"));
});

Deno.test("rooms: kick is for administrators; the kicked user's sessions leave the room live", async () => {
  await using ts = await startTestServer();
  await using root = await loginAdmin(ts, "root");
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  await using bob2 = await WireClient.login(ts.port, ts.certPem, "bob");
  await ask(alice, { type: "join", room: "board", private: true });
  await ask(alice, { type: "invite", room: "board", user: "bob" });
  await bob.expect((f) => f.type === "membership");
  await bob2.expect((f) => f.type === "membership");

  const refused = await ask(alice, { type: "kick", room: "board", user: "bob" }) as F<"error">;
  assertEquals([refused.code, refused.message], ["forbidden", "Cannot kick: administrators only"]);
  // An administrator sees and manages every room, member or not.
  assert(names(await ask(root, { type: "rooms" })).includes("board"));
  const k = await ask(root, { type: "kick", room: "board", user: "bob" }) as F<"ok">;
  assertEquals([k.type, k.op, k.user], ["ok", "kick", "bob"]);
  for (const s of [bob, bob2]) {
    const m = await s.expect((f) => f.type === "membership") as F<"membership">;
    assertEquals([m.room, m.event, m.by], ["board", "removed", "root"]);
  }
  await alice.expect((f) => f.type === "presence" && f.user === "bob" && f.event === "leave");
  await alice.say("board", "bob is out");
  await bob.expectNone((f) => f.type === "msg");
  await bob2.expectNone((f) => f.type === "msg");
  assertEquals(
    code(await ask(bob, { type: "send", cid: "x", room: "board", body: "hi" })),
    "no_such_room",
  );
  assertEquals(
    code(await ask(root, { type: "kick", room: "general", user: "bob" })),
    "cannot_part",
  );
  assertEquals(code(await ask(root, { type: "kick", room: "board", user: "bob" })), "not_member");
});

Deno.test("rooms: topic follows roomTopic (owner by default), and roomCreate admin keeps members from creating", async () => {
  await using ts = await startTestServer({ config: { roomCreate: "admin" } });
  await using root = await loginAdmin(ts, "root");
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  const made = await ask(alice, { type: "join", room: "newroom" }) as F<"error">;
  assertEquals([made.code, made.message], [
    "forbidden",
    "Cannot create room newroom: only administrators create rooms",
  ]);
  assertEquals(code(await ask(root, { type: "join", room: "ops" })), "ok");
  assertEquals(
    code(await ask(alice, { type: "join", room: "ops" })),
    "ok",
    "joining is not creating",
  );
  assertEquals(code(await ask(alice, { type: "topic", room: "ops", topic: "mine?" })), "forbidden");
  const t = await ask(root, { type: "topic", room: "ops", topic: "  Deploys  " }) as F<"ok">;
  assertEquals([t.type, t.topic], ["ok", "Deploys"]);
  const listed = (await ask(alice, { type: "rooms" }) as F<"rooms">).rooms;
  assertEquals(listed.find((r) => r.name === "ops")?.topic, "Deploys");

  await using ts2 = await startTestServer({ config: { roomTopic: "admin" } });
  await using bob = await WireClient.login(ts2.port, ts2.certPem, "bob", { register: true });
  await ask(bob, { type: "join", room: "mine" });
  const own = await ask(bob, { type: "topic", room: "mine", topic: "x" }) as F<"error">;
  assertEquals([own.code, own.message], ["forbidden", "Cannot topic: administrators only"]);
});

Deno.test("rooms: the admin tool lists private rooms, makes rooms private or public, adds and removes members live", async () => {
  await using ts = await startTestServer();
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  await ask(alice, { type: "join", room: "board", private: true });
  await ask(alice, { type: "join", room: "lobby" });
  await alice.say("board", "budget draft");
  const a = await admin(ts);
  try {
    const listed = await a.call("rooms.members", ACTOR, { name: "board" });
    assertEquals(listed.members, ["alice"]);
    assertEquals(
      (await a.call("rooms.add_member", ACTOR, { name: "board", user: "bob" })).changed,
      true,
    );
    const m = await bob.expect((f) => f.type === "membership") as F<"membership">;
    assertEquals([m.room, m.event, m.by], ["board", "added", "admin"]);
    await alice.say("board", "welcome");
    assertEquals((await bob.expect((f) => f.type === "msg") as F<"msg">).body, "welcome");
    await a.call("rooms.remove_member", ACTOR, { name: "board", user: "bob" });
    assertEquals(
      (await bob.expect((f) => f.type === "membership") as F<"membership">).event,
      "removed",
    );
    assertEquals(code(await ask(bob, { type: "history", room: "board" })), "no_such_room");

    assertEquals((await a.call("rooms.private", ACTOR, { name: "lobby" })).changed, true);
    assert(!names(await ask(bob, { type: "rooms" })).includes("lobby"));
    await a.call("rooms.public", ACTOR, { name: "board" });
    assert(names(await ask(bob, { type: "rooms" })).includes("board"));
    assertEquals(code(await ask(bob, { type: "join", room: "board" })), "ok");
  } finally {
    a.close();
  }
  // The offline view lists private rooms too.
  const store = SqliteStore.open({ path: `${ts.dataDir}/chat.db`, checkpointOnClose: false });
  try {
    const rooms = await store.listRooms();
    assertEquals(rooms.find((r) => r.name === "lobby")?.private, true);
  } finally {
    await store.close();
  }
});

Deno.test("rooms: the audit trail records grants, revokes, invites, kicks and member changes with their actor", async () => {
  await using ts = await startTestServer();
  await using root = await loginAdmin(ts, "root");
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  (await WireClient.login(ts.port, ts.certPem, "bob", { register: true })).close();
  await ask(alice, { type: "join", room: "board", private: true });
  await ask(alice, { type: "invite", room: "board", user: "bob" });
  await ask(root, { type: "kick", room: "board", user: "bob" });
  const a = await admin(ts);
  try {
    await a.call("users.role", ACTOR, { name: "root", role: "member" });
    await a.call("rooms.add_member", ACTOR, { name: "board", user: "bob" });
    await a.call("rooms.remove_member", ACTOR, { name: "board", user: "bob" });
  } finally {
    a.close();
  }
  const store = SqliteStore.open({ path: `${ts.dataDir}/chat.db`, checkpointOnClose: false });
  try {
    const trail = (await store.auditTrail({ limit: 100 })).filter((e) =>
      e.action.startsWith("rooms.") || e.action === "users.role"
    ).map((e) => [e.actor?.startsWith("admin:") ? "admin" : e.actor, e.action, e.target, e.detail]);
    assertEquals(trail, [
      ["admin", "users.role", "root", { from: "member", to: "admin", change: "grant" }],
      ["alice", "rooms.invite", "board", { user: "bob" }],
      ["root", "rooms.kick", "board", { user: "bob" }],
      ["admin", "users.role", "root", { from: "admin", to: "member", change: "revoke" }],
      ["admin", "rooms.add_member", "board", { user: "bob" }],
      ["admin", "rooms.remove_member", "board", { user: "bob" }],
    ]);
  } finally {
    await store.close();
  }
});
