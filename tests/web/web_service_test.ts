// The web listener end to end over real TLS: headers, caching, the WebSocket's origin check, and
// chat/1 over WebSocket under the same limits as a TLS client.
import { gunzipSync } from "node:zlib";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { WireClient } from "../harness/wire_client.ts";
import { openStore } from "../admin/helpers.ts";
import { advanceUntil, FakeClock } from "../harness/fake_clock.ts";
import {
  clientFrame,
  connectHttps,
  httpGet,
  readResponse,
  UpgradeRefused,
  WsClient,
} from "../harness/ws_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { generateCaAndServer } from "../../src/tls/certificate.ts";
import { WEB_ASSETS } from "../../src/web/assets.gen.ts";

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = (t: string) => (f: ServerFrame) => f.type === t;
const dec = new TextDecoder();

function assertStrictHeaders(h: Map<string, string>): void {
  const csp = h.get("content-security-policy") ?? "";
  assertMatch(csp, /default-src 'none'/);
  assertMatch(csp, /script-src 'self'(;|$)/);
  assertMatch(csp, /frame-ancestors 'none'/);
  assert(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), csp);
  assert(!/https?:\/\/|\*/.test(csp), `CSP allows another origin: ${csp}`);
  assertEquals(h.get("x-content-type-options"), "nosniff");
  assertEquals(h.get("x-frame-options"), "DENY");
  assertEquals(h.get("referrer-policy"), "no-referrer");
}

