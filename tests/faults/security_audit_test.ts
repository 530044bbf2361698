// Fault suite, findings of the security audit (issue 12): the throttles hold under concurrency and
// on passwd, invite registration answers alike, passwords are well-formed Unicode, and the data dir
// and the admin socket are owner-only from the first instant whatever the umask.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { AdminClient } from "../../src/admin/admin_client.ts";
import { AdminService } from "../../src/admin/admin_service.ts";
import { ADMIN_SOCKET_FILE, AdminSocketServer } from "../../src/admin/admin_socket.ts";
import { osUserName } from "../../src/admin/os_user.ts";
import { DB_FILE } from "../../src/server/mod.ts";
import { SqliteStore } from "../../src/store/sqlite_store.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { type F, isType, ROOT, waitFor } from "./helpers.ts";

function fakeClock(start = Date.parse("2026-03-10T12:00:00Z")) {
  let now = start;
  return { clock: () => now, advance: (ms: number) => now += ms };
}

/** Connects, says hello, sends one frame and returns the first ok or error answer. */
async function answer(
  port: number,
  certPem: string,
  frame: Record<string, unknown>,
): Promise<F<"ok"> | F<"error">> {
  await using c = await WireClient.connect(port, certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect(isType("hello"));
  c.send(frame);
  return await c.expect((f) => f.type === "ok" || f.type === "error") as F<"ok"> | F<"error">;
}

/** Hash jobs the server's hasher has started so far (finished, running or queued). */
function hashJobs(ts: { server: { hasher: { stats: { completed: number; running: number } } } }) {
  const s = ts.server.hasher.stats;
  return s.completed + s.running;
}

Deno.test("security: 40 parallel wrong logins at one account reach the hasher at most 5 times", async () => {
  const t = fakeClock();
  await using ts = await startTestServer({ clock: t.clock });
  (await WireClient.login(ts.port, ts.certPem, "target", { register: true })).close();
  const before = hashJobs(ts);
  const answers = await Promise.all(
    Array.from(
      { length: 40 },
      (_, i) =>
        answer(ts.port, ts.certPem, { type: "login", user: "target", password: `guess-${i}` }),
    ),
  );
  const codes = answers.map((a) => a.type === "error" ? a.code : "ok");
  assertEquals(codes.filter((c) => c === "auth_failed").length, 5, codes.join(","));
  assertEquals(codes.filter((c) => c === "throttled").length, 35, codes.join(","));
  assertEquals(hashJobs(ts) - before, 5, "password checks that ran");
  // The right password waits out the lockout too, then gets in: one attempt back per 30 s.
  const right = { type: "login", user: "target", password: "password-target" };
  assertEquals((await answer(ts.port, ts.certPem, right) as F<"error">).code, "throttled");
  t.advance(30_000);
  assertEquals((await answer(ts.port, ts.certPem, right)).type, "ok");
});

Deno.test("security: passwd with a wrong old password is throttled per account like logins", async () => {
  const t = fakeClock();
  await using ts = await startTestServer({ clock: t.clock });
  await using c = await WireClient.login(ts.port, ts.certPem, "looper", { register: true });
  const before = hashJobs(ts);
  for (let i = 0; i < 40; i++) {
    c.send({ type: "passwd", old: `wrong-${i}-pw`, new: "new-password-1", ref: `p${i}` });
  }
  const codes: string[] = [];
  for (let i = 0; i < 40; i++) {
    const f = await c.expect((f) => "ref" in f && f.ref === `p${i}`) as F<"error">;
    codes.push(f.code);
  }
  assertEquals(codes.filter((c) => c === "auth_failed").length, 5, codes.join(","));
  assertEquals(codes.filter((c) => c === "throttled").length, 35, codes.join(","));
  assertEquals(hashJobs(ts) - before, 5, "password checks that ran");
  // Others still log in: the hash queue was never filled.
  (await WireClient.login(ts.port, ts.certPem, "bystander", { register: true })).close();
  t.advance(30_000);
  c.send({ type: "passwd", old: "password-looper", new: "new-password-1", ref: "right" });
  assertEquals((await c.expect((f) => "ref" in f && f.ref === "right")).type, "ok");
});

Deno.test("security: invite registration checks the invite first and answers a taken and a free name alike", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-audit-invite-" });
  try {
    {
      await using ts = await startTestServer({ dataDir, keepData: true });
      (await WireClient.login(ts.port, ts.certPem, "taken", { register: true })).close();
    }
    let code: string;
    {
      const store = await openStore(storeSpec({ dataDir }));
      code = (await new AdminService({ store }).createInvite("admin:test", {
        uses: 1,
        expiresAt: null,
      })).code;
      await store.close();
    }
    await using ts = await startTestServer({
      dataDir,
      keepData: true,
      config: { registration: "invite" },
    });
    const before = hashJobs(ts);
    const bogus = "a".repeat(32);
    const reg = (user: string, invite: string) =>
      answer(ts.port, ts.certPem, { type: "register", user, password: `password-${user}`, invite });
    const taken = await reg("taken", bogus);
    const free = await reg("fresh", bogus);
    assertEquals(taken, free);
    assertEquals((taken as F<"error">).code, "invalid_invite");
    assertEquals(hashJobs(ts) - before, 0, "a password was hashed before the invite was checked");
    // A valid invite on a taken name is not used up by the refusal.
    assertEquals((await reg("taken", code) as F<"error">).code, "user_exists");
    assertEquals((await reg("fresh", code)).type, "ok");
    assertEquals((await reg("third", code) as F<"error">).code, "invalid_invite");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("security: a password that is not well-formed Unicode is refused, and never logs in", async () => {
  await using ts = await startTestServer();
  const reg = (password: string) =>
    answer(ts.port, ts.certPem, { type: "register", user: "surro", password });
  const login = (password: string) =>
    answer(ts.port, ts.certPem, { type: "login", user: "surro", password });
  for (const lone of ["\ud800", "\udfff", "x\ud800\ud800y"]) {
    assertEquals((await reg(`${lone}password`) as F<"error">).code, "weak_password", lone);
  }
  assertEquals((await reg("\ufffdpassword")).type, "ok");
  // Lone surrogates used to reach the hasher as U+FFFD and log in as the replacement character.
  for (const lone of ["\ud800", "\udfff"]) {
    assertEquals((await login(`${lone}password`) as F<"error">).code, "auth_failed", lone);
  }
  assertEquals((await login("\ufffdpassword")).type, "ok");
  await using c = await WireClient.login(ts.port, ts.certPem, "surro", {
    password: "\ufffdpassword",
  });
  c.send({ type: "passwd", old: "\ufffdpassword", new: "new-\udfff-password", ref: "pw" });
  const e = await c.expect((f) => "ref" in f && f.ref === "pw") as F<"error">;
  assertEquals(e.code, "weak_password");
});

/** Runs `chat <args>` under `umask 000`; resolves when `ready(stdout)` or the process ends. */
async function underUmask000(args: string, ready: (out: string) => boolean) {
  const child = new Deno.Command("sh", {
    args: ["-c", `umask 000; exec "${Deno.execPath()}" run -A main.ts ${args}`],
    cwd: ROOT,
    env: { CHAT_LOG_LEVEL: "info" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { text: "" };
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) out.text += c;
  };
  const reading = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited: Deno.CommandStatus | null = null;
  const status = child.status.then((s) => exited = s);
  await waitFor(() => exited !== null || ready(out.text), `chat ${args}`, 30_000);
  return {
    out,
    exited: () => exited,
    async stop() {
      if (exited === null) child.kill("SIGTERM");
      await status;
      await reading;
    },
  };
}

const modeOf = async (p: string) => (((await Deno.lstat(p)).mode ?? 0) & 0o777).toString(8);

Deno.test("security: under umask 000 chat.db, its -wal and -shm are created 0600", async () => {
  const base = await Deno.makeTempDir({ prefix: "chat-audit-modes-" });
  try {
    const dataDir = `${base}/data`;
    const srv = await underUmask000(
      `serve --host 127.0.0.1 --port 0 --data "${dataDir}"`,
      (out) => /listening/i.test(out),
    );
    try {
      assertEquals(srv.exited(), null, srv.out.text);
      await waitFor(async () => {
        try {
          return (await Deno.lstat(`${dataDir}/${ADMIN_SOCKET_FILE}`)).isSocket === true;
        } catch {
          return false;
        }
      }, "the admin socket");
      for (const f of [DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, "key.pem"]) {
        assertEquals(await modeOf(`${dataDir}/${f}`), "600", f);
      }
    } finally {
      await srv.stop();
    }
    // The offline admin tool creates a database the same way.
    const offline = `${base}/offline`;
    const admin = await underUmask000(`admin invites create --data "${offline}"`, () => false);
    await admin.stop();
    assertEquals(admin.exited()?.code, 0, admin.out.text);
    assertEquals(await modeOf(`${offline}/${DB_FILE}`), "600");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("security: chat serve refuses a data dir that others can read, and tightens old files", async () => {
  const base = await Deno.makeTempDir({ prefix: "chat-audit-datadir-" });
  try {
    const dataDir = `${base}/data`;
    await Deno.mkdir(dataDir);
    await Deno.chmod(dataDir, 0o755);
    const refused = await underUmask000(
      `serve --host 127.0.0.1 --port 0 --data "${dataDir}"`,
      (out) => /listening/i.test(out),
    );
    await refused.stop();
    assertEquals(refused.exited()?.success, false, refused.out.text);
    assert(refused.out.text.includes("chmod 700"), refused.out.text);
    assertEquals([...Deno.readDirSync(dataDir)], [], "files were created in the refused dir");
    // A 0700 dir holding a database an older version left 0644: tightened, and the log says so.
    await Deno.chmod(dataDir, 0o700);
    (await SqliteStore.open({ path: `${dataDir}/${DB_FILE}` })).close();
    await Deno.chmod(`${dataDir}/${DB_FILE}`, 0o644);
    const srv = await underUmask000(
      `serve --host 127.0.0.1 --port 0 --data "${dataDir}"`,
      (out) => /listening/i.test(out),
    );
    try {
      assertEquals(srv.exited(), null, srv.out.text);
      assertEquals(await modeOf(`${dataDir}/${DB_FILE}`), "600");
      assert(/Tightened/.test(srv.out.text), srv.out.text);
    } finally {
      await srv.stop();
    }
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("security: the admin socket is first bound inside a private 0700 dir, never in the data dir", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-audit-sock-" });
  const watcher = Deno.watchFs(dataDir, { recursive: false });
  const paths: string[] = [];
  const watching = (async () => {
    for await (const e of watcher) paths.push(...e.paths.map((p) => `${e.kind} ${p}`));
  })();
  try {
    const server = await AdminSocketServer.listen(dataDir, () => Promise.resolve(null));
    // The marker's event follows every event of listen() in inotify's queue.
    await Deno.writeTextFile(`${dataDir}/marker`, "");
    await waitFor(() => paths.some((p) => p.endsWith("/marker")), "the marker event");
    await server.close();
    const inDataDir = paths.filter((p) =>
      /\.sock$/.test(p) && !p.endsWith(`/${ADMIN_SOCKET_FILE}`)
    );
    assertEquals(inDataDir, [], "a socket was bound directly in the data dir");
    assertEquals([...Deno.readDirSync(dataDir)].map((e) => e.name), ["marker"]);
  } finally {
    watcher.close();
    await watching;
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("security: the admin socket records the server's OS user, not the actor a client claims", async () => {
  await using ts = await startTestServer();
  const client = await AdminClient.connect(ts.dataDir);
  assert(client, "no admin socket");
  try {
    await client.call("invites.create", "admin:ceo", { uses: 1, expiresAt: null });
  } finally {
    client.close();
  }
  const store = await openStore(storeSpec({ dataDir: ts.dataDir }));
  try {
    const rows = await store.auditTrail({ limit: 10 });
    const row = rows.find((r) => r.action === "invites.create");
    assertEquals(row?.actor, `admin:${osUserName()}`);
  } finally {
    await store.close();
  }
});

/** Sends `frame` with `ref` and resolves with the reply that carries it. */
async function ask(c: WireClient, ref: string, frame: Record<string, unknown>) {
  c.send({ ...frame, ref });
  return await c.expect((f) => "ref" in f && f.ref === ref);
}

Deno.test("security: join creates rooms within a per-user bucket, roomsPerUser and maxRooms (item 6)", async () => {
  const t = fakeClock();
  await using ts = await startTestServer({
    clock: t.clock,
    limits: { roomCreateBurst: 2, roomCreateRefillMs: 10_000, roomsPerUser: 3, maxRooms: 5 },
  });
  await using alice = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const join = (c: WireClient, room: string) => ask(c, room, { type: "join", room });
  assertEquals((await join(alice, "a1")).type, "ok");
  assertEquals((await join(alice, "a2")).type, "ok");
  const fast = await join(alice, "a3") as F<"error">;
  assertEquals([fast.code, fast.retryAfterMs], ["throttled", 10_000]);
  assertEquals(fast.message, "Cannot create room a3: too many new rooms, retry later");
  assertEquals((await join(alice, "general")).type, "ok", "joining is not creating");
  t.advance(10_000);
  assertEquals((await join(alice, "a3")).type, "ok");
  t.advance(10_000);
  const many = await join(alice, "a4") as F<"error">;
  assertEquals([many.code, many.message], [
    "too_many_rooms",
    "Cannot create room a4: you created 3 rooms, the most allowed",
  ]);
  // general + a1..a3 + b1 = 5 rooms: the server is full for everyone.
  assertEquals((await join(bob, "b1")).type, "ok");
  const full = await join(bob, "b2") as F<"error">;
  assertEquals([full.code, full.message], [
    "too_many_rooms",
    "Cannot create room b2: the server has its maximum of 5 rooms",
  ]);
  assertEquals((await join(bob, "a1")).type, "ok", "existing rooms can still be joined");
});

Deno.test("security: a rooms reply stays under a quarter of the send queue, paged by after (item 6)", async () => {
  await using dir = await tempDir("chat-rooms-page-");
  const seeded = SqliteStore.open({ path: `${dir.path}/${DB_FILE}` });
  const made: Promise<unknown>[] = [];
  for (let i = 0; i < 2000; i++) {
    made.push(seeded.ensureRoom(`room-${String(i).padStart(4, "0")}-padding-padding`, "room", 1));
  }
  await Promise.all(made);
  await seeded.close();
  const sendQueueBytes = 32 * 1024;
  await using ts = await startTestServer({ dataDir: dir.path, limits: { sendQueueBytes } });
  await using c = await WireClient.login(ts.port, ts.certPem, "reader", { register: true });
  const seen: string[] = [];
  let after: string | undefined;
  for (let page = 0;; page++) {
    assert(page < 100, "the pages never end");
    const rooms = await ask(c, `p${page}`, { type: "rooms", ...(after ? { after } : {}) });
    assertEquals(rooms.type, "rooms", JSON.stringify(rooms).slice(0, 200));
    const r = rooms as F<"rooms">;
    assert(JSON.stringify(r).length <= sendQueueBytes / 4 + 200, "a page over its budget");
    seen.push(...r.rooms.map((x) => x.name));
    if (!r.more) break;
    after = r.rooms.at(-1)!.name;
  }
  assertEquals(seen.length, 2001, "every room once (general too)");
  assertEquals(new Set(seen).size, 2001);
  assertEquals((await c.say("general", "still connected")).type, "ack");
});

Deno.test("security: changing the password ends the account's other sessions with bye password_changed (item 8)", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "pat", { register: true });
  await using b = await WireClient.login(ts.port, ts.certPem, "pat");
  const ok = await ask(a, "pw", { type: "passwd", old: "password-pat", new: "new-password-pat" });
  assertEquals(ok.type, "ok");
  const bye = await b.expect((f) => f.type === "bye") as F<"bye">;
  assertEquals(bye.code, "password_changed");
  await b.expectClosed();
  // The session that changed it stays, and the new password opens new ones.
  assertEquals((await a.say("general", "still here")).type, "ack");
  (await WireClient.login(ts.port, ts.certPem, "pat", { password: "new-password-pat" })).close();
});
