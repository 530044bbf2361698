// The NATS fan-out between nodes (src/server/nats_fanout.ts) on a real nats-server: local
// delivery first, no echo, loss noticed by sequence, heartbeats and goodbyes, outages buffered.
import { assert, assertEquals } from "../harness/assert.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import type { FanoutEvent } from "../../src/server/fanout.ts";
import { NatsFanout, type NatsFanoutOptions } from "../../src/server/nats_fanout.ts";
import { connect } from "@nats-io/transport-node";
import { TcpProxy } from "../harness/tcp_proxy.ts";
import { waitUntil as waitFor } from "../harness/cluster.ts";

const ignore = !NATS_AVAILABLE;

/** A fan-out with a recording receiver; `close` on dispose. */
function node(nats: NatsServer, name: string, opts: Partial<NatsFanoutOptions> = {}) {
  const got: FanoutEvent[] = [];
  const fanout = new NatsFanout({ servers: [`127.0.0.1:${nats.port}`], node: name, ...opts });
  let waiters: (() => void)[] = [];
  fanout.subscribe(
    (ev) => {
      got.push(ev);
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    },
    () => [{ roomId: 1, room: "general", users: [{ userId: 7, user: `${name}-user` }] }],
  );
  /** Resolves when an event matching `pred` was received (within `ms`, else throws). */
  const expect = async (pred: (ev: FanoutEvent) => boolean, what: string, ms = 10_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = got.find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${name}: timed out waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  };
  return {
    fanout,
    got,
    expect,
    async [Symbol.asyncDispose]() {
      await fanout.close();
    },
  };
}

const msgEv = (id: number, prev: number, node: string): FanoutEvent => ({
  kind: "msg",
  msg: { id, ts: id, room: "general", from: "a", body: `m${id}` },
  roomId: 1,
  links: [{ stream: "r:1", prev }],
  origin: { node, conn: 1 },
});

Deno.test({
  name:
    "nats fanout: an event reaches its own node at once and every other node once, never echoed",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using a = node(nats, "a");
    await using b = node(nats, "b");
    await using c = node(nats, "c");
    await Promise.all([a.fanout.connected(), b.fanout.connected(), c.fanout.connected()]);
    const before = a.got.length;
    a.fanout.publish(msgEv(5, 4, "a"));
    // Synchronous local delivery: the node's own users never wait for the bus.
    assertEquals(a.got.length, before + 1);
    for (const n of [b, c]) await n.expect((e) => e.kind === "msg" && e.msg.id === 5, "msg 5");
    a.fanout.publish({ kind: "kick", userId: 3, code: "kicked", message: "bye" });
    await b.expect((e) => e.kind === "kick", "the kick");
    await c.expect((e) => e.kind === "kick", "the kick");
    // Nothing of a's came back to a from the bus: its one msg 5 is the local delivery.
    assertEquals(a.got.filter((e) => e.kind === "msg").length, 1);
    assertEquals(b.got.filter((e) => e.kind === "msg").length, 1);
  },
});

Deno.test({
  name:
    "nats fanout: nodes exchange presence snapshots on joining the bus, and a goodbye is node_down",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using a = node(nats, "a");
    await a.fanout.connected();
    {
      await using b = node(nats, "b");
      await b.fanout.connected();
      const snap = await a.expect(
        (e) => e.kind === "presence_sync" && e.node === "b",
        "b's snapshot",
      );
      assert(snap.kind === "presence_sync");
      assertEquals(snap.rooms, [{
        roomId: 1,
        room: "general",
        users: [{ userId: 7, user: "b-user" }],
      }]);
      await b.expect((e) => e.kind === "presence_sync" && e.node === "a", "a's snapshot");
      assertEquals(a.fanout.peers, ["b"]);
    }
    await a.expect((e) => e.kind === "node_down" && e.node === "b", "b's goodbye");
    assertEquals(a.fanout.peers, []);
  },
});

Deno.test({
  name:
    "nats fanout: a node whose own event loop was blocked for many heartbeat periods does not declare a beating peer down",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using a = node(nats, "a", { heartbeatMs: 100 });
    await using b = node(nats, "b", { heartbeatMs: 100 });
    await Promise.all([a.fanout.connected(), b.fanout.connected()]);
    await a.expect((e) => e.kind === "presence_sync" && e.node === "b", "b's snapshot");
    // The process is blocked for 10 periods (a long GC, a slow fsync): a's clock says b was
    // silent that long, but a heard nothing from anyone because it could not read.
    const until = Date.now() + 1_000;
    while (Date.now() < until) { /* blocked */ }
    // b's heartbeats come again; by the fifth, a has ticked past the block several times.
    const heard = a.fanout.stats.received;
    await waitFor(() => a.fanout.stats.received >= heard + 5, "five more envelopes from b");
    assertEquals(a.got.filter((e) => e.kind === "node_down").length, 0, "b is not down");
    assertEquals(a.fanout.peers, ["b"]);
  },
});

