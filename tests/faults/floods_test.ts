// Fault suite, floods: fast senders, pre-login floods, connection and registration spam, and
// 5,000 failed logins from several loopback addresses. Limits run at their defaults unless named.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { advanceUntil, FakeClock } from "../harness/fake_clock.ts";
import { DEFAULT_LIMITS } from "../../src/config/config.ts";
import { type F, hello, isType, NodeClient, openDb, sleep, waitFor } from "./helpers.ts";

Deno.test("flood: one client sending as fast as it can is paced, then cut with bye flood; a bystander still chats", async () => {
  // Fake time: the flooder gets its burst, then one send per refill while time is advanced,
  // until it has waited messageFloodMs (draining at half speed): about 200 paced sends.
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: {
      messagesPerSecond: DEFAULT_LIMITS.messagesPerSecond,
      messageBurst: DEFAULT_LIMITS.messageBurst,
      messageFloodMs: DEFAULT_LIMITS.messageFloodMs,
    },
  });
  await using flooder = await WireClient.login(ts.port, ts.certPem, "flooder", { register: true });
  await using calm = await WireClient.login(ts.port, ts.certPem, "calm", { register: true });
  await using reader = await WireClient.login(ts.port, ts.certPem, "reader", { register: true });
  const total = 2000;
  let batch = "";
  for (let i = 0; i < total; i++) {
    batch += JSON.stringify({
      type: "send",
      cid: `f${i}`,
      room: "general",
      body: `spam ${i}`,
      ref: `f${i}`,
    }) +
      "\n";
  }
  // Not awaited: the server stops reading while it paces, so the write may never finish.
  flooder.writeAll(batch).catch(() => {});
  const acks = () => flooder.frames.filter(isType("ack")).length;
  await waitFor(() => acks() >= DEFAULT_LIMITS.messageBurst, "the burst acked");
  const calmAck = await calm.say("general", "still here") as F<"ack">;
  assertEquals(calmAck.type, "ack");
  const refill = 1000 / DEFAULT_LIMITS.messagesPerSecond;
  await advanceUntil(clock, () => flooder.frames.some(isType("bye")), refill, 30_000);
  await flooder.expectClosed();
  const bye = flooder.frames.find(isType("bye"))!;
  assertEquals(bye.code, "flood");
  assertEquals(flooder.frames.filter(isType("error")), [], "nothing refused");
  // Waiting grows by half of each 100 ms wait: past 10 s after about 200 of them.
  const paced = acks() - DEFAULT_LIMITS.messageBurst;
  assert(paced >= 195 && paced <= 205, `${paced} paced sends before the cut`);
  // The reader got exactly what was acknowledged.
  await reader.barrier();
  const got = reader.frames.filter(isType("msg")).map((m) => m.id).sort((a, b) => a - b);
  const ids = flooder.frames.filter(isType("ack")).map((a) => a.id);
  assertEquals(got, [...ids, calmAck.id].sort((a, b) => a - b));
});

Deno.test("flood: 2,000 lines before login are cut at preAuthMaxFrames; few passwords are hashed", async () => {
  await using ts = await startTestServer({ limits: { loginFailuresPerAddress: 20 } });
  const max = ts.config.limits.preAuthMaxFrames;
  await using c = await WireClient.connect(ts.port, ts.certPem);
  let text = JSON.stringify({ type: "hello", version: 1 }) + "\n";
  for (let i = 0; i < 2000; i++) text += JSON.stringify({ type: "ping" }) + "\n";
  c.writeRaw(text);
  assertEquals((await c.expect(isType("error")) as F<"error">).code, "too_many_frames");
  await c.expectClosed();
  assertEquals(c.frames.filter(isType("pong")).length, max - 1);
  // 2,000 login attempts in one write: at most preAuthMaxFrames - 1 reach the hasher.
  const before = ts.server.hasher.stats.completed;
  await using d = await WireClient.connect(ts.port, ts.certPem);
  text = JSON.stringify({ type: "hello", version: 1 }) + "\n";
  for (let i = 0; i < 2000; i++) {
    text += JSON.stringify({ type: "login", user: `nobody${i}`, password: `guess-${i}-guess` }) +
      "\n";
  }
  d.writeRaw(text);
  await d.expectClosed(30_000);
  const last = d.frames.filter(isType("error")).at(-1)!;
  assertEquals(last.code, "too_many_frames");
  const hashed = ts.server.hasher.stats.completed - before;
  assert(hashed <= max, `${hashed} passwords hashed for one connection`);
  // Over the seed protocol: three failed dialogues close the connection.
  await using s = await WireClient.connect(ts.port, ts.certPem, { alpn: [] });
  s.writeRaw("junk\n".repeat(2000));
  await s.expectClosed();
  assertEquals((s.raw.match(/^AUTH_FAILED$/gm) ?? []).length, 3);
});

