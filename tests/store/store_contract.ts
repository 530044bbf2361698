// Owns the storage contract suite: every Store implementation must pass these, unchanged.
import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import {
  dmStream,
  type MessageRecord,
  type NewMessage,
  roomStream,
  type Store,
  type UserRecord,
} from "../../src/store/store.ts";
import { ChatError } from "../../src/errors.ts";

/**
 * Creates a fresh, empty store and a cleanup. `note` (e.g. a PRNG seed) is added to the message
 * of a failing test so the run can be replayed.
 */
/**
 * Registers a fresh account with invite `codeHash` at `ts`: true when it was created (one use
 * taken), false when the store refused the invite (`invalid_invite`).
 */
export async function registerWithInvite(s: Store, codeHash: string, ts: number): Promise<boolean> {
  try {
    await s.createUser({
      name: `inv${++invitedUsers}`,
      passwordHash: "h",
      ts,
      inviteCodeHash: codeHash,
    });
    return true;
  } catch (err) {
    if (err instanceof ChatError && err.code === "invalid_invite") return false;
    throw err;
  }
}
let invitedUsers = 0;

export type StoreFactory = () => Promise<
  { store: Store; cleanup: () => Promise<void>; note?: string }
>;

/** What an engine's run of the suite leaves out: test names, each with its reason in a comment. */
export interface ContractOptions {
  skip?: string[];
}

/**
 * Registers the contract tests for one engine, as `<engine> store: <name>`. Every method of Store
 * is covered, and the ordering rules written on the interface (store.ts, items 1–4).
 */
