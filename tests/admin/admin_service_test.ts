// Tests of AdminService and the op table on a real SQLite database (no server, no hooks).
import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { ChatError } from "../../src/errors.ts";
import { runAdminOp } from "../../src/admin/admin_ops.ts";
import { AdminService, base32 } from "../../src/admin/admin_service.ts";
import { inviteCodeHash } from "../../src/server/auth.ts";
import { openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { registerWithInvite } from "../store/store_contract.ts";

const HASH =
  "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
const ACTOR = "admin:tester";

Deno.test("base32() encodes RFC 4648 test vectors in lowercase without padding", () => {
  const enc = (s: string) => base32(new TextEncoder().encode(s));
  assertEquals(
    ["", "f", "fo", "foo", "foob", "fooba", "foobar"].map(enc),
    ["", "my", "mzxq", "mzxw6", "mzxw6yq", "mzxw6ytb", "mzxw6ytboi"],
  );
});

Deno.test("AdminService changes users and writes one audit line per change", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const svc = new AdminService({ store, clock: () => 1_000_000 });
  const u = await svc.addUser(ACTOR, { name: "Alice", passwordHash: HASH, role: "member" });
  assertEquals([u.name, u.role, u.disabled], ["Alice", "member", false]);
  assertEquals(await svc.disableUser(ACTOR, { name: "alice" }), { changed: true, kicked: 0 });
  assertEquals(await svc.disableUser(ACTOR, { name: "alice" }), { changed: false, kicked: 0 });
  assertEquals((await store.userByName("alice"))!.disabled, true);
  assertEquals(await svc.enableUser(ACTOR, { name: "ALICE" }), { changed: true });
  assertEquals(await svc.setRole(ACTOR, { name: "alice", role: "admin" }), { changed: true });
  assertEquals((await store.userByName("alice"))!.role, "admin");
  const detail = await svc.showUser({ name: "alice" });
  assertEquals([detail.online, detail.rooms], [null, []]);
  await svc.removeUser(ACTOR, { name: "alice" });
  assertEquals(await store.userByName("alice"), null);
  const trail = await store.auditTrail({ limit: 100 });
  assertEquals(
    trail.map((e) => [e.actor, e.action, e.target, e.remote]),
    [
      [ACTOR, "users.add", "Alice", "local"],
      [ACTOR, "users.disable", "Alice", "local"],
      [ACTOR, "users.disable", "Alice", "local"],
      [ACTOR, "users.enable", "Alice", "local"],
      [ACTOR, "users.role", "Alice", "local"],
      [ACTOR, "users.remove", "Alice", "local"],
    ],
  );
  assertEquals(trail.every((e) => e.ts === 1_000_000), true);
});

Deno.test("AdminService refuses wrong input with a clear error and changes nothing", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const svc = new AdminService({ store });
  await svc.addUser(ACTOR, { name: "bob", passwordHash: HASH, role: "member" });
  const before = await store.auditTrail({ limit: 100 });
  const cases: [() => Promise<unknown>, string, string][] = [
    [() => svc.disableUser(ACTOR, { name: "nobody" }), "no_such_user", "Cannot disable nobody"],
    [
      () => svc.addUser(ACTOR, { name: "BOB", passwordHash: HASH, role: "member" }),
      "user_exists",
      "taken",
    ],
    [
      () => svc.addUser(ACTOR, { name: "x", passwordHash: HASH, role: "member" }),
      "invalid_username",
      "",
    ],
    [
      () => svc.addUser(ACTOR, { name: "carol", passwordHash: "plain", role: "member" }),
      "bad_request",
      "argon2id",
    ],
    [() => svc.revokeInvite(ACTOR, { id: 99 }), "no_such_invite", "Cannot revoke invite 99"],
    [() => svc.createInvite(ACTOR, { uses: 0, expiresAt: null }), "bad_request", "uses"],
    [() => svc.createInvite(ACTOR, { uses: 1, expiresAt: 1 }), "bad_request", "past"],
    [() => svc.createRoom(ACTOR, { name: "Bad Name", topic: "" }), "invalid_room", ""],
    [() => svc.createRoom(ACTOR, { name: "ops", topic: "evil\u202e" }), "invalid_text", ""],
    [() => svc.setTopic(ACTOR, { name: "nowhere", topic: "x" }), "no_such_room", ""],
    [() => svc.setArchived(ACTOR, { name: "general", archived: true }), "no_such_room", ""],
    [() => svc.prune(ACTOR, { beforeTs: 5, room: "nowhere" }), "no_such_room", ""],
    [() => svc.record(ACTOR, { action: "users.add", target: null, detail: {} }), "bad_request", ""],
    [() => svc.stats(), "server_not_running", ""],
    [
      () => svc.certificateChanged(ACTOR, { action: "reload", fingerprint: null }),
      "server_not_running",
      "",
    ],
  ];
  for (const [run, code, text] of cases) {
    const err = await assertRejects(run, ChatError, text);
    assertEquals(err.code, code, `${code}: ${err.message}`);
    assert(err.message.startsWith("Cannot "), err.message);
  }
  assertEquals(await store.auditTrail({ limit: 100 }), before);
  assertEquals((await store.listUsers()).map((u) => u.name), ["bob"]);
  assertEquals(await store.listInvites(), []);
  assertEquals(await store.listRooms(), []);
});

