// Fault suite, protocol state: requests out of order, repeated logins, and names built to confuse.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { type F, isType, waitFor } from "./helpers.ts";

async function helloed(port: number, certPem: string): Promise<WireClient> {
  const c = await WireClient.connect(port, certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect(isType("hello"));
  return c;
}

async function reply(c: WireClient, ref: string): Promise<F<"ok"> | F<"error">> {
  return await c.expect((f) => (f.type === "ok" || f.type === "error") && f.ref === ref) as
    | F<"ok">
    | F<"error">;
}

Deno.test("state: every chat request before login gets not_authenticated and changes nothing", async () => {
  await using ts = await startTestServer();
  (await WireClient.login(ts.port, ts.certPem, "owner", { register: true })).close();
  await using c = await helloed(ts.port, ts.certPem);
  const requests: Record<string, unknown>[] = [
    { type: "join", room: "sneaky" },
    { type: "part", room: "general" },
    { type: "rooms" },
    { type: "who", room: "general" },
    { type: "send", cid: "x1", room: "general", body: "sneaky" },
    { type: "send", cid: "x2", to: "owner", body: "sneaky dm" },
    { type: "history", room: "general" },
    { type: "passwd", old: "password-owner", new: "hijacked-pw" },
  ];
  for (const [i, r] of requests.entries()) {
    c.send({ ...r, ref: `pre${i}` });
    const e = await c.expect(isType("error")) as F<"error">;
    assertEquals([e.code, e.ref], ["not_authenticated", `pre${i}`], String(r.type));
  }
  // Still connected and able to log in; the refused requests left no trace.
  c.send({ type: "login", user: "owner", password: "password-owner", ref: "in" });
  assertEquals((await reply(c, "in")).type, "ok");
  c.send({ type: "history", room: "general", ref: "h" });
  assertEquals((await c.expect(isType("history")) as F<"history">).messages, []);
  c.send({ type: "rooms", ref: "r" });
  const rooms = await c.expect(isType("rooms")) as F<"rooms">;
  assertEquals(rooms.rooms.map((r) => r.name), ["general"]);
});

Deno.test("state: seed lines before login are only the login dialogue; nothing is posted", async () => {
  await using ts = await startTestServer();
  await using owner = await WireClient.login(ts.port, ts.certPem, "seedowner", { register: true });
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw("hello everyone\nthis is not a login\n");
  await waitFor(() => (s.raw.match(/^AUTH_FAILED$/gm) ?? []).length === 2, "two AUTH_FAILED");
  owner.send({ type: "history", room: "general", ref: "h" });
  assertEquals((await owner.expect(isType("history")) as F<"history">).messages, []);
  await owner.expectNone(isType("msg"), "a seed line before login was posted");
});

Deno.test("state: login or register after login is already_authenticated; the session stays", async () => {
  await using ts = await startTestServer();
  (await WireClient.login(ts.port, ts.certPem, "other", { register: true })).close();
  await using c = await WireClient.login(ts.port, ts.certPem, "twice", { register: true });
  c.send({ type: "login", user: "other", password: "password-other", ref: "l2" });
  assertEquals((await reply(c, "l2")) as F<"error">, {
    type: "error",
    ref: "l2",
    code: "already_authenticated",
    message: "Cannot login: already logged in",
  });
  c.send({ type: "register", user: "third", password: "password-third", ref: "r2" });
  assertEquals(((await reply(c, "r2")) as F<"error">).code, "already_authenticated");
  c.send({ type: "hello", version: 1, ref: "h2" });
  assertEquals(((await reply(c, "h2")) as F<"error">).code, "already_authenticated");
  // Still the first user.
  const ack = await c.say("general", "who am i") as F<"ack">;
  assertEquals(ack.type, "ack");
  await using o = await WireClient.login(ts.port, ts.certPem, "other");
  o.send({ type: "history", room: "general", ref: "h" });
  const h = await o.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((m) => m.from), ["twice"]);
});

Deno.test("state: two logins pipelined in one record: the first wins, the second is refused", async () => {
  await using ts = await startTestServer();
  for (const u of ["pipe1", "pipe2"]) {
    (await WireClient.login(ts.port, ts.certPem, u, { register: true })).close();
  }
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.writeRaw(
    JSON.stringify({ type: "hello", version: 1 }) + "\n" +
      JSON.stringify({ type: "login", user: "pipe1", password: "password-pipe1", ref: "a" }) +
      "\n" +
      JSON.stringify({ type: "login", user: "pipe2", password: "password-pipe2", ref: "b" }) +
      "\n",
  );
  const a = await reply(c, "a") as F<"ok">;
  assertEquals([a.type, a.user], ["ok", "pipe1"]);
  assertEquals(((await reply(c, "b")) as F<"error">).code, "already_authenticated");
});

