// `chat admin` as a real process against a running server (real TLS on loopback): changes reach
// live state through the admin socket at once.
import { osUserName } from "../../src/admin/os_user.ts";
import { assert, assertEquals, assertMatch, assertNotEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import type { UserDetail } from "../../src/admin/admin_service.ts";
import { certificateInfo, generateCaAndServer } from "../../src/tls/certificate.ts";
import { admin, adminJson, adminOk, openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

type ErrorFrame = Extract<ServerFrame, { type: "error" }>;

/** Whether a fresh TLS handshake succeeds when trusting only `caPem`. */
async function handshakeTrusting(port: number, caPem: string): Promise<boolean> {
  let conn: Deno.TlsConn | null = null;
  try {
    conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [caPem],
      alpnProtocols: ["chat/1"],
    });
    await conn.handshake();
    return true;
  } catch {
    return false;
  } finally {
    try {
      conn?.close();
    } catch { /* closed by the failed handshake */ }
  }
}

/** Registers (optionally with an invite) on a new connection; returns the reply frame. */
async function register(
  port: number,
  certPem: string,
  user: string,
  invite?: string,
): Promise<ServerFrame> {
  await using c = await WireClient.connect(port, certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect((f) => f.type === "hello");
  c.send({ type: "register", user, password: `password-${user}`, ...(invite ? { invite } : {}) });
  return await c.expect((f) => f.type === "ok" || f.type === "error");
}

Deno.test("the admin socket is owner-only and goes away when the server stops", async () => {
  await using ts = await startTestServer();
  const sock = `${ts.dataDir}/admin.sock`;
  const info = await Deno.lstat(sock);
  assert(info.isSocket);
  assertEquals(info.mode! & 0o777, 0o600);
  assertEquals(info.uid, Deno.uid());
  await ts.stop();
  assertEquals(await Deno.lstat(sock).then(() => true, () => false), false);
});

Deno.test("disable closes the user's connections at once; enable lets them back in", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using alice1 = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
  await using alice2 = await WireClient.login(ts.port, ts.certPem, "alice");
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  assertEquals((await adminJson<UserDetail>(["users", "show", "alice", ...d])).online, 2);

  assertEquals(
    await adminOk(["users", "disable", "alice", ...d]),
    "Disabled alice; closed 2 sessions.\n",
  );
  for (const c of [alice1, alice2]) {
    const bye = await c.expect((f) => f.type === "bye");
    assertEquals((bye as { code: string }).code, "kicked");
    await c.expectClosed();
  }
  // Bob is untouched.
  assertEquals((await bob.say("general", "still here")).type, "ack");
  const refused = await WireClient.login(ts.port, ts.certPem, "alice").then(
    () => "ok",
    (e) => String(e),
  );
  assertMatch(refused, /auth_failed/);
  assertEquals((await adminJson<UserDetail>(["users", "show", "alice", ...d])).online, 0);

  await adminOk(["users", "enable", "alice", ...d]);
  await using back = await WireClient.login(ts.port, ts.certPem, "alice");
  assertEquals((await back.say("general", "back")).type, "ack");

  const trail = await adminJson<
    { actor: string; action: string; remote: string; detail?: { kicked: number } }[]
  >([
    "audit",
    ...d,
  ]);
  const disable = trail.find((e) => e.action === "users.disable")!;
  // Through the socket the server records its own OS user, not the client's $USER (tester).
  assertEquals([disable.actor, disable.remote, disable.detail?.kicked], [
    `admin:${osUserName()}`,
    "local",
    2,
  ]);
  assert(trail.some((e) => e.action === "login_failed"));
});

Deno.test("remove closes the user's sessions; add and passwd work at once on the live server", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using carol = await WireClient.login(ts.port, ts.certPem, "carol", { register: true });
  assertEquals(
    await adminOk(["users", "remove", "carol", "--yes", ...d]),
    "Removed carol; closed 1 session.\n",
  );
  await carol.expectClosed();

  await adminOk(["users", "add", "dave", "--role", "admin", ...d, "--password-stdin"], {
    stdin: "dave-secret-1\n",
  });
  await using dave = await WireClient.login(ts.port, ts.certPem, "dave", {
    password: "dave-secret-1",
  });
  assertEquals(
    await adminOk(["users", "passwd", "dave", "--kick", ...d, "--password-stdin"], {
      stdin: "dave-secret-2\n",
    }),
    "Changed the password of dave; closed 1 session.\n",
  );
  await dave.expectClosed();
  await using again = await WireClient.login(ts.port, ts.certPem, "dave", {
    password: "dave-secret-2",
  });
  assertEquals((await again.say("general", "new password works")).type, "ack");
  assertEquals(await adminOk(["users", "role", "dave", "member", ...d]), "dave is now member.\n");
  assertEquals((await adminJson<UserDetail>(["users", "show", "dave", ...d])).role, "member");
});

