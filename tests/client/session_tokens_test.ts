// The terminal client's session tokens, with real client processes against a real server: saved
// owner-only in the config dir, used on the next start and on reconnect instead of the password,
// forgotten when the server refuses them.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { serverKey } from "../../src/client/known_servers.ts";
import { SessionTokens } from "../../src/client/session_tokens.ts";
import { adminOk } from "../admin/helpers.ts";
import { ChatProcess, fingerprintOf, runChat } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

function hashJobs(ts: { server: { hasher: { stats: { completed: number; running: number } } } }) {
  const s = ts.server.hasher.stats;
  return s.completed + s.running;
}

Deno.test("client tokens: a password login saves a token (file 0600, dir 0700); the next start uses it without a password; a revoked one is forgotten", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const dir = `${cfg.path}/chat`; // made by the client
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const fp = await fingerprintOf(ts.certPem);
  const base = [`127.0.0.1:${ts.port}`, "--user", "alice", "--trust-fingerprint", fp];
  const first = await runChat([...base, "--register", "--send", "one"], {
    env: { CHAT_CONFIG_DIR: dir, CHAT_PASSWORD: "password-alice" },
  });
  assertEquals(first.code, 0, first.stderr);
  const file = `${dir}/session_tokens`;
  assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
  assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
  const saved = await new SessionTokens(file).get(serverKey("127.0.0.1", ts.port), "alice");
  assertMatch(saved!, /^[0-9]+\.[A-Za-z0-9_-]{43}$/);
  // No password anywhere: the saved token logs in, and the server hashes nothing.
  const before = hashJobs(ts);
  const second = await runChat([...base, "--send", "two"], { env: { CHAT_CONFIG_DIR: dir } });
  assertEquals(second.code, 0, second.stderr);
  assertEquals(hashJobs(ts) - before, 0, "a password was hashed");
  const bodies: string[] = [];
  for (let i = 0; i < 2; i++) {
    const m = await bob.expect((f) => f.type === "msg");
    if (m.type === "msg") bodies.push(m.body);
  }
  assertEquals(bodies, ["one", "two"]);
  // Revoked by an administrator: refused, forgotten, and without a password the client says so.
  await adminOk(["users", "sessions", "alice", "--revoke", "all", "--data", ts.dataDir]);
  const third = await runChat([...base, "--send", "three"], { env: { CHAT_CONFIG_DIR: dir } });
  assertEquals(third.code, 1);
  assertMatch(third.stderr, /\[auth_failed\]\n$/);
  assertEquals(
    await new SessionTokens(file).get(serverKey("127.0.0.1", ts.port), "alice"),
    undefined,
  );
});

Deno.test("client tokens: a listening client reconnects after a server restart with its token, no password hashed", async () => {
  const ts1 = await startTestServer({ keepData: true });
  const { port, dataDir } = ts1;
  await using cfg = await tempDir();
  (await WireClient.login(port, ts1.certPem, "hank", { register: true })).close();
  const fp = await fingerprintOf(ts1.certPem);
  await using p = new ChatProcess(
    [`127.0.0.1:${port}`, "-u", "hank", "--trust-fingerprint", fp, "--listen", "--json"],
    { CHAT_CONFIG_DIR: cfg.path, CHAT_PASSWORD: "password-hank" },
  );
  await p.waitFor("stderr", (l) => l.includes("listening as hank"), "the listener to be ready");
  await ts1.stop();
  await p.waitFor("stderr", (l) => l.startsWith("chat: disconnected"), "the disconnect notice");
  await using ts2 = await startTestServer({ dataDir, config: { port } });
  await p.waitFor("stderr", (l) => l.startsWith("chat: reconnected"), "the reconnect notice");
  assertEquals(hashJobs(ts2), 0, "the reconnect hashed a password");
  {
    await using ivy = await WireClient.login(port, ts2.certPem, "ivy", { register: true });
    await ivy.say("general", "after", "a1");
  }
  await p.waitFor("stdout", (l) => l.includes('"after"'), "the message after the reconnect");
  assert(!p.stderrLines.some((l) => /^\s+at /.test(l)), "a stack trace was printed");
  assertEquals(await p.stop("SIGINT"), 0);
});
