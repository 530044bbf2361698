// End-to-end tests of the seed text protocol: Python `ssl` and `openssl s_client` clients without
// ALPN, beside chat/1 clients, against a real TLS server with a real SQLite file.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { SEED_ENCODER } from "../../src/server/seed_protocol.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { advanceUntil, FakeClock } from "../harness/fake_clock.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = <T extends ServerFrame["type"]>(t: T) => (f: ServerFrame): f is F<T> => f.type === t;
const enc = new TextEncoder();
const dec = new TextDecoder();
const CLIENT_PY = new URL("../seed_client.py", import.meta.url).pathname;
const WAIT_MS = 15_000;

type Match = string | RegExp | ((line: string) => boolean);

function matcher(m: Match): (line: string) => boolean {
  if (typeof m === "string") return (l) => l === m;
  if (m instanceof RegExp) return (l) => m.test(l);
  return m;
}

/** What seed clients send as the secret. */
async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", enc.encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Rejects when `p` has not settled within WAIT_MS (so a broken server fails, never hangs). */
async function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function certPath(ts: TestServer): string {
  return ts.config.certFile ?? `${ts.dataDir}/cert.pem`;
}

/** Reads a child's stdout as lines, calling `onLine` for each; resolves at EOF. */
async function readLines(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void) {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) onLine(rest);
}

/**
 * Drives tests/seed_client.py (Python stdlib `ssl`, no ALPN, certificate verified against the
 * test server's cert file). Lines from the server are kept in order; `expect` consumes the first
 * one that matches, and `seen` holds everything ever received.
 */
class SeedPy implements AsyncDisposable {
  readonly seen: string[] = [];
  readonly name: string;
  #unread: string[] = [];
  #status: string[] = [];
  #waiters: { pred: (l: string) => boolean; status: boolean; resolve: (l: string) => void }[] = [];
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stderr = "";
  #done: Promise<unknown>;
  #eof = false;

  private constructor(name: string, child: Deno.ChildProcess) {
    this.name = name;
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#done = Promise.all([
      readLines(child.stdout, (l) => this.#onOutput(l)),
      readLines(child.stderr, (l) => this.#stderr += l + "\n"),
    ]);
  }

  /** Starts the client and waits until it is connected (TLS verified). */
  static async connect(ts: TestServer, name = "seed"): Promise<SeedPy> {
    const child = new Deno.Command("python3", {
      args: [CLIENT_PY, "--port", String(ts.port), "--cafile", certPath(ts)],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const c = new SeedPy(name, child);
    try {
      const hello = await c.#expectStatus(/^CONNECTED /);
      assertMatch(hello, /^CONNECTED TLSv1\.[23] alpn=none$/);
    } catch (err) {
      await c[Symbol.asyncDispose]();
      throw err;
    }
    return c;
  }

  /** Connects and walks the seed dialogue; throws unless it ends in AUTH_SUCCESS. */
  static async login(
    ts: TestServer,
    user: string,
    opts: { register?: boolean; password?: string } = {},
  ): Promise<SeedPy> {
    const c = await SeedPy.connect(ts, user);
    const result = await c.auth(opts.register ? "REGISTER" : "LOGIN", user, opts.password);
    if (result !== "AUTH_SUCCESS") {
      await c[Symbol.asyncDispose]();
      throw new Error(`seed login of ${user} ended with ${result}`);
    }
    return c;
  }

  #onOutput(l: string): void {
    const recv = l.startsWith("RECV ");
    const text = recv ? l.slice(5) : l;
    if (recv) this.seen.push(text);
    else if (text === "EOF") this.#eof = true;
    const i = this.#waiters.findIndex((w) => w.status !== recv && w.pred(text));
    if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(text);
    else (recv ? this.#unread : this.#status).push(text);
  }

  /** Sends a command to the Python client (see tests/seed_client.py). */
  async command(cmd: string): Promise<void> {
    await this.#stdin.write(enc.encode(cmd + "\n"));
  }

  /** Sends one line of text to the server. */
  send(text: string): Promise<void> {
    return this.command(`SEND ${text}`);
  }

  /** Walks the seed dialogue in Python; returns AUTH_SUCCESS, AUTH_FAILED or EOF. */
  async auth(mode: string, user: string, password = `password-${user}`): Promise<string> {
    await this.command(`AUTH ${mode} ${user} ${password}`);
    return (await this.#expectStatus(/^AUTH_RESULT /)).slice("AUTH_RESULT ".length);
  }

  #wait(pred: (l: string) => boolean, status: boolean, what: string): Promise<string> {
    const list = status ? this.#status : this.#unread;
    const i = list.findIndex(pred);
    if (i >= 0) return Promise.resolve(list.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `${this.name}: timed out waiting for ${what}; received ${
              JSON.stringify(this.seen)
            }; stderr ${JSON.stringify(this.#stderr)}`,
          ),
        );
      }, WAIT_MS);
      const done = (l: string) => {
        clearTimeout(timer);
        resolve(l);
      };
      this.#waiters.push({ pred, status, resolve: done });
    });
  }

  #expectStatus(m: RegExp): Promise<string> {
    return this.#wait(matcher(m), true, String(m));
  }

  /** Waits for (and consumes) the first server line matching `m`. */
  expect(m: Match): Promise<string> {
    return this.#wait(matcher(m), false, String(m));
  }

  /** Waits until the server closed the connection. */
  async expectClosed(): Promise<void> {
    if (!this.#eof) await this.#expectStatus(/^EOF$/);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.command("CLOSE").catch(() => {});
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#child.kill();
      } catch { /* exited */ }
    }, WAIT_MS);
    await this.#child.status;
    clearTimeout(timer);
    await this.#done;
  }
}

