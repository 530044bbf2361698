// The client does not trust the server: a hostile chat/1 server (real TLS on loopback, written
// here) sends escape sequences in names, bodies and error texts; nothing reaches the terminal.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import { ChatProcess, fingerprintOf, runChat } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

const EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b[H\u009b31m\u202eevil";

/** Serves one scripted reply per request type; returns the listener and its loop. */
function hostileServer(certPem: string, keyPem: string) {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certPem,
    key: keyPem,
    alpnProtocols: ["chat/1"],
  });
  const conns = new Set<Deno.TlsConn>();
  const handle = async (conn: Deno.TlsConn) => {
    const enc = new TextEncoder();
    const send = (f: unknown) => conn.write(enc.encode(JSON.stringify(f) + "\n")).catch(() => 0);
    const splitter = new LineSplitter(65536);
    const buf = new Uint8Array(4096);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          const f = JSON.parse(new TextDecoder().decode(line));
          if (f.type === "hello") {
            await send({
              type: "hello",
              version: 1,
              server: `x${EVIL}`,
              registration: "open",
              limits: {},
            });
          } else if (f.type === "login") {
            await send({ type: "ok", ref: f.ref, op: "login", user: "alice", rooms: ["general"] });
          } else if (f.type === "history") {
            await send({ type: "history", ref: f.ref, room: "general", messages: [], more: false });
            await send({
              type: "msg",
              id: 7,
              ts: 0,
              room: "general",
              from: `ma${EVIL}`,
              body: EVIL,
            });
            await send({ type: "presence", room: "general", user: `eve${EVIL}`, event: "join" });
          } else if (f.type === "send") {
            await send({
              type: "error",
              ref: f.ref,
              code: `no${EVIL}`,
              message: `Cannot send: ${EVIL}`,
            });
          }
        }
      }
    } catch { /* closed */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  };
  const loop = (async () => {
    const running: Promise<void>[] = [];
    for await (const conn of listener) {
      conns.add(conn);
      running.push(handle(conn));
    }
    await Promise.all(running);
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
    },
  };
}

function assertInert(text: string, what: string): void {
  // deno-lint-ignore no-control-regex
  const bad = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/.exec(text);
  assert(
    bad === null,
    `${what} contains U+${bad?.[0].charCodeAt(0).toString(16)}: ${JSON.stringify(text)}`,
  );
}

Deno.test("escape sequences from a hostile server never reach the terminal", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const evil = hostileServer(ts.certPem, await Deno.readTextFile(`${ts.dataDir}/key.pem`));
  try {
    const fp = await fingerprintOf(ts.certPem);
    const env = { CHAT_CONFIG_DIR: cfg.path, CHAT_PASSWORD: "password-alice" };
    const base = [`127.0.0.1:${evil.port}`, "-u", "alice", "--trust-fingerprint", fp];
    {
      await using p = new ChatProcess([...base, "--listen"], env);
      await p.waitFor("stdout", (l) => l.includes("evil"), "the hostile message");
      await p.waitFor("stdout", (l) => l.includes("joined"), "the hostile presence");
      assertEquals(await p.stop("SIGTERM"), 0);
      assertInert(p.stdoutLines.join("\n"), "listen output");
      assertInert(p.stderrLines.join("\n"), "listen stderr");
      assert(p.stdoutLines.some((l) => l.includes("^[]0;pwned^G^[[2J")), p.stdoutLines.join("\n"));
    }
    const r = await runChat([...base, "--send", "hi"], { env });
    assertEquals(r.code, 1);
    assert(r.stderr.includes("Cannot send:"), r.stderr);
    assertInert(r.stderr, "send error");
  } finally {
    await evil.close();
  }
});