Deno.test("state: hello twice before login is refused, hello after another frame is fatal", async () => {
  await using ts = await startTestServer();
  await using c = await helloed(ts.port, ts.certPem);
  c.send({ type: "hello", version: 1, ref: "again" });
  assertEquals(((await reply(c, "again")) as F<"error">).code, "bad_frame");
  await using d = await WireClient.connect(ts.port, ts.certPem);
  d.send({ type: "ping" });
  assertEquals((await d.expect(isType("error")) as F<"error">).code, "hello_required");
  await d.expectClosed();
});

Deno.test("state: names that differ only by case are one account; the registered spelling is kept", async () => {
  await using ts = await startTestServer();
  (await WireClient.login(ts.port, ts.certPem, "MixedCase", { register: true })).close();
  await using c = await helloed(ts.port, ts.certPem);
  for (const [i, name] of ["mixedcase", "MIXEDCASE", "mIxEdCaSe"].entries()) {
    c.send({ type: "register", user: name, password: "password-other", ref: `r${i}` });
    assertEquals(((await reply(c, `r${i}`)) as F<"error">).code, "user_exists", name);
  }
  c.send({ type: "login", user: "MIXEDCASE", password: "password-MixedCase", ref: "in" });
  const ok = await reply(c, "in") as F<"ok">;
  assertEquals([ok.type, ok.user], ["ok", "MixedCase"]);
});

/** Look-alikes of `kate` and `alice`: other scripts, compatibility forms, invisible characters. */
const LOOK_ALIKES = [
  "\u212Aate", // KELVIN SIGN: lowercases to ASCII "k"
  "\u041Alice", // CYRILLIC CAPITAL KA
  "\u0430lice", // CYRILLIC SMALL A
  "\u0391lice", // GREEK CAPITAL ALPHA
  "\uFF41lice", // FULLWIDTH a
  "al\u0131ce", // DOTLESS i
  "a\u0301lice", // combining acute
  "alice\u200B", // ZERO WIDTH SPACE
  "ali\u00ADce", // SOFT HYPHEN
  "\u0130ce", // CAPITAL I WITH DOT: lowercases to i + combining dot
];

Deno.test("state: look-alike names cannot be registered", async () => {
  await using ts = await startTestServer();
  await using c = await helloed(ts.port, ts.certPem);
  for (const [i, name] of LOOK_ALIKES.entries()) {
    c.send({ type: "register", user: name, password: "password-look", ref: `r${i}` });
    assertEquals(((await reply(c, `r${i}`)) as F<"error">).code, "invalid_username", name);
  }
});

Deno.test("state: regression: a look-alike name never logs in to the ASCII account", async () => {
  await using ts = await startTestServer();
  for (const u of ["kate", "alice", "ice"]) {
    (await WireClient.login(ts.port, ts.certPem, u, { register: true })).close();
  }
  await using c = await helloed(ts.port, ts.certPem);
  const target = (name: string) =>
    name.startsWith("\u212A") ? "kate" : name.startsWith("\u0130") ? "ice" : "alice";
  for (const [i, name] of LOOK_ALIKES.entries()) {
    c.send({ type: "login", user: name, password: `password-${target(name)}`, ref: `l${i}` });
    const r = await reply(c, `l${i}`);
    assertEquals(r.type === "error" ? r.code : `logged in as ${r.user}`, "auth_failed", name);
  }
  // Sending to a look-alike never reaches the real account either.
  (await WireClient.login(ts.port, ts.certPem, "dmer", { register: true })).close();
  await using d = await WireClient.login(ts.port, ts.certPem, "dmer");
  d.send({ type: "send", cid: "k", to: "\u212Aate", body: "hi", ref: "k" });
  assertEquals((await d.expect(isType("error")) as F<"error">).code, "invalid_username");
});

Deno.test("state: names with the seed separators (: , space) or brackets are refused in both protocols", async () => {
  await using ts = await startTestServer();
  const names = ["a:b", "ab:", "a,b", "a b", " ab", "[ab]", "ab]", "a\tb", "a;b", "a/b", "a.b"];
  await using c = await helloed(ts.port, ts.certPem);
  for (const [i, name] of names.entries()) {
    c.send({ type: "register", user: name, password: "password-sep", ref: `r${i}` });
    assertEquals(((await reply(c, `r${i}`)) as F<"error">).code, "invalid_username", name);
  }
  // Over the seed dialogue the name is trimmed, then checked: every one of these fails.
  for (const name of ["a:b", "a,b", "a b", "[SERVER]"]) {
    await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
    s.writeRaw(`REGISTER\n${name}\n${"0".repeat(64)}\n`);
    await waitFor(() => /^AUTH_FAILED$/m.test(s.raw), `seed register of ${name} refused`);
    assert(!s.raw.includes("AUTH_SUCCESS"), name);
  }
  // Nothing was created: the names are free of accounts (a valid neighbour still registers).
  await using ok = await WireClient.login(ts.port, ts.certPem, "a-b_c", { register: true });
  ok.send({ type: "send", cid: "d", to: "a:b", body: "x", ref: "d" });
  assertEquals((await ok.expect(isType("error")) as F<"error">).code, "invalid_username");
});