// ---- the shared encoder, without a network ----

const encoderCases: {
  name: string;
  ev: Parameters<typeof SEED_ENCODER.encodeEvent>[0];
  want: string | null;
}[] = [
  {
    name: "a general message as `from: body`",
    ev: { kind: "msg", msg: { id: 1, ts: 1, room: "general", from: "ann", body: "hi" } },
    want: "ann: hi\n",
  },
  {
    name: "another room's message tagged with the room",
    ev: { kind: "msg", msg: { id: 2, ts: 1, room: "ops", from: "ann", body: "deploy" } },
    want: "[#ops] ann: deploy\n",
  },
  {
    name: "a direct message with both names",
    ev: { kind: "msg", msg: { id: 3, ts: 1, from: "ann", to: "bob", body: "psst" } },
    want: "[DM] ann -> bob: psst\n",
  },
  {
    name: "a join in general as [JOINED] then [USERS_LIST]",
    ev: {
      kind: "presence",
      room: "general",
      user: "bob",
      event: "join",
      online: () => ["ann", "bob"],
    },
    want: "[JOINED] bob\n[USERS_LIST] ann,bob\n",
  },
  {
    name: "a leave in general as [LEFT] then [USERS_LIST]",
    ev: { kind: "presence", room: "general", user: "bob", event: "leave", online: () => ["ann"] },
    want: "[LEFT] bob\n[USERS_LIST] ann\n",
  },
  {
    name: "presence in another room as nothing",
    ev: { kind: "presence", room: "ops", user: "bob", event: "join", online: () => ["bob"] },
    want: null,
  },
];

for (const c of encoderCases) {
  Deno.test(`SEED_ENCODER shows ${c.name}`, () => {
    const bytes = SEED_ENCODER.encodeEvent(c.ev);
    assertEquals(bytes === null ? null : dec.decode(bytes), c.want);
  });
}

// ---- over the wire ----

Deno.test("seed: register and send; a native client receives it and it is in history", async () => {
  await using ts = await startTestServer();
  await using nat = await WireClient.login(ts.port, ts.certPem, "nora", { register: true });
  await using a = await SeedPy.login(ts, "alice", { register: true });
  assertEquals(a.seen.slice(0, 4), [
    "AUTH_REQUIRED",
    "ENTER_USERNAME",
    "ENTER_PASSWORD",
    "AUTH_SUCCESS",
  ]);
  assertEquals(await a.expect(/^\[USERS_LIST\]/), "[USERS_LIST] alice,nora");
  const p = await nat.expect(isType("presence")) as F<"presence">;
  assertEquals([p.room, p.user, p.event], ["general", "alice", "join"]);
  await a.send("hello from python ✓");
  const m = await nat.expect(isType("msg")) as F<"msg">;
  assertEquals([m.room, m.from, m.body], ["general", "alice", "hello from python ✓"]);
  nat.send({ type: "history", room: "general", ref: "h" });
  const h = await nat.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((x) => [x.id, x.from, x.body]), [[m.id, "alice", m.body]]);
});

