import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertThrows } from "../harness/assert.ts";
import { runStoreContract } from "./store_contract.ts";
import { SqliteStore } from "../../src/store/sqlite_store.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import type { Store } from "../../src/store/store.ts";
import { SlowStore } from "./slow_store.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/store/migrations.ts";
import { ChatError } from "../../src/errors.ts";

async function sqliteInTempDir(): Promise<{ store: Store; cleanup: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "chat-store-" });
  return {
    store: await openStore(storeSpec({ dataDir: dir })),
    cleanup: () => Deno.remove(dir, { recursive: true }),
  };
}

runStoreContract("sqlite", sqliteInTempDir);

// The same engine answering late and out of order, as an engine over a network would.
runStoreContract("sqlite+slow", async () => {
  const { store, cleanup } = await sqliteInTempDir();
  const slow = new SlowStore(store);
  return { store: slow, cleanup, note: `SlowStore seed ${slow.seed}` };
});

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "chat-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SqliteStore.open creates the schema at the current version in WAL mode", () =>
  withDir(async (dir) => {
    const s = SqliteStore.open({ path: `${dir}/chat.db` });
    await s.close();
    const db = new DatabaseSync(`${dir}/chat.db`);
    const v = db.prepare("PRAGMA user_version").get() as { user_version: number };
    const mode = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
    db.close();
    assertEquals([v.user_version, mode.journal_mode], [SCHEMA_VERSION, "wal"]);
  }));

Deno.test("SqliteStore with FULL durability syncs the WAL itself before a write resolves; NORMAL does not", () =>
  withDir(async (dir) => {
    for (const synchronous of ["FULL", "NORMAL"] as const) {
      const s = SqliteStore.open({ path: `${dir}/${synchronous}.db`, synchronous });
      const u = await s.createUser({ name: "ann", passwordHash: "x", ts: 1 });
      assert(u.id > 0);
      const level = s.query("PRAGMA synchronous")[0].synchronous;
      assertEquals([synchronous, level, s.writeStats.syncs > 0], [
        synchronous,
        1, // NORMAL: SQLite itself does not sync at COMMIT in either mode
        synchronous === "FULL",
      ]);
      await s.close();
    }
  }));

Deno.test("SqliteStore.open refuses a database from a newer version and leaves it alone", () =>
  withDir((dir) => {
    const db = new DatabaseSync(`${dir}/chat.db`);
    db.exec(`PRAGMA user_version=${SCHEMA_VERSION + 5}`);
    db.close();
    const before = Deno.readFileSync(`${dir}/chat.db`);
    const err = assertThrows(() => SqliteStore.open({ path: `${dir}/chat.db` }), ChatError);
    assertEquals(err.code, "db_too_new");
    assertEquals(Deno.readFileSync(`${dir}/chat.db`), before);
  }));

Deno.test("SqliteStore.open refuses a file that is not a database", () =>
  withDir((dir) => {
    Deno.writeTextFileSync(`${dir}/chat.db`, "this is not sqlite ".repeat(100));
    const err = assertThrows(() => SqliteStore.open({ path: `${dir}/chat.db` }), ChatError);
    assertEquals(err.code, "db_corrupt");
    assert(Deno.readTextFileSync(`${dir}/chat.db`).startsWith("this is not sqlite"));
  }));

Deno.test("SqliteStore.open fails clearly on a directory it cannot create files in", () =>
  withDir((dir) => {
    const err = assertThrows(() => SqliteStore.open({ path: `${dir}/missing/chat.db` }), ChatError);
    assertEquals(err.code, "db_open_failed");
    assert(err.message.startsWith("Cannot open database"));
  }));

Deno.test("SqliteStore keeps every acknowledged write across reopen", () =>
  withDir(async (dir) => {
    const s = SqliteStore.open({ path: `${dir}/chat.db` });
    const u = await s.createUser({ name: "kept", passwordHash: "h", ts: 1 });
    const r = await s.ensureRoom("general", "room", 1);
    const acks = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        s.appendMessage({ roomId: r.id, senderId: u.id, body: `m${i}`, cid: `${i}`, ts: i })),
    );
    assertEquals(
      new Set(acks.map((a) =>
        a.message.id
      )).size,
      200,
    );
    await s.close();
    const again = SqliteStore.open({ path: `${dir}/chat.db` });
    assertEquals((await again.messagesAfter(r.id, 0, 1000)).length, 200);
    assert(again.writeStats.batches === 0);
    await again.close();
  }));

Deno.test({
  name: "SqliteStore.open backs the file up before migrating an older schema",
  ignore: SCHEMA_VERSION < 2,
  fn: () =>
    withDir(async (dir) => {
      const db = new DatabaseSync(`${dir}/chat.db`);
      db.exec(MIGRATIONS[0]);
      db.exec("PRAGMA user_version=1");
      db.exec(
        "INSERT INTO users(name, name_key, password_hash, created_at) VALUES ('old', 'old', 'h', 1)",
      );
      db.close();
      const s = SqliteStore.open({ path: `${dir}/chat.db` });
      assertEquals((await s.userByName("old"))?.name, "old");
      await s.close();
      const backups = [...Deno.readDirSync(dir)].filter((e) => /\.v1\.\d+\.bak$/.test(e.name));
      assertEquals(backups.length, 1);
      const bak = new DatabaseSync(`${dir}/${backups[0].name}`);
      const v = bak.prepare("PRAGMA user_version").get() as { user_version: number };
      bak.close();
      assertEquals(v.user_version, 1);
    }),
});

