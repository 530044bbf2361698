// Session tokens over the wire (PROTOCOL.md §2.1): issued after a password login or registration
// that names a device, presented instead of the password, revoked by logout, passwd and admins.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import type { SessionsResult } from "../../src/admin/admin_service.ts";
import { adminJson, adminOk } from "../admin/helpers.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = <T extends ServerFrame["type"]>(t: T) => (f: ServerFrame): f is F<T> => f.type === t;

/** One login frame on a new connection; returns the client and the answer. */
async function logIn(
  port: number,
  certPem: string,
  frame: Record<string, unknown>,
): Promise<{ c: WireClient; r: F<"ok"> | F<"error"> }> {
  const c = await WireClient.connect(port, certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect(isType("hello"));
  c.send({ ref: "in", ...frame });
  const r = await c.expect((f) => f.type === "ok" || f.type === "error") as F<"ok"> | F<"error">;
  return { c, r };
}

function hashJobs(ts: { server: { hasher: { stats: { completed: number; running: number } } } }) {
  const s = ts.server.hasher.stats;
  return s.completed + s.running;
}

Deno.test("tokens: register with a device gets a token; a reconnect with it logs in without hashing, with resume", async () => {
  await using ts = await startTestServer();
  const reg = await logIn(ts.port, ts.certPem, {
    type: "register",
    user: "Tina",
    password: "password-Tina",
    device: "laptop",
  });
  const ok = reg.r as F<"ok">;
  assertEquals(ok.type, "ok");
  assertMatch(ok.token!, /^[0-9]+\.[A-Za-z0-9_-]{43}$/);
  assert(ok.tokenExpiresAt! > Date.now() + 29 * 86_400_000, "expires in 30 days");
  const said = await reg.c.say("general", "before the drop") as F<"ack">;
  reg.c.close();
  const before = hashJobs(ts);
  const again = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "tina",
    token: ok.token,
    resume: { rooms: { general: 0 } },
  });
  await using c = again.c;
  const back = again.r as F<"ok">;
  assertEquals([back.type, back.user, back.token], ["ok", "Tina", undefined]);
  assertEquals(hashJobs(ts) - before, 0, "no password hashed for a token login");
  const m = await c.expect(isType("msg")) as F<"msg">;
  assertEquals(m.id, said.id);
  // Without a device no token is issued (scripts, benchmarks, the seed protocol).
  const plain = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "tina",
    password: "password-Tina",
  });
  await using p = plain.c;
  assertEquals((plain.r as F<"ok">).token, undefined);
  p.close();
});

Deno.test("tokens: a wrong, foreign or malformed token gets auth_failed; password and token together are bad_frame", async () => {
  await using ts = await startTestServer();
  const a = await logIn(ts.port, ts.certPem, {
    type: "register",
    user: "amy",
    password: "password-amy",
    device: "d",
  });
  a.c.close();
  (await WireClient.login(ts.port, ts.certPem, "ben", { register: true })).close();
  const token = (a.r as F<"ok">).token!;
  for (
    const frame of [
      { type: "login", user: "ben", token },
      { type: "login", user: "amy", token: token.replace(/.$/, (ch) => ch === "x" ? "y" : "x") },
      { type: "login", user: "amy", token: "nonsense" },
    ]
  ) {
    const { c, r } = await logIn(ts.port, ts.certPem, frame);
    assertEquals((r as F<"error">).code, "auth_failed", JSON.stringify(frame));
    c.close();
  }
  const both = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "amy",
    token,
    password: "password-amy",
  });
  assertEquals((both.r as F<"error">).code, "bad_frame");
  both.c.close();
});

