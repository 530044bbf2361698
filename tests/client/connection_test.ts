// End-to-end tests of ChatConnection against real servers over TLS on loopback: trust, login,
// sends and acks, reconnect and resume across a restart, resend after a lost ack.
import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChatConnection, type ChatConnectionOptions } from "../../src/client/connection.ts";
import { KnownServers, serverKey } from "../../src/client/known_servers.ts";
import { TrustPolicy } from "../../src/client/trust.ts";
import { ChatError } from "../../src/errors.ts";
import { certificateInfo } from "../../src/tls/certificate.ts";
import { EventLog, pinnedPolicy, until } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { TcpProxy } from "./tcp_proxy.ts";

const FAST_RECONNECT = { baseMs: 50, maxMs: 400 };

async function open(
  port: number,
  policy: TrustPolicy,
  user: string,
  extra: Partial<ChatConnectionOptions> = {},
): Promise<ChatConnection> {
  return await ChatConnection.open({
    host: "127.0.0.1",
    port,
    policy,
    credentials: { user, password: `password-${user}`, register: true },
    reconnect: FAST_RECONNECT,
    ...extra,
  });
}

Deno.test("ChatConnection registers, sends with an ack and receives others' messages", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const log = new EventLog();
  const conn = await open(ts.port, await pinnedPolicy(cfg.path, ts.certPem), "Alice", {
    onEvent: log.push,
  });
  try {
    assertEquals([conn.user, conn.rooms], ["Alice", ["general"]]);
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    const ack = await conn.send({ room: "general" }, "hello bob");
    assert(ack.id > 0 && !ack.duplicate);
    const m = await bob.expect((f) => f.type === "msg");
    assertEquals(m.type === "msg" && [m.id, m.body], [ack.id, "hello bob"]);
    await bob.say("general", "hi alice");
    await log.waitFor((e) => e.type === "msg" && e.msg.body === "hi alice", "bob's message");
    const dm = await conn.send({ to: "bob" }, "psst");
    assertEquals(dm.to, "bob");
    await assertRejects(() => conn.send({ room: "general" }, "bad \x1b[2J"), ChatError, "control");
    await assertRejects(() => conn.send({ room: "nowhere" }, "x"), ChatError, "");
  } finally {
    await conn.close();
  }
  assertEquals(await conn.closed, null);
});

Deno.test("ChatConnection: a wrong password fails open() with auth_failed", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  (await WireClient.login(ts.port, ts.certPem, "carol", { register: true })).close();
  const policy = await pinnedPolicy(cfg.path, ts.certPem);
  const err = await assertRejects(
    () =>
      ChatConnection.open({
        host: "127.0.0.1",
        port: ts.port,
        policy,
        credentials: { user: "carol", password: "not-her-password" },
      }),
    ChatError,
  );
  assertEquals(err.code, "auth_failed");
});

Deno.test("trust on first use: asked once, remembered, then no question", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const questions: string[] = [];
  const policy = async (answer: boolean) =>
    new TrustPolicy({
      known: await KnownServers.load(`${cfg.path}/known_servers`),
      warn: () => {},
      prompt: (q) => {
        questions.push(q);
        return Promise.resolve(answer);
      },
    });
  const fp = (await certificateInfo(ts.certPem)).fingerprintSha256;
  // Declined: nothing remembered.
  const declined = await assertRejects(
    async () => await open(ts.port, await policy(false), "dora"),
    ChatError,
  );
  assertEquals(declined.code, "cert_rejected");
  assertEquals((await KnownServers.load(`${cfg.path}/known_servers`)).size, 0);
  // Accepted: remembered, and the fingerprint was shown.
  const c1 = await open(ts.port, await policy(true), "dora");
  await c1.close();
  assertEquals(questions.length, 2);
  assert(questions[1].includes(`sha256:${fp}`), questions[1]);
  const known = await KnownServers.load(`${cfg.path}/known_servers`);
  assertEquals(known.get(serverKey("127.0.0.1", ts.port))?.fingerprint, fp);
  // Next time: no question.
  const c2 = await ChatConnection.open({
    host: "127.0.0.1",
    port: ts.port,
    policy: await policy(false),
    credentials: { user: "dora", password: "password-dora" },
  });
  await c2.close();
  assertEquals(questions.length, 2);
});

