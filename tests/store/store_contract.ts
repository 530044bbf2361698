// Owns the storage contract suite: every Store implementation must pass these, unchanged.
import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import type { Store } from "../../src/store/store.ts";
import { ChatError } from "../../src/errors.ts";

/** Creates a fresh, empty store and a cleanup. */
export type StoreFactory = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

/** Registers the contract tests for one implementation. */
export function runStoreContract(engine: string, make: StoreFactory): void {
  const t = (name: string, fn: (s: Store) => Promise<void>) =>
    Deno.test(`${engine} store: ${name}`, async () => {
      const { store, cleanup } = await make();
      try {
        await fn(store);
      } finally {
        await store.close();
        await cleanup();
      }
    });

  t("user names are unique without regard to case and keep their spelling", async (s) => {
    const u = await s.createUser({ name: "Alice", passwordHash: "h", ts: 1 });
    assertEquals([u.name, u.role, u.disabled], ["Alice", "member", false]);
    assertEquals((await s.userByName("ALICE"))?.id, u.id);
    const err = await assertRejects(
      () => s.createUser({ name: "alice", passwordHash: "h", ts: 2 }),
      ChatError,
    );
    assertEquals(err.code, "user_exists");
  });

  t("updateUser changes role, disabled and hash", async (s) => {
    const u = await s.createUser({ name: "bob", passwordHash: "h1", ts: 1 });
    await s.updateUser(u.id, { role: "admin", disabled: true, passwordHash: "h2" });
    const v = await s.userById(u.id);
    assertEquals([v?.role, v?.disabled, v?.passwordHash], ["admin", true, "h2"]);
  });

  t("messages are idempotent on (sender, cid) and ordered by id", async (s) => {
    const u = await s.createUser({ name: "cat", passwordHash: "h", ts: 1 });
    const r = await s.ensureRoom("general", "room", 1);
    const [a, b, dup] = await Promise.all([
      s.appendMessage({ roomId: r.id, senderId: u.id, body: "one", cid: "1", ts: 10 }),
      s.appendMessage({ roomId: r.id, senderId: u.id, body: "two", cid: "2", ts: 11 }),
      s.appendMessage({ roomId: r.id, senderId: u.id, body: "one again", cid: "1", ts: 12 }),
    ]);
    assert(a.message.id < b.message.id);
    assertEquals([dup.duplicate, dup.message.id, dup.message.body], [true, a.message.id, "one"]);
    const after = await s.messagesAfter(r.id, 0, 10);
    assertEquals(after.map((m) => m.body), ["one", "two"]);
    assertEquals((await s.messagesAfter(r.id, a.message.id, 10)).map((m) => m.body), ["two"]);
  });

  t("history pages newest first internally, oldest first out, with more", async (s) => {
    const u = await s.createUser({ name: "dan", passwordHash: "h", ts: 1 });
    const r = await s.ensureRoom("general", "room", 1);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(
        (await s.appendMessage({ roomId: r.id, senderId: u.id, body: `m${i}`, cid: `${i}`, ts: i }))
          .message.id,
      );
    }
    const p = await s.history(r.id, 2);
    assertEquals([p.messages.map((m) => m.body), p.more], [["m3", "m4"], true]);
    const q = await s.history(r.id, 10, ids[3]);
    assertEquals([q.messages.map((m) => m.body), q.more], [["m0", "m1", "m2"], false]);
  });

  t("memberships and direct-message conversations", async (s) => {
    const a = await s.createUser({ name: "eva", passwordHash: "h", ts: 1 });
    const b = await s.createUser({ name: "fay", passwordHash: "h", ts: 1 });
    const room = await s.ensureRoom("ops", "room", 1);
    await s.addMember(room.id, a.id, 2);
    await s.addMember(room.id, a.id, 3);
    assert(await s.isMember(room.id, a.id));
    assert(!(await s.isMember(room.id, b.id)));
    assertEquals((await s.roomsOfUser(a.id)).map((r) => r.name), ["ops"]);
    const dm = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
    await s.addMember(dm.id, a.id, 1);
    await s.addMember(dm.id, b.id, 1);
    assertEquals((await s.roomsOfUser(a.id)).map((r) => r.name), ["ops"], "DMs are not rooms");
    await s.appendMessage({ roomId: dm.id, senderId: a.id, body: "hi", cid: "d", ts: 5 });
    await s.appendMessage({ roomId: room.id, senderId: a.id, body: "room", cid: "r", ts: 6 });
    assertEquals((await s.directMessagesAfter(b.id, 0, 10)).map((m) => m.body), ["hi"]);
    await s.removeMember(room.id, a.id);
    assertEquals(await s.roomsOfUser(a.id), []);
    const listed = await s.listRooms();
    assertEquals(listed.map((r) => [r.name, r.members]), [["ops", 0]]);
  });

  t("invites are consumed once per use and expire", async (s) => {
    await s.createInvite({
      codeHash: "once",
      usesLeft: 1,
      expiresAt: null,
      ts: 1,
      createdBy: null,
    });
    await s.createInvite({
      codeHash: "old",
      usesLeft: null,
      expiresAt: 100,
      ts: 1,
      createdBy: null,
    });
    assertEquals(await s.consumeInvite("once", 50), true);
    assertEquals(await s.consumeInvite("once", 50), false);
    assertEquals(await s.consumeInvite("old", 99), true);
    assertEquals(await s.consumeInvite("old", 100), false);
    assertEquals(await s.consumeInvite("unknown", 1), false);
    const inv = (await s.listInvites()).find((i) => i.codeHash === "old")!;
    assert(await s.revokeInvite(inv.id));
    assertEquals(await s.consumeInvite("old", 1), false);
  });

  t("audit entries keep their fields and order", async (s) => {
    await s.audit({ ts: 1, actor: "a", action: "login", target: "a", remote: "127.0.0.1" });
    await s.audit({
      ts: 2,
      actor: null,
      action: "login_failed",
      target: null,
      remote: "::1",
      detail: { reason: "x" },
    });
    const trail = await s.auditTrail({ limit: 10 });
    assertEquals(trail.map((e) => [e.action, e.remote, e.detail]), [
      ["login", "127.0.0.1", undefined],
      ["login_failed", "::1", { reason: "x" }],
    ]);
  });
}
