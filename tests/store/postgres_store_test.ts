import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { pgAvailable, sharedPostgres, startPostgres } from "../harness/postgres.ts";
import { PG_SCHEMA_VERSION } from "../../src/store/pg_migrations.ts";
import { runStoreContract, type StoreFactory } from "./store_contract.ts";
import { SlowStore } from "./slow_store.ts";
import { PostgresStore, redactUrl, tsQuery } from "../../src/store/postgres_store.ts";
import { describeStore, openStore, storeSpec } from "../../src/store/open_store.ts";
import { ChatError } from "../../src/errors.ts";
import type { StoredMessage } from "../../src/store/store.ts";

const ignore = !pgAvailable();

/** A fresh database on this file's PostgreSQL, and a store on it. */
async function freshStore(): Promise<
  { store: PostgresStore; url: string; cleanup: () => Promise<void> }
> {
  const pg = await sharedPostgres();
  const url = await pg.createDatabase();
  const store = await PostgresStore.open({ url, poolSize: 4 });
  return { store, url, cleanup: () => Promise.resolve() };
}

const pgFactory: StoreFactory = async () => {
  const { store, cleanup } = await freshStore();
  return { store, cleanup };
};

if (!ignore) {
  runStoreContract("postgres", pgFactory);
  runStoreContract("postgres+slow", async () => {
    const { store, cleanup } = await freshStore();
    const slow = new SlowStore(store);
    return { store: slow, cleanup, note: `SlowStore seed ${slow.seed}` };
  });
}

Deno.test({
  name: "tsQuery makes every word required, keeps prefix*, and leaves no query syntax",
  fn() {
    assertEquals(tsQuery("Deploy  failed"), "'deploy' & 'failed'");
    assertEquals(tsQuery("deploy* Crème"), "'deploy':* & 'creme'");
    assertEquals(tsQuery("foo-bar*"), "'foo' <-> 'bar':*");
    assertEquals(tsQuery(`'OR' | !x & ( ) :*`), "'or' & 'x'");
    assertEquals(tsQuery("  * ** "), null);
  },
});

Deno.test({
  name: "describeStore and redactUrl never show the password",
  fn() {
    const url = "postgres://chat:s3cret@db.example:5432/chat?sslmode=require&password=also";
    const said = describeStore(storeSpec({ dataDir: "/x", store: url }));
    assert(!said.includes("s3cret") && !said.includes("also"), said);
    assert(said.startsWith("postgres postgres://chat:***@db.example:5432/chat"), said);
    assertEquals(redactUrl("postgres://h/db"), "postgres://h/db");
  },
});

Deno.test({
  name:
    "two PostgresStores on one database: each stream's ids ascend in commit order as one chain of links, no deadlock",
  ignore,
  async fn() {
    const pg = await sharedPostgres();
    const url = await pg.createDatabase();
    const one = await PostgresStore.open({ url, poolSize: 4 });
    const two = await PostgresStore.open({ url, poolSize: 4 });
    try {
      const [a, b, c] = await Promise.all(
        ["ann", "bob", "cy"].map((n) => one.createUser({ name: n, passwordHash: "h", ts: 1 })),
      );
      const room = await one.ensureRoom("general", "room", 1);
      const dms = new Map<string, number>();
      for (const [x, y] of [[a, b], [a, c], [b, c]]) {
        const dm = await one.ensureRoom(`dm:${x.id}:${y.id}`, "dm", 1);
        for (const u of [x, y]) await one.addMember(dm.id, u.id, 1);
        dms.set(`${x.id}:${y.id}`, dm.id);
      }
      const users = [a, b, c];
      // Each node: 12 rounds of 25 sends issued at once (so several group-commit batches), mixing
      // the room with every DM pair, in a different order on each node.
      const node = async (store: PostgresStore, tag: string, shift: number) => {
        const out = [];
        for (let round = 0; round < 12; round++) {
          out.push(
            ...await Promise.all(Array.from({ length: 25 }, (_, i) => {
              const k = (i + shift + round) % 4;
              const cid = `${tag}-${round}-${i}`;
              if (k === 0) {
                return store.appendMessage({
                  roomId: room.id,
                  senderId: users[i % 3].id,
                  body: cid,
                  cid,
                  ts: 2,
                });
              }
              const [x, y] = [[a, b], [a, c], [b, c]][k - 1];
              const from = i % 2 ? x : y;
              return store.appendMessage({
                roomId: dms.get(`${x.id}:${y.id}`)!,
                senderId: from.id,
                body: cid,
                cid,
                ts: 2,
                dmUsers: [from.id, from.id === x.id ? y.id : x.id],
              });
            })),
          );
        }
        return out;
      };
      const [r1, r2] = await Promise.all([node(one, "one", 0), node(two, "two", 2)]);
      const all = [...r1, ...r2];
      assertEquals(all.length, 600);
      assert(all.every((s) => !s.duplicate));
      const streams = new Map<string, { id: number; prev: number }[]>();
      for (const s of all) {
        for (const l of s.links) {
          const list = streams.get(l.stream) ?? [];
          list.push({ id: s.message.id, prev: l.prev });
          streams.set(l.stream, list);
        }
      }
      assertEquals(
        [...streams.keys()].sort(),
        [`r:${room.id}`, ...users.map((u) => `u:${u.id}`)].sort(),
      );
      for (const [key, list] of streams) {
        list.sort((x, y) => x.id - y.id);
        // One chain: each message's link names the message of its stream just below it.
        assertEquals(list.map((x) => x.prev), [0, ...list.slice(0, -1).map((x) => x.id)], key);
        const stored = await one.streamAfter(key as `r:${number}`, 0, 1000);
        assertEquals(stored.map((m) => m.id), list.map((x) => x.id), `${key} as stored`);
        assertEquals(
          (await two.streamHeads([key as `r:${number}`])).get(key as `r:${number}`),
          list.at(-1)!.id,
        );
      }
      assertEquals([one.retries, two.retries], [0, 0], "no deadlock, not even a retried one");
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  },
});

Deno.test({
  name: "PostgresStore.open says clearly that PostgreSQL is unreachable, without the password",
  ignore,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const err = await assertRejects(
      () =>
        openStore({
          engine: "postgres",
          url: `postgres://chat:pw-secret@127.0.0.1:${port}/chat`,
          poolSize: 2,
          connectTimeoutMs: 2000,
        }),
      ChatError,
    );
    assertEquals(err.code, "db_open_failed");
    assert(err.message.includes("unreachable") && !err.message.includes("pw-secret"), err.message);
  },
});

