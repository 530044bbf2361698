import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { GroupCommit, type WalSync } from "../../src/store/group_commit.ts";
import { ChatError } from "../../src/errors.ts";

/** A real database file in WAL mode with one table. */
async function openDb(): Promise<{ db: DatabaseSync; dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "chat-gc-" });
  const db = new DatabaseSync(`${dir}/t.db`);
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE t (v INTEGER)");
  return {
    db,
    dir,
    async [Symbol.asyncDispose]() {
      db.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A WAL sync that finishes only when released; counts calls. */
function gatedSync() {
  const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
  let syncNow = 0;
  const wal: WalSync = {
    sync: () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })),
    syncNow: () => void syncNow++,
  };
  return { wal, pending, syncNowCalls: () => syncNow };
}

const turn = () => new Promise((r) => setTimeout(r, 0));

Deno.test("GroupCommit with a WAL sync acknowledges only after a sync that started after the commit", async () => {
  await using t = await openDb();
  const g = gatedSync();
  const gc = new GroupCommit(t.db, { wal: g.wal });
  const settled: string[] = [];
  const insert = (v: number) => gc.enqueue(() => t.db.prepare("INSERT INTO t VALUES (?)").run(v));
  insert(1).then(() => settled.push("a"));
  await turn(); // batch 1 committed, its sync running
  assertEquals(g.pending.length, 1);
  assertEquals(
    Number((t.db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n),
    1,
    "committed before the sync",
  );
  insert(2).then(() => settled.push("b"));
  insert(3).then(() => settled.push("c"));
  await turn(); // batch 2 committed while sync 1 runs: it must wait for sync 2
  assertEquals(settled, []);
  g.pending[0].resolve();
  await turn();
  assertEquals(settled, ["a"], "batch 2 is not covered by a sync that began before its commit");
  assertEquals(g.pending.length, 2);
  g.pending[1].resolve();
  await turn();
  assertEquals(settled, ["a", "b", "c"]);
  assertEquals([gc.batches, gc.syncs], [2, 2]);
});

Deno.test("GroupCommit rejects a batch whose WAL sync failed with storage_failed", async () => {
  await using t = await openDb();
  const g = gatedSync();
  const gc = new GroupCommit(t.db, { wal: g.wal });
  const p = gc.enqueue(() => t.db.prepare("INSERT INTO t VALUES (1)").run());
  await turn();
  g.pending[0].reject(new Error("EIO"));
  const err = await assertRejects(() => p);
  assert(err instanceof ChatError && err.code === "storage_failed", String(err));
});

Deno.test("GroupCommit.close() syncs what waits, on the spot, and settles it", async () => {
  await using t = await openDb();
  const g = gatedSync();
  const gc = new GroupCommit(t.db, { wal: g.wal });
  let done = 0;
  gc.enqueue(() => t.db.prepare("INSERT INTO t VALUES (1)").run()).then(() => done++);
  await turn(); // committed, its sync running (never released)
  gc.enqueue(() => t.db.prepare("INSERT INTO t VALUES (2)").run()).then(() => done++);
  gc.close(); // flushes the second write, then one blocking sync covers both
  await turn();
  assertEquals([done, g.syncNowCalls()], [2, 1]);
  g.pending[0].resolve(); // the old async sync finishing later changes nothing
  await turn();
  assertEquals(done, 2);
});