Deno.test("certs rotate: an open connection stays usable, new ones get the new certificate", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using erin = await WireClient.login(ts.port, ts.certPem, "erin", { register: true });
  await using frank = await WireClient.login(ts.port, ts.certPem, "frank", { register: true });
  const oldFp = (await certificateInfo(ts.certPem)).fingerprintSha256;

  const r = await adminJson<{ fingerprintSha256: string; reloaded: boolean; serving: string }>([
    "certs",
    "rotate",
    "--yes",
    ...d,
  ]);
  assertEquals(r.reloaded, true);
  assertEquals(r.serving, r.fingerprintSha256);
  assertNotEquals(r.fingerprintSha256, oldFp);
  const newPem = await Deno.readTextFile(`${ts.dataDir}/cert.pem`);

  // The existing connections were not dropped: both ways still work.
  assertEquals((await erin.say("general", "after rotate")).type, "ack");
  const got = await frank.expect((f) => f.type === "msg");
  assertEquals((got as { body: string }).body, "after rotate");
  // A new connection is served the new certificate: it verifies against it and not the old one.
  assertEquals(await handshakeTrusting(ts.port, newPem), true);
  assertEquals(await handshakeTrusting(ts.port, ts.certPem), false);
  await using grace = await WireClient.login(ts.port, newPem, "grace", { register: true });
  assertEquals((await grace.say("general", "hello")).type, "ack");

  const shown = await adminJson<{ serving: string; fingerprintSha256: string }>([
    "certs",
    "show",
    ...d,
  ]);
  assertEquals(shown.serving, shown.fingerprintSha256);
  const stats = await adminJson<{ certificate: { fingerprint: string } }>([
    "stats",
    "--interval",
    "100",
    ...d,
  ]);
  assertEquals(stats.certificate.fingerprint, r.fingerprintSha256);
});

Deno.test("certs import of a CA-signed pair is served at once; clients trusting the CA connect", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using old = await WireClient.login(ts.port, ts.certPem, "hank", { register: true });
  const team = await generateCaAndServer({ hostnames: ["chat.team.example"] });
  await Deno.writeTextFile(`${ts.dataDir}/team.crt`, team.certPem);
  await Deno.writeTextFile(`${ts.dataDir}/team.key`, team.keyPem);
  const r = await adminJson<{ serving: string }>([
    "certs",
    "import",
    "--cert",
    `${ts.dataDir}/team.crt`,
    "--key",
    `${ts.dataDir}/team.key`,
    ...d,
  ]);
  assertEquals(r.serving, (await certificateInfo(team.certPem)).fingerprintSha256);
  assertEquals(await handshakeTrusting(ts.port, team.caCertPem), true);
  assertEquals((await old.say("general", "still connected")).type, "ack");
  // A mismatched pair is refused and the server keeps serving the imported one.
  const other = await generateCaAndServer();
  await Deno.writeTextFile(`${ts.dataDir}/other.key`, other.keyPem);
  const bad = await admin([
    "certs",
    "import",
    "--cert",
    `${ts.dataDir}/team.crt`,
    "--key",
    `${ts.dataDir}/other.key`,
    ...d,
  ]);
  assertEquals(bad.code, 1);
  assertMatch(bad.stderr, /\[cert_key_mismatch\]/);
  assertEquals(await handshakeTrusting(ts.port, team.caCertPem), true);
});

Deno.test("archiving a room stops sends and joins at once; topics show up in rooms", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await adminOk(["rooms", "create", "ops", "--topic", "on call", ...d]);
  await using ivy = await WireClient.login(ts.port, ts.certPem, "ivy", { register: true });
  ivy.send({ type: "join", room: "ops", ref: "j" });
  await ivy.expect((f) => f.type === "ok");
  assertEquals((await ivy.say("ops", "before")).type, "ack");
  await adminOk(["rooms", "topic", "ops", "incident 42", ...d]);
  ivy.send({ type: "rooms", ref: "r" });
  const rooms = await ivy.expect((f) => f.type === "rooms") as {
    rooms: { name: string; topic: string }[];
  };
  assertEquals(rooms.rooms.find((r) => r.name === "ops")?.topic, "incident 42");

  await adminOk(["rooms", "archive", "ops", "--yes", ...d]);
  const refused = await ivy.say("ops", "after");
  assertEquals([refused.type, (refused as ErrorFrame).code], ["error", "no_such_room"]);
  await using jack = await WireClient.login(ts.port, ts.certPem, "jack", { register: true });
  jack.send({ type: "join", room: "ops", ref: "j2" });
  const e = await jack.expect((f) => f.type === "error" || f.type === "ok");
  assertEquals((e as ErrorFrame).code, "no_such_room");
  await adminOk(["rooms", "unarchive", "ops", ...d]);
  jack.send({ type: "join", room: "ops", ref: "j3" });
  assertEquals((await jack.expect((f) => f.type === "error" || f.type === "ok")).type, "ok");
});