Deno.test({
  name:
    "PostgreSQL stopped: sends and reads get storage_failed; started again: service resumes by itself",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    const store = await PostgresStore.open({ url: pg.url, poolSize: 3, connectTimeoutMs: 2000 });
    try {
      const u = await store.createUser({ name: "ann", passwordHash: "h", ts: 1 });
      const r = await store.ensureRoom("general", "room", 1);
      const first = await store.appendMessage({
        roomId: r.id,
        senderId: u.id,
        body: "1",
        cid: "1",
        ts: 1,
      });
      await pg.stopServer();
      const down = await assertRejects(
        () => store.appendMessage({ roomId: r.id, senderId: u.id, body: "2", cid: "2", ts: 2 }),
        ChatError,
      );
      assertEquals([down.code, down.fatal], ["storage_failed", false]);
      assert(down.message.includes("unreachable"), down.message);
      assertEquals(
        (await assertRejects(() => store.userById(u.id), ChatError)).code,
        "storage_failed",
      );
      await pg.startServer();
      const again = await store.appendMessage({
        roomId: r.id,
        senderId: u.id,
        body: "2",
        cid: "2",
        ts: 2,
      });
      assertEquals(again.duplicate, false);
      assertEquals(
        again.links,
        [{ stream: `r:${r.id}`, prev: first.message.id }],
        "nothing stored while down",
      );
      assertEquals((await store.messagesAfter(r.id, 0, 10)).map((m) => m.body), ["1", "2"]);
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "PostgresStore migrations: recorded in chat_schema; concurrent first opens; a newer schema opens only when it says it is compatible",
  ignore,
  async fn() {
    const pg = await sharedPostgres();
    const url = await pg.createDatabase();
    const name = new URL(url).pathname.slice(1);
    const both = await Promise.all([PostgresStore.open({ url }), PostgresStore.open({ url })]);
    await Promise.all(both.map((s) => s.close()));
    assertEquals(
      (await pg.psql("SELECT version, compatible_from FROM chat_schema", name)).trim(),
      `${PG_SCHEMA_VERSION}|1`,
    );
    // A later additive step (a newer node ran first): this build still runs on it.
    await pg.psql(`INSERT INTO chat_schema VALUES (${PG_SCHEMA_VERSION + 1}, 1, 0)`, name);
    await (await PostgresStore.open({ url })).close();
    // A step older code cannot live with: refused, and nothing is changed.
    await pg.psql(
      `INSERT INTO chat_schema VALUES (${PG_SCHEMA_VERSION + 2}, ${PG_SCHEMA_VERSION + 2}, 0)`,
      name,
    );
    const err = await assertRejects(() => PostgresStore.open({ url }), ChatError);
    assertEquals(err.code, "db_too_new");
    assertEquals(
      (await pg.psql("SELECT count(*) FROM chat_schema", name)).trim(),
      String(PG_SCHEMA_VERSION + 2),
    );
  },
});

Deno.test({
  name: "a write PostgreSQL refuses rejects alone; the rest of its batch commits, in order",
  ignore,
  async fn() {
    const { store } = await freshStore();
    try {
      const u = await store.createUser({ name: "ann", passwordHash: "h", ts: 1 });
      const r = await store.ensureRoom("general", "room", 1);
      const put = (roomId: number, cid: string) =>
        store.appendMessage({ roomId, senderId: u.id, body: cid, cid, ts: 1 });
      // One turn, one batch: the middle write names a room that does not exist.
      const [a, bad, c] = await Promise.allSettled([
        put(r.id, "a"),
        put(r.id + 999, "b"),
        put(r.id, "c"),
      ]);
      assertEquals([a.status, bad.status, c.status], ["fulfilled", "rejected", "fulfilled"]);
      const err = (bad as PromiseRejectedResult).reason;
      assert(err instanceof ChatError && err.code === "storage_failed", String(err));
      const [x, z] = [a, c].map((p) => (p as PromiseFulfilledResult<StoredMessage>).value);
      assertEquals(z.links, [{ stream: `r:${r.id}`, prev: x.message.id }]);
      assertEquals((await store.messagesAfter(r.id, 0, 10)).map((m) => m.cid), ["a", "c"]);
      assertEquals([store.batches >= 1, store.isolations], [true, 1]);
    } finally {
      await store.close();
    }
  },
});
