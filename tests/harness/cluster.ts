// Owns in-process clusters for tests: N ChatServers on loopback, one shared store, one NATS.
import { resolveConfig, type ServerConfig, type ServerLimits } from "../../src/config/config.ts";
import { ChatServer } from "../../src/server/server.ts";
import { NatsFanout } from "../../src/server/nats_fanout.ts";
import { generateSelfSigned } from "../../src/tls/certificate.ts";
import { openStore } from "../../src/store/open_store.ts";
import type { Store } from "../../src/store/store.ts";
import type { NatsServer } from "./nats.ts";
import { TEST_LIMITS } from "./test_server.ts";
import { tempDir } from "./temp_dir.ts";

/** One node of a test cluster. */
export interface ClusterNode {
  name: string;
  server: ChatServer;
  fanout: NatsFanout;
  port: number;
}

/** A running cluster; `await using` stops every node and removes the data. */
export interface TestCluster extends AsyncDisposable {
  nodes: ClusterNode[];
  /** The certificate every node serves (one name for all, as behind a balancer). */
  certPem: string;
  /** The store the nodes share (for reading back what was committed). */
  store: Store;
}

/** A store whose `close` leaves it open: the nodes share it, the cluster closes it last. */
function shared(store: Store): Store {
  return new Proxy(store, {
    get(target, key) {
      if (key === "close") return () => Promise.resolve();
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * Starts `nodes` servers in this process on 127.0.0.1:0, each with its own NatsFanout on `nats`
 * (node names n0, n1, …), all on one SQLite store in a temp dir, and waits until every node is on
 * the bus and has heard of every other one.
 */
export async function startCluster(
  opts: {
    nats: NatsServer;
    nodes?: number;
    limits?: Partial<ServerLimits>;
    heartbeatMs?: number;
    /** Settings for every node (e.g. `ircPort: 0`: each node's IRC listener is `addrs[1]`). */
    config?: Partial<Omit<ServerConfig, "limits">>;
  },
): Promise<TestCluster> {
  const tmp = await tempDir("chat-cluster-");
  const store = await openStore({
    engine: "sqlite",
    path: `${tmp.path}/chat.db`,
    synchronous: "NORMAL",
    checkpointOnClose: true,
  });
  const { certPem, keyPem } = await generateSelfSigned();
  const config = resolveConfig({
    host: "127.0.0.1",
    port: 0,
    dataDir: tmp.path,
    logLevel: "error",
    ...opts.config,
    limits: { ...TEST_LIMITS, ...opts.limits },
  });
  const nodes: ClusterNode[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.server.close()));
    await store.close();
    await tmp[Symbol.asyncDispose]();
  };
  try {
    for (let i = 0; i < (opts.nodes ?? 3); i++) {
      const fanout = new NatsFanout({
        servers: [`127.0.0.1:${opts.nats.port}`],
        node: `n${i}`,
        heartbeatMs: opts.heartbeatMs,
      });
      const server = await ChatServer.start({
        config,
        store: shared(store),
        certPem,
        keyPem,
        fanout,
      });
      nodes.push({ name: `n${i}`, server, fanout, port: server.addr.port });
    }
    await Promise.all(nodes.map((n) => n.fanout.connected()));
    await waitUntil(
      () => nodes.every((n) => n.fanout.peers.length === nodes.length - 1),
      "every node hears every other",
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, certPem, store, [Symbol.asyncDispose]: stop };
}

/**
 * Polls `cond` until true (things that happen on other nodes, across the bus); throws naming
 * `what` after `timeoutMs`.
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
