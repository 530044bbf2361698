// `chat connect` for scripts, run as real processes against a real server: send, listen,
// stdin lines, trust on first use, a changed certificate, and a server restart.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { KnownServers, serverKey } from "../../src/client/known_servers.ts";
import { generateCaAndServer, writeKeyPairFiles } from "../../src/tls/certificate.ts";
import { ChatProcess, fingerprintOf, runChat } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

function envFor(configDir: string, password: string): Record<string, string> {
  return { CHAT_CONFIG_DIR: configDir, CHAT_PASSWORD: password };
}

Deno.test("connect --send waits for the ack and exits 0; the message is stored and delivered", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const fp = await fingerprintOf(ts.certPem);
  const r = await runChat(
    [
      `127.0.0.1:${ts.port}`,
      "--user",
      "alice",
      "--register",
      "--trust-fingerprint",
      fp,
      "--send",
      "hello from a script",
      "--json",
    ],
    { env: envFor(cfg.path, "password-alice") },
  );
  assertEquals(r.code, 0, r.stderr);
  const ack = JSON.parse(r.stdout);
  assertEquals([ack.type, ack.room], ["ack", "general"]);
  const m = await bob.expect((f) => f.type === "msg");
  assertEquals(m.type === "msg" && [m.id, m.from, m.body], [
    ack.id,
    "alice",
    "hello from a script",
  ]);
});

Deno.test("connect --send fails with a one-line error and a non-zero exit", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  (await WireClient.login(ts.port, ts.certPem, "alice", { register: true })).close();
  const fp = await fingerprintOf(ts.certPem);
  const base = [`127.0.0.1:${ts.port}`, "--user", "alice", "--trust-fingerprint", fp];
  const cases: [string[], string, string][] = [
    [["--to", "nobody", "--send", "x"], "password-alice", "no_such_user"],
    [["--send", "x"], "wrong-password", "auth_failed"],
    [["--send", "   "], "password-alice", "invalid_text"],
  ];
  for (const [args, pw, code] of cases) {
    const r = await runChat([...base, ...args], { env: envFor(cfg.path, pw) });
    assertEquals(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assertMatch(r.stderr, new RegExp(`^chat: Cannot [^\\n]+\\[${code}\\]\\n$`));
  }
  const down = await runChat(["127.0.0.1:1", "--user", "alice", "--send", "x"], {
    env: envFor(cfg.path, "password-alice"),
  });
  assertEquals(down.code, 1);
  assertMatch(down.stderr, /^chat: Cannot connect to 127\.0\.0\.1:1: connection refused[^\n]*\n$/);
});

Deno.test("connect reads messages from stdin, one per line, in order; --room joins the room", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const fp = await fingerprintOf(ts.certPem);
  const lines = Array.from({ length: 40 }, (_, i) => `line ${i + 1}`);
  const r = await runChat(
    [
      `127.0.0.1:${ts.port}`,
      "-u",
      "dave",
      "--register",
      "--room",
      "ops",
      "--trust-fingerprint",
      fp,
      "--password-stdin",
    ],
    { env: { CHAT_CONFIG_DIR: cfg.path }, stdin: ["password-dave", ...lines, "", ""].join("\n") },
  );
  assertEquals(r.code, 0, r.stderr);
  assertMatch(r.stderr, /joined #ops/);
  await using w = await WireClient.login(ts.port, ts.certPem, "dave");
  w.send({ type: "history", room: "ops", limit: 100, ref: "h" });
  const h = await w.expect((f) => f.type === "history");
  assertEquals(h.type === "history" && h.messages.map((m) => m.body), lines);
});

