// Owns starting a complete server from a config: data dir, certificate, store, listener.
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import type { ServerConfig } from "../config/config.ts";
import { claimAdminSocket, startAdministration } from "../admin/mod.ts";
import { loadOrCreateServerCert } from "../tls/certificate.ts";
import { SqliteStore } from "../store/sqlite_store.ts";
import { ChatServer, type FallbackProtocol } from "./server.ts";
import { seedProtocol } from "./seed_protocol.ts";
import { DB_FILE, prepareDataDir } from "./data_dir.ts";
import type { Clock } from "./token_bucket.ts";
import type { Timers } from "./clock.ts";

export { ChatServer } from "./server.ts";
export { DB_FILE } from "./data_dir.ts";

const log = getLogger(["chat", "server"]);

/**
 * Opens everything under `config.dataDir` and starts listening. Clients without ALPN `chat/1` get
 * `opts.fallback` (default: the seed text protocol).
 */
export async function startServer(
  config: ServerConfig,
  opts: { clock?: Clock; fallback?: FallbackProtocol; timers?: Timers } = {},
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
  const store = SqliteStore.open({
    path: join(config.dataDir, DB_FILE),
    synchronous: config.dbSynchronous,
  });
  try {
    const server = await ChatServer.start({
      config,
      store,
      certPem: cert.certPem,
      keyPem: cert.keyPem,
      clock: opts.clock,
      timers: opts.timers,
      fallback: opts.fallback ?? seedProtocol,
    });
    const a = server.addr;
    log.info("Listening on {host} port {port} (TLS, ALPN chat/1)", {
      host: a.hostname,
      port: a.port,
    });
    await startAdministration({ server, store, config, certificate: cert.info, clock: opts.clock });
    return server;
  } catch (err) {
    await store.close();
    throw err;
  }
}