Deno.test("seed: the secret is a password like any other; the account works over chat/1 too", async () => {
  await using ts = await startTestServer();
  // Typed by hand: any case, padded; the secret is taken as sent (not hashed by the client).
  await using a = await SeedPy.connect(ts, "dave");
  await a.expect("AUTH_REQUIRED");
  await a.send("  rEgIsTeR ");
  await a.expect("ENTER_USERNAME");
  await a.send(" Dave ");
  await a.expect("ENTER_PASSWORD");
  await a.send("plain password 1");
  await a.expect("AUTH_SUCCESS");
  await using n = await WireClient.login(ts.port, ts.certPem, "dave", {
    password: "plain password 1",
  });
  // The Python client's AUTH sends SHA-256 hex as seed clients do: that digest is the password.
  await (await SeedPy.login(ts, "erin", { register: true, password: "pw" }))[Symbol.asyncDispose]();
  await using e = await WireClient.login(ts.port, ts.certPem, "erin", {
    password: await sha256Hex("pw"),
  });
  assert(n && e);
});

Deno.test("seed: login, failed login retries, taken name, and three failures close", async () => {
  await using ts = await startTestServer();
  await (await SeedPy.login(ts, "bob", { register: true }))[Symbol.asyncDispose]();
  await using c = await SeedPy.connect(ts, "retry");
  assertEquals(await c.auth("LOGIN", "bob", "wrong-password"), "AUTH_FAILED");
  await c.expect("AUTH_REQUIRED"); // the dialogue starts over
  assertEquals(await c.auth("LOGIN", "bob"), "AUTH_SUCCESS");

  await using d = await SeedPy.connect(ts, "failing");
  assertEquals(await d.auth("REGISTER", "BOB", "another-password"), "AUTH_FAILED");
  assertEquals(await d.auth("LOGIN", "nobody"), "AUTH_FAILED");
  await d.expect("AUTH_REQUIRED");
  await d.send("HELLO"); // neither LOGIN nor REGISTER: the third failure
  await d.expect("AUTH_FAILED");
  await d.expectClosed();
  assertEquals(d.seen.filter((l) => l === "AUTH_REQUIRED").length, 3);
  assertEquals(d.seen.at(-1), "AUTH_FAILED");
});

Deno.test("seed: a disabled account gets AUTH_FAILED", async () => {
  await using tmp = await tempDir();
  const dataDir = tmp.path;
  await using first = await startTestServer({ dataDir });
  await (await SeedPy.login(first, "mallory", { register: true }))[Symbol.asyncDispose]();
  await first[Symbol.asyncDispose]();
  const store = await openStore(storeSpec({ dataDir }));
  const user = await store.userByName("mallory");
  assert(user);
  await store.updateUser(user.id, { disabled: true });
  await store.close();
  await using ts = await startTestServer({ dataDir });
  await using c = await SeedPy.connect(ts, "mallory");
  assertEquals(await c.auth("LOGIN", "mallory"), "AUTH_FAILED");
});

Deno.test("seed: broadcast reaches the others, never the sender; users list on join and leave", async () => {
  await using ts = await startTestServer();
  await using a = await SeedPy.login(ts, "amy", { register: true });
  assertEquals(await a.expect(/^\[USERS_LIST\]/), "[USERS_LIST] amy");
  await using b = await SeedPy.login(ts, "ben", { register: true });
  assertEquals(await b.expect(/^\[USERS_LIST\]/), "[USERS_LIST] amy,ben");
  await a.expect("[JOINED] ben");
  assertEquals(await a.expect(/^\[USERS_LIST\]/), "[USERS_LIST] amy,ben");
  const c = await SeedPy.login(ts, "cat", { register: true });
  for (const x of [a, b]) {
    await x.expect("[JOINED] cat");
    assertEquals(await x.expect(/^\[USERS_LIST\]/), "[USERS_LIST] amy,ben,cat");
  }

  await a.send("one from amy");
  await b.expect("amy: one from amy");
  await c.expect("amy: one from amy");
  // b answers only after seeing amy's line; an echo to amy would have been queued before it.
  await b.send("two from ben");
  await a.expect("ben: two from ben");
  await c.expect("ben: two from ben");
  assert(!a.seen.some((l) => l.includes("one from amy")), "amy got her own message back");
  assert(!b.seen.some((l) => l.includes("two from ben")), "ben got his own message back");

  await c[Symbol.asyncDispose]();
  for (const x of [a, b]) {
    await x.expect("[LEFT] cat");
    assertEquals(await x.expect(/^\[USERS_LIST\]/), "[USERS_LIST] amy,ben");
  }
});

