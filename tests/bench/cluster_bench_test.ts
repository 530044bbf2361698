// `chat bench` against a cluster: clients spread over the nodes round-robin, every delivery
// across the bus accounted for; and `--spawn-nodes` starting PostgreSQL, NATS and the nodes.
import { assert, assertEquals } from "../harness/assert.ts";
import { startCluster } from "../harness/cluster.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import { pgAvailable } from "../harness/postgres.ts";
import { runBench } from "../../src/bench/runner.ts";
import { NATIVE_ADAPTER } from "../../src/bench/native_adapter.ts";
import { REPO_ROOT } from "../client/helpers.ts";

Deno.test({
  name:
    "runBench on two nodes: client i on node i mod 2, every message reaches the other node's clients once, in order",
  ignore: !NATS_AVAILABLE,
  async fn() {
    await using nats = await NatsServer.start();
    await using c = await startCluster({
      nats,
      nodes: 2,
      limits: { messagesPerSecond: 100_000, messageBurst: 100_000, registrationsPerAddress: 100 },
    });
    const result = await runBench({
      adapter: NATIVE_ADAPTER,
      endpoint: { host: "127.0.0.1", port: c.nodes[0].port, caCerts: [c.certPem] },
      endpoints: c.nodes.map((n) => ({ host: "127.0.0.1", port: n.port, caCerts: [c.certPem] })),
      workload: { clients: 6, rooms: 1, senders: 3, messages: 20, rate: 0, payload: 48 },
      userPrefix: "cb",
      password: "bench-password",
      auth: "auto",
      loginConcurrency: 3,
      loginTimeoutMs: 30_000,
      drainTimeoutMs: 5_000,
      maxSeconds: 20,
      settleMs: 20,
      probeMs: 0,
      // Read while the clients are still logged in: three on each node.
      serverStats: () => Promise.resolve(c.nodes.map((n) => n.server.stats.sessions)),
    });
    assertEquals(result.serverStats, [3, 3]);
    assertEquals(result.target, c.nodes.map((n) => `127.0.0.1:${n.port}`).join(","));
    assertEquals(result.integrity.expected, 3 * 20 * 5);
    assert(result.ok, JSON.stringify(result.integrity));
  },
});

Deno.test({
  name:
    "chat bench --spawn-nodes 2 starts PostgreSQL, nats-server and two nodes, reports CPU per part, and stops them all",
  ignore: !NATS_AVAILABLE || !pgAvailable(),
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "bench", "--spawn-nodes", "2", "-n", "10", "-s", "2"]
        .concat(["-m", "10", "--probe-ms", "0", "--max-seconds", "30", "--json"]),
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(r.target.split(",").length, 2);
    assertEquals(r.integrity.lost + r.integrity.duplicated + r.integrity.reordered, 0);
    assertEquals(r.send.deliveries, 2 * 10 * 9);
    assertEquals(Object.keys(r.server.cpuParts).sort(), [
      "nats-server",
      "node0",
      "node1",
      "postgres",
    ]);
  },
});
