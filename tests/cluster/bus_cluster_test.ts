// Three nodes in one process on one store and one nats-server (docs/PROTOCOL.md §4–§6, §7): a
// storm across nodes read on every node, cluster-wide presence, kicks, a client moving node, and
// NATS down and back. Every expectation is the spec's: each message once, in order, per stream.
import { assert, assertEquals } from "../harness/assert.ts";
import { startCluster, waitUntil } from "../harness/cluster.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import {
  assertExactlyOnceInOrder,
  closeAll,
  receivedMessages,
  StormSender,
} from "../harness/storm.ts";
import { WireClient } from "../harness/wire_client.ts";
import { IrcClient } from "../harness/irc_client.ts";

const ignore = !NATS_AVAILABLE;
const FAST = { messagesPerSecond: 100_000, messageBurst: 100_000 };

Deno.test({
  name: "cluster: a storm of 6 senders on 3 nodes reaches a reader on every node once, in order",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, limits: FAST });
    const [n0, n1, n2] = c.nodes;
    const readers = await Promise.all(
      c.nodes.map((n, i) => WireClient.login(n.port, c.certPem, `reader${i}`, { register: true })),
    );
    const senders = await Promise.all(
      Array.from(
        { length: 6 },
        (_, i) => StormSender.login(c.nodes[i % 3].port, c.certPem, `storm${i}`, true),
      ),
    );
    try {
      for (const s of senders) s.start({ room: "general" }, 8, 300);
      for (const s of senders) await s.finish();
      const expected = senders.flatMap((s) => [...s.acked.values()]).sort((a, b) => a - b);
      assertEquals(expected.length, 1800);
      const newest = expected[expected.length - 1];
      for (const [i, r] of readers.entries()) {
        await r.expect((f) => f.type === "msg" && f.id === newest, 20_000);
        const ids = receivedMessages(r).filter((m) => m.room === "general").map((m) => m.id);
        assertExactlyOnceInOrder(ids, expected, `reader on n${i}`);
      }
      // Direct messages across nodes: n0 → a user on n2, once, in order.
      const dm = await StormSender.login(n0.port, c.certPem, "dmsender", true);
      try {
        dm.start({ to: "reader2" }, 8, 200);
        await dm.finish();
        const dmIds = [...dm.acked.values()].sort((a, b) => a - b);
        await readers[2].expect((f) => f.type === "msg" && f.id === dmIds[dmIds.length - 1]);
        assertExactlyOnceInOrder(
          receivedMessages(readers[2]).filter((m) => m.to !== undefined).map((m) => m.id),
          dmIds,
          "DMs on n2",
        );
      } finally {
        dm.close();
        await dm.closed();
      }
      assert(n1.fanout.stats.received > 0 && n2.fanout.stats.gaps === 0);
    } finally {
      await closeAll(senders, readers);
    }
  },
});

Deno.test({
  name:
    "cluster: presence and who are cluster-wide; join on the first session anywhere, leave after the last",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats });
    const [n0, n1, n2] = c.nodes;
    const watcher = await WireClient.login(n0.port, c.certPem, "watcher", { register: true });
    const alice1 = await WireClient.login(n1.port, c.certPem, "alice", { register: true });
    try {
      await watcher.expect((f) =>
        f.type === "presence" && f.user === "alice" && f.event === "join"
      );
      // A second session of alice on another node: the cluster's view does not change.
      const alice2 = await WireClient.login(n2.port, c.certPem, "alice");
      watcher.send({ type: "who", room: "general", ref: "w1" });
      const who = await watcher.expect((f) => f.type === "who");
      assert(who.type === "who");
      assertEquals(who.users, ["alice", "watcher"]);
      // Wait until n0 knows of alice's n2 session, then end the n1 one: no leave yet.
      await waitUntil(
        () => n0.server.hub.online(1).includes("alice") && n2.server.hub.onlineCount(1) === 2,
        "n2's alice seen",
      );
      alice1.close();
      await alice1.closed;
      await waitUntil(() => n0.server.hub.onlineCount(1) === 2, "n0 counts alice once");
      alice2.send({ type: "ping" });
      await alice2.expect((f) => f.type === "pong");
      await watcher.expectNone(
        (f) => f.type === "presence" && f.event === "leave",
        "a leave while alice is still on n2",
      );
      watcher.send({ type: "rooms", ref: "r1" });
      const rooms = await watcher.expect((f) => f.type === "rooms");
      assert(rooms.type === "rooms");
      assertEquals(rooms.rooms.find((r) => r.name === "general")?.online, 2);
      alice2.close();
      await alice2.closed;
      await watcher.expect((f) =>
        f.type === "presence" && f.user === "alice" && f.event === "leave"
      );
      assertEquals(
        watcher.raw.split("\n").filter((l) => l.includes('"presence"') && l.includes("alice"))
          .length,
        2,
        "one join and one leave",
      );
    } finally {
      alice1.close();
      watcher.close();
      await watcher.closed;
    }
  },
});

