// Fault suite, process: SIGKILL in the middle of a message storm, then restart and resend;
// SIGTERM with clients connected. The server runs as a real child process.
import { assert, assertEquals } from "../harness/assert.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChildServer, type F, isType, openDb, sleep, waitFor } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

const STORM_ENV = {
  CHAT_LIMIT_MESSAGES_PER_SECOND: "100000",
  CHAT_LIMIT_MESSAGE_BURST: "100000",
  CHAT_LIMIT_REGISTRATIONS_PER_ADDRESS: "100",
};

interface Stormer {
  user: string;
  client: WireClient;
  /** cid → body of every send written to the socket. */
  sent: Map<string, string>;
  /** cid → id of every ack received. */
  acked: Map<string, number>;
}

/** Sends as fast as acks come back, keeping `window` sends in flight, until `stop()`. */
function storm(s: Stormer, window: number, stop: () => boolean): Promise<void> {
  let n = 0;
  const c = s.client;
  const sendOne = () => {
    const cid = `${s.user}-${n}`;
    const body = `storm ${s.user} ${n++}`;
    s.sent.set(cid, body);
    c.send({ type: "send", cid, room: "general", body, ref: cid });
  };
  return (async () => {
    for (let i = 0; i < window; i++) sendOne();
    while (!stop()) {
      let f: F<"ack">;
      try {
        f = await c.expect(isType("ack"), 2000) as F<"ack">;
      } catch {
        return; // the server is gone
      }
      s.acked.set(f.cid, f.id);
      if (!stop()) sendOne();
    }
  })();
}

Deno.test("process: SIGKILL during a message storm loses no acknowledged message; resends create no duplicates", async () => {
  await using tmp = await tempDir("chat-faults-kill-");
  const dataDir = tmp.path;
  const users = ["ka", "kb", "kc", "kd"];
  const stormers: Stormer[] = [];
  {
    await using srv = await ChildServer.start({ dataDir, env: STORM_ENV });
    for (const user of users) {
      const client = await WireClient.login(srv.port, srv.certPem, user, { register: true });
      stormers.push({ user, client, sent: new Map(), acked: new Map() });
    }
    let killed = false;
    const runs = stormers.map((s) => storm(s, 32, () => killed));
    await waitFor(
      () => stormers.reduce((n, s) => n + s.acked.size, 0) >= 600,
      "600 acknowledged messages before the kill",
      60_000,
    );
    srv.kill("SIGKILL");
    const status = await srv.wait();
    killed = true;
    assertEquals(status.signal, "SIGKILL");
    await Promise.all(runs);
    for (const s of stormers) {
      // Acks that were already on the wire when the process died still count.
      for (const f of s.client.frames.filter(isType("ack"))) s.acked.set(f.cid, f.id);
      await s.client[Symbol.asyncDispose]();
    }
  }
  const sentTotal = stormers.reduce((n, s) => n + s.sent.size, 0);
  const ackedTotal = stormers.reduce((n, s) => n + s.acked.size, 0);
  assert(ackedTotal < sentTotal, "every send was acked: the kill came too late to test");
  await using srv2 = await ChildServer.start({ dataDir, env: STORM_ENV });
  {
    using db = openDb(`${dataDir}/chat.db`);
    assertEquals(
      db.prepare("PRAGMA integrity_check").all().map((r) => ({ ...r })),
      [{ integrity_check: "ok" }],
    );
    const rows = db.prepare(
      "SELECT m.id, m.cid, m.body, u.name FROM messages m JOIN users u ON u.id = m.sender_id",
    ).all() as { id: number; cid: string; body: string; name: string }[];
    const byCid = new Map<string, { id: number; body: string }[]>();
    for (const r of rows) byCid.set(r.cid, [...(byCid.get(r.cid) ?? []), r]);
    for (const s of stormers) {
      for (const [cid, id] of s.acked) {
        const found = byCid.get(cid) ?? [];
        assertEquals(found.map((r) => [r.id, r.body]), [[id, s.sent.get(cid)]], cid);
      }
    }
    console.log(
      `SIGKILL storm: ${sentTotal} sent, ${ackedTotal} acked, ${rows.length} stored before restart`,
    );
  }
  // The clients reconnect and resend everything not acknowledged, with the same cids.
  let duplicates = 0;
  for (const s of stormers) {
    await using c = await WireClient.login(srv2.port, srv2.certPem, s.user, {
      password: `password-${s.user}`,
    });
    const unacked = [...s.sent].filter(([cid]) => !s.acked.has(cid));
    for (const [cid, body] of unacked) {
      c.send({ type: "send", cid, room: "general", body, ref: cid });
    }
    for (const [cid] of unacked) {
      const f = await c.expect((x) => x.type === "ack" && x.cid === cid, 20_000) as F<"ack">;
      if (f.duplicate) duplicates++;
      s.acked.set(cid, f.id);
    }
  }
  console.log(`SIGKILL storm: ${duplicates} resends were already stored (acked as duplicate)`);
  using db = openDb(`${dataDir}/chat.db`);
  const total = Number(
    (db.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n,
  );
  assertEquals(total, sentTotal, "every sent message exactly once");
  const distinct = Number(
    (db.prepare("SELECT count(DISTINCT sender_id || ':' || cid) AS n FROM messages").get() as {
      n: number;
    }).n,
  );
  assertEquals(distinct, sentTotal);
  for (const s of stormers) {
    for (const [cid, id] of s.acked) {
      const r = db.prepare("SELECT id FROM messages WHERE cid = ?").get(cid) as { id: number };
      assertEquals(Number(r.id), id, cid);
    }
  }
});

Deno.test("process: SIGTERM with clients connected says goodbye, exits 0 and keeps what was acked", async () => {
  await using tmp = await tempDir("chat-faults-term-");
  const dataDir = tmp.path;
  let ackId: number;
  {
    await using srv = await ChildServer.start({ dataDir, env: STORM_ENV });
    await using native = await WireClient.login(srv.port, srv.certPem, "termy", {
      register: true,
    });
    await using seed = await WireClient.connect(srv.port, srv.certPem, { alpn: [] });
    seed.writeRaw("REGISTER\nseedy\npassword-seedy\n");
    await waitFor(() => seed.raw.includes("[USERS_LIST]"), "the seed client to log in");
    await using halfway = await WireClient.connect(srv.port, srv.certPem);
    halfway.send({ type: "hello", version: 1 });
    await halfway.expect(isType("hello"));
    ackId = (await native.say("general", "before the signal") as F<"ack">).id;
    srv.kill("SIGTERM");
    const bye = await native.expect(isType("bye"), 15_000) as F<"bye">;
    assertEquals(bye.code, "shutdown");
    await native.expectClosed(15_000);
    await seed.expectClosed(15_000);
    assert(seed.raw.includes("[SERVER] shutdown:"), seed.raw);
    await halfway.expectClosed(15_000);
    const status = await srv.wait();
    assertEquals([status.code, status.signal], [0, null]);
    assert(srv.stdout.includes("chat: listening"), srv.stdout);
    assert(!/ERR|unexpected/i.test(srv.stderr), srv.stderr);
  }
  await using srv2 = await ChildServer.start({ dataDir, env: STORM_ENV });
  await using again = await WireClient.login(srv2.port, srv2.certPem, "termy");
  again.send({ type: "history", room: "general", ref: "h" });
  const h = await again.expect(isType("history")) as F<"history">;
  assertEquals(h.messages.map((m) => [m.id, m.body]), [[ackId, "before the signal"]]);
  await sleep(0);
});