export function runStoreContract(
  engine: string,
  make: StoreFactory,
  opts: ContractOptions = {},
): void {
  const skip = new Set(opts.skip ?? []);
  const names = new Set<string>();
  const t = (name: string, fn: (s: Store) => Promise<void>) => {
    names.add(name);
    Deno.test({
      name: `${engine} store: ${name}`,
      ignore: skip.has(name),
      async fn() {
        const { store, cleanup, note } = await make();
        try {
          await fn(store);
        } catch (err) {
          if (note && err instanceof Error) err.message += ` [${note}]`;
          throw err;
        } finally {
          await store.close();
          await cleanup();
        }
      },
    });
  };

  /** Helpers bound to one store. */
  const user = (s: Store, name: string) => s.createUser({ name, passwordHash: `h-${name}`, ts: 1 });
  const msg = (roomId: number, senderId: number, cid: string, ts = 1, body = cid): NewMessage => ({
    roomId,
    senderId,
    body,
    cid,
    ts,
  });
  const ids = (ms: MessageRecord[]) => ms.map((m) => m.id);
  const ascending = (xs: number[]) => xs.every((x, i) => i === 0 || xs[i - 1] < x);

  // users

  t(
    "createUser keeps the spelling, defaults to member, and names are unique in any case",
    async (s) => {
      const u = await s.createUser({ name: "Alice", passwordHash: "h", ts: 7 });
      assertEquals([u.name, u.role, u.disabled, u.removed, u.createdAt], [
        "Alice",
        "member",
        false,
        false,
        7,
      ]);
      const admin = await s.createUser({ name: "root", passwordHash: "h", role: "admin", ts: 8 });
      assertEquals(admin.role, "admin");
      assert(admin.id > u.id);
      const err = await assertRejects(
        () => s.createUser({ name: "alice", passwordHash: "h", ts: 2 }),
        ChatError,
      );
      assertEquals(err.code, "user_exists");
    },
  );

  t("userByName ignores case; userById and userByName answer null for unknown users", async (s) => {
    const u = await user(s, "Bea");
    assertEquals((await s.userByName("BEA"))?.id, u.id);
    assertEquals((await s.userById(u.id))?.name, "Bea");
    assertEquals((await s.userById(u.id))?.passwordHash, "h-Bea");
    assertEquals(await s.userByName("nobody"), null);
    assertEquals(await s.userById(u.id + 1000), null);
  });

  t("listUsers is ordered by name without regard to case", async (s) => {
    for (const n of ["carl", "Ann", "bob"]) await user(s, n);
    assertEquals((await s.listUsers()).map((u) => u.name), ["Ann", "bob", "carl"]);
  });

  t("updateUser changes role, disabled and hash, each alone or together", async (s) => {
    const u = await user(s, "bob");
    await s.updateUser(u.id, { role: "admin", disabled: true, passwordHash: "h2" });
    const v = await s.userById(u.id);
    assertEquals([v?.role, v?.disabled, v?.passwordHash], ["admin", true, "h2"]);
    await s.updateUser(u.id, { disabled: false });
    const w = await s.userById(u.id);
    assertEquals([w?.role, w?.disabled, w?.passwordHash], ["admin", false, "h2"]);
    await s.updateUser(u.id + 1000, { role: "admin" }); // unknown: no effect, no error
  });

  t("writes take effect in call order, without awaiting each", async (s) => {
    const u = await user(s, "ord");
    const writes = [
      s.updateUser(u.id, { disabled: true }),
      s.updateUser(u.id, { disabled: false }),
      s.updateUser(u.id, { passwordHash: "first" }),
      s.updateUser(u.id, { passwordHash: "second" }),
    ];
    await Promise.all(writes);
    const v = await s.userById(u.id);
    assertEquals([v?.disabled, v?.passwordHash], [false, "second"]);
  });

  t(
    "removeUser leaves a tombstone: the name is free, the id, messages and DMs stay its own",
    async (s) => {
      const alice = await user(s, "alice");
      const bob = await user(s, "bob");
      const room = await s.ensureRoom("general", "room", 1);
      await s.addMember(room.id, alice.id, 1);
      await s.addMember(room.id, bob.id, 1);
      const dm = await s.ensureRoom(`dm:${alice.id}:${bob.id}`, "dm", 1);
      await s.addMember(dm.id, alice.id, 1);
      await s.addMember(dm.id, bob.id, 1);
      const said = await s.appendMessage(msg(room.id, bob.id, "c1"));
      const told = await s.appendMessage(msg(dm.id, bob.id, "c2"));

      await s.removeUser(bob.id);
      assertEquals(await s.userByName("bob"), null);
      const tomb = (await s.userById(bob.id)) as UserRecord;
      assertEquals([tomb.id, tomb.removed, tomb.disabled, tomb.name, tomb.passwordHash], [
        bob.id,
        true,
        true,
        "",
        "",
      ]);
      assertEquals((await s.listUsers()).map((u) => u.name), ["alice"]);
      assertEquals([await s.isMember(room.id, bob.id), await s.isMember(dm.id, bob.id)], [
        false,
        false,
      ]);
      assertEquals(await s.roomsOfUser(bob.id), []);

      const mallory = await user(s, "mallory");
      const bob2 = await user(s, "Bob");
      assert(mallory.id > bob.id && bob2.id > mallory.id, "a new account never gets an old id");
      const again = await s.appendMessage(msg(room.id, bob2.id, "c1"));
      assertEquals(again.duplicate, false, "an old cid of the removed user is not the new user's");
      assert(again.message.id > told.message.id);
      const room2 = await s.messagesAfter(room.id, 0, 10);
      assertEquals(room2.map((m) => m.senderId), [bob.id, bob2.id]);
      assertEquals(room2[0].id, said.message.id);
      assertEquals(ids(await s.directMessagesAfter(alice.id, 0, 10)), [told.message.id]);
      assertEquals(await s.directMessagesAfter(bob2.id, 0, 10), []);
      await s.removeUser(bob.id); // again: no effect
      await s.removeUser(bob2.id + 1000); // unknown: no effect
    },
  );

  // rooms and memberships

  t(
    "ensureRoom creates once and returns the same room after; roomByName and roomById find it",
    async (s) => {
      const [a, b] = await Promise.all([
        s.ensureRoom("ops", "room", 5),
        s.ensureRoom("ops", "room", 6),
      ]);
      assertEquals(a, b);
      assertEquals([a.name, a.kind, a.topic, a.archived, a.createdAt], [
        "ops",
        "room",
        "",
        false,
        5,
      ]);
      assertEquals(await s.ensureRoom("ops", "room", 9), a);
      assertEquals(await s.roomByName("ops"), a);
      assertEquals(await s.roomById(a.id), a);
      assertEquals(await s.roomByName("nowhere"), null);
      assertEquals(await s.roomById(a.id + 1000), null);
      const dm = await s.ensureRoom("dm:1:2", "dm", 1);
      assertEquals(dm.kind, "dm");
      assert(dm.id > a.id);
    },
  );

  t(
    "updateRoom sets topic and archived; listRooms lists rooms (not DMs) by name with members",
    async (s) => {
      const u = await user(s, "eva");
      const zed = await s.ensureRoom("zed", "room", 1);
      const ops = await s.ensureRoom("ops", "room", 1);
      await s.ensureRoom("dm:1:2", "dm", 1);
      await s.addMember(ops.id, u.id, 1);
      await s.updateRoom(zed.id, { topic: "last", archived: true });
      assertEquals([(await s.roomById(zed.id))?.topic, (await s.roomById(zed.id))?.archived], [
        "last",
        true,
      ]);
      await s.updateRoom(zed.id, { archived: false });
      assertEquals((await s.roomById(zed.id))?.topic, "last");
      await s.updateRoom(zed.id, { archived: true });
      const listed = await s.listRooms();
      assertEquals(listed.map((r) => [r.name, r.members, r.archived]), [
        ["ops", 1, false],
        ["zed", 0, true],
      ]);
    },
  );
  t(
    "updateRoom keeps who set the topic and when; other changes keep them; a topic without a setter has none",
    async (s) => {
      const r = await s.ensureRoom("ops", "room", 1);
      const fresh = await s.roomById(r.id);
      assertEquals([fresh?.topicBy ?? null, fresh?.topicAt ?? null], [null, null]);
      await s.updateRoom(r.id, { topic: "deploys", topicBy: "alice", topicAt: 1_700_000_000_123 });
      const set = await s.roomByName("ops");
      assertEquals([set?.topic, set?.topicBy, set?.topicAt], [
        "deploys",
        "alice",
        1_700_000_000_123,
      ]);
      await s.updateRoom(r.id, { archived: true });
      await s.updateRoom(r.id, { private: true });
      const kept = await s.roomById(r.id);
      assertEquals([kept?.topic, kept?.topicBy, kept?.topicAt], [
        "deploys",
        "alice",
        1_700_000_000_123,
      ]);
      await s.updateRoom(r.id, { topic: "by someone unknown" });
      const unknown = await s.roomById(r.id);
      assertEquals([unknown?.topic, unknown?.topicBy, unknown?.topicAt], [
        "by someone unknown",
        null,
        null,
      ]);
    },
  );

  t(
    "createRoom: private and owner kept, an existing name not created again, limits refused in the same write",
    async (s) => {
      const u = await user(s, "ida");
      const limits = { maxRooms: 3, maxPerOwner: 2 };
      const a = await s.createRoom({
        name: "board",
        ts: 5,
        private: true,
        ownerId: u.id,
        ...limits,
      });
      assertEquals([a.created, a.room.private, a.room.ownerId, a.room.kind], [
        true,
        true,
        u.id,
        "room",
      ]);
      const again = await s.createRoom({
        name: "board",
        ts: 6,
        private: false,
        ownerId: null,
        ...limits,
      });
      assertEquals([again.created, again.room.id, again.room.private], [false, a.room.id, true]);
      await s.createRoom({ name: "two", ts: 5, private: false, ownerId: u.id, ...limits });
      // Past the owner's limit: refused, nothing created (checked inside the write).
      const both = await Promise.allSettled([
        s.createRoom({ name: "three", ts: 5, private: false, ownerId: u.id, ...limits }),
        s.createRoom({ name: "four", ts: 5, private: false, ownerId: u.id, ...limits }),
      ]);
      for (const r of both) {
        assert(r.status === "rejected" && (r.reason as ChatError).code === "too_many_rooms");
      }
      await s.createRoom({ name: "admins", ts: 5, private: false, ownerId: null, ...limits });
      await assertRejects(
        () => s.createRoom({ name: "more", ts: 5, private: false, ownerId: null, ...limits }),
        ChatError,
        "maximum of 3 rooms",
      );
      assertEquals((await s.listRooms()).map((r) => r.name), ["admins", "board", "two"]);
      await s.updateRoom(a.room.id, { private: false });
      assertEquals((await s.roomById(a.room.id))?.private, false);
    },
  );

  t(
    "roomsPage: by name after the cursor, private rooms only to members, no archived; roomMembers by name",
    async (s) => {
      const eva = await user(s, "eva");
      const bo = await user(s, "Bo");
      const mk = (name: string, priv = false) =>
        s.createRoom({ name, ts: 1, private: priv, ownerId: null, maxRooms: 99, maxPerOwner: 99 });
      const a = (await mk("a")).room;
      const b = (await mk("b", true)).room;
      const c = (await mk("c")).room;
      await s.ensureRoom("dm:1:2", "dm", 1);
      await s.addMember(b.id, eva.id, 1);
      await s.addMember(b.id, bo.id, 1);
      await s.updateRoom(c.id, { archived: true });
      const page = async (q: { after: string; limit: number; visibleTo?: number }) =>
        (await s.roomsPage(q)).map((r) => [r.name, r.members]);
      assertEquals(await page({ after: "", limit: 10 }), [["a", 0], ["b", 2]]);
      assertEquals(await page({ after: "", limit: 10, visibleTo: eva.id }), [["a", 0], ["b", 2]]);
      const other = await user(s, "zoe");
      assertEquals(await page({ after: "", limit: 10, visibleTo: other.id }), [["a", 0]]);
      assertEquals(await page({ after: "a", limit: 1 }), [["b", 2]]);
      assertEquals(await page({ after: "b", limit: 10 }), []);
      assertEquals(await s.roomMembers(b.id), [{ id: bo.id, name: "Bo" }, {
        id: eva.id,
        name: "eva",
      }]);
      assertEquals(await s.roomMembers(a.id), []);
    },
  );

  t(
    "memberships: addMember is idempotent; roomsOfUser leaves out DMs and archived rooms",
    async (s) => {
      const a = await user(s, "eva");
      const b = await user(s, "fay");
      const room = await s.ensureRoom("ops", "room", 1);
      const old = await s.ensureRoom("old", "room", 1);
      await s.addMember(room.id, a.id, 2);
      await s.addMember(room.id, a.id, 3);
      await s.addMember(old.id, a.id, 3);
      await s.updateRoom(old.id, { archived: true });
      assert(await s.isMember(room.id, a.id));
      assert(!(await s.isMember(room.id, b.id)));
      assertEquals((await s.roomsOfUser(a.id)).map((r) => r.name), ["ops"]);
      const dm = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
      await s.addMember(dm.id, a.id, 1);
      assertEquals((await s.roomsOfUser(a.id)).map((r) => r.name), ["ops"], "DMs are not rooms");
      assert(await s.isMember(dm.id, a.id));
      await s.removeMember(room.id, a.id);
      await s.removeMember(room.id, b.id); // not a member: no effect
      assertEquals(await s.roomsOfUser(a.id), []);
      assertEquals((await s.listRooms()).find((r) => r.name === "ops")?.members, 0);
    },
  );

  // messages

  t(
    "appendMessage is idempotent on (sender, cid): the duplicate gets the original back",
    async (s) => {
      const u = await user(s, "cat");
      const v = await user(s, "dog");
      const r = await s.ensureRoom("general", "room", 1);
      const [a, b, dup] = await Promise.all([
        s.appendMessage(msg(r.id, u.id, "1", 10, "one")),
        s.appendMessage(msg(r.id, u.id, "2", 11, "two")),
        s.appendMessage(msg(r.id, u.id, "1", 12, "one again")),
      ]);
      assertEquals([a.duplicate, b.duplicate], [false, false]);
      assertEquals(a.message, {
        id: a.message.id,
        roomId: r.id,
        senderId: u.id,
        body: "one",
        cid: "1",
        ts: 10,
      });
      assertEquals([dup.duplicate, dup.message], [true, a.message]);
      const other = await s.appendMessage(msg(r.id, v.id, "1", 13, "same cid, other sender"));
      assertEquals(other.duplicate, false);
      assertEquals((await s.messagesAfter(r.id, 0, 10)).map((m) => m.body), [
        "one",
        "two",
        "same cid, other sender",
      ]);
    },
  );

  t(
    "a notice is stored as one and every read gives it back with notice: true; others have no notice field",
    async (s) => {
      const u = await user(s, "nora");
      const v = await user(s, "otto");
      const r = await s.ensureRoom("general", "room", 1);
      const dm = await s.ensureRoom(`dm:${u.id}:${v.id}`, "dm", 1);
      await s.addMember(dm.id, u.id, 1);
      await s.addMember(dm.id, v.id, 1);
      const note = await s.appendMessage({
        ...msg(r.id, u.id, "n1", 10, "build green"),
        notice: true,
      });
      const plain = await s.appendMessage(msg(r.id, u.id, "p1", 11, "plain words"));
      const dmNote = await s.appendMessage({
        ...msg(dm.id, u.id, "n2", 12, "dm notice"),
        notice: true,
        dmUsers: [u.id, v.id],
      });
      assertEquals(note.message.notice, true);
      assertEquals("notice" in plain.message, false);
      assertEquals(dmNote.message.notice, true);
      // The duplicate of a notice is the notice.
      const dup = await s.appendMessage({ ...msg(r.id, u.id, "n1", 13, "again"), notice: true });
      assertEquals([dup.duplicate, dup.message], [true, note.message]);
      const flags = (ms: { body: string; notice?: true }[]) =>
        ms.map((m) => `${m.body}:${m.notice === true}`);
      assertEquals(flags(await s.messagesAfter(r.id, 0, 10)), [
        "build green:true",
        "plain words:false",
      ]);
      assertEquals(flags((await s.history(r.id, 10)).messages), [
        "build green:true",
        "plain words:false",
      ]);
      assertEquals(flags(await s.streamAfter(roomStream(r.id), 0, 10)), [
        "build green:true",
        "plain words:false",
      ]);
      assertEquals(flags(await s.directMessagesAfter(v.id, 0, 10)), ["dm notice:true"]);
      assertEquals(flags(await s.streamAfter(dmStream(v.id), 0, 10)), ["dm notice:true"]);
      assertEquals(
        flags(await s.messagesPage({ afterId: 0, maxId: dmNote.message.id, limit: 10 })),
        ["build green:true", "plain words:false", "dm notice:true"],
      );
    },
  );

  t("appendMessage calls made in order commit in that order, awaited or not", async (s) => {
    const u = await user(s, "seq");
    const rooms = await Promise.all(["a", "b", "c"].map((n) => s.ensureRoom(n, "room", 1)));
    const roomOf = (i: number) => rooms[i % 3].id;
    const pending = Array.from(
      { length: 60 },
      (_, i) => s.appendMessage(msg(roomOf(i), u.id, `c${i}`)),
    );
    const sent = (await Promise.all(pending)).map((r) => r.message);
    assert(ascending(ids(sent)), `ids out of call order: ${ids(sent)}`);
    for (let i = 0; i < 5; i++) {
      sent.push((await s.appendMessage(msg(roomOf(i), u.id, `d${i}`))).message);
    }
    assert(ascending(ids(sent)));
    for (const r of rooms) {
      assertEquals(
        ids(await s.messagesAfter(r.id, 0, 100)),
        ids(sent.filter((m) => m.roomId === r.id)),
      );
    }
  });

  t("messagesAfter returns ids above afterId, ascending, at most limit", async (s) => {
    const u = await user(s, "pag");
    const r = await s.ensureRoom("general", "room", 1);
    const other = await s.ensureRoom("other", "room", 1);
    const all: number[] = [];
    for (let i = 0; i < 6; i++) {
      all.push((await s.appendMessage(msg(r.id, u.id, `r${i}`))).message.id);
      await s.appendMessage(msg(other.id, u.id, `o${i}`));
    }
    assertEquals(ids(await s.messagesAfter(r.id, 0, 100)), all);
    assertEquals(ids(await s.messagesAfter(r.id, all[1], 3)), all.slice(2, 5));
    assertEquals(await s.messagesAfter(r.id, all[5], 10), []);
  });

  t(
    "directMessagesAfter covers all the user's conversations, ascending, and no rooms",
    async (s) => {
      const a = await user(s, "ann");
      const b = await user(s, "ben");
      const c = await user(s, "cy");
      const room = await s.ensureRoom("general", "room", 1);
      const ab = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
      const ac = await s.ensureRoom(`dm:${a.id}:${c.id}`, "dm", 1);
      for (const [dm, peer] of [[ab, b], [ac, c]] as const) {
        await s.addMember(dm.id, a.id, 1);
        await s.addMember(dm.id, peer.id, 1);
      }
      await s.addMember(room.id, a.id, 1);
      const sent = await Promise.all([
        s.appendMessage(msg(ab.id, a.id, "1")),
        s.appendMessage(msg(ac.id, c.id, "2")),
        s.appendMessage(msg(room.id, a.id, "3")),
        s.appendMessage(msg(ab.id, b.id, "4")),
        s.appendMessage(msg(ac.id, a.id, "5")),
      ]);
      const dmIds = ids(sent.map((x) => x.message)).filter((_, i) => i !== 2);
      assertEquals(ids(await s.directMessagesAfter(a.id, 0, 10)), dmIds);
      assertEquals(ids(await s.directMessagesAfter(a.id, dmIds[0], 2)), dmIds.slice(1, 3));
      assertEquals(ids(await s.directMessagesAfter(b.id, 0, 10)), [dmIds[0], dmIds[2]]);
      assertEquals(ids(await s.directMessagesAfter(c.id, 0, 10)), [dmIds[1], dmIds[3]]);
    },
  );

  t("latestIds gives the newest id per room (0 when empty) and of the user's DMs", async (s) => {
    const a = await user(s, "lia");
    const b = await user(s, "lou");
    const r1 = await s.ensureRoom("one", "room", 1);
    const r2 = await s.ensureRoom("two", "room", 1);
    const dm = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
    await s.addMember(dm.id, a.id, 1);
    await s.addMember(dm.id, b.id, 1);
    const before = await s.latestIds(a.id, [r1.id, r2.id]);
    assertEquals([[...before.rooms], before.dm], [[[r1.id, 0], [r2.id, 0]], 0]);
    await s.appendMessage(msg(r1.id, a.id, "1"));
    const newest = (await s.appendMessage(msg(r1.id, b.id, "2"))).message.id;
    const d = (await s.appendMessage(msg(dm.id, b.id, "3"))).message.id;
    const after = await s.latestIds(a.id, [r1.id, r2.id]);
    assertEquals([after.rooms.get(r1.id), after.rooms.get(r2.id), after.dm], [newest, 0, d]);
  });

  t("appendMessage links a new message to the previous one of each of its streams", async (s) => {
    const a = await user(s, "lin");
    const b = await user(s, "lee");
    const c = await user(s, "lux");
    const room = await s.ensureRoom("general", "room", 1);
    const ab = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
    const ac = await s.ensureRoom(`dm:${a.id}:${c.id}`, "dm", 1);
    for (const [dm, peer] of [[ab, b], [ac, c]] as const) {
      await s.addMember(dm.id, a.id, 1);
      await s.addMember(dm.id, peer.id, 1);
    }
    const dm = (r: number, from: number, to: number, cid: string) => ({
      ...msg(r, from, cid),
      dmUsers: [from, to],
    });
    // Issued without awaiting: each link names the message before it in call order.
    const [r1, d1, r2, d2, d3] = await Promise.all([
      s.appendMessage(msg(room.id, a.id, "r1")),
      s.appendMessage(dm(ab.id, a.id, b.id, "d1")),
      s.appendMessage(msg(room.id, b.id, "r2")),
      s.appendMessage(dm(ac.id, c.id, a.id, "d2")),
      s.appendMessage(dm(ab.id, b.id, a.id, "d3")),
    ]);
    const links = (x: { links: { stream: string; prev: number }[] }) =>
      Object.fromEntries(x.links.map((l) => [l.stream, l.prev]));
    assertEquals(links(r1), { [roomStream(room.id)]: 0 });
    assertEquals(links(r2), { [roomStream(room.id)]: r1.message.id });
    assertEquals(links(d1), { [dmStream(a.id)]: 0, [dmStream(b.id)]: 0 });
    assertEquals(links(d2), { [dmStream(c.id)]: 0, [dmStream(a.id)]: d1.message.id });
    assertEquals(links(d3), { [dmStream(b.id)]: d1.message.id, [dmStream(a.id)]: d2.message.id });
    const dup = await s.appendMessage(msg(room.id, a.id, "r1"));
    assertEquals([dup.duplicate, dup.links], [true, []]);
    const notes = await s.ensureRoom(`dm:${a.id}:${a.id}`, "dm", 1);
    await s.addMember(notes.id, a.id, 1);
    const self = await s.appendMessage({ ...msg(notes.id, a.id, "note"), dmUsers: [a.id, a.id] });
    assertEquals(links(self), { [dmStream(a.id)]: d3.message.id }, "a note to self: one link");
  });

  t(
    "streamHeads gives each stream's newest id (0 when empty); streamAfter reads a stream",
    async (s) => {
      const a = await user(s, "sha");
      const b = await user(s, "shb");
      const room = await s.ensureRoom("general", "room", 1);
      const quiet = await s.ensureRoom("quiet", "room", 1);
      const ab = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
      await s.addMember(ab.id, a.id, 1);
      await s.addMember(ab.id, b.id, 1);
      const keys = [roomStream(room.id), roomStream(quiet.id), dmStream(a.id), dmStream(b.id)];
      assertEquals([...(await s.streamHeads(keys))], keys.map((k) => [k, 0]));
      const rIds: number[] = [];
      const dIds: number[] = [];
      for (let i = 0; i < 4; i++) {
        rIds.push((await s.appendMessage(msg(room.id, a.id, `r${i}`))).message.id);
        dIds.push(
          (await s.appendMessage({
            ...msg(ab.id, i % 2 ? a.id : b.id, `d${i}`),
            dmUsers: [a.id, b.id],
          }))
            .message.id,
        );
      }
      const heads = await s.streamHeads(keys);
      assertEquals(keys.map((k) => heads.get(k)), [rIds[3], 0, dIds[3], dIds[3]]);
      assertEquals(ids(await s.streamAfter(roomStream(room.id), 0, 10)), rIds);
      assertEquals(ids(await s.streamAfter(roomStream(room.id), rIds[0], 2)), rIds.slice(1, 3));
      assertEquals(
        ids(await s.streamAfter(roomStream(room.id), rIds[0], 10, rIds[3])),
        rIds.slice(1, 3),
      );
      assertEquals(ids(await s.streamAfter(dmStream(b.id), 0, 10)), dIds);
      assertEquals(ids(await s.streamAfter(dmStream(a.id), dIds[1], 10)), dIds.slice(2));
      assertEquals(await s.streamAfter(roomStream(quiet.id), 0, 10), []);
    },
  );

  t("history pages back from the newest, each page oldest first, with more", async (s) => {
    const u = await user(s, "dan");
    const r = await s.ensureRoom("general", "room", 1);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await s.appendMessage(msg(r.id, u.id, `${i}`, i, `m${i}`))).message.id);
    }
    const p = await s.history(r.id, 2);
    assertEquals([p.messages.map((m) => m.body), p.more], [["m3", "m4"], true]);
    const q = await s.history(r.id, 2, p.messages[0].id);
    assertEquals([q.messages.map((m) => m.body), q.more], [["m1", "m2"], true]);
    const z = await s.history(r.id, 10, ids[3]);
    assertEquals([z.messages.map((m) => m.body), z.more], [["m0", "m1", "m2"], false]);
    const all = await s.history(r.id, 5);
    assertEquals([all.messages.length, all.more], [5, false]);
  });

  // invites

  t("createInvite keeps its fields; listInvites lists them in creation order", async (s) => {
    const a = await s.createInvite({
      codeHash: "h1",
      usesLeft: 3,
      expiresAt: 500,
      ts: 10,
      createdBy: "admin:x",
    });
    assertEquals([a.codeHash, a.usesLeft, a.expiresAt, a.revoked, a.createdAt, a.createdBy], [
      "h1",
      3,
      500,
      false,
      10,
      "admin:x",
    ]);
    const b = await s.createInvite({
      codeHash: "h2",
      usesLeft: null,
      expiresAt: null,
      ts: 11,
      createdBy: null,
    });
    assert(b.id > a.id);
    assertEquals(await s.listInvites(), [a, b]);
  });

  t("invites are consumed once per use, expire, and can be revoked", async (s) => {
    const none = { expiresAt: null, ts: 1, createdBy: null };
    await s.createInvite({ codeHash: "once", usesLeft: 1, ...none });
    await s.createInvite({
      codeHash: "old",
      usesLeft: null,
      expiresAt: 100,
      ts: 1,
      createdBy: null,
    });
    assertEquals(await registerWithInvite(s, "once", 50), true);
    assertEquals(await registerWithInvite(s, "once", 50), false);
    assertEquals((await s.listInvites())[0].usesLeft, 0);
    assertEquals(await registerWithInvite(s, "old", 99), true);
    assertEquals(await registerWithInvite(s, "old", 100), false, "expired at expiresAt");
    assertEquals(await registerWithInvite(s, "unknown", 1), false);
    const inv = (await s.listInvites()).find((i) => i.codeHash === "old")!;
    assertEquals(await s.revokeInvite(inv.id), true);
    assertEquals(await registerWithInvite(s, "old", 1), false);
    assertEquals((await s.listInvites()).find((i) => i.id === inv.id)?.revoked, true);
    assertEquals(await s.revokeInvite(inv.id + 1000), false);
  });

  t("concurrent invited registrations never use more than the uses left", async (s) => {
    await s.createInvite({ codeHash: "two", usesLeft: 2, expiresAt: null, ts: 1, createdBy: null });
    const got = await Promise.all(Array.from({ length: 5 }, () => registerWithInvite(s, "two", 1)));
    assertEquals(got, [true, true, false, false, false]);
  });

  t(
    "createUser with an invite takes one use with the account, and none when it is refused",
    async (s) => {
      await s.createInvite({
        codeHash: "two",
        usesLeft: 2,
        expiresAt: 100,
        ts: 1,
        createdBy: null,
      });
      const usesLeft = async () =>
        (await s.listInvites()).find((i) => i.codeHash === "two")!.usesLeft;
      const ann = await s.createUser({
        name: "ann",
        passwordHash: "h",
        ts: 10,
        inviteCodeHash: "two",
      });
      assertEquals([ann.name, await usesLeft()], ["ann", 1]);
      // A taken name (any case) takes no use.
      assertEquals(
        (await assertRejects(
          () => s.createUser({ name: "ANN", passwordHash: "h", ts: 10, inviteCodeHash: "two" }),
          ChatError,
        )).code,
        "user_exists",
      );
      assertEquals(await usesLeft(), 1);
      // An unknown or expired invite creates nothing.
      assertEquals(
        (await assertRejects(
          () => s.createUser({ name: "bob", passwordHash: "h", ts: 10, inviteCodeHash: "nope" }),
          ChatError,
        )).code,
        "invalid_invite",
      );
      assertEquals(
        (await assertRejects(
          () => s.createUser({ name: "bob", passwordHash: "h", ts: 100, inviteCodeHash: "two" }),
          ChatError,
        )).code,
        "invalid_invite",
      );
      assertEquals([await s.userByName("bob"), await usesLeft()], [null, 1]);
    },
  );

  t(
    "concurrent invited registrations: one account per use, a taken name loses no use",
    async (s) => {
      await s.createInvite({
        codeHash: "two",
        usesLeft: 2,
        expiresAt: null,
        ts: 1,
        createdBy: null,
      });
      // Three registrations race for the same name and three for distinct names, all at once.
      const attempts = ["dup", "Dup", "DUP", "u1", "u2", "u3"].map((name) =>
        s.createUser({ name, passwordHash: "h", ts: 5, inviteCodeHash: "two" }).then(
          (u) => u.name,
          (err) => (err as { code?: string }).code ?? String(err),
        )
      );
      const got = await Promise.all(attempts);
      const created = got.filter((g) => g !== "user_exists" && g !== "invalid_invite");
      // Exactly two accounts (the two uses), and at most one of them among the "dup" spellings.
      assertEquals(created.length, 2, JSON.stringify(got));
      assert(created.filter((n) => n.toLowerCase() === "dup").length <= 1, JSON.stringify(got));
      assertEquals((await s.listInvites())[0].usesLeft, 0);
      const users = (await s.listUsers()).map((u) => u.name).sort();
      assertEquals(users, [...created].sort());
    },
  );

  // audit

  t(
    "audit entries keep their fields; auditTrail gives the newest, oldest first, since a time",
    async (s) => {
      await s.audit({ ts: 1, actor: "a", action: "login", target: "a", remote: "127.0.0.1" });
      await s.audit({
        ts: 2,
        actor: null,
        action: "login_failed",
        target: null,
        remote: "::1",
        detail: { reason: "x" },
      });
      await s.audit({ ts: 3, actor: "b", action: "logout", target: "b", remote: null });
      const trail = await s.auditTrail({ limit: 10 });
      assertEquals(trail.map((e) => [e.ts, e.actor, e.action, e.target, e.remote, e.detail]), [
        [1, "a", "login", "a", "127.0.0.1", undefined],
        [2, null, "login_failed", null, "::1", { reason: "x" }],
        [3, "b", "logout", "b", null, undefined],
      ]);
      assert(ascending(trail.map((e) => e.id)));
      assertEquals((await s.auditTrail({ limit: 2 })).map((e) => e.ts), [2, 3]);
      assertEquals((await s.auditTrail({ limit: 10, sinceTs: 2 })).map((e) => e.ts), [2, 3]);
    },
  );

  // administration

  t(
    "messageRange counts and finds the highest id under a filter; messagesPage pages it",
    async (s) => {
      const u = await user(s, "exp");
      const r = await s.ensureRoom("one", "room", 1);
      const q = await s.ensureRoom("two", "room", 1);
      const rIds: number[] = [];
      for (let i = 0; i < 6; i++) {
        rIds.push((await s.appendMessage(msg(r.id, u.id, `r${i}`, 100 + i))).message.id);
        await s.appendMessage(msg(q.id, u.id, `q${i}`, 100 + i));
      }
      assertEquals(await s.messageRange({}), { count: 12, maxId: rIds[5] + 1 });
      assertEquals(await s.messageRange({ roomId: r.id }), { count: 6, maxId: rIds[5] });
      assertEquals(await s.messageRange({ roomId: r.id, sinceTs: 102, untilTs: 104 }), {
        count: 2,
        maxId: rIds[3],
      });
      assertEquals(await s.messageRange({ sinceTs: 1000 }), { count: 0, maxId: 0 });
      const f = { roomId: r.id, afterId: 0, maxId: rIds[4], limit: 2 };
      assertEquals(ids(await s.messagesPage(f)), rIds.slice(0, 2));
      assertEquals(ids(await s.messagesPage({ ...f, afterId: rIds[1] })), rIds.slice(2, 4));
      assertEquals(ids(await s.messagesPage({ ...f, afterId: rIds[3] })), [rIds[4]], "up to maxId");
      assertEquals(ids(await s.messagesPage({ ...f, sinceTs: 105, maxId: rIds[5] })), [rIds[5]]);
    },
  );

  t(
    "searchMessages: all words, any case and accents, prefix*, filters, newest first",
    async (s) => {
      const u = await user(s, "sal");
      const r = await s.ensureRoom("one", "room", 1);
      const q = await s.ensureRoom("two", "room", 1);
      const put = async (room: number, body: string, ts: number) =>
        (await s.appendMessage(msg(room, u.id, `c${ts}`, ts, body))).message.id;
      const a = await put(r.id, "Deploy failed on Crème", 10);
      const b = await put(q.id, "deploy worked", 20);
      const c = await put(r.id, "deployment FAILED again", 30);
      await put(r.id, "unrelated", 40);
      assertEquals(ids(await s.searchMessages({ text: "failed", limit: 10 })), [c, a]);
      assertEquals(ids(await s.searchMessages({ text: "deploy failed", limit: 10 })), [a]);
      assertEquals(ids(await s.searchMessages({ text: "deploy*", limit: 10 })), [c, b, a]);
      assertEquals(ids(await s.searchMessages({ text: "creme", limit: 10 })), [a]);
      assertEquals(ids(await s.searchMessages({ text: "deploy*", roomId: r.id, limit: 10 })), [
        c,
        a,
      ]);
      assertEquals(ids(await s.searchMessages({ text: "deploy*", sinceTs: 20, limit: 10 })), [
        c,
        b,
      ]);
      assertEquals(ids(await s.searchMessages({ text: "deploy*", limit: 1 })), [c]);
      assertEquals(await s.searchMessages({ text: '"OR" NEAR -x:', limit: 10 }), []);
      assertEquals(await s.searchMessages({ text: "   ", limit: 10 }), []);
    },
  );

  t(
    "searchMessages with memberId: only the member's rooms and DMs, never archived ones",
    async (s) => {
      const a = await user(s, "srcha");
      const b = await user(s, "srchb");
      const c = await user(s, "srchc");
      const pub = await s.ensureRoom("pub", "room", 1);
      const priv = await s.ensureRoom("priv", "room", 1);
      const old = await s.ensureRoom("old", "room", 1);
      const ab = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
      const bc = await s.ensureRoom(`dm:${b.id}:${c.id}`, "dm", 1);
      for (const [r, u] of [[pub, a], [old, a], [ab, a], [ab, b], [priv, b], [bc, b], [bc, c]]) {
        await s.addMember(r.id, u.id, 1);
      }
      const put = async (room: number, sender: number, cid: string) =>
        (await s.appendMessage(msg(room, sender, cid, 1, `needle ${cid}`))).message.id;
      const inPub = await put(pub.id, a.id, "p");
      await put(priv.id, b.id, "x");
      const inOld = await put(old.id, a.id, "o");
      const inAb = await put(ab.id, b.id, "d");
      await put(bc.id, c.id, "e");
      assertEquals(ids(await s.searchMessages({ text: "needle", memberId: a.id, limit: 10 })), [
        inAb,
        inOld,
        inPub,
      ]);
      await s.updateRoom(old.id, { archived: true });
      assertEquals(
        ids(await s.searchMessages({ text: "needle", memberId: a.id, limit: 10 })),
        [inAb, inPub],
      );
      assertEquals(
        ids(await s.searchMessages({ text: "needle", memberId: a.id, roomId: ab.id, limit: 10 })),
        [inAb],
      );
      assertEquals(
        await s.searchMessages({ text: "needle", memberId: c.id, roomId: ab.id, limit: 10 }),
        [],
      );
    },
  );

  t("setReadMarker only moves forward, in call order", async (s) => {
    const u = await user(s, "reader");
    const r = await s.ensureRoom("one", "room", 1);
    assertEquals(await s.setReadMarker(u.id, r.id, 10), { readId: 10, moved: true });
    assertEquals(await s.setReadMarker(u.id, r.id, 5), { readId: 10, moved: false });
    assertEquals(await s.setReadMarker(u.id, r.id, 10), { readId: 10, moved: false });
    // Issued without waiting: applied in call order, the highest wins.
    const [x, y] = await Promise.all([
      s.setReadMarker(u.id, r.id, 20),
      s.setReadMarker(u.id, r.id, 15),
    ]);
    assertEquals([x, y], [{ readId: 20, moved: true }, { readId: 20, moved: false }]);
    const [state] = await s.unreadCounts(u.id, { rooms: new Map([[r.id, 0]]) });
    assertEquals(state, { roomId: r.id, readId: 20, unread: 0 });
  });

  t(
    "unreadCounts: others' messages after the marker up to the through id, and DMs with unread",
    async (s) => {
      const a = await user(s, "una");
      const b = await user(s, "unb");
      const c = await user(s, "unc");
      const r = await s.ensureRoom("one", "room", 1);
      const q = await s.ensureRoom("two", "room", 1);
      const ab = await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
      const ac = await s.ensureRoom(`dm:${a.id}:${c.id}`, "dm", 1);
      for (const room of [r, q]) for (const u of [a, b]) await s.addMember(room.id, u.id, 1);
      for (const u of [a, b]) await s.addMember(ab.id, u.id, 1);
      for (const u of [a, c]) await s.addMember(ac.id, u.id, 1);
      const put = async (room: number, sender: number, cid: string) =>
        (await s.appendMessage(msg(room, sender, cid))).message.id;
      const r1 = await put(r.id, b.id, "r1");
      await put(r.id, a.id, "r2"); // own: never unread
      const r3 = await put(r.id, b.id, "r3");
      const r4 = await put(r.id, b.id, "r4");
      const d1 = await put(ab.id, b.id, "d1");
      const d2 = await put(ab.id, b.id, "d2");
      await put(ac.id, a.id, "e1"); // only own messages: not listed
      await s.setReadMarker(a.id, r.id, r1);
      await s.setReadMarker(a.id, ab.id, d1);
      const got = await s.unreadCounts(a.id, {
        rooms: new Map([[r.id, r3], [q.id, r4]]),
        dmThrough: d2,
      });
      assertEquals(got, [
        { roomId: r.id, readId: r1, unread: 1 },
        { roomId: q.id, readId: 0, unread: 0 },
        { roomId: ab.id, readId: d1, unread: 1 },
      ]);
      const none = await s.unreadCounts(a.id, { rooms: new Map(), dmThrough: d1 });
      assertEquals(none, []);
      // b never read anything: everything a sent counts, through the id given.
      const forB = await s.unreadCounts(b.id, { rooms: new Map([[r.id, r4]]) });
      assertEquals(forB, [{ roomId: r.id, readId: 0, unread: 1 }]);
    },
  );

  t(
    "pruneMessages deletes older messages (in a room, when given) and ids are not reused after",
    async (s) => {
      const u = await user(s, "old");
      const r = await s.ensureRoom("one", "room", 1);
      const q = await s.ensureRoom("two", "room", 1);
      for (let i = 0; i < 5; i++) {
        await s.appendMessage(msg(r.id, u.id, `r${i}`, i));
        await s.appendMessage(msg(q.id, u.id, `q${i}`, i));
      }
      assertEquals(await s.pruneMessages(2, q.id), 2);
      assertEquals((await s.messagesAfter(q.id, 0, 10)).map((m) => m.cid), ["q2", "q3", "q4"]);
      assertEquals((await s.messagesAfter(r.id, 0, 10)).length, 5);
      const top = (await s.messageRange({})).maxId;
      assertEquals(await s.pruneMessages(100), 8);
      assertEquals(await s.messageRange({}), { count: 0, maxId: 0 });
      assertEquals(await s.searchMessages({ text: "r1", limit: 10 }), []);
      const next = await s.appendMessage(msg(r.id, u.id, "r0", 200));
      assertEquals(next.duplicate, false, "a pruned cid may be stored again");
      assert(next.message.id > top, `id ${next.message.id} reused (highest before was ${top})`);
    },
  );

  t("storageStats counts accounts (not removed ones), rooms (not DMs) and messages", async (s) => {
    const a = await user(s, "st1");
    const b = await user(s, "st2");
    const r = await s.ensureRoom("one", "room", 1);
    await s.ensureRoom(`dm:${a.id}:${b.id}`, "dm", 1);
    await s.appendMessage(msg(r.id, a.id, "1"));
    await s.removeUser(b.id);
    const st = await s.storageStats();
    assertEquals([st.users, st.rooms, st.messages], [1, 1, 1]);
    assert(typeof st.engine.name === "string" && st.engine.name.length > 0);
    for (const [k, v] of Object.entries(st.engine.figures)) {
      assert(Number.isFinite(v) && v >= 0, `figure ${k} = ${v}`);
    }
  });

  t(
    "session tokens: create, look up, list, touch, revoke one or all; never another user's",
    async (s) => {
      const a = await user(s, "tok1");
      const b = await user(s, "tok2");
      const tok = (userId: number, device: string, at: number) => ({
        userId,
        tokenHash: `hash-${device}`,
        device,
        createdAt: at,
        lastUsedAt: at,
        expiresAt: at + 1000,
      });
      const t1 = await s.createSessionToken(tok(a.id, "laptop", 10), 10);
      const t2 = await s.createSessionToken(tok(a.id, "phone", 20), 10);
      const t3 = await s.createSessionToken(tok(b.id, "desk", 30), 10);
      assert(t1.id < t2.id && t2.id < t3.id, "ids increase");
      assertEquals(await s.sessionToken(t1.id), { ...tok(a.id, "laptop", 10), id: t1.id });
      assertEquals(await s.sessionToken(t3.id + 1000), null);
      assertEquals((await s.listSessionTokens(a.id)).map((t) => t.device), ["laptop", "phone"]);
      await s.touchSessionToken(t1.id, 500);
      assertEquals((await s.sessionToken(t1.id))?.lastUsedAt, 500);
      await s.touchSessionToken(t3.id + 1000, 500); // unknown: no effect
      // Another user's token is never revoked by id.
      assertEquals(await s.revokeSessionTokens(a.id, t3.id), []);
      assertEquals((await s.sessionToken(t3.id))?.device, "desk");
      assertEquals(await s.revokeSessionTokens(a.id, t2.id), [t2.id]);
      assertEquals(await s.sessionToken(t2.id), null);
      await s.createSessionToken(tok(a.id, "tablet", 40), 10);
      assertEquals((await s.revokeSessionTokens(a.id)).length, 2);
      assertEquals(await s.listSessionTokens(a.id), []);
      assertEquals((await s.listSessionTokens(b.id)).length, 1);
      // Ids are never reused.
      const t5 = await s.createSessionToken(tok(a.id, "again", 50), 10);
      assert(t5.id > t3.id + 1, `token id ${t5.id} reused`);
    },
  );

  t(
    "createSessionToken keeps the newest `keep` by last use and drops the user's expired ones",
    async (s) => {
      const a = await user(s, "many");
      const b = await user(s, "other");
      const mk = (userId: number, device: string, at: number, expiresAt = at + 10_000) =>
        s.createSessionToken({
          userId,
          tokenHash: `h-${device}`,
          device,
          createdAt: at,
          lastUsedAt: at,
          expiresAt,
        }, 3);
      const old = await mk(a.id, "expires", 1, 115);
      const d1 = await mk(a.id, "d1", 100);
      await mk(a.id, "d2", 110);
      await mk(b.id, "b", 115);
      await s.touchSessionToken(d1.id, 200); // used lately: kept
      assertEquals((await s.listSessionTokens(a.id)).length, 3);
      await mk(a.id, "d3", 120); // "expires" expired at 115: dropped, the other three stay
      assertEquals((await s.listSessionTokens(a.id)).map((t) => t.device).sort(), [
        "d1",
        "d2",
        "d3",
      ]);
      assertEquals(await s.sessionToken(old.id), null);
      await mk(a.id, "d4", 130);
      assertEquals((await s.listSessionTokens(a.id)).map((t) => t.device).sort(), [
        "d1",
        "d3",
        "d4",
      ]);
      assertEquals((await s.listSessionTokens(b.id)).length, 1, "another user's untouched");
    },
  );

  t("removeUser deletes the account's session tokens", async (s) => {
    const a = await user(s, "gone");
    const t = await s.createSessionToken({
      userId: a.id,
      tokenHash: "h",
      device: "x",
      createdAt: 1,
      lastUsedAt: 1,
      expiresAt: 100,
    }, 5);
    await s.removeUser(a.id);
    assertEquals(await s.sessionToken(t.id), null);
    assertEquals(await s.listSessionTokens(a.id), []);
  });

  t("close commits what was asked before it and is idempotent", async (s) => {
    const u = await user(s, "last");
    const r = await s.ensureRoom("one", "room", 1);
    const pending = s.appendMessage(msg(r.id, u.id, "before close"));
    await Promise.all([s.close(), s.close()]);
    assertEquals((await pending).duplicate, false);
    await s.close();
  });

  // Keep the skip list honest: every name it holds must be a test of this suite.
  Deno.test(`${engine} store: the skip list names only tests of the suite`, () => {
    const unknown = [...skip].filter((n) => !names.has(n));
    assertEquals(unknown, []);
  });
}