Deno.test("invites created on a live invite-only server let exactly their uses register", async () => {
  await using ts = await startTestServer({ config: { registration: "invite" } });
  const d = ["--data", ts.dataDir];
  const once = await adminJson<{ code: string }>(["invites", "create", ...d]);
  const revoked = await adminJson<{ code: string; invite: { id: number } }>([
    "invites",
    "create",
    "--uses",
    "5",
    ...d,
  ]);
  await adminOk(["invites", "revoke", String(revoked.invite.id), "--yes", ...d]);

  assertEquals((await register(ts.port, ts.certPem, "kate", once.code)).type, "ok");
  const used = await register(ts.port, ts.certPem, "liam", once.code);
  assertEquals((used as ErrorFrame).code, "invalid_invite");
  const gone = await register(ts.port, ts.certPem, "liam", revoked.code);
  assertEquals((gone as ErrorFrame).code, "invalid_invite");
  const listed = await adminJson<{ id: number; status: string }[]>(["invites", "list", ...d]);
  assertEquals(listed.map((i) => i.status), ["used up", "revoked"]);
});

Deno.test("two registrations of one name with one invite at once: one account, and the loser's use stays on the invite", async () => {
  await using ts = await startTestServer({ config: { registration: "invite" } });
  const d = ["--data", ts.dataDir];
  const inv = await adminJson<{ code: string }>(["invites", "create", "--uses", "2", ...d]);
  // Both pass the name check before either's password is hashed; only one account can exist.
  const answers = await Promise.all(
    ["nora", "NORA"].map((name) => register(ts.port, ts.certPem, name, inv.code)),
  );
  assertEquals(answers.map((a) => a.type === "ok" ? "ok" : (a as ErrorFrame).code).sort(), [
    "ok",
    "user_exists",
  ]);
  // The one use the loser did not get is still there: a third user registers with it.
  assertEquals((await register(ts.port, ts.certPem, "omar", inv.code)).type, "ok");
  const listed = await adminJson<{ status: string }[]>(["invites", "list", ...d]);
  assertEquals(listed.map((i) => i.status), ["used up"]);
});

Deno.test("stats reports live connections and message rates; prune reaches the live server", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using mia = await WireClient.login(ts.port, ts.certPem, "mia", { register: true });
  for (let i = 0; i < 20; i++) assertEquals((await mia.say("general", `m${i}`)).type, "ack");
  const s = await adminJson<
    {
      live: boolean;
      connections: number;
      sessions: number;
      messagesStored: number;
      messagesPerSecond: number;
      storage: { messages: number };
    }
  >(["stats", "--interval", "100", ...d]);
  assertEquals([s.live, s.connections, s.sessions, s.messagesStored], [true, 1, 1, 20]);
  assertEquals(s.storage.messages, 20);
  assert(s.messagesPerSecond >= 0);
  assertMatch(await adminOk(["stats", "--interval", "100", ...d]), /connections:\s+1\n/);

  const r = await adminJson<{ deleted: number }>([
    "history",
    "prune",
    "--before",
    "now",
    "--yes",
    ...d,
  ]);
  assertEquals(r.deleted, 20);
  mia.send({ type: "history", room: "general", ref: "h" });
  const h = await mia.expect((f) => f.type === "history") as { messages: unknown[] };
  assertEquals(h.messages, []);
  assertEquals(
    (await adminJson<{ action: string }[]>(["audit", ...d])).at(-1)?.action,
    "history.prune",
  );
});