Deno.test("seed and native clients share general; DMs and other rooms reach the seed client tagged", async () => {
  await using ts = await startTestServer();
  await using s = await SeedPy.login(ts, "sid", { register: true });
  assertEquals(await s.expect(/^\[USERS_LIST\]/), "[USERS_LIST] sid");
  await using n = await WireClient.login(ts.port, ts.certPem, "nat", { register: true });
  await s.expect("[JOINED] nat");
  assertEquals(await s.expect(/^\[USERS_LIST\]/), "[USERS_LIST] nat,sid");

  const ack = await n.say("general", "hello seed") as F<"ack">;
  assertEquals(ack.type, "ack");
  await s.expect("nat: hello seed");
  await s.send("hello native");
  const m = await n.expect(isType("msg")) as F<"msg">;
  assertEquals([m.room, m.from, m.body], ["general", "sid", "hello native"]);

  n.send({ type: "send", cid: "dm1", to: "sid", body: "psst", ref: "dm1" });
  await n.expect(isType("ack"));
  await s.expect("[DM] nat -> sid: psst");

  // sid's account joins ops from a native session: the seed session follows the membership.
  await using sn = await WireClient.login(ts.port, ts.certPem, "sid", {
    password: await sha256Hex("password-sid"),
  });
  sn.send({ type: "join", room: "ops", ref: "j" });
  await sn.expect(isType("ok"));
  n.send({ type: "join", room: "ops", ref: "j" });
  await n.expect(isType("ok"));
  await n.say("ops", "ops news");
  await s.expect("[#ops] nat: ops news");
  // Presence in ops came before that message and is not shown to the seed client.
  assert(!s.seen.some((l) => l.startsWith("[JOINED]") && l !== "[JOINED] nat"), String(s.seen));
});

Deno.test("seed: messages and accounts persist across a restart; shutdown is announced", async () => {
  await using tmp = await tempDir();
  const dataDir = tmp.path;
  await using first = await startTestServer({ dataDir });
  {
    await using a = await SeedPy.login(first, "pat", { register: true });
    await using w = await WireClient.login(first.port, first.certPem, "wes", { register: true });
    await a.send("before restart");
    await a.send("also before");
    // Seed sends have no ack: a native client sees them once they are committed.
    for (const body of ["before restart", "also before"]) {
      assertEquals((await w.expect(isType("msg")) as F<"msg">).body, body);
    }
    await first.stop();
    await a.expect("[SERVER] shutdown: The server is shutting down");
    await a.expectClosed();
  }
  await using ts = await startTestServer({ dataDir });
  await using a = await SeedPy.login(ts, "pat");
  await using n = await WireClient.login(ts.port, ts.certPem, "quinn", { register: true });
  // After a restart the connection counter starts over: the seed cids must not collide.
  await a.send("after restart");
  const m = await n.expect(isType("msg")) as F<"msg">;
  assertEquals([m.from, m.body], ["pat", "after restart"]);
  n.send({ type: "history", room: "general", ref: "h" });
  const h = await n.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((x) => [x.from, x.body]), [
    ["pat", "before restart"],
    ["pat", "also before"],
    ["pat", "after restart"],
  ]);
});

Deno.test("seed: bad lines after login get [ERROR] lines; an over-long line closes", async () => {
  await using ts = await startTestServer({ limits: { maxBodyBytes: 100, maxLineBytes: 612 } });
  await using a = await SeedPy.login(ts, "olga", { register: true });
  await using n = await WireClient.login(ts.port, ts.certPem, "obs", { register: true });
  await a.command("LONG 150"); // over maxBodyBytes, under maxLineBytes: refused, not fatal
  assertMatch(await a.expect(/^\[ERROR\]/), /^\[ERROR\] too_large: Cannot send: /);
  await a.command("BYTES 6869c0af0a"); // "hi" + an overlong form
  assertMatch(await a.expect(/^\[ERROR\]/), /^\[ERROR\] invalid_utf8: Cannot /);
  await a.command("BYTES 1b5b324a6869210a"); // ESC [2J: terminal control
  assertMatch(await a.expect(/^\[ERROR\]/), /^\[ERROR\] invalid_text: Cannot send: /);
  await a.send("  \t ");
  assertMatch(await a.expect(/^\[ERROR\]/), /^\[ERROR\] invalid_text: Cannot send: /);
  await a.send("still fine");
  const m = await n.expect(isType("msg")) as F<"msg">;
  assertEquals([m.from, m.body], ["olga", "still fine"]);

  await a.command("LONG 613");
  assertMatch(await a.expect(/^\[ERROR\]/), /^\[ERROR\] line_too_long: Cannot read line: /);
  await a.expectClosed();
  const left = await n.expect((f) => f.type === "presence" && f.event === "leave") as F<"presence">;
  assertEquals(left.user, "olga");
});