Deno.test("without a pin, known entry or terminal, a self-signed server is refused with its fingerprint", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const fp = (await certificateInfo(ts.certPem)).fingerprintSha256;
  const policy = new TrustPolicy({
    known: await KnownServers.load(`${cfg.path}/ks`),
    warn: () => {},
  });
  const err = await assertRejects(() => open(ts.port, policy, "eve"), ChatError);
  assertEquals(err.code, "cert_unknown");
  assert(err.message.includes(`--trust-fingerprint sha256:${fp}`), err.message);
  // The server never saw a login: nothing was sent before trust was settled.
  await using w = await WireClient.connect(ts.port, ts.certPem);
  w.send({ type: "hello", version: 1 });
  await w.expect((f) => f.type === "hello");
  w.send({ type: "login", user: "eve", password: "password-eve" });
  assertEquals((await w.expect((f) => f.type === "error")).type, "error");
});

Deno.test("a server that does not negotiate chat/1 is refused before anything is sent", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: ts.certPem,
    key: await Deno.readTextFile(`${ts.dataDir}/key.pem`),
  });
  let received = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      try {
        await conn.handshake();
        const buf = new Uint8Array(1024);
        while (true) {
          const n = await conn.read(buf);
          if (n === null) break;
          received += n;
        }
      } catch { /* client went away */ }
      conn.close();
    }
  })();
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const err = await assertRejects(
      async () => await open(port, await pinnedPolicy(cfg.path, ts.certPem), "frank"),
      ChatError,
    );
    assertEquals(err.code, "not_chat_server");
    assert(err.message.includes("chat/1"), err.message);
  } finally {
    listener.close();
    await serving;
  }
  assertEquals(received, 0);
});

Deno.test("a server that offers other ALPN protocols fails the handshake as not_chat_server", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: ts.certPem,
    key: await Deno.readTextFile(`${ts.dataDir}/key.pem`),
    alpnProtocols: ["h2", "http/1.1"],
  });
  const serving = (async () => {
    for await (const conn of listener) {
      await conn.handshake().catch(() => {/* refused: no protocol in common */});
      conn.close();
    }
  })();
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const err = await assertRejects(
      async () => await open(port, await pinnedPolicy(cfg.path, ts.certPem), "gus"),
      ChatError,
    );
    assertEquals(err.code, "not_chat_server");
    assert(err.message.includes("does not speak chat/1"), err.message);
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("reconnect and resume across a server restart: every message exactly once, in order", async () => {
  const ts1 = await startTestServer({ keepData: true });
  const dataDir = ts1.dataDir;
  const port = ts1.port;
  await using cfg = await tempDir();
  await using proxy = TcpProxy.start(port);
  const log = new EventLog();
  const conn = await open(proxy.port, await pinnedPolicy(cfg.path, ts1.certPem), "rita", {
    onEvent: log.push,
  });
  try {
    await conn.join("ops");
    {
      await using sam = await WireClient.login(port, ts1.certPem, "sam", { register: true });
      sam.send({ type: "join", room: "ops", ref: "j" });
      await sam.expect((f) => f.type === "ok");
      await sam.say("general", "g1", "cid-g1");
      await sam.say("ops", "o1", "cid-o1");
      await log.waitFor((e) => e.type === "msg" && e.msg.body === "o1", "o1");
    }
    // The network goes down for rita while the server restarts.
    proxy.blocked = true;
    await ts1[Symbol.asyncDispose]();
    await log.waitFor((e) => e.type === "down", "the drop");
    const downs = log.events.filter((e) => e.type === "down");
    assertEquals(downs[0].type === "down" && downs[0].code, "shutdown");
    await using ts2 = await startTestServer({ dataDir, config: { port } });
    {
      await using sam = await WireClient.login(port, ts2.certPem, "sam");
      // Each cid is new: the server stores a (sender, cid) once, across connections.
      for (const b of ["g2", "g3"]) await sam.say("general", b, `cid-${b}`);
      await sam.say("ops", "o2", "cid-o2");
      sam.send({ type: "send", cid: "d1", to: "rita", body: "dm1", ref: "d1" });
      await sam.expect((f) => f.type === "ack");
    }
    // Messages rita sends while offline wait in the outbox and go out after the reconnect.
    const pendingAck = conn.send({ room: "general" }, "from rita while away");
    proxy.blocked = false;
    await log.waitFor((e) => e.type === "up" && e.reconnect, "the reconnect");
    const ack = await pendingAck;
    assert(ack.id > 0);
    await using sam = await WireClient.login(port, ts2.certPem, "sam");
    await sam.say("general", "g4", "cid-g4");
    await log.waitFor((e) => e.type === "msg" && e.msg.body === "g4", "g4");
    // Exactly once each, missed ones flagged as replayed, live ones not.
    const msgs = log.events.flatMap((e) => e.type === "msg" ? [e] : []);
    assertEquals(msgs.map((e) => e.msg.body).sort(), ["dm1", "g1", "g2", "g3", "g4", "o1", "o2"]);
    assertEquals(msgs.filter((e) => e.replay).map((e) => e.msg.body).sort(), [
      "dm1",
      "g2",
      "g3",
      "o2",
    ]);
    const ids = msgs.map((e) => e.msg.id);
    assertEquals(new Set(ids).size, ids.length, "a message was delivered twice");
    for (const scope of ["general", "ops", undefined]) {
      const inScope = msgs.filter((e) => e.msg.room === scope).map((e) => e.msg.id);
      assertEquals(
        [...inScope].sort((a, b) => a - b),
        inScope,
        `out of order in ${scope ?? "DMs"}`,
      );
    }
    const resumed = log.events.flatMap((e) => e.type === "resumed" ? [e] : []);
    assertEquals(
      resumed.map((r) => [r.room ?? "dm", r.count]).sort(),
      [["dm", 1], ["general", 2], ["ops", 1]],
    );
  } finally {
    await conn.close();
  }
});