Deno.test({
  name:
    "cluster: an admin kick on one node closes the user's sessions on every node within a second",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats });
    const sessions = [
      await WireClient.login(c.nodes[1].port, c.certPem, "mallory", { register: true }),
      await WireClient.login(c.nodes[2].port, c.certPem, "mallory"),
    ];
    const user = await c.store.userByName("mallory");
    const started = performance.now();
    await c.store.updateUser(user!.id, { disabled: true });
    c.nodes[0].server.kickUser(user!.id, "Your account was disabled by an administrator");
    for (const s of sessions) {
      const bye = await s.expect((f) => f.type === "bye", 1000);
      assert(bye.type === "bye" && bye.code === "kicked");
      await s.closed;
    }
    console.log(`kick seen on 2 other nodes after ${Math.round(performance.now() - started)} ms`);
  },
});

Deno.test({
  name: "cluster: a reader moving to another node mid-storm resumes with no gap and no duplicate",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, limits: FAST });
    (await WireClient.login(c.nodes[0].port, c.certPem, "mover", { register: true })).close();
    const senders = await Promise.all(
      [0, 1, 2].map((i) => StormSender.login(c.nodes[i].port, c.certPem, `ms${i}`, true)),
    );
    const acked = () => senders.flatMap((s) => [...s.acked.values()]);
    const seen: number[] = [];
    try {
      for (const s of senders) s.start({ room: "general" }, 8, 600);
      let last = 0;
      for (let hop = 0; hop < 6; hop++) {
        const n = c.nodes[hop % 3];
        const r = await WireClient.login(n.port, c.certPem, "mover", {
          resume: { rooms: { general: last } },
        });
        await r.expect((f) => f.type === "resumed", 20_000);
        const target = acked().length + 150;
        await waitUntil(() => acked().length >= Math.min(target, 1800), "more acks");
        r.close();
        await r.closed;
        const got = receivedMessages(r).filter((m) => m.room === "general").map((m) => m.id);
        seen.push(...got);
        if (got.length) last = got[got.length - 1];
      }
      for (const s of senders) await s.finish();
      // The last hop reads to the end.
      const expected = acked().sort((a, b) => a - b);
      const r = await WireClient.login(c.nodes[1].port, c.certPem, "mover", {
        resume: { rooms: { general: last } },
      });
      await r.expect((f) => f.type === "resumed", 20_000);
      if (last < expected[expected.length - 1]) {
        await r.expect((f) => f.type === "msg" && f.id === expected[expected.length - 1]);
      }
      seen.push(...receivedMessages(r).filter((m) => m.room === "general").map((m) => m.id));
      r.close();
      await r.closed;
      assertExactlyOnceInOrder(seen, expected, "the mover over 7 connections on 3 nodes");
    } finally {
      await closeAll(senders);
    }
  },
});

Deno.test({
  name:
    "cluster: NATS stopped and restarted mid-storm: every node catches up from the store, once, in order",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, limits: FAST });
    const readers = await Promise.all(
      c.nodes.map((n, i) => WireClient.login(n.port, c.certPem, `nr${i}`, { register: true })),
    );
    const senders = await Promise.all(
      [0, 1, 2].map((i) => StormSender.login(c.nodes[i].port, c.certPem, `ns${i}`, true)),
    );
    const acked = () => senders.flatMap((s) => [...s.acked.values()]);
    try {
      for (const s of senders) s.start({ room: "general" }, 8, 500);
      await waitUntil(() => acked().length >= 300, "300 acks");
      await nats.stop();
      await waitUntil(() => acked().length >= 700, "700 acks during the outage");
      await nats.restart();
      for (const s of senders) await s.finish();
      await waitUntil(() => c.nodes.every((n) => n.fanout.isConnected), "every node back");
      // A stream that gets no later message: one DM during a second outage, then silence.
      await nats.stop();
      await waitUntil(() => c.nodes.every((n) => !n.fanout.isConnected), "every node cut off");
      const lone = await WireClient.login(c.nodes[0].port, c.certPem, "lone", { register: true });
      const ack = await lone.say("general", "said while the bus was down");
      assert(ack.type === "ack");
      lone.close();
      await lone.closed;
      await nats.restart();
      const expected = [...acked(), ack.id].sort((a, b) => a - b);
      for (const [i, r] of readers.entries()) {
        await r.expect((f) => f.type === "msg" && f.id === ack.id, 20_000);
        assertExactlyOnceInOrder(
          receivedMessages(r).filter((m) => m.room === "general").map((m) => m.id),
          expected,
          `reader on n${i}`,
        );
      }
      await waitUntil(
        () => c.nodes.every((n) => n.fanout.stats.reconnects >= 2),
        "every node back on the bus twice",
      ).catch((err) => {
        throw new Error(`${err.message}: ${JSON.stringify(c.nodes.map((n) => n.fanout.stats))}`);
      });
    } finally {
      await closeAll(senders, readers);
    }
  },
});