Deno.test("tokens: logout revokes the presenting session's token and ends the connection; others stay", async () => {
  await using ts = await startTestServer();
  const lap = await logIn(ts.port, ts.certPem, {
    type: "register",
    user: "lou",
    password: "password-lou",
    device: "laptop",
  });
  const phone = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "lou",
    password: "password-lou",
    device: "phone",
  });
  await using p = phone.c;
  const t = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "lou",
    token: (lap.r as F<"ok">).token,
  });
  await using c = t.c;
  c.send({ type: "logout", ref: "out" });
  assertEquals((await c.expect(isType("ok")) as F<"ok">).op, "logout");
  assertEquals((await c.expect(isType("bye")) as F<"bye">).code, "quit");
  await c.expectClosed();
  lap.c.close();
  const stale = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "lou",
    token: (lap.r as F<"ok">).token,
  });
  assertEquals((stale.r as F<"error">).code, "auth_failed");
  stale.c.close();
  // The phone's session and token are untouched.
  await p.barrier();
  const ph = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "lou",
    token: (phone.r as F<"ok">).token,
  });
  assertEquals(ph.r.type, "ok");
  ph.c.close();
});

Deno.test("tokens: passwd revokes every token of the account and gives this session a new one", async () => {
  await using ts = await startTestServer();
  const a = await logIn(ts.port, ts.certPem, {
    type: "register",
    user: "pat",
    password: "password-pat",
    device: "laptop",
  });
  await using c = a.c;
  const other = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "pat",
    password: "password-pat",
    device: "phone",
  });
  other.c.close();
  c.send({ type: "passwd", old: "password-pat", new: "password-pat-2", ref: "pw" });
  const ok = await c.expect(isType("ok")) as F<"ok">;
  assertEquals(ok.op, "passwd");
  assertMatch(ok.token!, /^[0-9]+\./);
  for (const token of [(a.r as F<"ok">).token, (other.r as F<"ok">).token]) {
    const r = await logIn(ts.port, ts.certPem, { type: "login", user: "pat", token });
    assertEquals((r.r as F<"error">).code, "auth_failed");
    r.c.close();
  }
  const fresh = await logIn(ts.port, ts.certPem, { type: "login", user: "pat", token: ok.token });
  assertEquals(fresh.r.type, "ok");
  fresh.c.close();
});

Deno.test("tokens: chat admin users sessions lists devices; --revoke ID closes the session that used it; disable revokes all", async () => {
  await using ts = await startTestServer();
  const d = ["--data", ts.dataDir];
  const lap = await logIn(ts.port, ts.certPem, {
    type: "register",
    user: "sam",
    password: "password-sam",
    device: "laptop",
  });
  await using l = lap.c;
  const ph = await logIn(ts.port, ts.certPem, {
    type: "login",
    user: "sam",
    password: "password-sam",
    device: "phone",
  });
  await using p = ph.c;
  const listed = await adminJson<SessionsResult>(["users", "sessions", "sam", ...d]);
  assertEquals(listed.sessions.map((s) => s.device), ["laptop", "phone"]);
  for (const s of listed.sessions) {
    assert(s.expiresAt > s.createdAt && s.lastUsedAt >= s.createdAt, JSON.stringify(s));
  }
  assert(!JSON.stringify(listed).includes((lap.r as F<"ok">).token!.split(".")[1]), "secret shown");
  const text = await adminOk(["users", "sessions", "sam", ...d]);
  assertMatch(text, /ID\s+DEVICE\s+CREATED\s+LAST USED\s+EXPIRES/);
  const laptopId = listed.sessions[0].id;
  const r = await adminJson<SessionsResult>([
    "users",
    "sessions",
    "sam",
    "--revoke",
    String(laptopId),
    ...d,
  ]);
  assertEquals([r.revoked, r.kicked], [[laptopId], 1]);
  assertEquals((await l.expect(isType("bye")) as F<"bye">).code, "kicked");
  await l.expectClosed();
  await p.barrier(); // the phone's session stays
  assertEquals(r.sessions.map((s) => s.device), ["phone"]);
  // Disable revokes every token (and closes every session).
  await adminOk(["users", "disable", "sam", ...d]);
  await p.expectClosed();
  assertEquals((await adminJson<SessionsResult>(["users", "sessions", "sam", ...d])).sessions, []);
});