Deno.test("connect --listen --json prints one JSON object a line until stopped", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  (await WireClient.login(ts.port, ts.certPem, "erin", { register: true })).close();
  const fp = await fingerprintOf(ts.certPem);
  await using p = new ChatProcess(
    [`127.0.0.1:${ts.port}`, "-u", "erin", "--trust-fingerprint", fp, "--listen", "--json"],
    envFor(cfg.path, "password-erin"),
  );
  await p.waitFor("stderr", (l) => l.includes("listening as erin"), "the listener to be ready");
  await bob.say("general", "first", "c1");
  bob.send({ type: "send", cid: "c2", to: "erin", body: "second \u00e9", ref: "c2" });
  await p.waitFor("stdout", (l) => l.includes("second"), "the direct message");
  const msgs = p.stdoutLines.map((l) => JSON.parse(l)).filter((o) => o.type === "msg");
  assertEquals(msgs.map((m) => [m.from, m.room, m.to, m.body]), [
    ["bob", "general", undefined, "first"],
    ["bob", undefined, "erin", "second \u00e9"],
  ]);
  assert(msgs.every((m) => Number.isInteger(m.id) && Number.isInteger(m.ts)));
  assertEquals(await p.stop("SIGTERM"), 0);
});

Deno.test("trust on first use from scripts: refused with the fingerprint, pinned, remembered", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const fp = await fingerprintOf(ts.certPem);
  const env = envFor(cfg.path, "password-fay");
  const args = [`127.0.0.1:${ts.port}`, "-u", "fay", "--send", "hi"];
  const refused = await runChat([...args, "--register"], { env });
  assertEquals(refused.code, 1);
  assert(refused.stderr.includes(`--trust-fingerprint ${fp}`), refused.stderr);
  assert(refused.stderr.includes("[cert_unknown]"), refused.stderr);
  const wrong = await runChat([
    ...args,
    "--register",
    "--trust-fingerprint",
    "sha256:" + "00".repeat(32),
  ], { env });
  assertEquals(wrong.code, 1);
  assert(wrong.stderr.includes("[cert_mismatch]"), wrong.stderr);
  const pinned = await runChat([...args, "--register", "--trust-fingerprint", fp], { env });
  assertEquals(pinned.code, 0, pinned.stderr);
  const known = await KnownServers.load(`${cfg.path}/known_servers`);
  assertEquals(known.get(serverKey("127.0.0.1", ts.port))?.fingerprint, fp.slice("sha256:".length));
  const later = await runChat(args, { env });
  assertEquals(later.code, 0, later.stderr);
});

Deno.test("a changed certificate is refused loudly, like ssh, and nothing is sent", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  (await WireClient.login(ts.port, ts.certPem, "gil", { register: true })).close();
  const key = serverKey("127.0.0.1", ts.port);
  const other = "AB:".repeat(31) + "AB";
  await Deno.writeTextFile(`${cfg.path}/known_servers`, `# mine\n${key} sha256:${other}\n`);
  const r = await runChat([`127.0.0.1:${ts.port}`, "-u", "gil", "--send", "should not arrive"], {
    env: envFor(cfg.path, "password-gil"),
  });
  assertEquals(r.code, 1);
  assert(r.stderr.includes("WARNING: THE CHAT SERVER'S CERTIFICATE HAS CHANGED!"), r.stderr);
  assert(r.stderr.includes("remove line 2 of"), r.stderr);
  assert(r.stderr.includes(await fingerprintOf(ts.certPem)), r.stderr);
  assertMatch(r.stderr, /\[cert_changed\]\n$/);
  await using w = await WireClient.login(ts.port, ts.certPem, "gil");
  w.send({ type: "history", room: "general", ref: "h" });
  const h = await w.expect((f) => f.type === "history");
  assertEquals(h.type === "history" && h.messages.length, 0);
});