Deno.test({
  name: "cluster: a topic set on one node reaches IRC users on another as TOPIC, with 333",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({
      nats,
      nodes: 2,
      config: { ircPort: 0, roomTopic: "anyone" },
    });
    const [n0, n1] = c.nodes;
    await using setter = await WireClient.login(n0.port, c.certPem, "tom", { register: true });
    // una's account, made over chat/1; she then reads over IRC on the other node.
    await (await WireClient.login(n1.port, c.certPem, "una", { register: true }))[
      Symbol.asyncDispose
    ]();
    await using irc = await IrcClient.sasl(n1.server.addrs[1].port, c.certPem, "una");
    setter.send({ type: "topic", room: "general", topic: "release week" });
    await setter.expect((f) => f.type === "ok" && f.op === "topic");
    const seen = await irc.expectCommand("TOPIC", 10_000);
    assertEquals([seen.source, ...seen.params], ["tom!tom@chat", "#general", "release week"]);
    irc.send("TOPIC #general");
    assertEquals((await irc.expectCommand("332")).params[2], "release week");
    assertEquals((await irc.expectCommand("333")).params[2], "tom");
  },
});

Deno.test({
  name:
    "cluster: NOTICE, PART and QUIT reasons, client-only tags and TAGMSG from IRC on one node reach IRC users on another",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, nodes: 2, config: { ircPort: 0 } });
    const [n0, n1] = c.nodes;
    for (const name of ["kai", "lea", "max"]) {
      await (await WireClient.login(n0.port, c.certPem, name, { register: true }))[
        Symbol.asyncDispose
      ]();
    }
    const caps = { caps: ["message-tags"] };
    await using kai = await IrcClient.sasl(n0.server.addrs[1].port, c.certPem, "kai", caps);
    await using lea = await IrcClient.sasl(n1.server.addrs[1].port, c.certPem, "lea", caps);
    const max = await IrcClient.sasl(n1.server.addrs[1].port, c.certPem, "max");
    for (const cl of [kai, lea]) {
      cl.send("JOIN #ops");
      await cl.expectCommand("366");
    }
    await kai.expect((m) => m.command === "JOIN" && m.source === "lea!lea@chat", 10_000);
    kai.send("@+draft/reply=1 NOTICE #ops :heads up");
    const notice = await lea.expect((m) => m.params[1] === "heads up", 10_000);
    assertEquals([notice.command, notice.tags?.["+draft/reply"]], ["NOTICE", "1"]);
    kai.send("@+typing=active TAGMSG #ops");
    const typing = await lea.expectCommand("TAGMSG", 10_000);
    assertEquals([typing.source, typing.params, typing.tags?.["+typing"]], [
      "kai!kai@chat",
      ["#ops"],
      "active",
    ]);
    kai.send("@+typing=paused TAGMSG lea");
    assertEquals((await lea.expectCommand("TAGMSG", 10_000)).params, ["lea"]);
    lea.send("PART #ops :see you");
    const part = await kai.expect((m) => m.command === "PART", 10_000);
    assertEquals([part.source, ...part.params], ["lea!lea@chat", "#ops", "see you"]);
    max.send("QUIT :done for today");
    await max.expectClosed();
    await max[Symbol.asyncDispose]();
    const quit = await kai.expect(
      (m) => m.command === "QUIT" && m.source === "max!max@chat",
      10_000,
    );
    assertEquals(quit.params, ["Quit: done for today"]);
  },
});