Deno.test({
  name:
    "nats fanout: a node silent for 3 heartbeat periods is node_down, and back when heard again",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using a = node(nats, "a", { heartbeatMs: 100 });
    // b beats far too slowly: to a it falls silent after its first words, as under kill -9.
    await using b = node(nats, "b", { heartbeatMs: 60_000 });
    await Promise.all([a.fanout.connected(), b.fanout.connected()]);
    await a.expect((e) => e.kind === "presence_sync" && e.node === "b", "b's snapshot");
    const heard = performance.now();
    await a.expect((e) => e.kind === "node_down" && e.node === "b", "b down");
    const took = performance.now() - heard;
    assert(took >= 200 && took < 2000, `node_down after ${Math.round(took)} ms`);
    // b speaks again: a asks for its presence and has it back.
    a.got.length = 0;
    b.fanout.publish({ kind: "user_changed", userId: 1 });
    await a.expect((e) => e.kind === "presence_sync" && e.node === "b", "b's snapshot again");
  },
});

Deno.test({
  name:
    "nats fanout: a node cut off the bus buffers its events, is node_down meanwhile, and is back whole",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using proxy = new TcpProxy(nats.port);
    const viaProxy = { servers: [`127.0.0.1:${proxy.port}`], heartbeatMs: 100 };
    await using a = node(nats, "a", viaProxy);
    await using b = node(nats, "b", { heartbeatMs: 100 });
    await Promise.all([a.fanout.connected(), b.fanout.connected()]);
    await b.expect((e) => e.kind === "presence_sync" && e.node === "a", "a's snapshot");
    await proxy.cut(); // only a loses the bus
    await waitFor(() => !a.fanout.isConnected, "a notices");
    a.fanout.publish(msgEv(9, 8, "a"));
    await b.expect((e) => e.kind === "node_down" && e.node === "a", "a down for b");
    a.got.length = 0;
    b.got.length = 0;
    proxy.restore();
    await b.expect((e) => e.kind === "msg" && e.msg.id === 9, "msg 9, buffered by a");
    await b.expect((e) => e.kind === "presence_sync" && e.node === "a", "a's presence back");
    await a.expect((e) => e.kind === "resync", "a reads what it missed");
    assertEquals(b.got.filter((e) => e.kind === "resync").length, 0, "b missed nothing");
  },
});

Deno.test({
  name: "nats fanout: NATS down and back: every node reconnects and resyncs",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using a = node(nats, "a");
    await using b = node(nats, "b");
    await Promise.all([a.fanout.connected(), b.fanout.connected()]);
    await nats.stop();
    await waitFor(() => !a.fanout.isConnected && !b.fanout.isConnected, "both notice");
    a.got.length = 0;
    b.got.length = 0;
    await nats.restart();
    await a.expect((e) => e.kind === "resync", "a's resync");
    await b.expect((e) => e.kind === "resync", "b's resync");
    await b.expect((e) => e.kind === "presence_sync" && e.node === "a", "a's snapshot");
    assertEquals([a.fanout.stats.reconnects, b.fanout.stats.reconnects], [1, 1]);
  },
});

Deno.test({
  name: "nats fanout: a gap in a node's sequence makes the receiver resync and ask for presence",
  ignore,
  async fn() {
    await using nats = await NatsServer.start();
    await using b = node(nats, "b");
    await b.fanout.connected();
    // Another node "x", speaking the envelope format directly: its envelope 2 never arrives.
    const x = await connect({ servers: [`127.0.0.1:${nats.port}`] });
    let wants = 0;
    let wanted: () => void = () => {};
    x.subscribe("chat.chat.ctl", {
      callback: (_err, m) => {
        const env = m.json<{ c?: string; to?: string }>();
        if (env.c === "want" && env.to === "x") {
          wants++;
          wanted();
        }
      },
    });
    const nextWant = (n: number) =>
      new Promise<void>((r) => {
        wanted = () => wants >= n && r();
        wanted();
      });
    try {
      await x.flush();
      const say = (s: number, body: object) =>
        x.publish("chat.chat.ctl", JSON.stringify({ n: "x", i: "inc1", s, ...body }));
      say(1, { c: "hb" });
      await nextWant(1); // b heard of x and asks for its presence
      b.got.length = 0;
      say(3, { e: { kind: "user_changed", userId: 2 } });
      await b.expect((e) => e.kind === "resync", "b's resync");
      await b.expect((e) => e.kind === "user_changed", "the event after the gap");
      await nextWant(2); // and asks for x's presence again
    } finally {
      await x.close();
    }
  },
});
