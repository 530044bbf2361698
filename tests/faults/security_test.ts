// Fault suite, security points: uniform login failures, invite code entropy and lookup, owner-only
// files, no secret or message body in logs, and every limit documented and on by default.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { AdminService } from "../../src/admin/admin_service.ts";
import { inviteCodeHash } from "../../src/server/auth.ts";
import { DB_FILE } from "../../src/server/mod.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import { DEFAULT_LIMITS, resolveConfig } from "../../src/config/config.ts";
import { ChildServer, type F, isType, ROOT, waitFor } from "./helpers.ts";

Deno.test("security: unknown user, wrong password, disabled account and malformed name fail alike", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-faults-uniform-" });
  try {
    {
      await using ts = await startTestServer({ dataDir, keepData: true });
      for (const u of ["active", "banned"]) {
        (await WireClient.login(ts.port, ts.certPem, u, { register: true })).close();
      }
    }
    {
      const store = await openStore(storeSpec({ dataDir }));
      await store.updateUser((await store.userByName("banned"))!.id, { disabled: true });
      await store.close();
    }
    await using ts = await startTestServer({ dataDir, keepData: true });
    const attempts: [string, string][] = [
      ["nobody", "whatever-password"],
      ["active", "wrong-password"],
      ["banned", "password-banned"],
      ["\u212Active", "password-active"],
      ["x", "short"],
      ["a:b", "password-active"],
    ];
    const answers: string[] = [];
    const seedAnswers: string[] = [];
    for (const [user, password] of attempts) {
      await using c = await WireClient.connect(ts.port, ts.certPem);
      c.send({ type: "hello", version: 1 });
      await c.expect(isType("hello"));
      c.send({ type: "login", user, password });
      answers.push(JSON.stringify(await c.expect(isType("error"))));
      await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
      s.writeRaw(`LOGIN\n${user}\n${password}\n`);
      await waitFor(() => /^AUTH_(FAILED|SUCCESS)$/m.test(s.raw), `seed answer for ${user}`);
      seedAnswers.push(s.raw);
    }
    assertEquals(new Set(answers).size, 1, answers.join("\n"));
    assertEquals(
      JSON.parse(answers[0]),
      { type: "error", code: "auth_failed", message: "Cannot log in: wrong user name or password" },
    );
    assertEquals(new Set(seedAnswers).size, 1, seedAnswers.join("\n---\n"));
    assert(seedAnswers[0].includes("AUTH_FAILED"));
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("security: invite codes carry 160 random bits, only their SHA-256 is stored, a near miss fails", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-faults-invite-" });
  try {
    let asked = 0;
    const codes: string[] = [];
    {
      const store = await openStore(storeSpec({ dataDir }));
      const admin = new AdminService({
        store,
        random: (n) => {
          asked = n;
          return crypto.getRandomValues(new Uint8Array(n));
        },
      });
      for (let i = 0; i < 50; i++) {
        codes.push((await admin.createInvite("admin:test", { uses: 1, expiresAt: null })).code);
      }
      await store.close();
    }
    assert(asked * 8 >= 128, `only ${asked * 8} random bits per invite`);
    assertEquals(new Set(codes).size, codes.length);
    for (const code of codes) assert(/^[a-z2-7]{32}$/.test(code), code);
    // The database holds hashes, never a code.
    const bytes = new TextDecoder("latin1").decode(await Deno.readFile(`${dataDir}/${DB_FILE}`));
    for (const code of codes) assert(!bytes.includes(code), "an invite code is stored in clear");
    assert(bytes.includes(await inviteCodeHash(codes[0])), "the hash is not where it is looked up");
    await using ts = await startTestServer({
      dataDir,
      keepData: true,
      config: { registration: "invite" },
    });
    await using c = await WireClient.connect(ts.port, ts.certPem);
    c.send({ type: "hello", version: 1 });
    await c.expect(isType("hello"));
    const flip = codes[0].slice(0, -1) + (codes[0].endsWith("a") ? "b" : "a");
    for (const [ref, invite] of [["near", flip], ["upper", codes[0].toUpperCase()], ["none", ""]]) {
      c.send({ type: "register", user: "invitee", password: "password-invitee", invite, ref });
      const e = await c.expect((f) => f.type === "error" && f.ref === ref) as F<"error">;
      assert(["invalid_invite", "invite_required"].includes(e.code), `${ref}: ${e.code}`);
    }
    c.send({
      type: "register",
      user: "invitee",
      password: "password-invitee",
      invite: codes[0],
      ref: "ok",
    });
    assertEquals((await c.expect((f) => "ref" in f && f.ref === "ok")).type, "ok");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("security: the key, the data dir and the admin socket are owner-only even under umask 000", async () => {
  const dataDir = `${await Deno.makeTempDir({ prefix: "chat-faults-modes-" })}/data`;
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `umask 000; exec "${Deno.execPath()}" run -A main.ts serve --host 127.0.0.1 --port 0 --data "${dataDir}"`,
    ],
    cwd: ROOT,
    env: { CHAT_LOG_LEVEL: "warning" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { text: "" };
  const reading = (async () => {
    for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) out.text += c;
  })();
  try {
    await waitFor(() => out.text.includes("listening"), "the server to start", 30_000);
    await waitFor(async () => {
      try {
        return (await Deno.lstat(`${dataDir}/admin.sock`)).isSocket === true;
      } catch {
        return false;
      }
    }, "the admin socket");
    const mode = async (p: string) => ((await Deno.lstat(p)).mode ?? 0) & 0o777;
    assertEquals((await mode(dataDir)).toString(8), "700");
    assertEquals((await mode(`${dataDir}/key.pem`)).toString(8), "600");
    assertEquals((await mode(`${dataDir}/admin.sock`)).toString(8), "600");
    console.log(
      `modes under umask 000: cert.pem ${(await mode(`${dataDir}/cert.pem`)).toString(8)}, ` +
        `chat.db ${(await mode(`${dataDir}/${DB_FILE}`)).toString(8)} (inside the 0700 dir)`,
    );
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel();
    await reading;
    await Deno.remove(dataDir.replace(/\/data$/, ""), { recursive: true });
  }
});

Deno.test("security: debug logs never contain a password, an invite code or a message body", async () => {
  for (const format of ["text", "json"]) {
    const dataDir = await Deno.makeTempDir({ prefix: "chat-faults-logs-" });
    try {
      const secrets = {
        password: "Pw-correct-horse-7731",
        wrong: "Pw-wrong-battery-5521",
        changed: "Pw-changed-staple-9090",
        body: "Body-the-eagle-lands-at-dawn",
        dm: "Body-psst-dm-4242",
        refused: "Body-refused-\u001b[2J-3131",
        seedBody: "Body-from-seed-8080",
      };
      await using srv = await ChildServer.start({
        dataDir,
        env: { CHAT_LOG_LEVEL: "debug", CHAT_LOG_FORMAT: format },
      });
      {
        await using a = await WireClient.login(srv.port, srv.certPem, "logger", {
          register: true,
          password: secrets.password,
        });
        await using b = await WireClient.connect(srv.port, srv.certPem);
        b.send({ type: "hello", version: 1 });
        b.send({ type: "login", user: "logger", password: secrets.wrong, ref: "bad" });
        await b.expect(isType("error"));
        assertEquals((await a.say("general", secrets.body)).type, "ack");
        a.send({ type: "send", cid: "dm", to: "logger", body: secrets.dm, ref: "dm" });
        await a.expect((f) => f.type === "ack" && f.ref === "dm");
        assertEquals((await a.say("general", secrets.refused)).type, "error");
        a.send({ type: "passwd", old: secrets.password, new: secrets.changed, ref: "pw" });
        await a.expect((f) => f.type === "ok" && f.ref === "pw");
        await using s = await WireClient.connect(srv.port, srv.certPem, { alpn: [] });
        s.writeRaw(`LOGIN\nlogger\n${secrets.changed}\n${secrets.seedBody}\n`);
        await waitFor(() => s.raw.includes("[USERS_LIST]"), "the seed login");
        await a.expect((f) => f.type === "msg" && f.body === secrets.seedBody);
      }
      srv.kill("SIGTERM");
      await srv.wait();
      const logs = srv.stdout + srv.stderr;
      assert(/Login of/.test(logs) && /logger/.test(logs), `no login lines were logged:\n${logs}`);
      for (const [name, value] of Object.entries(secrets)) {
        const core = value.replace(/^(Pw|Body)-/, "").slice(0, 12);
        assert(!logs.includes(core), `the ${name} appears in the ${format} log`);
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true });
    }
  }
});

Deno.test("security: every limit has a default documented in docs/RELIABILITY.md, and all are on", async () => {
  const doc = await Deno.readTextFile(`${ROOT}docs/RELIABILITY.md`);
  const resolved = resolveConfig().limits;
  for (const [name, value] of Object.entries(DEFAULT_LIMITS)) {
    const row = doc.match(new RegExp(`^\\|\\s*\`${name}\`\\s*\\|\\s*([0-9_,]+)\\s*\\|`, "m"));
    assert(row, `limit ${name} has no row in the limits table of docs/RELIABILITY.md`);
    assertEquals(Number(row[1].replace(/[_,]/g, "")), value, `documented default of ${name}`);
    assert(value > 0, `limit ${name} is off by default`);
    assertEquals(resolved[name as keyof typeof resolved], value, `${name} is not the default`);
  }
});
