// Fault suite, framing: how the server reads hostile byte streams over real TLS on loopback.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { type F, isType, readUntilClosed, tcpConnect, waitFor } from "./helpers.ts";

const enc = new TextEncoder();
const line = (f: Record<string, unknown>) => JSON.stringify(f) + "\n";

/** A `send` line of exactly `bytes` bytes (newline not counted), padded with an unknown field. */
function sendLineOfSize(bytes: number, cid: string): string {
  const base = { type: "send", cid, room: "general", body: "padded", ref: cid, pad: "" };
  const pad = bytes - JSON.stringify(base).length;
  assert(pad >= 0);
  const text = JSON.stringify({ ...base, pad: "p".repeat(pad) });
  assertEquals(enc.encode(text).length, bytes);
  return text;
}

async function history(c: WireClient): Promise<string[]> {
  c.send({ type: "history", room: "general", ref: "hist" });
  const h = await c.expect((f) => f.type === "history" && f.ref === "hist") as F<"history">;
  return h.messages.map((m) => m.body);
}

/** Waits until the server tracks no connection (the client side is already closed). */
async function noConnections(ts: TestServer): Promise<void> {
  await waitFor(() => ts.server.stats.connections === 0, "the server to drop every connection");
}

Deno.test("framing: a command split byte by byte, one TLS record per byte, is one frame", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  const bytes = enc.encode(
    line({ type: "hello", version: 1 }) +
      line({ type: "register", user: "bytewise", password: "password-bytewise", ref: "r" }),
  );
  for (let i = 0; i < bytes.length; i++) await c.writeAll(bytes.subarray(i, i + 1));
  await c.expect(isType("hello"));
  const ok = await c.expect(isType("ok")) as F<"ok">;
  assertEquals([ok.op, ok.ref, ok.user], ["register", "r", "bytewise"]);
});

Deno.test("framing: a command split at every point across two TLS records is one frame", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.login(ts.port, ts.certPem, "splitter", { register: true });
  const text = enc.encode(line({ type: "ping", ref: "p" }));
  for (let cut = 1; cut < text.length; cut++) {
    await c.writeAll(text.subarray(0, cut));
    await c.writeAll(text.subarray(cut));
    await c.expect(isType("pong"));
  }
  // A CR LF ending split between the CR and the LF is one line ending, not two.
  await c.writeAll('{"type":"ping"}\r');
  await c.writeAll("\n");
  await c.expect(isType("pong"));
  assertEquals(c.frames.filter((f) => f.type === "error"), []);
});

Deno.test("framing: several commands in one TLS record are all handled, in order", async () => {
  await using ts = await startTestServer();
  await using c = await WireClient.connect(ts.port, ts.certPem);
  await c.writeAll(
    line({ type: "hello", version: 1 }) +
      line({ type: "register", user: "batcher", password: "password-batcher", ref: "1" }) +
      "\n\r\n" + // empty lines are skipped
      line({ type: "join", room: "batch", ref: "2" }) +
      line({ type: "send", cid: "b1", room: "batch", body: "first", ref: "3" }) +
      line({ type: "send", cid: "b2", room: "batch", body: "second", ref: "4" }) +
      line({ type: "who", room: "batch", ref: "5" }),
  );
  const refs: string[] = [];
  await waitFor(() => {
    refs.splice(0, refs.length, ...c.frames.flatMap((f) => "ref" in f && f.ref ? [f.ref] : []));
    return refs.length >= 5;
  }, "five replies");
  // `send` is pipelined (its ack waits for the group commit), so `who` may answer first; every
  // request is answered once, and the two sends are acked and stored in the order sent.
  assertEquals([...refs].sort(), ["1", "2", "3", "4", "5"]);
  assertEquals(refs.filter((r) => r === "3" || r === "4"), ["3", "4"]);
  const acks = c.frames.filter(isType("ack"));
  assert(acks[0].id < acks[1].id, "stored out of order");
  assertEquals(c.frames.filter(isType("error")), []);
});

Deno.test("framing: a line of exactly maxLineBytes is read; one byte more closes the connection", async () => {
  await using ts = await startTestServer();
  const max = ts.config.limits.maxLineBytes;
  await using a = await WireClient.login(ts.port, ts.certPem, "limiter", { register: true });
  a.writeRaw(sendLineOfSize(max, "at") + "\n");
  assertEquals((await a.expect((f) => f.type === "ack" || f.type === "error")).type, "ack");
  // The CR of a CR LF ending is not counted either.
  a.writeRaw(sendLineOfSize(max, "at-crlf") + "\r\n");
  assertEquals((await a.expect((f) => f.type === "ack" || f.type === "error")).type, "ack");
  a.writeRaw(sendLineOfSize(max + 1, "over") + "\n");
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "line_too_long");
  await a.expectClosed();
  await using b = await WireClient.login(ts.port, ts.certPem, "checker", { register: true });
  assertEquals(await history(b), ["padded", "padded"]);
});

