// Owns the server side of administration: the admin socket and the retention schedule.
import { getLogger } from "@logtape/logtape";
import type { ServerConfig } from "../config/config.ts";
import type { ChatServer } from "../server/server.ts";
import type { Store } from "../store/store.ts";
import { type CertInfo, loadOrCreateServerCert } from "../tls/certificate.ts";
import { runAdminOp } from "./admin_ops.ts";
import { AdminService, type LiveHooks } from "./admin_service.ts";
import { AdminSocketServer } from "./admin_socket.ts";
import { RetentionJob } from "./retention.ts";

export { claimAdminSocket } from "./admin_socket.ts";

const log = getLogger(["chat", "admin"]);

/** What a running server gives administration. */
export interface AdministrationOptions {
  server: ChatServer;
  /** The server's store. */
  store: Store;
  config: ServerConfig;
  /** The certificate the server started with. */
  certificate: CertInfo;
  clock?: () => number;
}

/**
 * Starts the admin socket in the data dir and, with `retentionDays` > 0, the retention schedule;
 * both stop at the start of `server.close()`. Never throws: without a socket (for example a data
 * dir path too long for a Unix socket) the server runs on and `chat admin` works on the database
 * directly, which an error log line says.
 */
export async function startAdministration(opts: AdministrationOptions): Promise<void> {
  const { server, store, config } = opts;
  const clock = opts.clock ?? Date.now;
  const startedAt = clock();
  let certificate = {
    fingerprint: opts.certificate.fingerprintSha256,
    notAfter: opts.certificate.notAfter.getTime(),
  };
  const live: LiveHooks = {
    kickUser: (userId, message) => server.kickUser(userId, message),
    kickTokens: (userId, tokenIds, message) => server.kickTokens(userId, tokenIds, message),
    sessionsOf: (userId) => server.hub.sessionsOf(userId).size,
    forgetUser: (userId) => server.service.invalidateUser(userId),
    invalidateRoom: (name) => server.service.invalidateRoom(name),
    membershipChanged: (room, userId, change) =>
      server.service.membershipChanged(room, userId, change, "admin"),
    async reloadCertificate() {
      const cert = await loadOrCreateServerCert({
        dataDir: config.dataDir,
        certPath: config.certFile ?? undefined,
        keyPath: config.keyFile ?? undefined,
      });
      await server.reloadCertificate(cert.certPem, cert.keyPem);
      certificate = {
        fingerprint: cert.info.fingerprintSha256,
        notAfter: cert.info.notAfter.getTime(),
      };
      return { fingerprint: certificate.fingerprint, certPath: cert.certPath };
    },
    async stats() {
      const s = server.stats;
      return {
        uptimeMs: clock() - startedAt,
        connections: s.connections,
        sessions: s.sessions,
        messagesStored: s.messagesStored,
        deliveries: s.deliveries,
        queuedBytes: s.queuedBytes,
        maxQueuedBytes: s.maxQueuedBytes,
        hasher: { ...s.hasher },
        loop: { ...s.loop },
        certificate,
        retentionDays: config.retentionDays,
        storage: await store.storageStats(),
      };
    },
  };
  const service = new AdminService({ store, clock, live });

  let socket: AdminSocketServer | null = null;
  try {
    socket = await AdminSocketServer.listen(
      config.dataDir,
      (op, actor, args) => runAdminOp(service, op, actor, args),
    );
  } catch (err) {
    log.error(
      "No admin socket in {dataDir} ({error}); chat admin will change the database directly " +
        "and cannot reach this server's live state",
      { dataDir: config.dataDir, error: String(err) },
    );
  }

  let retention: RetentionJob | null = null;
  if (config.retentionDays > 0) {
    retention = new RetentionJob({ store, days: config.retentionDays, clock });
    retention.start();
  }

  server.onClose(async () => {
    await socket?.close();
    await retention?.close();
  });
}