Deno.test("a send whose ack was lost is resent with the same cid after a drop and stored once", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  await using proxy = TcpProxy.start(ts.port);
  await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
  const log = new EventLog();
  const conn = await open(proxy.port, await pinnedPolicy(cfg.path, ts.certPem), "ann", {
    onEvent: log.push,
  });
  try {
    proxy.dropFromServer = true;
    const acked = conn.send({ room: "general" }, "only once");
    const delivered = await bob.expect((f) => f.type === "msg" && f.body === "only once");
    assertEquals(conn.unacknowledged, 1);
    proxy.dropFromServer = false;
    await proxy.cutAll();
    const ack = await acked;
    assertEquals([ack.id, ack.duplicate], [delivered.type === "msg" && delivered.id, true]);
    assertEquals(conn.unacknowledged, 0);
    await bob.expectNone(
      (f) => f.type === "msg" && f.body === "only once",
      "the resent message was delivered again",
    );
    bob.send({ type: "history", room: "general", ref: "h" });
    const h = await bob.expect((f) => f.type === "history");
    assertEquals(h.type === "history" && h.messages.map((m) => m.body), ["only once"]);
    assert(log.events.some((e) => e.type === "down"));
  } finally {
    await conn.close();
  }
});

Deno.test("a changed certificate after a restart ends the session with cert_changed", async () => {
  const ts1 = await startTestServer();
  const port = ts1.port;
  await using cfg = await tempDir();
  const path = `${cfg.path}/known_servers`;
  const known = await KnownServers.load(path);
  await known.add(
    serverKey("127.0.0.1", port),
    (await certificateInfo(ts1.certPem)).fingerprintSha256,
  );
  const warnings: string[] = [];
  const log = new EventLog();
  const conn = await open(port, new TrustPolicy({ known, warn: (t) => warnings.push(t) }), "gus", {
    onEvent: log.push,
  });
  try {
    await ts1[Symbol.asyncDispose]();
    // Another server (another key and certificate) now answers on the same address.
    await using ts2 = await startTestServer({ config: { port } });
    const err = await conn.closed;
    assertEquals(err?.code, "cert_changed");
    assertEquals(warnings.length, 1);
    assert(warnings[0].includes("CERTIFICATE HAS CHANGED"), warnings[0]);
    assert(warnings[0].includes((await certificateInfo(ts2.certPem)).fingerprintSha256));
    await until(() => log.events.some((e) => e.type === "closed"), "the closed event");
  } finally {
    await conn.close();
  }
});

Deno.test("bye kicked ends the session without reconnecting", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const log = new EventLog();
  const conn = await open(ts.port, await pinnedPolicy(cfg.path, ts.certPem), "kim", {
    onEvent: log.push,
  });
  try {
    // kim is the first account of a fresh server: user id 1.
    assertEquals(ts.server.kickUser(1, "Removed by an administrator"), 1);
    const err = await conn.closed;
    assertEquals(err?.code, "kicked");
    assert(err?.message.includes("Removed by an administrator"), err?.message);
    assert(!log.events.some((e) => e.type === "retry"), "it tried to reconnect");
    await assertRejects(() => conn.send({ room: "general" }, "too late"), ChatError, "closed");
  } finally {
    await conn.close();
  }
});