Deno.test("framing: a 16 KiB line is refused before and after login, over chat/1 and the seed protocol", async () => {
  await using ts = await startTestServer();
  const big = "x".repeat(16 * 1024) + "\n";
  await using pre = await WireClient.connect(ts.port, ts.certPem);
  pre.writeRaw(big);
  assertEquals((await pre.expect(isType("error")) as F<"error">).code, "line_too_long");
  await pre.expectClosed();
  await using post = await WireClient.login(ts.port, ts.certPem, "sixteen", { register: true });
  post.writeRaw(big);
  assertEquals((await post.expect(isType("error")) as F<"error">).code, "line_too_long");
  await post.expectClosed();
  await using seed = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  seed.writeRaw(big);
  await seed.expectClosed();
  assert(seed.raw.includes("[ERROR] line_too_long:"), seed.raw);
  await noConnections(ts);
});

Deno.test("framing: a flood of bytes without a newline is cut at the line limit", async () => {
  await using ts = await startTestServer();
  for (const alpn of [["chat/1"], []]) {
    await using c = await WireClient.connect(ts.port, ts.certPem, { alpn });
    const chunk = enc.encode("a".repeat(64 * 1024));
    let written = 0;
    // Bounded: at most 8 MiB; the server closes after maxLineBytes + 1, the rest is socket buffers.
    try {
      while (written < 8 * 1024 * 1024) {
        await c.writeAll(chunk);
        written += chunk.length;
      }
    } catch { /* the server closed the connection under us */ }
    await c.expectClosed();
    assert(c.raw.includes("line_too_long"), `no line_too_long over ${alpn}: ${c.raw}`);
  }
  await noConnections(ts);
});

/** Invalid UTF-8 forms: overlong, encoded surrogates, truncated, stray continuation, out of range. */
const BAD_UTF8: [string, number[]][] = [
  ["overlong slash", [0xc0, 0xaf]],
  ["overlong NUL", [0xc0, 0x80]],
  ["overlong 3-byte", [0xe0, 0x80, 0xaf]],
  ["encoded high surrogate", [0xed, 0xa0, 0x80]],
  ["encoded low surrogate", [0xed, 0xbf, 0xbf]],
  ["truncated 3-byte", [0xe2, 0x82]],
  ["truncated 4-byte", [0xf0, 0x9f, 0x98]],
  ["stray continuation", [0x80]],
  ["beyond U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["5-byte form", [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ["0xFF", [0xff]],
];

function sendWithRawBody(cid: string, raw: number[]): Uint8Array {
  const [head, tail] = line({ type: "send", cid, room: "general", body: "@", ref: cid }).split("@");
  return new Uint8Array([...enc.encode(head), ...raw, ...enc.encode(tail)]);
}

Deno.test("framing: invalid UTF-8 before login is fatal (invalid_utf8)", async () => {
  await using ts = await startTestServer();
  for (const [name, raw] of BAD_UTF8) {
    await using c = await WireClient.connect(ts.port, ts.certPem);
    c.writeRaw(new Uint8Array([...enc.encode('{"type":"hello","version":1,"client":"'), ...raw]));
    c.writeRaw('"}\n');
    const e = await c.expect(isType("error")) as F<"error">;
    assertEquals(e.code, "invalid_utf8", name);
    await c.expectClosed();
  }
});

Deno.test("framing: invalid UTF-8 after login is reported and skipped; nothing is stored", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "utf8user", { register: true });
  for (const [name, raw] of BAD_UTF8) {
    a.writeRaw(sendWithRawBody(`u-${name.replaceAll(" ", "-")}`, raw));
    assertEquals((await a.expect(isType("error")) as F<"error">).code, "invalid_utf8", name);
  }
  // Lone surrogates written as JSON escapes decode to ill-formed strings: refused as text.
  a.writeRaw('{"type":"send","cid":"esc","room":"general","body":"a\\ud800b","ref":"esc"}\n');
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "invalid_text");
  // Still connected, and well-formed text in many scripts is fine.
  assertEquals((await a.say("general", "héllo ✓ 🙂 مرحبا")).type, "ack");
  assertEquals(await history(a), ["héllo ✓ 🙂 مرحبا"]);
  // Over the seed protocol too: reported, the connection stays.
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw("LOGIN\nutf8user\npassword-utf8user\n");
  await waitFor(() => s.raw.includes("[USERS_LIST]"), "seed login");
  s.writeRaw(new Uint8Array([0x68, 0x69, 0xc0, 0xaf, 0x0a]));
  await waitFor(() => s.raw.includes("[ERROR] invalid_utf8:"), "seed invalid_utf8 report");
  assertEquals(await history(a), ["héllo ✓ 🙂 مرحبا"]);
});