Deno.test("flood: connections from one address beyond the limit are refused; other addresses are not", async () => {
  await using ts = await startTestServer({
    limits: { maxConnectionsPerAddress: DEFAULT_LIMITS.maxConnectionsPerAddress },
  });
  const limit = ts.config.limits.maxConnectionsPerAddress;
  const held: NodeClient[] = [];
  try {
    for (let i = 0; i < limit; i++) {
      const c = await NodeClient.connect(ts.port, ts.certPem, { localAddress: "127.0.0.7" });
      held.push(c);
      await hello(c);
    }
    for (let i = 0; i < 5; i++) {
      await using extra = await NodeClient.connect(ts.port, ts.certPem, {
        localAddress: "127.0.0.7",
      });
      assertEquals(
        (await extra.expect(isType("error")) as F<"error">).code,
        "too_many_connections",
      );
      await extra.expectClosed();
    }
    await using other = await NodeClient.connect(ts.port, ts.certPem, {
      localAddress: "127.0.0.8",
    });
    await hello(other);
    // Closing some frees their slots again.
    for (const c of held.splice(0, 3)) {
      c.close();
      await c.closed;
    }
    await waitFor(() => ts.server.stats.connections === limit - 3 + 1, "slots to be released");
    await using again = await NodeClient.connect(ts.port, ts.certPem, {
      localAddress: "127.0.0.7",
    });
    await hello(again);
  } finally {
    for (const c of held) c.close();
    await Promise.all(held.map((c) => c.closed));
  }
});

Deno.test("flood: registration spam from one address is throttled and audited; others still register", async () => {
  // The server's clock stands still: exactly registrationsPerAddress get through.
  await using ts = await startTestServer({
    clock: new FakeClock(),
    limits: {
      registrationsPerAddress: DEFAULT_LIMITS.registrationsPerAddress,
      registrationRefillMs: DEFAULT_LIMITS.registrationRefillMs,
    },
  });
  const attempts = 40;
  const codes: string[] = [];
  let c: NodeClient | null = null;
  try {
    for (let i = 0; i < attempts; i++) {
      // A successful registration logs the connection in; the next attempt needs a new one.
      if (!c) {
        c = await NodeClient.connect(ts.port, ts.certPem, { localAddress: "127.0.0.9" });
        await hello(c);
      }
      c.send({ type: "register", user: `spam${i}`, password: `spam-password-${i}`, ref: `r${i}` });
      const r = await c.expect((f) => (f.type === "ok" || f.type === "error") && f.ref === `r${i}`);
      codes.push(r.type === "ok" ? "ok" : (r as F<"error">).code);
      if (r.type === "ok" || (i + 1) % 15 === 0) {
        c.close();
        await c.closed;
        c = null;
      }
    }
  } finally {
    c?.close();
  }
  const ok = codes.filter((x) => x === "ok").length;
  assertEquals(ok, ts.config.limits.registrationsPerAddress, codes.join(","));
  assertEquals(codes.filter((x) => x !== "ok" && x !== "throttled"), []);
  await using fresh = await NodeClient.connect(ts.port, ts.certPem, { localAddress: "127.0.0.10" });
  await hello(fresh);
  fresh.send({ type: "register", user: "legit", password: "legit-password", ref: "l" });
  assertEquals(
    (await fresh.expect((f) => (f.type === "ok" || f.type === "error") && f.ref === "l")).type,
    "ok",
  );
  using db = openDb(`${ts.dataDir}/chat.db`);
  await waitFor(() =>
    Number(
      (db.prepare("SELECT count(*) AS n FROM audit WHERE action = 'register_throttled'").get() as {
        n: number;
      }).n,
    ) === attempts - ok, "every throttled registration in the audit trail");
});

interface AttackStats {
  attempts: number;
  codes: Map<string, number>;
}