Deno.test("a server gone silent (no FIN, no reset) is detected by keepalive and reconnected", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  await using proxy = TcpProxy.start(ts.port);
  const log = new EventLog();
  const conn = await open(proxy.port, await pinnedPolicy(cfg.path, ts.certPem), "lou", {
    onEvent: log.push,
    keepalive: { pingAfterMs: 100, deadAfterMs: 600 },
  });
  try {
    proxy.dropFromServer = true;
    await log.waitFor((e) => e.type === "down", "the drop");
    const down = log.events.find((e) => e.type === "down");
    assert(
      down?.type === "down" && down.message.startsWith("no answer from the server"),
      JSON.stringify(down),
    );
    proxy.dropFromServer = false;
    await log.waitFor((e) => e.type === "up" && e.reconnect, "the reconnect");
    const ack = await conn.send({ room: "general" }, "still here");
    assert(ack.id > 0);
  } finally {
    await conn.close();
  }
});

Deno.test("a session the server cuts right after every login stops reconnecting after three and says why", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  let ups = 0;
  const log = new EventLog();
  // Every login is cut at once, the way a reply over the send-queue bound cut it (issue 12 item
  // 6): through the server's own kick path, with no bye the client could take as final.
  const cut = () =>
    ts.server.hub.fanout.publish({ kind: "kick", userId: 1, code: "slow_consumer", message: "" });
  const conn = await open(ts.port, await pinnedPolicy(cfg.path, ts.certPem), "loop", {
    onEvent: (e) => {
      log.push(e);
      if (e.type === "up") {
        ups++;
        queueMicrotask(cut);
      }
    },
  });
  try {
    const bounded = await Promise.race([
      conn.closed,
      until(() => ups >= 10, "ten logins").then(() => "looping"),
    ]);
    assert(bounded !== "looping", `still reconnecting after ${ups} logins`);
    const err = bounded as ChatError;
    assertEquals(err.code, "reconnect_failed");
    assert(err.message.includes("3 times in a row right after login"), err.message);
    assertEquals(ups, 3, "logins: the first and two reconnects");
  } finally {
    await conn.close();
  }
});

Deno.test("bye password_changed ends the session without reconnecting", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const log = new EventLog();
  const policy = await pinnedPolicy(cfg.path, ts.certPem);
  const conn = await open(ts.port, policy, "pam", { onEvent: log.push });
  const other = await open(ts.port, policy, "pam", {
    credentials: { user: "pam", password: "password-pam" },
  });
  try {
    await other.passwd("password-pam", "another-password");
    const err = await Promise.race([
      conn.closed,
      until(() => false, "the other session to end", 10_000).then(() => null),
    ]);
    assertEquals(err?.code, "password_changed");
    assert(!log.events.some((e) => e.type === "retry"), "it tried to reconnect");
  } finally {
    await conn.close();
    await other.close();
  }
});

Deno.test("after a restart, Caught up counts only others' messages this session had not seen (own and seen ones are not missed)", async () => {
  const ts1 = await startTestServer({ keepData: true });
  const { dataDir, port } = ts1;
  await using cfg = await tempDir();
  await using proxy = TcpProxy.start(port);
  const log = new EventLog();
  await using bob1 = await WireClient.login(port, ts1.certPem, "bob", { register: true });
  const conn = await open(proxy.port, await pinnedPolicy(cfg.path, ts1.certPem), "ann", {
    onEvent: log.push,
  });
  try {
    await bob1.say("general", "seen live", "b1");
    await log.waitFor((e) => e.type === "msg" && e.msg.body === "seen live", "bob's message");
    await conn.send({ room: "general" }, "mine 1");
    await conn.send({ room: "general" }, "mine 2");
    await conn.send({ to: "bob" }, "my only dm");
    bob1.close();
    proxy.blocked = true; // ann stays away until bob has spoken
    await ts1.stop();
    await log.waitFor((e) => e.type === "down", "the drop");
    await using ts2 = await startTestServer({ dataDir, config: { port } });
    await using bob2 = await WireClient.login(port, ts2.certPem, "bob");
    await bob2.say("general", "while away", "b2");
    proxy.blocked = false;
    await log.waitFor((e) => e.type === "up" && e.reconnect, "the reconnect");
    await log.waitFor(
      (e) => e.type === "resumed" && e.room === "general",
      "the end of the general backlog",
    );
    await log.waitFor((e) => e.type === "resumed" && e.dm === true, "the end of the DM backlog");
    const resumed = log.events.flatMap((e) => e.type === "resumed" ? [e] : []);
    // The server's backlog held ann's own messages too; only bob's new one was missed.
    assertEquals(resumed.map((r) => [r.room ?? "dm", r.count]).sort(), [["dm", 0], [
      "general",
      1,
    ]]);
    assert(resumed.some((r) => r.serverCount > r.count), JSON.stringify(resumed));
  } finally {
    await conn.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
