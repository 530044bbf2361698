// Owns starting a complete server from a config: data dir, certificate, store, listener.
import { getLogger } from "@logtape/logtape";
import type { ServerConfig } from "../config/config.ts";
import { claimAdminSocket, startAdministration } from "../admin/mod.ts";
import { loadOrCreateServerCert } from "../tls/certificate.ts";
import { describeStore, openStore, storeSpec } from "../store/open_store.ts";
import type { Store } from "../store/store.ts";
import { ChatServer, type FallbackProtocol } from "./server.ts";
import { seedProtocol } from "./seed_protocol.ts";
import { prepareDataDir } from "./data_dir.ts";
import type { Clock } from "./token_bucket.ts";
import type { Timers } from "./clock.ts";
import { describeBus, openFanout } from "./bus.ts";
import type { Fanout } from "./fanout.ts";
import { NatsFanout } from "./nats_fanout.ts";

export { ChatServer } from "./server.ts";
export { DB_FILE } from "./data_dir.ts";

const log = getLogger(["chat", "server"]);

/**
 * Opens everything under `config.dataDir` and starts listening. Clients without ALPN `chat/1` get
 * `opts.fallback` (default: the seed text protocol). `opts.wrapStore` (tests) wraps the opened
 * store, e.g. in tests/store/slow_store.ts; closing the wrapper must close the store.
 */
export async function startServer(
  config: ServerConfig,
  opts: {
    clock?: Clock;
    fallback?: FallbackProtocol;
    timers?: Timers;
    /** Timers on `clock` (see StartOptions.clockTimers). */
    clockTimers?: Timers;
    wrapStore?: (s: Store) => Store;
    /** The fan-out to use instead of the one the config names (`bus`). */
    fanout?: Fanout;
  } = {},
): Promise<ChatServer> {
  // Owner-only whatever the umask: refuses a dir others can reach, creates chat.db 0600.
  await prepareDataDir(config.dataDir);
  // Refuses a data dir another server runs on; clears a socket left by a killed one.
  await claimAdminSocket(config.dataDir);
  const cert = await loadOrCreateServerCert({
    dataDir: config.dataDir,
    certPath: config.certFile ?? undefined,
    keyPath: config.keyFile ?? undefined,
  });
  if (cert.created) {
    log.info("Generated a self-signed certificate at {path}", { path: cert.certPath });
  }
  log.info("Certificate SHA-256 fingerprint {fingerprint}", {
    fingerprint: cert.info.fingerprintSha256,
  });
  const spec = storeSpec(config);
  const opened = await openStore(spec);
  log.info("Store {store}", { store: describeStore(spec) });
  const store = opts.wrapStore ? opts.wrapStore(opened) : opened;
  let fanout: Fanout | undefined;
  try {
    fanout = opts.fanout ?? openFanout(config);
    if (fanout instanceof NatsFanout) {
      log.info("Bus {bus} as node {node}", { bus: describeBus(config.bus!), node: fanout.node });
      // Start on the bus when it is there; without it the node serves its own users and
      // catches up from the store once connected (the database is the truth).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ok = await Promise.race([
        fanout.connected().then(() => true),
        new Promise<false>((r) => timer = setTimeout(() => r(false), BUS_WAIT_MS)),
      ]);
      clearTimeout(timer);
      if (!ok) log.warn("Not on the bus yet; serving this node's clients meanwhile");
    }
    const server = await ChatServer.start({
      config,
      store,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      clock: opts.clock,
      timers: opts.timers,
      clockTimers: opts.clockTimers,
      fallback: opts.fallback ?? seedProtocol,
      fanout,
      hsts: !cert.info.selfSigned,
    });
    const a = server.addr;
    log.info("Listening on {host} port {port} (TLS, ALPN chat/1)", {
      host: a.hostname,
      port: a.port,
    });
    await startAdministration({ server, store, config, certificate: cert.info, clock: opts.clock });
    return server;
  } catch (err) {
    await fanout?.close();
    await store.close();
    throw err;
  }
}

/** How long start-up waits for the bus before serving without it. */
const BUS_WAIT_MS = 5_000;