Deno.test("general cannot be archived, other rooms can, and topics are kept", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  await store.ensureRoom("general", "room", 1);
  const svc = new AdminService({ store });
  const err = await assertRejects(() =>
    svc.setArchived(ACTOR, { name: "general", archived: true })
  );
  assertEquals((err as ChatError).code, "cannot_archive");
  const r = await svc.createRoom(ACTOR, { name: "Ops", topic: "  on call  " });
  assertEquals([r.name, r.topic], ["ops", "on call"]);
  assertEquals(
    (await assertRejects(() => svc.createRoom(ACTOR, { name: "ops", topic: "" })) as ChatError)
      .code,
    "room_exists",
  );
  assertEquals(await svc.setArchived(ACTOR, { name: "OPS", archived: true }), { changed: true });
  assertEquals(await svc.setTopic(ACTOR, { name: "ops", topic: "" }), { changed: true });
  const ops = await store.roomByName("ops");
  assertEquals([ops!.archived, ops!.topic], [true, ""]);
});

Deno.test("an invite code is 160 random bits in base32, stored only as its SHA-256", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const svc = new AdminService({ store, clock: () => 1000 });
  const { code, invite } = await svc.createInvite(ACTOR, { uses: 2, expiresAt: 5000 });
  assert(/^[a-z2-7]{32}$/.test(code), code);
  assertEquals([invite.status, invite.usesLeft, invite.expiresAt], ["active", 2, 5000]);
  const [stored] = await store.listInvites();
  assertEquals(stored.codeHash, await inviteCodeHash(code));
  assert(!JSON.stringify(await store.listInvites()).includes(code));
  assert(!JSON.stringify(await store.auditTrail({ limit: 10 })).includes(code));
  assert(await registerWithInvite(store, await inviteCodeHash(code), 2000));
  assert(await registerWithInvite(store, await inviteCodeHash(code), 2000));
  assertEquals((await svc.listInvites())[0].status, "used up");
  const later = new AdminService({ store, clock: () => 6000 });
  const second = await later.createInvite(ACTOR, { uses: null, expiresAt: null });
  assertEquals(await later.revokeInvite(ACTOR, { id: second.invite.id }), { changed: true });
  assert(!(await registerWithInvite(store, await inviteCodeHash(second.code), 7000)));
  assertEquals((await later.listInvites()).map((i) => i.status), ["expired", "revoked"]);
});

Deno.test("runAdminOp() checks the op name, the actor and argument types before anything runs", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const svc = new AdminService({ store });
  const cases: [unknown, unknown, unknown, string][] = [
    ["users.nope", ACTOR, {}, "unknown_op"],
    ["__proto__", ACTOR, {}, "unknown_op"],
    ["users.add", "root", { name: "x" }, "bad_request"],
    ["users.add", ACTOR, [], "bad_request"],
    ["users.add", ACTOR, { name: 5, passwordHash: HASH, role: "member" }, "bad_request"],
    ["users.add", ACTOR, { name: "dave", passwordHash: HASH, role: "root" }, "bad_request"],
    ["invites.revoke", ACTOR, { id: "1" }, "bad_request"],
    ["history.prune", ACTOR, { beforeTs: 1.5, room: null }, "bad_request"],
    ["certs.changed", ACTOR, { action: "steal", fingerprint: null }, "bad_request"],
  ];
  for (const [op, actor, args, code] of cases) {
    const err = await assertRejects(() => runAdminOp(svc, op, actor, args));
    assertEquals((err as ChatError).code, code, String(op));
  }
  assertEquals(await store.listUsers(), []);
  const u = await runAdminOp(svc, "users.add", ACTOR, {
    name: "dave",
    passwordHash: HASH,
    role: "member",
  });
  assertEquals((u as { name: string }).name, "dave");
});

Deno.test("prune deletes only older messages (of one room when asked) and search follows", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const svc = new AdminService({ store });
  const u = await store.createUser({ name: "erin", passwordHash: HASH, ts: 0 });
  const general = await store.ensureRoom("general", "room", 0);
  const ops = await store.ensureRoom("ops", "room", 0);
  for (let i = 0; i < 4500; i++) {
    void store.appendMessage({
      roomId: i % 2 ? ops.id : general.id,
      senderId: u.id,
      body: `note ${i} ${i % 100 === 0 ? "needle" : "hay"}`,
      cid: `c${i}`,
      ts: 1000 + i,
    });
  }
  await store.appendMessage({
    roomId: general.id,
    senderId: u.id,
    body: "last",
    cid: "z",
    ts: 9999,
  });
  assertEquals((await store.searchMessages({ text: "needle", limit: 100 })).length, 45);
  assertEquals(await svc.prune(ACTOR, { beforeTs: 1000 + 3000, room: "ops" }), { deleted: 1500 });
  assertEquals((await store.messageRange({ roomId: ops.id })).count, 750);
  assertEquals((await store.messageRange({ roomId: general.id })).count, 2251);
  assertEquals(await svc.prune(ACTOR, { beforeTs: 1000 + 4000, room: null }), { deleted: 2500 });
  const left = await store.messageRange({});
  assertEquals(left.count, 501);
  // The FTS index followed the deletes: only needles at or after ts 5000 remain.
  const needles = await store.searchMessages({ text: "needle", limit: 100 });
  assertEquals(needles.map((m) => m.ts), [
    1000 + 4400,
    1000 + 4300,
    1000 + 4200,
    1000 + 4100,
    1000 + 4000,
  ]);
  const audit = await store.auditTrail({ limit: 10 });
  assertEquals(audit.map((e) => [e.action, e.target, e.detail?.deleted]), [
    ["history.prune", "ops", 1500],
    ["history.prune", null, 2500],
  ]);
});