/** Runs `perConn` failed logins on each of `conns` connections from `localAddress`, `parallel` at a time. */
async function attack(
  opts: {
    port: number;
    certPem: string;
    localAddress: string;
    conns: number;
    perConn: number;
    parallel: number;
    target: (n: number) => string;
    stats: AttackStats;
    seq: { n: number };
  },
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < opts.conns) {
      next++;
      await using c = await NodeClient.connect(opts.port, opts.certPem, {
        localAddress: opts.localAddress,
      });
      await hello(c);
      for (let i = 0; i < opts.perConn; i++) {
        const n = opts.seq.n++;
        c.send({
          type: "login",
          user: opts.target(n),
          password: `attack-secret-${n}`,
          ref: `a${n}`,
        });
        const r = await c.expect((f) => f.type === "error" && f.ref === `a${n}`, 30_000) as F<
          "error"
        >;
        opts.stats.attempts++;
        opts.stats.codes.set(r.code, (opts.stats.codes.get(r.code) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: opts.parallel }, worker));
}

Deno.test("flood: 5,000 failed logins from 4 addresses are throttled and audited; the real user logs in afterwards", async () => {
  // Default limits. The server's clock stands still during the attack (no bucket refills) and
  // is advanced by the retry hint for the real user, instead of waiting 30 s.
  const clock = new FakeClock();
  await using ts = await startTestServer({
    clock,
    limits: {
      loginFailuresPerAccount: DEFAULT_LIMITS.loginFailuresPerAccount,
      loginFailureRefillMsPerAccount: DEFAULT_LIMITS.loginFailureRefillMsPerAccount,
      loginFailuresPerAddress: DEFAULT_LIMITS.loginFailuresPerAddress,
      loginFailureRefillMsPerAddress: DEFAULT_LIMITS.loginFailureRefillMsPerAddress,
    },
  });
  (await WireClient.login(ts.port, ts.certPem, "victim", { register: true })).close();
  for (let i = 0; i < 5; i++) {
    (await WireClient.login(ts.port, ts.certPem, `member${i}`, { register: true })).close();
  }
  // Bystanders chat during the attack.
  await using talker = await WireClient.login(ts.port, ts.certPem, "talker", { register: true });
  await using listener = await WireClient.login(ts.port, ts.certPem, "listener", {
    register: true,
  });
  let chatting = true;
  let said = 0;
  const chat = (async () => {
    while (chatting && said < 2000) {
      const r = await talker.say("general", `during attack ${said++}`, undefined);
      assertEquals(r.type, "ack");
      talker.frames.length = 0;
      await sleep(50);
    }
  })();
  const stats: AttackStats = { attempts: 0, codes: new Map() };
  const seq = { n: 0 };
  const perConn = ts.config.limits.preAuthMaxFrames - 1;
  const conns = Math.ceil(2500 / perConn / 2);
  const addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
  await Promise.all(addresses.map((localAddress, i) =>
    attack({
      port: ts.port,
      certPem: ts.certPem,
      localAddress,
      conns,
      perConn,
      parallel: 4,
      // Two addresses hammer the victim; two spread over members and unknown names.
      target: i < 2 ? () => "victim" : (n) => (n % 3 === 0 ? `ghost${n}` : `member${n % 5}`),
      stats,
      seq,
    })
  ));
  chatting = false;
  await chat;
  assert(stats.attempts >= 5000, `only ${stats.attempts} attempts`);
  const codes = Object.fromEntries(stats.codes);
  assertEquals(
    Object.keys(codes).filter((c) => !["auth_failed", "throttled", "busy"].includes(c)),
    [],
  );
  // The limits engaged: nearly every attempt was refused before any password was checked.
  assert((codes.throttled ?? 0) > stats.attempts * 0.9, JSON.stringify(codes));
  // The bystanders' chat went on, every message delivered.
  await waitFor(
    () => listener.frames.filter(isType("msg")).length === said,
    "the listener to receive every message said during the attack",
  );
  // The real user, from its own address, logs in after the retry hint (bounded: 5 tries).
  await using me = await NodeClient.connect(ts.port, ts.certPem, { localAddress: "127.0.0.20" });
  await hello(me);
  let result = "";
  for (let i = 0; i < 5 && result !== "ok"; i++) {
    me.send({ type: "login", user: "victim", password: "password-victim", ref: `me${i}` });
    const r = await me.expect((f) => "ref" in f && f.ref === `me${i}`);
    result = r.type === "ok" ? "ok" : (r as F<"error">).code;
    if (r.type === "error") await clock.advance((r as F<"error">).retryAfterMs ?? 1000);
  }
  assertEquals(result, "ok");
  // Every attempt is in the audit trail, and no password is.
  using db = openDb(`${ts.dataDir}/chat.db`);
  const count = () =>
    Number(
      (db.prepare(
        `SELECT count(*) AS n FROM audit WHERE action LIKE 'login%' AND remote IN (${
          addresses.map(() => "?").join(",")
        })`,
      ).get(...addresses) as { n: number }).n,
    );
  await waitFor(() => count() >= stats.attempts, `${stats.attempts} audit rows (have ${count()})`);
  assertEquals(count(), stats.attempts);
  const leaked = db.prepare(
    `SELECT count(*) AS n FROM audit WHERE coalesce(actor,'') || coalesce(target,'') ||
       coalesce(detail,'') LIKE '%attack-secret%' OR coalesce(detail,'') LIKE '%password-victim%'`,
  ).get() as { n: number };
  assertEquals(Number(leaked.n), 0);
});