Deno.test({
  name: "cluster: IRC users see JOIN, PART and QUIT of users on other nodes, and NAMES counts them",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, nodes: 2, config: { ircPort: 0 } });
    const [n0, n1] = c.nodes;
    for (const name of ["ivy", "rex", "sol"]) {
      await (await WireClient.login(n0.port, c.certPem, name, { register: true }))[
        Symbol.asyncDispose
      ]();
    }
    await using ivy = await IrcClient.sasl(n0.server.addrs[1].port, c.certPem, "ivy");
    ivy.send("JOIN #ops");
    await ivy.expectCommand("366");
    const joinOf = (nick: string) => (m: { command: string; source?: string; params: string[] }) =>
      m.command === "JOIN" && m.source === `${nick}!${nick}@chat` && m.params[0] === "#ops";
    // A chat/1 user on the other node: the JOIN of a room (RFC 2812 §3.2.1: sent to every member),
    // its PART, then, online in #general only, going offline: QUIT.
    const rex = await WireClient.login(n1.port, c.certPem, "rex");
    rex.send({ type: "join", room: "ops" });
    await rex.expect((f) => f.type === "ok" && f.op === "join");
    await ivy.expect(joinOf("rex"), 10_000);
    await ivy.barrier(); // drops the NAMES reply of ivy's own JOIN
    ivy.send("NAMES #ops");
    const names = await ivy.expectCommand("353");
    assertEquals(names.params[3].split(" ").sort(), ["ivy", "rex"]);
    rex.send({ type: "part", room: "ops" });
    await rex.expect((f) => f.type === "ok" && f.op === "part");
    const part = await ivy.expect((m) => m.command === "PART" && m.source === "rex!rex@chat");
    assertEquals(part.params[0], "#ops");
    await rex[Symbol.asyncDispose]();
    const quit = await ivy.expect((m) => m.command === "QUIT" && m.source === "rex!rex@chat");
    assertEquals(quit.params.length, 1);
    // An IRC user on the other node: JOIN and PART the same way.
    await using sol = await IrcClient.sasl(n1.server.addrs[1].port, c.certPem, "sol");
    sol.send("JOIN #ops");
    await sol.expectCommand("366");
    await ivy.expect(joinOf("sol"), 10_000);
    sol.send("PART #ops");
    await sol.expectCommand("PART");
    await ivy.expect((m) => m.command === "PART" && m.source === "sol!sol@chat", 10_000);
    // Each change once: nothing else about rex or sol arrived meanwhile.
    const rest = await ivy.barrier();
    assertEquals(
      rest.filter((m) => ["JOIN", "PART", "QUIT"].includes(m.command) && m.params[0] === "#ops"),
      [],
    );
  },
});

Deno.test({
  name:
    "cluster: a join or part by another connection of the same account on another node shows on IRC as JOIN with NAMES, then PART",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({ nats, nodes: 2, config: { ircPort: 0 } });
    const [n0, n1] = c.nodes;
    await using web = await WireClient.login(n1.port, c.certPem, "abe", { register: true });
    await using irc = await IrcClient.sasl(n0.server.addrs[1].port, c.certPem, "abe");
    await using other = await WireClient.login(n1.port, c.certPem, "bea", { register: true });
    other.send({ type: "join", room: "deploys" });
    await other.expect((f) => f.type === "ok" && f.op === "join");
    // abe joins on n1 (chat/1): his IRC connection on n0 is in the room as if it had joined.
    web.send({ type: "join", room: "deploys" });
    await web.expect((f) => f.type === "ok" && f.op === "join");
    const join = await irc.expect(
      (m) => m.command === "JOIN" && m.params[0] === "#deploys",
      10_000,
    );
    assertEquals(join.source, "abe!abe@chat");
    const names = await irc.expect((m) => m.command === "353" && m.params[2] === "#deploys");
    assertEquals(names.params[3].split(" ").sort(), ["abe", "bea"]);
    await irc.expect((m) => m.command === "366" && m.params[1] === "#deploys");
    // …and gets the room's messages live.
    other.send({ type: "send", room: "deploys", body: "rolling out", cid: "r1" });
    await other.expect((f) => f.type === "ack");
    const msg = await irc.expect((m) => m.command === "PRIVMSG", 10_000);
    assertEquals([msg.source, ...msg.params], ["bea!bea@chat", "#deploys", "rolling out"]);
    // abe parts on n1: PART on n0, and the room's messages stop.
    web.send({ type: "part", room: "deploys" });
    await web.expect((f) => f.type === "ok" && f.op === "part");
    const part = await irc.expect((m) => m.command === "PART", 10_000);
    assertEquals([part.source, ...part.params], ["abe!abe@chat", "#deploys"]);
    other.send({ type: "send", room: "deploys", body: "done", cid: "r2" });
    await other.expect((f) => f.type === "ack");
    irc.send("NAMES #deploys");
    await irc.expect((m) => m.command === "366" && m.params[1] === "#deploys");
    const rest = await irc.barrier();
    assertEquals(
      rest.filter((m) => ["PRIVMSG", "JOIN"].includes(m.command) && m.params[0] === "#deploys"),
      [],
    );
  },
});
