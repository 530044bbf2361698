// The admin socket's wire behaviour, a locked database, and the terminal paths of the CLI
// (confirmation, hidden password input, progress bar) in a real pseudo-terminal.
import { DatabaseSync } from "node:sqlite";
import { argon2Verify } from "hash-wasm";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { MAX_REQUEST_BYTES } from "../../src/admin/admin_socket.ts";
import { admin, adminInTerminal, adminOk, haveScript, openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

/** Sends raw bytes on the admin socket and reads `lines` answer lines. */
async function rawExchange(path: string, payload: string, lines: number): Promise<string[]> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    const bytes = new TextEncoder().encode(payload);
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    let text = "";
    const buf = new Uint8Array(65536);
    while (text.split("\n").length <= lines) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text.split("\n").filter((l) => l !== "");
  } finally {
    conn.close();
  }
}

Deno.test("the admin socket answers every line, refuses garbage per line, and caps line length", async () => {
  await using ts = await startTestServer();
  const path = `${ts.dataDir}/admin.sock`;
  const answers = await rawExchange(
    path,
    [
      "not json",
      JSON.stringify({ id: 1, op: "users.explode", actor: "admin:t", args: {} }),
      JSON.stringify({ id: 2, op: "users.show", actor: "root", args: { name: "x" } }),
      JSON.stringify({ id: 3, op: "users.show", actor: "admin:t", args: { name: "nobody" } }),
      JSON.stringify({ id: "four", op: "stats", actor: "admin:t" }),
    ].join("\n") + "\n",
    5,
  );
  const parsed = answers.map((l) => JSON.parse(l));
  assertEquals(parsed.map((a) => [a.id, a.ok, a.error?.code]), [
    [null, false, "bad_request"],
    [1, false, "unknown_op"],
    [2, false, "no_such_user"], // the claimed actor is ignored: the server records its own user
    [3, false, "no_such_user"],
    ["four", true, undefined],
  ]);
  assertEquals(parsed[4].result.connections, 0);
  // An endless line ends that connection only; the socket keeps serving others.
  const conn = await Deno.connect({ transport: "unix", path });
  const chunk = new Uint8Array(65536).fill(0x61);
  let sent = 0;
  try {
    while (sent <= MAX_REQUEST_BYTES + chunk.length) sent += await conn.write(chunk);
  } catch { /* the server closed it: that is the point */ }
  const n = await conn.read(new Uint8Array(16)).catch(() => null);
  assertEquals(n, null);
  conn.close();
  const after = await rawExchange(
    path,
    JSON.stringify({ id: 9, op: "stats", actor: "admin:t" }) + "\n",
    1,
  );
  assertEquals(JSON.parse(after[0]).ok, true);
});

Deno.test("a locked database makes an offline write wait, not fail or corrupt", async () => {
  await using dir = await tempDir();
  {
    await using store = await openStore(dir.path);
    await store.ensureRoom("general", "room", 0);
  }
  const db = new DatabaseSync(`${dir.path}/chat.db`);
  try {
    db.exec("BEGIN IMMEDIATE");
    db.exec("INSERT INTO rooms(name, created_at) VALUES ('locker', 0)");
    const running = admin(["rooms", "create", "waiting", "--data", dir.path]);
    // The command cannot finish while the write lock is held: it is still running after it had
    // ample time to start and reach its write; then the lock goes and it completes.
    const early = await Promise.race([
      running.then(() => "finished"),
      new Promise((r) => setTimeout(() => r("waiting"), 2500)),
    ]);
    db.exec("COMMIT");
    const r = await running;
    assertEquals([early, r.code], ["waiting", 0], r.stderr);
  } finally {
    if (db.isTransaction) db.exec("ROLLBACK");
    db.close();
  }
  await using store = await openStore(dir.path);
  assertEquals((await store.listRooms()).map((x) => x.name), ["general", "locker", "waiting"]);
  const check = new DatabaseSync(`${dir.path}/chat.db`, { readOnly: true });
  try {
    assertEquals(check.prepare("PRAGMA integrity_check").get()?.integrity_check, "ok");
  } finally {
    check.close();
  }
});