Deno.test("flood: regression: a login refused as busy (hash queue full) is in the audit trail too", async () => {
  await using ts = await startTestServer({ limits: { hashWorkers: 1, hashQueue: 1 } });
  const n = 12;
  const clients = await Promise.all(
    Array.from({ length: n }, () => NodeClient.connect(ts.port, ts.certPem)),
  );
  try {
    await Promise.all(clients.map((c) => hello(c)));
    clients.forEach((c, i) =>
      c.send({ type: "login", user: `busy${i}`, password: `busy-secret-${i}`, ref: "b" })
    );
    const codes = await Promise.all(
      clients.map(async (c) => ((await c.expect(isType("error"), 30_000)) as F<"error">).code),
    );
    assert(codes.includes("busy"), `the hash queue never filled: ${codes}`);
    using db = openDb(`${ts.dataDir}/chat.db`);
    const rows = () =>
      db.prepare("SELECT action, actor FROM audit WHERE action LIKE 'login%'").all() as {
        action: string;
        actor: string;
      }[];
    await waitFor(() => rows().length >= n, `${n} login audit rows (have ${rows().length})`, 5000)
      .catch(() => {});
    assertEquals(rows().map((r) => r.actor).sort(), clients.map((_, i) => `busy${i}`).sort());
    assert(rows().some((r) => r.action === "login_refused"), JSON.stringify(rows()));
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.closed));
  }
});

Deno.test("flood: regression: an unknown user refused as busy once is not refused as busy forever", async () => {
  await using ts = await startTestServer({ limits: { hashWorkers: 1, hashQueue: 1 } });
  (await WireClient.login(ts.port, ts.certPem, "known", { register: true })).close();
  const n = 8;
  const clients = await Promise.all(
    Array.from({ length: n + 1 }, () => NodeClient.connect(ts.port, ts.certPem)),
  );
  try {
    await Promise.all(clients.map((c) => hello(c)));
    // Fill the hash queue with wrong passwords for a known user, then try an unknown user: the
    // very first unknown-user login needs the dummy hash, and the full queue refuses it.
    for (const c of clients.slice(0, n)) {
      c.send({ type: "login", user: "known", password: "wrong-password", ref: "k" });
    }
    await waitFor(() => ts.server.hasher.stats.queued >= 1, "the hash queue to fill");
    const probe = clients[n];
    probe.send({ type: "login", user: "stranger", password: "wrong-password", ref: "u0" });
    const first = await probe.expect(isType("error"), 30_000) as F<"error">;
    assert(["busy", "auth_failed"].includes(first.code), first.code);
    await waitFor(
      () => ts.server.hasher.stats.queued === 0 && ts.server.hasher.stats.running === 0,
      "the hasher to go idle",
      30_000,
    );
    // Quiet again: an unknown user and a wrong password get the same answer.
    probe.send({ type: "login", user: "stranger", password: "wrong-password", ref: "u1" });
    const unknown = await probe.expect(isType("error"), 30_000) as F<"error">;
    probe.send({ type: "login", user: "known", password: "wrong-password", ref: "u1" });
    const wrong = await probe.expect(isType("error"), 30_000) as F<"error">;
    assertEquals(unknown, wrong);
    assertEquals(unknown.code, "auth_failed");
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.closed));
  }
});