Deno.test("seed: lines over the message rate are paced, not refused: all are stored, in order", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 1, messageBurst: 2 },
  });
  await using a = await SeedPy.login(ts, "rita", { register: true });
  await using n = await WireClient.login(ts.port, ts.certPem, "rob", { register: true });
  // Six lines in one go: two at once, then one per (fake) second.
  await a.command(["m1", "m2", "m3", "m4", "m5", "m6"].map((x) => `SEND ${x}`).join("\n"));
  const got = () => n.frames.filter(isType("msg")).length;
  await advanceUntil(clock, () => got() >= 6, 1000);
  assertEquals(n.frames.filter(isType("msg")).map((m) => m.body), [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
  ]);
  assertEquals(a.seen.filter((l) => l.startsWith("[ERROR]")), []);
});

Deno.test("seed: idle clients are kept with [USERS_LIST] keepalives instead of being closed", async () => {
  await using ts = await startTestServer({ limits: { pingIntervalMs: 150, idleTimeoutMs: 400 } });
  await using a = await SeedPy.login(ts, "ida", { register: true });
  await using b = await SeedPy.login(ts, "ivo", { register: true });
  await a.expect("[JOINED] ivo");
  // The list after the join, then four keepalives: together more than idleTimeoutMs of silence.
  for (let i = 0; i < 5; i++) await a.expect("[USERS_LIST] ida,ivo");
  await b.send("still here");
  await a.expect("ivo: still here");
});

Deno.test("openssl s_client without ALPN, typed by hand, gets the seed protocol", async () => {
  await using ts = await startTestServer();
  await using n = await WireClient.login(ts.port, ts.certPem, "watcher", { register: true });
  const child = new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${ts.port}`,
      "-CAfile",
      certPath(ts),
      "-verify_return_error",
      "-quiet",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  let gotList: () => void;
  const listed = new Promise<void>((r) => gotList = r);
  const reading = Promise.all([
    readLines(child.stdout, (l) => {
      out.push(l);
      if (l.startsWith("[USERS_LIST]")) gotList();
    }),
    readLines(child.stderr, () => {}),
  ]);
  const w = child.stdin.getWriter();
  try {
    await w.write(enc.encode("register\nzoe\nzoe-secret-1\nhi from openssl\n"));
    const m = await n.expect(isType("msg"), WAIT_MS) as F<"msg">;
    assertEquals([m.from, m.body], ["zoe", "hi from openssl"]);
    await n.say("general", "welcome zoe");
    await within(listed, "[USERS_LIST] from openssl s_client");
    assertEquals(out.slice(0, 5), [
      "AUTH_REQUIRED",
      "ENTER_USERNAME",
      "ENTER_PASSWORD",
      "AUTH_SUCCESS",
      "[USERS_LIST] watcher,zoe",
    ]);
  } finally {
    await w.close().catch(() => {});
    child.kill();
    await child.status;
    await reading;
  }
  const left = await n.expect((f) => f.type === "presence" && f.event === "leave") as F<"presence">;
  assertEquals(left.user, "zoe");
});

Deno.test("seed: a blank line at ENTER_USERNAME (or ENTER_PASSWORD) is a failed attempt, answered at once", async () => {
  await using ts = await startTestServer();
  await using a = await SeedPy.connect(ts, "blank");
  await a.expect("AUTH_REQUIRED");
  await a.send(""); // before the first answer: ignored, as every empty line
  await a.send("LOGIN");
  await a.expect("ENTER_USERNAME");
  await a.send("   ");
  await a.expect("AUTH_FAILED");
  await a.expect("AUTH_REQUIRED");
  await a.send("REGISTER");
  await a.expect("ENTER_USERNAME");
  await a.send("bea");
  await a.expect("ENTER_PASSWORD");
  await a.send("");
  await a.expect("AUTH_FAILED");
  await a.expect("AUTH_REQUIRED");
  // The third failure closes, as any three failures do.
  await a.send("LOGIN");
  await a.expect("ENTER_USERNAME");
  await a.send("");
  await a.expect("AUTH_FAILED");
  await a.expectClosed();
});