Deno.test("search sees a message as soon as it is stored, and stops seeing it once pruned", () =>
  withDir(async (dir) => {
    const s = SqliteStore.open({ path: `${dir}/chat.db` });
    try {
      const u = await s.createUser({ name: "sal", passwordHash: "h", ts: 1 });
      const r = await s.ensureRoom("general", "room", 1);
      await s.appendMessage({ roomId: r.id, senderId: u.id, body: "old quokka", cid: "1", ts: 10 });
      // Indexed in the background: nothing is in the index until a batch runs or a search asks.
      await s.appendMessage({ roomId: r.id, senderId: u.id, body: "new quokka", cid: "2", ts: 20 });
      const found = await s.searchMessages({ text: "quokka", limit: 10 });
      assertEquals(found.map((m) => m.body), ["new quokka", "old quokka"]);
      assertEquals(await s.pruneMessages(15), 1);
      await s.appendMessage({
        roomId: r.id,
        senderId: u.id,
        body: "third quokka",
        cid: "3",
        ts: 30,
      });
      const after = await s.searchMessages({ text: "quokka", limit: 10 });
      assertEquals(after.map((m) => m.body), ["third quokka", "new quokka"]);
    } finally {
      await s.close();
    }
  }));

Deno.test("migration 4 keeps rows, ids, memberships and the search index, and never reuses an id a deleted account or a pruned message held", () =>
  withDir(async (dir) => {
    const path = `${dir}/chat.db`;
    const db = new DatabaseSync(path);
    for (const m of MIGRATIONS.slice(0, 3)) db.exec(m);
    db.exec(`
      PRAGMA user_version=3;
      INSERT INTO users(id, name, name_key, password_hash, created_at)
        VALUES (1, 'Alice', 'alice', 'ha', 1), (2, 'bob', 'bob', 'hb', 1);
      INSERT INTO rooms(id, name, kind, created_at) VALUES (1, 'general', 'room', 1),
        (2, 'dm:1:2', 'dm', 1), (3, 'dm:1:3', 'dm', 1);
      INSERT INTO memberships(room_id, user_id, joined_at) VALUES (1, 1, 1), (1, 2, 1), (2, 1, 1),
        (2, 2, 1), (3, 1, 1);
      INSERT INTO messages(id, room_id, sender_id, body, cid, ts) VALUES
        (1, 1, 1, 'quokka one', 'a1', 10), (2, 1, 2, 'quokka two', 'b1', 11),
        (3, 2, 2, 'quokka dm', 'b2', 12), (4, 1, 1, 'quokka four', 'a2', 13),
        (5, 1, 1, 'quokka five', 'a3', 14);
      INSERT INTO messages_fts(rowid, body) SELECT id, body FROM messages;
      UPDATE fts_state SET indexed_through = 5;
      DELETE FROM messages WHERE id >= 4;
    `);
    // What removeUser did before migration 4: a DELETE (bob had id 2, the highest).
    db.exec("PRAGMA foreign_keys=ON; DELETE FROM users WHERE id = 2;");
    db.close();

    const s = SqliteStore.open({ path });
    try {
      const bob = await s.userById(2);
      assertEquals([bob?.removed, bob?.name, bob?.passwordHash], [true, "", ""]);
      const three = await s.userById(3);
      assertEquals(three?.removed, true, "the peer named only in dm:1:3 gets a tombstone");
      assertEquals((await s.listUsers()).map((u) => [u.id, u.name]), [[1, "Alice"]]);
      assertEquals((await s.roomsOfUser(1)).map((r) => r.id), [1]);
      assertEquals((await s.directMessagesAfter(1, 0, 10)).map((m) => m.id), [3]);
      const mallory = await s.createUser({ name: "mallory", passwordHash: "h", ts: 2 });
      assertEquals(mallory.id, 4, "above every id messages and DM names refer to");
      const next = await s.appendMessage({
        roomId: 1,
        senderId: mallory.id,
        body: "quokka new",
        cid: "b1",
        ts: 20,
      });
      assertEquals([next.message.id, next.duplicate], [6, false], "above the pruned message 5");
      const found = await s.searchMessages({ text: "quokka", limit: 10 });
      assertEquals(found.map((m) => m.id), [6, 3, 2, 1]);
      assertEquals(s.query("PRAGMA foreign_keys")[0].foreign_keys, 1);
      const indexes = s.query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'messages_%' ORDER BY name",
      );
      assertEquals(indexes.map((r) => r.name), ["messages_room", "messages_ts"]);
    } finally {
      await s.close();
    }
  }));

Deno.test("removeUser leaves a tombstone: the name is free again, the id and its messages stay", () =>
  withDir(async (dir) => {
    const s = SqliteStore.open({ path: `${dir}/chat.db` });
    try {
      const bob = await s.createUser({ name: "bob", passwordHash: "h", ts: 1 });
      const r = await s.ensureRoom("general", "room", 1);
      await s.addMember(r.id, bob.id, 1);
      await s.appendMessage({ roomId: r.id, senderId: bob.id, body: "hi", cid: "1", ts: 2 });
      await s.removeUser(bob.id);
      const rows = s.query("SELECT name, name_key, password_hash, removed FROM users");
      assertEquals(rows.map((r) => ({ ...r })), [
        { name: "", name_key: null, password_hash: "", removed: 1 },
      ]);
      assertEquals(s.query("SELECT count(*) AS n FROM memberships")[0].n, 0);
      const again = await s.createUser({ name: "Bob", passwordHash: "h2", ts: 3 });
      assert(again.id > bob.id);
    } finally {
      await s.close();
    }
  }));
