// Three `chat serve` processes on one test PostgreSQL and one nats-server: kill -9 of a node
// mid-storm (its clients move to the others, no acknowledged message lost), and PostgreSQL
// stopped and started (sends refused with a retryable error, nothing acked without a commit).
import { assert, assertEquals } from "../harness/assert.ts";
import { waitUntil } from "../harness/cluster.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import { pgAvailable, startPostgres } from "../harness/postgres.ts";
import {
  assertExactlyOnceInOrder,
  closeAll,
  receivedMessages,
  StormSender,
} from "../harness/storm.ts";
import { WireClient } from "../harness/wire_client.ts";
import { IrcClient } from "../harness/irc_client.ts";
import { startChildNodes } from "../harness/child_cluster.ts";
import { ERRORS } from "../../src/error_catalogue.ts";

const ignore = !NATS_AVAILABLE || !pgAvailable();

Deno.test({
  name:
    "cluster on PostgreSQL: kill -9 of one of 3 nodes mid-storm: its senders resend elsewhere, no acknowledged message is lost, readers on the others see each once, in order",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    await using nats = await NatsServer.start();
    await using c = await startChildNodes(await pg.createDatabase(), nats.url);
    const [p0, p1, p2] = c.nodes;
    const readers = [
      await WireClient.login(p1.port, c.certPem, "kr1", { register: true }),
      await WireClient.login(p2.port, c.certPem, "kr2", { register: true }),
    ];
    const senders = await Promise.all(
      [p0, p0, p1, p2].map((n, i) => StormSender.login(n.port, c.certPem, `ks${i}`, true)),
    );
    const acked = () => senders.flatMap((s) => [...s.acked.values()]);
    try {
      for (const s of senders) s.start({ room: "general" }, 8, 400);
      await waitUntil(() => acked().length >= 400, "400 acks", 30_000);
      p0.kill("SIGKILL");
      await p0.wait();
      // p0's senders lost their connection; what they had acked must be everywhere. They resend
      // what was not acked on another node, with the same cids (duplicates are acked, not stored).
      await senders[0].closed();
      await senders[1].closed();
      const resent: StormSender[] = [];
      for (const [k, s] of [senders[0], senders[1]].entries()) {
        const again = await StormSender.login(c.nodes[1 + k].port, c.certPem, s.name, false);
        resent.push(again);
        const unanswered = s.sent.filter((cid) => !s.acked.has(cid));
        await again.resend(unanswered, { room: "general" });
        for (const [cid, id] of again.acked) {
          if (s.acked.has(cid)) assertEquals(s.acked.get(cid), id, `${cid} acked twice apart`);
          s.acked.set(cid, id);
        }
      }
      for (const s of senders.slice(2)) await s.finish();
      const expected = acked().sort((a, b) => a - b);
      const newest = expected[expected.length - 1];
      for (const [i, r] of readers.entries()) {
        await r.expect((f) => f.type === "msg" && f.id >= newest, 30_000);
        assertExactlyOnceInOrder(
          receivedMessages(r).filter((m) => m.room === "general").map((m) => m.id),
          expected,
          `reader on p${i + 1}`,
        );
      }
      for (const s of resent) {
        s.close();
        await s.closed();
      }
    } finally {
      await closeAll(senders, readers);
    }
  },
});

Deno.test({
  name:
    "cluster on PostgreSQL: PostgreSQL stopped and started: sends are refused with a retryable error, nothing is acked without a commit, every node serves again",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    await using nats = await NatsServer.start();
    await using c = await startChildNodes(await pg.createDatabase(), nats.url);
    const clients = await Promise.all(
      c.nodes.map((n, i) => WireClient.login(n.port, c.certPem, `pr${i}`, { register: true })),
    );
    try {
      const before = await clients[0].say("general", "before");
      assertEquals(before.type, "ack");
      await pg.stopServer();
      for (const cl of clients) {
        const r = await cl.say("general", "while down");
        assert(r.type === "error", `refused: ${JSON.stringify(r)}`);
        assert(
          ERRORS[r.code as keyof typeof ERRORS]?.retry.kind !== "never",
          `${r.code} retryable`,
        );
      }
      await pg.startServer();
      // Each node serves again by itself; the message from p2 reaches p0 and p1.
      let ack: Awaited<ReturnType<WireClient["say"]>> | null = null;
      await waitUntil(
        async () => {
          ack = await clients[2].say("general", "after");
          return ack.type === "ack";
        },
        "p2 stores again",
        30_000,
      );
      const id = (ack as unknown as { id: number }).id;
      for (const cl of clients.slice(0, 2)) {
        await cl.expect((f) => f.type === "msg" && f.id === id, 10_000);
        await cl.expectNone(
          (f) => f.type === "msg" && f.body === "while down",
          "a refused send delivered",
        );
      }
    } finally {
      for (const cl of clients) {
        cl.close();
        await cl.closed;
      }
    }
  },
});

/** A port free on 127.0.0.1 now (for a child's `--irc-port`). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test({
  name:
    "cluster on PostgreSQL: IRC users follow joins, parts and quits on another node live, their own account's too",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    await using nats = await NatsServer.start();
    const irc = [freePort(), freePort()];
    await using c = await startChildNodes(
      await pg.createDatabase(),
      nats.url,
      2,
      (i) => ["--irc-port", String(irc[i])],
    );
    const p1 = c.nodes[1];
    await using ivyWeb = await WireClient.login(p1.port, c.certPem, "ivy", { register: true });
    await using ivy = await IrcClient.sasl(irc[0], c.certPem, "ivy");
    ivy.send("JOIN #ops");
    await ivy.expectCommand("366");
    // Another user on the other node: JOIN (RFC 2812 §3.2.1), PART, and QUIT when they go offline.
    const rex = await WireClient.login(p1.port, c.certPem, "rex", { register: true });
    rex.send({ type: "join", room: "ops" });
    await rex.expect((f) => f.type === "ok" && f.op === "join");
    await ivy.expect(
      (m) => m.command === "JOIN" && m.source === "rex!rex@chat" && m.params[0] === "#ops",
      10_000,
    );
    rex.send({ type: "part", room: "ops" });
    await rex.expect((f) => f.type === "ok" && f.op === "part");
    await ivy.expect(
      (m) => m.command === "PART" && m.source === "rex!rex@chat" && m.params[0] === "#ops",
      10_000,
    );
    await rex[Symbol.asyncDispose]();
    await ivy.expect((m) => m.command === "QUIT" && m.source === "rex!rex@chat", 10_000);
    // ivy's own chat/1 connection on p1 joins and parts: her IRC connection on p0 follows.
    ivyWeb.send({ type: "join", room: "ship" });
    await ivyWeb.expect((f) => f.type === "ok" && f.op === "join");
    const join = await ivy.expect((m) => m.command === "JOIN" && m.params[0] === "#ship", 10_000);
    assertEquals(join.source, "ivy!ivy@chat");
    await ivy.expect((m) => m.command === "366" && m.params[1] === "#ship");
    ivyWeb.send({ type: "part", room: "ship" });
    await ivyWeb.expect((f) => f.type === "ok" && f.op === "part");
    const part = await ivy.expect((m) => m.command === "PART" && m.params[0] === "#ship", 10_000);
    assertEquals(part.source, "ivy!ivy@chat");
  },
});