Deno.test("a stale admin socket from a killed server does not block startup; a live one does", async () => {
  await using tmp = await tempDir("chat-admin-test-");
  const dataDir = tmp.path;
  // A real server process, killed so that it cannot clean up: its socket file stays behind.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "main.ts",
      "serve",
      "--data",
      dataDir,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
    ],
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "null",
    env: { CHAT_LOG_LEVEL: "error" },
  }).spawn();
  const reader = child.stdout.getReader();
  let printed = "";
  while (!printed.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) break;
    printed += new TextDecoder().decode(value);
  }
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  assertMatch(printed, /listening on port \d+/);
  assert((await Deno.lstat(`${dataDir}/admin.sock`)).isSocket);
  await using ts = await startTestServer({ dataDir, keepData: true });
  assertEquals(
    (await adminJson<{ live: boolean }>(["stats", "--interval", "100", "--data", dataDir])).live,
    true,
  );
  const second = await startTestServer({ dataDir, keepData: true }).then(
    async (s) => {
      await s.stop();
      return "started";
    },
    (e) => String(e),
  );
  assertMatch(
    second,
    /Cannot start: another chat server is running on .* \(its admin socket answers\)/,
  );
  assertEquals(
    (await adminJson<{ live: boolean }>(["stats", "--interval", "100", "--data", dataDir])).live,
    true,
  );
  await ts.stop();
});

Deno.test("with retentionDays the server deletes old messages by itself", async () => {
  await using tmp = await tempDir("chat-admin-test-");
  const dataDir = tmp.path;
  {
    const store = await openStore(dataDir);
    const u = await store.createUser({ name: "old", passwordHash: "x", ts: 0 });
    const room = await store.ensureRoom("general", "room", 0);
    const now = Date.now();
    for (let i = 0; i < 10; i++) {
      await store.appendMessage({
        roomId: room.id,
        senderId: u.id,
        body: `m${i}`,
        cid: `c${i}`,
        ts: now - i * 86_400_000 - 1000,
      });
    }
    await store.close();
  }
  await using ts = await startTestServer({
    dataDir,
    keepData: true,
    config: { retentionDays: 3 },
  });
  // The first run starts with the server; wait for its audit line (bounded).
  let pruned: { detail?: { deleted: number } } | undefined;
  for (let i = 0; i < 100 && !pruned; i++) {
    const trail = await adminJson<{ action: string; detail?: { deleted: number } }[]>([
      "audit",
      "--data",
      dataDir,
    ]);
    pruned = trail.find((e) => e.action === "retention.prune");
    if (!pruned) await new Promise((r) => setTimeout(r, 100));
  }
  assertEquals(pruned?.detail?.deleted, 7);
  const left = await admin(["history", "export", "--format", "jsonl", "--data", dataDir]);
  assertEquals(left.stdout.trim().split("\n").map((l) => JSON.parse(l).body), ["m0", "m1", "m2"]);
  await ts.stop();
});

Deno.test("beside a running server: reads, export and search see live writes; errors come back", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  await using nick = await WireClient.login(ts.port, ts.certPem, "nick", { register: true });
  for (const body of ["the deploy is green", "lunch, anyone?", "deploy rolled back"]) {
    assertEquals((await nick.say("general", body)).type, "ack");
  }
  const users = await adminJson<{ name: string }[]>(["users", "list", ...d]);
  assertEquals(users.map((u) => u.name), ["nick"]);
  const rooms = await adminJson<{ name: string; members: number }[]>(["rooms", "list", ...d]);
  assertEquals(rooms.map((r) => [r.name, r.members]), [["general", 1]]);
  const exported = await admin(["history", "export", "--format", "jsonl", ...d]);
  assertEquals(exported.code, 0, exported.stderr);
  const rows = exported.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(rows.map((r) => [r.room, r.from, r.body]), [
    ["general", "nick", "the deploy is green"],
    ["general", "nick", "lunch, anyone?"],
    ["general", "nick", "deploy rolled back"],
  ]);
  const found = await adminJson<{ body: string }[]>(["history", "search", "deploy", ...d]);
  assertEquals(found.map((r) => r.body), ["deploy rolled back", "the deploy is green"]);
  // The server keeps writing while the CLI reads.
  assertEquals((await nick.say("general", "after the reads")).type, "ack");

  const wrong = await admin(["users", "disable", "nobody", ...d]);
  assertEquals(wrong.code, 1);
  assertEquals(wrong.stderr, "chat: Cannot disable nobody: no such user [no_such_user]\n");
  const reload = await adminJson<{ serving: string }>(["certs", "reload", ...d]);
  assertEquals(reload.serving, (await certificateInfo(ts.certPem)).fingerprintSha256);
  const trail = await adminJson<{ action: string }[]>(["audit", ...d]);
  assertEquals(
    trail.filter((e) => !e.action.startsWith("login") && e.action !== "register").map((e) =>
      e.action
    ),
    ["history.export", "history.search", "certs.reload"],
  );
});