Deno.test("web: GET / serves the page gzipped with a strict CSP, and no HSTS for a self-signed certificate", async () => {
  await using ts = await startTestServer();
  const r = await httpGet(ts.port, ts.certPem, "/", { "Accept-Encoding": "gzip, br" });
  assertEquals(r.status, 200);
  assertEquals(r.headers.get("content-type"), "text/html; charset=utf-8");
  assertEquals(r.headers.get("content-encoding"), "gzip");
  assertEquals(r.headers.get("cache-control"), "no-cache");
  assertStrictHeaders(r.headers);
  assertEquals(r.headers.get("strict-transport-security"), undefined);
  const html = dec.decode(gunzipSync(r.body));
  assertMatch(html, /<script type="module" src="\/assets\/app-[0-9a-f]{16}\.js"><\/script>/);
  // Nothing inline for the CSP to allow, nothing from elsewhere.
  assert(!/<script>|<style|\sstyle=|\son[a-z]+=/.test(html), "inline script or style in the page");
  assert(!/(src|href)="(https?:)?\/\//.test(html), "the page loads from another origin");
  // Without gzip, the same bytes uncompressed.
  const plain = await httpGet(ts.port, ts.certPem, "/");
  assertEquals(plain.headers.get("content-encoding"), undefined);
  assertEquals(dec.decode(plain.body), html);
});

Deno.test("web: HSTS is sent when the certificate is not self-signed", async () => {
  await using tmp = await tempDir("chat-web-hsts-");
  const pair = await generateCaAndServer();
  await Deno.writeTextFile(`${tmp.path}/server.pem`, pair.certPem);
  await Deno.writeTextFile(`${tmp.path}/server.key`, pair.keyPem, { mode: 0o600 });
  await using ts = await startTestServer({
    config: { certFile: `${tmp.path}/server.pem`, keyFile: `${tmp.path}/server.key` },
  });
  const r = await httpGet(ts.port, pair.caCertPem, "/");
  assertEquals(r.status, 200);
  assertEquals(r.headers.get("strict-transport-security"), "max-age=31536000");
});

Deno.test("web: hashed assets are immutable for a year, the page revalidates by ETag, keep-alive serves several", async () => {
  await using ts = await startTestServer();
  const conn = await connectHttps(ts.port, ts.certPem);
  try {
    const carry = { rest: new Uint8Array(0) };
    const ask = async (path: string, extra = "") => {
      const req = `GET ${path} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n${extra}\r\n`;
      await conn.write(new TextEncoder().encode(req));
      return await readResponse(conn, carry);
    };
    for (const a of WEB_ASSETS.filter((a) => a.path.startsWith("/assets/"))) {
      const r = await ask(a.path);
      assertEquals(r.status, 200, a.path);
      assertEquals(r.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assertEquals(r.headers.get("content-type"), a.type);
      assert(a.path.includes(a.hash.slice(0, 16)), "the name carries the content hash");
      assertStrictHeaders(r.headers);
    }
    const page = await ask("/");
    const etag = page.headers.get("etag")!;
    const again = await ask("/", `If-None-Match: ${etag}\r\n`);
    assertEquals(again.status, 304);
    assertEquals(again.body.length, 0);
  } finally {
    conn.close();
  }
});

Deno.test("web: unknown paths get 404, other methods 405, bodies 413, a plain GET of /ws 426", async () => {
  await using ts = await startTestServer();
  const nf = await httpGet(ts.port, ts.certPem, "/etc/passwd");
  assertEquals(nf.status, 404);
  assertStrictHeaders(nf.headers);
  assertEquals((await httpGet(ts.port, ts.certPem, "/", {}, "POST")).status, 405);
  assertEquals((await httpGet(ts.port, ts.certPem, "/", { "Content-Length": "5" })).status, 413);
  assertEquals((await httpGet(ts.port, ts.certPem, "/ws")).status, 426);
  const head = await httpGet(ts.port, ts.certPem, "/", {}, "HEAD");
  assertEquals([head.status, head.body.length], [200, 0]);
});

Deno.test("web: a WebSocket from another origin, or with no Origin, is refused with 403", async () => {
  await using ts = await startTestServer();
  for (const origin of ["https://evil.example", `http://127.0.0.1:${ts.port}`, null]) {
    let status = 0;
    try {
      await (await WsClient.open(ts.port, ts.certPem, { origin }))[Symbol.asyncDispose]();
    } catch (err) {
      status = err instanceof UpgradeRefused ? err.status : -1;
    }
    assertEquals(status, 403, `origin ${origin}`);
  }
  assertEquals(ts.server.stats.sessions, 0);
});

Deno.test("web: chat/1 over WebSocket, one frame per message: a WebSocket user and a TLS chat/1 user talk", async () => {
  await using ts = await startTestServer();
  await using web = await WsClient.login(ts.port, ts.certPem, "wendy", { register: true });
  await using tls = await WireClient.login(ts.port, ts.certPem, "terry", { register: true });
  const ack = await web.say("general", "hello from the browser") as F<"ack">;
  assertEquals(ack.type, "ack");
  const got = await tls.expect(isType("msg")) as F<"msg">;
  assertEquals([got.id, got.from, got.body], [ack.id, "wendy", "hello from the browser"]);
  await tls.say("general", "hello from the terminal");
  assertEquals((await web.expect(isType("msg")) as F<"msg">).body, "hello from the terminal");
  // Two frames in one TCP write are two messages; a fragmented message is one.
  const enc = new TextEncoder();
  const ping = enc.encode(JSON.stringify({ type: "ping" }));
  const joined = new Uint8Array([...clientFrame(ping), ...clientFrame(ping)]);
  web.writeRaw(joined);
  await web.expect(isType("pong"));
  await web.expect(isType("pong"));
  const half = Math.floor(ping.length / 2);
  web.writeRaw(clientFrame(ping.subarray(0, half), 1, false));
  web.writeRaw(clientFrame(ping.subarray(half), 0, true));
  await web.expect(isType("pong"));
});

Deno.test("web: a registration over WebSocket lands in the audit trail as one over TLS does, with its address", async () => {
  await using ts = await startTestServer();
  await using _web = await WsClient.login(ts.port, ts.certPem, "wanda", { register: true });
  await using _tls = await WireClient.login(ts.port, ts.certPem, "tess", { register: true });
  // The registration's audit line is written before its ok (AuthService.register awaits it).
  await using store = await openStore(ts.dataDir);
  const lines = (await store.auditTrail({ limit: 100 }))
    .filter((e) => e.action === "register")
    .map((e) => [e.actor, e.action, e.remote?.replace(/:[0-9]+$/, "")]);
  assertEquals(lines.sort(), [
    ["tess", "register", "127.0.0.1"],
    ["wanda", "register", "127.0.0.1"],
  ]);
});

Deno.test("web: a WebSocket message over maxLineBytes gets line_too_long and a 1009 close", async () => {
  await using ts = await startTestServer();
  await using web = await WsClient.login(ts.port, ts.certPem, "walt", { register: true });
  // Only the header of a 100 KB frame is sent: refused on its declared length.
  const head = clientFrame(new Uint8Array(100_000)).subarray(0, 14);
  web.writeRaw(head);
  const err = await web.expect(isType("error")) as F<"error">;
  assertEquals(err.code, "line_too_long");
  await web.expectClosed();
  assertEquals(web.closeCodes, [1009]);
});

Deno.test("web: an unmasked WebSocket frame is a protocol error that closes the connection", async () => {
  await using ts = await startTestServer();
  await using web = await WsClient.open(ts.port, ts.certPem);
  const body = new TextEncoder().encode(JSON.stringify({ type: "hello", version: 1 }));
  web.writeRaw(new Uint8Array([0x81, body.length, ...body]));
  const err = await web.expect(isType("error")) as F<"error">;
  assertEquals(err.code, "bad_frame");
  await web.expectClosed();
});

Deno.test("web: the message rate (paced) and the per-address connection limit hold over WebSocket", async () => {
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: { messagesPerSecond: 1, messageBurst: 2, maxConnectionsPerAddress: 2 },
  });
  await using web = await WsClient.login(ts.port, ts.certPem, "rita", { register: true });
  assertEquals((await web.say("general", "one")).type, "ack");
  assertEquals((await web.say("general", "two")).type, "ack");
  // The third waits for its token (paced, not refused): acked once a second has passed.
  let paced: ServerFrame | null = null;
  const pending = web.say("general", "three").then((f) => paced = f);
  await advanceUntil(clock, () => paced !== null, 1000);
  await pending;
  assertEquals(paced!.type, "ack");
  await using second = await WsClient.open(ts.port, ts.certPem);
  await using third = await WsClient.open(ts.port, ts.certPem);
  const refused = await third.expect(isType("error")) as F<"error">;
  assertEquals(refused.code, "too_many_connections");
  await third.expectClosed();
  void second;
});

Deno.test("web: a WebSocket reader that never reads is cut at its queue bound; others keep receiving", async () => {
  await using ts = await startTestServer({ limits: { sendQueueBytes: 256 * 1024 } });
  await using stalled = await WsClient.login(ts.port, ts.certPem, "zoe", { register: true });
  stalled.pause();
  await using reader = await WireClient.login(ts.port, ts.certPem, "yuri", { register: true });
  await using sender = await WireClient.login(ts.port, ts.certPem, "xeno", { register: true });
  const zoeOnline = () => ts.server.hub.online(1).includes("zoe");
  assert(zoeOnline());
  const body = "b".repeat(3000);
  let sent = 0;
  while (zoeOnline() && sent < 4000) {
    for (let i = 0; i < 20; i++, sent++) {
      sender.send({ type: "send", cid: `f${sent}`, room: "general", body, ref: `f${sent}` });
    }
    await sender.expect((f) => f.type === "ack" && f.ref === `f${sent - 1}`, 10_000);
    sender.frames.length = 0;
  }
  assert(!zoeOnline(), `the stalled WebSocket was not cut after ${sent} messages`);
  await reader.barrier(10_000);
  assertEquals(reader.frames.filter(isType("msg")).length, sent);
});
