import { assert, assertEquals } from "../harness/assert.ts";
import { pgAvailable, sharedPostgres } from "../harness/postgres.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { admin, adminJson } from "./helpers.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import type { Store } from "../../src/store/store.ts";
import type { TableCheck } from "../../src/store/copy_store.ts";

const ignore = !pgAvailable();

interface MigrateOut {
  ok: boolean;
  from: string;
  to: string;
  tables: TableCheck[];
}

/** A single-node data dir with a bit of everything, some of it removed or pruned. */
async function fill(s: Store): Promise<{ top: number }> {
  const ann = await s.createUser({ name: "Ann", passwordHash: "ha", role: "admin", ts: 1 });
  const bob = await s.createUser({ name: "bob", passwordHash: "hb", ts: 2 });
  const cy = await s.createUser({ name: "cy", passwordHash: "hc", ts: 3 });
  const general = await s.ensureRoom("general", "room", 4);
  await s.updateRoom(general.id, { topic: "all hands" });
  const old = await s.ensureRoom("old", "room", 5);
  await s.updateRoom(old.id, { archived: true });
  const dm = await s.ensureRoom(`dm:${ann.id}:${bob.id}`, "dm", 6);
  for (const u of [ann, bob, cy]) await s.addMember(general.id, u.id, 7);
  for (const u of [ann, bob]) await s.addMember(dm.id, u.id, 7);
  await s.appendMessage({
    roomId: general.id,
    senderId: ann.id,
    body: "Crème brûlée",
    cid: "1",
    ts: 10,
  });
  await s.appendMessage({
    roomId: dm.id,
    senderId: bob.id,
    body: "psst",
    cid: "2",
    ts: 11,
    dmUsers: [bob.id, ann.id],
  });
  for (let i = 0; i < 700; i++) {
    await s.appendMessage({
      roomId: general.id,
      senderId: cy.id,
      body: `note ${i}`,
      cid: `n${i}`,
      ts: 20,
    });
  }
  const top =
    (await s.appendMessage({ roomId: general.id, senderId: cy.id, body: "last", cid: "z", ts: 30 }))
      .message.id;
  await s.pruneMessages(31, general.id); // every room message gone: the next id must still be above
  await s.appendMessage({
    roomId: general.id,
    senderId: ann.id,
    body: "after prune",
    cid: "3",
    ts: 40,
  });
  await s.setReadMarker(ann.id, general.id, top);
  await s.setReadMarker(ann.id, dm.id, 2);
  await s.setReadMarker(cy.id, general.id, top); // removed with the account
  await s.removeUser(cy.id);
  await s.createInvite({
    codeHash: "h1",
    usesLeft: 2,
    expiresAt: null,
    ts: 5,
    createdBy: "admin:x",
  });
  await s.audit({
    ts: 8,
    actor: "admin:x",
    action: "user_add",
    target: "bob",
    remote: "local",
    detail: { k: 1 },
  });
  return { top: top + 1 };
}

async function snapshot(s: Store) {
  const users = await s.listUsers();
  const rooms = await s.listRooms();
  const general = rooms.find((r) => r.name === "general")!;
  return {
    users: users.map((u) => [u.id, u.name, u.role, u.passwordHash]),
    tomb: await s.userById(3),
    rooms: rooms.map((r) => [r.id, r.name, r.topic, r.archived, r.members]),
    general: (await s.messagesAfter(general.id, 0, 10)).map((m) => [m.id, m.body, m.senderId]),
    dm: (await s.directMessagesAfter(1, 0, 10)).map((m) => [m.id, m.body]),
    search: (await s.searchMessages({ text: "AFTER prun*", limit: 5 })).map((m) => m.body),
    markers: await s.unreadCounts(1, {
      rooms: new Map(rooms.map((r) => [r.id, Number.MAX_SAFE_INTEGER])),
    }),
    invites: (await s.listInvites()).map((i) => [i.id, i.codeHash, i.usesLeft]),
    audit: (await s.auditTrail({ limit: 5 })).map((e) => [e.id, e.action, e.detail]),
  };
}

Deno.test({
  name:
    "chat admin migrate --to copies a data dir into PostgreSQL with its ids, verified; --from copies it back out",
  ignore,
  async fn() {
    const pg = await sharedPostgres();
    const url = await pg.createDatabase();
    await using dir = await tempDir("chat-migrate-");
    const src = await openStore(storeSpec({ dataDir: dir.path }));
    const { top } = await fill(src);
    const before = await snapshot(src);
    await src.close();
    assertEquals(before.search, ["after prune"]);

    const to = await adminJson<MigrateOut>(["migrate", "--data", dir.path, "--to", url]);
    assert(to.ok && !JSON.stringify(to).includes(pg.password), JSON.stringify(to));
    assertEquals(
      to.tables.map((
        t,
      ) => [t.table, t.sourceRows, t.targetRows, t.sourceSha256 === t.targetSha256]),
      [
        ["users", 3, 3, true],
        ["rooms", 3, 3, true],
        ["memberships", 4, 4, true],
        ["messages", 2, 2, true],
        ["read_markers", 2, 2, true],
        ["invites", 1, 1, true],
        ["audit", 1, 1, true],
        ["session_tokens", 0, 0, true],
      ],
    );
    const onPg = await openStore(storeSpec({ dataDir: "/nonexistent", store: url }));
    try {
      assertEquals(await snapshot(onPg), before);
      const next = await onPg.appendMessage({
        roomId: 1,
        senderId: 1,
        body: "on pg",
        cid: "p",
        ts: 50,
      });
      assert(
        next.message.id > top,
        `id ${next.message.id} reuses one SQLite handed out (top ${top})`,
      );
      assertEquals(next.links[0].prev, top, "the room's head is its newest message");
      const heads = await onPg.streamHeads(["u:1", "u:2"]);
      assertEquals([...heads.values()], [2, 2], "DM heads from the copied DMs");
      const bea = await onPg.createUser({ name: "bea", passwordHash: "h", ts: 60 });
      assert(bea.id > 3);
    } finally {
      await onPg.close();
    }

    const again = await admin(["migrate", "--data", dir.path, "--to", url]);
    assert(again.code !== 0 && again.stderr.includes("already holds data"), again.stderr);

    await using back = await tempDir("chat-migrate-back-");
    const out = await adminJson<MigrateOut>([
      "migrate",
      "--data",
      `${back.path}/data`,
      "--from",
      url,
    ]);
    assert(out.ok, JSON.stringify(out));
    assertEquals(out.tables.find((t) => t.table === "messages")?.targetRows, 3);
    const onSqlite = await openStore(storeSpec({ dataDir: `${back.path}/data` }));
    try {
      const s = await snapshot(onSqlite);
      assertEquals(s.users.length, 3);
      assertEquals(s.general.map((m) => m[1]), ["after prune", "on pg"]);
      assertEquals(s.search, ["after prune"], "the search index fills itself");
      assertEquals((await onSqlite.searchMessages({ text: "pg", limit: 5 })).map((m) => m.body), [
        "on pg",
      ]);
      const later = await onSqlite.appendMessage({
        roomId: 1,
        senderId: 1,
        body: "x",
        cid: "q",
        ts: 70,
      });
      assert(later.message.id > top + 1);
      assert((await onSqlite.createUser({ name: "cal", passwordHash: "h", ts: 71 })).id > 4);
    } finally {
      await onSqlite.close();
    }
  },
});