Deno.test("framing: NUL, lone CR, terminal escapes and bidi overrides are refused; TAB and text pass", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "ctrl", { register: true });
  const refused = [
    "nul\u0000byte",
    "lone\rcr",
    "bare\nlf",
    "\u001b[2J\u001b[Hwiped",
    "\u001b]0;owned\u0007title",
    "\u001b[31mred",
    "c1 csi \u009b31m",
    "bell\u0007",
    "del\u007f",
    "rtl \u202eevil",
    "embed \u202a",
    "isolate \u2066x\u2069",
    "first strong \u2068",
  ];
  for (const body of refused) {
    assertEquals((await a.say("general", body) as F<"error">).code, "invalid_text", body);
  }
  // A raw control byte inside a JSON string is not JSON at all: bad_frame, non-fatal after login.
  a.writeRaw(
    new Uint8Array([
      ...enc.encode('{"type":"send","cid":"rawnul","room":"general","body":"a'),
      0,
      ...enc.encode('b"}\n'),
    ]),
  );
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "bad_frame");
  // A lone CR inside a line is not a line end.
  a.writeRaw('{"type":"ping"}\r{"type":"ping"}\n');
  assertEquals((await a.expect(isType("error")) as F<"error">).code, "bad_frame");
  assertEquals((await a.say("general", "tab\tis fine")).type, "ack");
  assertEquals(await history(a), ["tab\tis fine"]);
  // The seed protocol applies the same rules to its raw lines.
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw("LOGIN\nctrl\npassword-ctrl\n");
  await waitFor(() => s.raw.includes("[USERS_LIST]"), "seed login");
  const seedRefused = ["nul\u0000", "cr\rmid", "\u001b[2Jwipe", "rtl\u202e", "\u009bc1"];
  for (const body of seedRefused) s.writeRaw(body + "\n");
  await waitFor(
    () => (s.raw.match(/\[ERROR\] invalid_text:/g) ?? []).length === seedRefused.length,
    "one invalid_text per refused seed line",
  );
  assertEquals(await history(a), ["tab\tis fine"]);
});

Deno.test("framing: empty and whitespace-only messages are refused; empty lines are skipped", async () => {
  await using ts = await startTestServer();
  await using a = await WireClient.login(ts.port, ts.certPem, "blank", { register: true });
  for (const body of ["", " ", "\t", "   \t  ", "\u00a0", "\u3000", "\u2028"]) {
    const r = await a.say("general", body) as F<"error">;
    assertEquals(r.code, "invalid_text", JSON.stringify(body));
  }
  a.writeRaw("\n\n\r\n\n");
  a.send({ type: "ping" });
  await a.expect(isType("pong"));
  assertEquals(a.frames.filter(isType("error")), []);
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw("LOGIN\nblank\npassword-blank\n");
  await waitFor(() => s.raw.includes("[USERS_LIST]"), "seed login");
  s.writeRaw("\n\r\n   \n\t\n");
  await waitFor(
    () => (s.raw.match(/\[ERROR\] invalid_text:/g) ?? []).length === 2,
    "two invalid_text (the empty lines are skipped)",
  );
  assertEquals(await history(a), []);
});

Deno.test("framing: an HTTP request as the first line is refused (chat/1 at once, seed after three lines)", async () => {
  await using ts = await startTestServer();
  const http = "GET / HTTP/1.1\r\nHost: chat.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
  await using c = await WireClient.connect(ts.port, ts.certPem);
  c.writeRaw(http);
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "bad_frame");
  await c.expectClosed();
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw(http);
  await s.expectClosed();
  assertEquals((s.raw.match(/^AUTH_FAILED$/gm) ?? []).length, 3, s.raw);
  await noConnections(ts);
});

Deno.test("framing: plaintext sent to the TLS port gets no chat reply and is closed", async () => {
  await using ts = await startTestServer();
  for (
    const text of ["GET / HTTP/1.1\r\nHost: x\r\n\r\n", '{"type":"hello","version":1}\n', "LOGIN\n"]
  ) {
    const conn = await tcpConnect(ts.port);
    try {
      await conn.write(enc.encode(text));
      const r = await readUntilClosed(conn, 10_000);
      assert(r.closed, `still open after plaintext ${JSON.stringify(text)}`);
      const reply = new TextDecoder().decode(r.bytes);
      assert(!/AUTH_REQUIRED|"type"/.test(reply), `a chat reply in plaintext: ${reply}`);
      // What comes back, if anything, is a TLS alert record (content type 21).
      assert(r.bytes.length === 0 || r.bytes[0] === 21, `not a TLS alert: ${r.bytes[0]}`);
    } finally {
      conn.close();
    }
  }
  await noConnections(ts);
  await using ok = await WireClient.login(ts.port, ts.certPem, "afterplain", { register: true });
  assertEquals((await ok.say("general", "after plaintext")).type, "ack");
});