Deno.test("connect --listen survives a server restart: one-line notices, every message exactly once", async () => {
  const ts1 = await startTestServer({ keepData: true });
  const { port, dataDir } = ts1;
  await using cfg = await tempDir();
  (await WireClient.login(port, ts1.certPem, "hank", { register: true })).close();
  const fp = await fingerprintOf(ts1.certPem);
  await using p = new ChatProcess(
    [`127.0.0.1:${port}`, "-u", "hank", "--trust-fingerprint", fp, "--listen", "--json"],
    envFor(cfg.path, "password-hank"),
  );
  await p.waitFor("stderr", (l) => l.includes("listening as hank"), "the listener to be ready");
  {
    await using ivy = await WireClient.login(port, ts1.certPem, "ivy", { register: true });
    await ivy.say("general", "before", "b1");
    await p.waitFor("stdout", (l) => l.includes('"before"'), "the first message");
  }
  await ts1.stop();
  await p.waitFor("stderr", (l) => l.startsWith("chat: disconnected"), "the disconnect notice");
  await using ts2 = await startTestServer({ dataDir, config: { port } });
  {
    await using ivy = await WireClient.login(port, ts2.certPem, "ivy");
    for (let i = 1; i <= 3; i++) await ivy.say("general", `during ${i}`, `d${i}`);
  }
  await p.waitFor("stderr", (l) => l.startsWith("chat: reconnected to "), "the reconnect notice");
  {
    await using ivy = await WireClient.login(port, ts2.certPem, "ivy");
    await ivy.say("general", "after", "a1");
  }
  await p.waitFor("stdout", (l) => l.includes('"after"'), "the message after the reconnect");
  const bodies = p.stdoutLines.map((l) => JSON.parse(l)).filter((o) => o.type === "msg").map((m) =>
    m.body
  );
  assertEquals(bodies, ["before", "during 1", "during 2", "during 3", "after"]);
  assert(
    p.stderrLines.some((l) =>
      l === "chat: disconnected: the server is restarting or shutting down"
    ),
    p.stderrLines.join("\n"),
  );
  assert(!p.stderrLines.some((l) => /^\s+at /.test(l)), "a stack trace was printed");
  assertEquals(await p.stop("SIGINT"), 0);
});

Deno.test("--ca FILE trusts a server signed by that CA (nothing remembered) and nothing else", async () => {
  await using cfg = await tempDir();
  const pair = await generateCaAndServer({ hostnames: [] });
  const { certPath, keyPath } = await writeKeyPairFiles(cfg.path, pair, {
    cert: "server.pem",
    key: "server.key",
  });
  const caPath = `${cfg.path}/ca.pem`;
  await Deno.writeTextFile(caPath, pair.caCertPem);
  await using ts = await startTestServer({ config: { certFile: certPath, keyFile: keyPath } });
  const env = envFor(cfg.path, "password-jan");
  const ok = await runChat(
    [`127.0.0.1:${ts.port}`, "-u", "jan", "--register", "--ca", caPath, "--send", "signed"],
    { env },
  );
  assertEquals(ok.code, 0, ok.stderr);
  assertEquals((await KnownServers.load(`${cfg.path}/known_servers`)).size, 0);
  await using other = await startTestServer();
  const refused = await runChat(
    [`127.0.0.1:${other.port}`, "-u", "jan", "--register", "--ca", caPath, "--send", "x"],
    { env },
  );
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /not signed by the CA in .*ca\.pem.*\[cert_untrusted\]\n$/);
});

Deno.test("connect with two servers, the first down: --send goes to the second (comma list and --server)", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const fp = await fingerprintOf(ts.certPem);
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = (l.addr as Deno.NetAddr).port;
  l.close();
  const forms = [
    [`127.0.0.1:${dead},127.0.0.1:${ts.port}`],
    [`127.0.0.1:${dead}`, "--server", `127.0.0.1:${ts.port}`],
  ];
  for (const [i, form] of forms.entries()) {
    const r = await runChat(
      [...form, "-u", "amy", ...(i === 0 ? ["--register"] : []), "--trust-fingerprint", fp]
        .concat(["--send", `form ${i}`, "--json"]),
      { env: envFor(cfg.path, "password-amy") },
    );
    assertEquals(r.code, 0, r.stderr);
    const ack = JSON.parse(r.stdout);
    const m = await bob.expect((f) => f.type === "msg" && f.body === `form ${i}`);
    assertEquals(m.type === "msg" && m.id, ack.id);
  }
});