const TERMINAL = await haveScript();

Deno.test({
  name: "on a terminal, remove asks: n cancels and changes nothing, y removes",
  ignore: !TERMINAL,
  fn: async () => {
    await using dir = await tempDir();
    const d = ["--data", dir.path];
    await adminOk(["users", "add", "nora", ...d, "--password-stdin"], { stdin: "nora-password" });
    const no = await adminInTerminal(["users", "remove", "nora", ...d], [
      { waitFor: "[y/N] ", keys: "n\r" },
    ]);
    assertEquals(no.code, 1);
    assertMatch(no.screen, /Cannot remove nora: cancelled \[cancelled\]/);
    assertEquals((await admin(["users", "show", "nora", ...d])).code, 0);
    const yes = await adminInTerminal(["users", "remove", "nora", ...d], [
      { waitFor: "[y/N] ", keys: "yes\r" },
    ]);
    assertEquals(yes.code, 0, yes.screen);
    assertMatch(yes.screen, /Removed nora\./);
    assertEquals((await admin(["users", "show", "nora", ...d])).code, 1);
  },
});

Deno.test({
  name: "on a terminal, users add asks twice for the password without echoing it",
  ignore: !TERMINAL,
  fn: async () => {
    await using dir = await tempDir();
    const d = ["--data", dir.path];
    const secret = "tty-Secret-42";
    const mismatch = await adminInTerminal(["users", "add", "otto", ...d], [
      { waitFor: "Password: ", keys: `${secret}\r` },
      { waitFor: "Repeat password: ", keys: "something-else\r" },
    ]);
    assertEquals(mismatch.code, 1);
    assertMatch(mismatch.screen, /the passwords differ \[password_mismatch\]/);
    const r = await adminInTerminal(["users", "add", "otto", ...d], [
      // A typo fixed with backspace, and an arrow key that must not end up in the password.
      { waitFor: "Password: ", keys: `${secret}x\x7f\x1b[D\r` },
      { waitFor: "Repeat password: ", keys: `${secret}\r` },
    ]);
    assertEquals(r.code, 0, r.screen);
    assertMatch(r.screen, /Added user otto \(member\)\./);
    assert(!r.screen.includes(secret), "the password was echoed");
    await using store = await openStore(dir.path);
    assert(
      await argon2Verify({
        password: secret,
        hash: (await store.userByName("otto"))!.passwordHash,
      }),
    );
  },
});

Deno.test({
  name: "a large export on a terminal shows a progress bar on stderr and ends at 100%",
  ignore: !TERMINAL,
  fn: async () => {
    await using dir = await tempDir();
    {
      await using store = await openStore(dir.path);
      const u = await store.createUser({ name: "pat", passwordHash: "x", ts: 0 });
      const room = await store.ensureRoom("general", "room", 0);
      const writes: Promise<unknown>[] = [];
      for (let i = 0; i < 3000; i++) {
        writes.push(
          store.appendMessage({
            roomId: room.id,
            senderId: u.id,
            body: `b${i}`,
            cid: `c${i}`,
            ts: i,
          }),
        );
      }
      await Promise.all(writes);
    }
    const out = `${dir.path}/all.csv`;
    const r = await adminInTerminal(
      ["history", "export", "--format", "csv", "--output", out, "--data", dir.path],
      [],
    );
    assertEquals(r.code, 0, r.screen);
    assertMatch(r.screen, /Exporting \[#+\] 100% 3000\/3000/);
    assertMatch(r.screen, /Exported 3000 messages/);
    // Piped (not a terminal), the same export prints no bar.
    const piped = await admin([
      "history",
      "export",
      "--format",
      "csv",
      "--output",
      `${out}2`,
      "--data",
      dir.path,
    ]);
    assert(!piped.stderr.includes("Exporting"), piped.stderr);
  },
});
