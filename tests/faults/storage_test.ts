// Fault suite, storage: a full disk under a running server, and databases that are read-only,
// locked, damaged or from a newer build at startup (fail fast, never overwrite, back up first).
import { DatabaseSync } from "node:sqlite";
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { WireClient } from "../harness/wire_client.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/store/migrations.ts";
import {
  canMount,
  ChildServer,
  type F,
  isType,
  mountTmpfs,
  openDb,
  runChat,
  unmountTmpfs,
} from "./helpers.ts";

const CAN_MOUNT = await canMount();
const NO_MOUNT =
  "SKIPPED: mounting a tmpfs is not permitted here (needs root); run as root to test";

async function sha256(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** A data dir with a certificate, a database holding one message, cleanly shut down. */
async function preparedDataDir(dataDir: string): Promise<void> {
  await using ts = await startTestServer({ dataDir, keepData: true });
  await using a = await WireClient.login(ts.port, ts.certPem, "keeper", { register: true });
  assertEquals((await a.say("general", "keep me")).type, "ack");
}

/** Runs `chat serve` on `dataDir` and expects it to refuse to start. */
async function serveFails(dataDir: string): Promise<{ stderr: string; ms: number }> {
  const started = Date.now();
  const r = await runChat(["serve", "--host", "127.0.0.1", "--port", "0", "--data", dataDir], {
    timeoutMs: 30_000,
  });
  assert(r.code !== 0, `serve started anyway: ${r.stdout}`);
  assert(!r.stdout.includes("listening"), r.stdout);
  return { stderr: r.stderr, ms: Date.now() - started };
}

Deno.test({
  name:
    "storage: disk full: sends get storage_failed, the server stays up and recovers when space returns",
  ignore: !CAN_MOUNT,
  async fn() {
    const mnt = (await mountTmpfs("3m"))!;
    try {
      await using ts = await startTestServer({ dataDir: `${mnt}/data` });
      await using a = await WireClient.login(ts.port, ts.certPem, "filler", { register: true });
      await using b = await WireClient.login(ts.port, ts.certPem, "looker", { register: true });
      const before = await a.say("general", "before the disk filled") as F<"ack">;
      assertEquals(before.type, "ack");
      await b.expect(isType("msg"));
      // Fill the file system.
      const filler = await Deno.open(`${mnt}/filler`, { write: true, create: true });
      try {
        const chunk = new Uint8Array(64 * 1024);
        for (let i = 0; i < 1024; i++) await filler.write(chunk);
        throw new Error("the tmpfs never filled");
      } catch (err) {
        if (!(err instanceof Error) || !/No space left/.test(err.message)) throw err;
      } finally {
        filler.close();
      }
      // Bounded: 300 sends at most before the WAL runs out of room.
      const body = "f".repeat(3900);
      let failed: F<"error"> | null = null;
      let failedCid = "";
      for (let i = 0; i < 300 && !failed; i++) {
        const cid = `full-${i}`;
        const r = await a.say("general", body, cid);
        if (r.type === "error") {
          failed = r as F<"error">;
          failedCid = cid;
        } else await b.expect(isType("msg"));
      }
      assert(failed, "no send failed on a full disk");
      assertEquals([failed.code, failed.ref], ["storage_failed", failedCid]);
      await b.expectNone(isType("msg"), "a message that failed to commit was delivered");
      // Still up: the connection works, reads work.
      a.send({ type: "ping" });
      await a.expect(isType("pong"));
      a.send({ type: "history", room: "general", limit: 1, ref: "h1" });
      await a.expect(isType("history"));
      // Space returns: the same cid is retried and stored once.
      await Deno.remove(`${mnt}/filler`);
      const retry = await a.say("general", "after", failedCid) as F<"ack">;
      assertEquals([retry.type, retry.duplicate], ["ack", undefined]);
      const m = await b.expect(isType("msg")) as F<"msg">;
      assertEquals(m.id, retry.id);
      using db = openDb(`${mnt}/data/chat.db`);
      assertEquals(
        Number(
          (db.prepare("SELECT count(*) AS n FROM messages WHERE cid = ?").get(failedCid) as {
            n: number;
          }).n,
        ),
        1,
      );
    } finally {
      await unmountTmpfs(mnt);
    }
  },
});

Deno.test({
  name: "storage: regression: a login that fails to commit on a full disk can be retried",
  ignore: !CAN_MOUNT,
  async fn() {
    const mnt = (await mountTmpfs("3m"))!;
    try {
      await using ts = await startTestServer({ dataDir: `${mnt}/data` });
      (await WireClient.login(ts.port, ts.certPem, "later", { register: true })).close();
      await using a = await WireClient.login(ts.port, ts.certPem, "early", { register: true });
      await using c = await WireClient.connect(ts.port, ts.certPem);
      c.send({ type: "hello", version: 1 });
      await c.expect(isType("hello"));
      const filler = await Deno.open(`${mnt}/filler`, { write: true, create: true });
      try {
        const chunk = new Uint8Array(64 * 1024);
        for (let i = 0; i < 1024; i++) await filler.write(chunk);
      } catch {
        /* full */
      } finally {
        filler.close();
      }
      // Use up what the WAL still has room for (bounded: 300 sends).
      let full = false;
      for (let i = 0; i < 300 && !full; i++) {
        full = (await a.say("general", "w".repeat(3900))).type === "error";
      }
      assert(full, "the disk never filled up");
      c.send({ type: "login", user: "later", password: "password-later", ref: "first" });
      const first = await c.expect((f) => f.type === "error" || f.type === "ok") as F<"error">;
      assertEquals([first.code, first.ref], ["storage_failed", "first"]);
      await Deno.remove(`${mnt}/filler`);
      c.send({ type: "login", user: "later", password: "password-later", ref: "retry" });
      const r = await c.expect((f) => (f.type === "ok" || f.type === "error") && f.ref === "retry");
      assertEquals(r.type === "ok" ? "ok" : (r as F<"error">).code, "ok");
      assertEquals((await c.say("general", "in at last")).type, "ack");
    } finally {
      await unmountTmpfs(mnt);
    }
  },
});

Deno.test({
  name: "storage: a read-only database fails fast with a clear message and is not touched",
  ignore: !CAN_MOUNT,
  async fn() {
    const mnt = (await mountTmpfs("8m"))!;
    try {
      const dataDir = `${mnt}/data`;
      await preparedDataDir(dataDir);
      const files = await listing(dataDir);
      const hash = await sha256(`${dataDir}/chat.db`);
      const r = await new Deno.Command("mount", { args: ["-o", "remount,ro", mnt] }).output();
      assert(r.success, "remount read-only failed");
      const { stderr } = await serveFails(dataDir);
      assert(/read-only/.test(stderr) && /\[db_readonly\]/.test(stderr), stderr);
      assertEquals(await sha256(`${dataDir}/chat.db`), hash);
      assertEquals(await listing(dataDir), files);
    } finally {
      await unmountTmpfs(mnt);
    }
  },
});

/** Python: takes and holds an exclusive lock on argv[1] until stdin closes. */
const HOLD_LOCK = `
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
c.execute("UPDATE users SET created_at = created_at")
c.execute("COMMIT")
print("LOCKED", flush=True)
sys.stdin.read()
`;

Deno.test("storage: a database locked by another process fails with a clear message after the busy timeout", async () => {
  await using tmp = await tempDir("chat-faults-lock-");
  const dataDir = tmp.path;
  await preparedDataDir(dataDir);
  // The lock is held by another process: POSIX record locks are per process, and any close of
  // the file in the holding process (even reading it to hash) would drop them.
  const holder = new Deno.Command("python3", {
    args: ["-c", HOLD_LOCK, `${dataDir}/chat.db`],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    assertEquals((await lines.read()).value?.trim(), "LOCKED");
    const hash = await sha256(`${dataDir}/chat.db`);
    const { stderr, ms } = await serveFails(dataDir);
    assert(/locked by another process/.test(stderr) && /\[db_locked\]/.test(stderr), stderr);
    assertEquals(await sha256(`${dataDir}/chat.db`), hash);
    // SqliteStore waits out its busy timeout (5,000 ms by default) before it gives up.
    assert(ms >= 5000, `refused after ${ms} ms, before the busy timeout`);
    console.log(`locked database: refused after ${ms} ms`);
  } finally {
    await holder.stdin.close();
    await lines.cancel();
    await holder.status;
  }
});

Deno.test("storage: a second server on the same data dir is refused while the first runs", async () => {
  await using tmp = await tempDir("chat-faults-twice-");
  const dataDir = tmp.path;
  await using first = await ChildServer.start({ dataDir });
  const { stderr } = await serveFails(dataDir);
  assert(/another chat server is running/.test(stderr), stderr);
  await using c = await WireClient.login(first.port, first.certPem, "stillup", {
    register: true,
  });
  assertEquals((await c.say("general", "first server fine")).type, "ack");
});

Deno.test("storage: a damaged database (bad header, bad page) fails fast and is never overwritten", async () => {
  for (const damage of ["header", "page"] as const) {
    await using tmp = await tempDir(`chat-faults-corrupt-${damage}-`);
    const dataDir = tmp.path;
    await preparedDataDir(dataDir);
    const path = `${dataDir}/chat.db`;
    let offset = 0;
    if (damage === "page") {
      using db = openDb(path);
      const page = Number(
        (db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size,
      );
      const root = Number(
        (db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").get() as {
          rootpage: number;
        }).rootpage,
      );
      offset = (root - 1) * page;
    }
    const f = await Deno.open(path, { write: true });
    await f.seek(offset, Deno.SeekMode.Start);
    await f.write(new Uint8Array(64).fill(0xa5));
    f.close();
    const hash = await sha256(path);
    const { stderr } = await serveFails(dataDir);
    assert(/damaged/.test(stderr) && /\[db_corrupt\]/.test(stderr), `${damage}: ${stderr}`);
    assertEquals(await sha256(path), hash, `${damage}: the damaged file was modified`);
  }
});

Deno.test("storage: a database from a newer build fails fast and is not touched", async () => {
  await using tmp = await tempDir("chat-faults-newer-");
  const dataDir = tmp.path;
  await preparedDataDir(dataDir);
  const path = `${dataDir}/chat.db`;
  {
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 7}`);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.close();
  }
  const hash = await sha256(path);
  const { stderr } = await serveFails(dataDir);
  assert(/newer than this build/.test(stderr) && /\[db_too_new\]/.test(stderr), stderr);
  assertEquals(await sha256(path), hash);
});

Deno.test("storage: an older database is backed up before it is migrated", async () => {
  await using tmp = await tempDir("chat-faults-migrate-");
  const dataDir = tmp.path;
  const path = `${dataDir}/chat.db`;
  {
    const db = new DatabaseSync(path);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec(MIGRATIONS[0]);
    db.exec("PRAGMA user_version = 1");
    db.exec(
      `INSERT INTO users(id, name, name_key, password_hash, created_at) VALUES (1, 'old', 'old', 'x', 1);
       INSERT INTO rooms(id, name, created_at) VALUES (1, 'general', 1);
       INSERT INTO messages(room_id, sender_id, body, cid, ts) VALUES (1, 1, 'from v1', 'c1', 1);`,
    );
    db.close();
  }
  {
    // The migrated database serves what v1 stored.
    await using ts = await startTestServer({ dataDir, keepData: true });
    await using c = await WireClient.login(ts.port, ts.certPem, "newer", { register: true });
    c.send({ type: "history", room: "general", ref: "h" });
    const h = await c.expect(isType("history")) as F<"history">;
    assertEquals(h.messages.map((m) => [m.from, m.body]), [["old", "from v1"]]);
  }
  const backups = (await listing(dataDir)).filter((n) => /^chat\.db\.v1\.\d+\.bak$/.test(n));
  assertEquals(backups.length, 1, (await listing(dataDir)).join(" "));
  using old = openDb(`${dataDir}/${backups[0]}`);
  assertEquals(
    Number((old.prepare("PRAGMA user_version").get() as { user_version: number }).user_version),
    1,
  );
  assertEquals(
    (old.prepare("SELECT body FROM messages").all() as { body: string }[]).map((r) => r.body),
    ["from v1"],
  );
  using now = openDb(path);
  assertEquals(
    Number((now.prepare("PRAGMA user_version").get() as { user_version: number }).user_version),
    SCHEMA_VERSION,
  );
  assertEquals(
    (now.prepare("SELECT body FROM messages").all() as { body: string }[]).map((r) => r.body),
    ["from v1"],
  );
});

if (!CAN_MOUNT) console.warn(NO_MOUNT);
