// Owns starting throwaway servers for tests: temp data dir, real TLS on loopback port 0, cleanup.
import { resolveConfig, type ServerConfig, type ServerLimits } from "../../src/config/config.ts";
import { startServer } from "../../src/server/mod.ts";
import type { ChatServer } from "../../src/server/server.ts";
import type { FallbackProtocol } from "../../src/server/server.ts";
import { seedProtocol } from "../../src/server/seed_protocol.ts";
import type { Clock } from "../../src/server/token_bucket.ts";

/** A running test server; `await using` closes it and removes its data dir. */
export interface TestServer extends AsyncDisposable {
  server: ChatServer;
  port: number;
  dataDir: string;
  certPem: string;
  config: ServerConfig;
  /** Stops the server but keeps the data dir (for restart tests). */
  stop(): Promise<void>;
}

/** Limits relaxed for tests that are not about limits. */
export const TEST_LIMITS: Partial<ServerLimits> = {
  messagesPerSecond: 1000,
  messageBurst: 1000,
  registrationsPerAddress: 1000,
  registrationRefillMs: 1,
  loginFailuresPerAddress: 1000,
  loginFailureRefillMsPerAddress: 1,
  shutdownGraceMs: 500,
};

/** Starts a server on 127.0.0.1:0 with a fresh (or given) data dir. */
export async function startTestServer(
  opts: {
    dataDir?: string;
    limits?: Partial<ServerLimits>;
    config?: Partial<Omit<ServerConfig, "limits">>;
    fallback?: FallbackProtocol;
    keepData?: boolean;
    /** The server's clock (rate limits, timeouts, timestamps); default `Date.now`. */
    clock?: Clock;
  } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "chat-test-" });
  const config = resolveConfig({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    logLevel: "error",
    ...opts.config,
    limits: { ...TEST_LIMITS, ...opts.limits },
  });
  const server = await startServer(config, {
    fallback: opts.fallback ?? seedProtocol,
    clock: opts.clock,
  });
  const certPem = await Deno.readTextFile(config.certFile ?? `${dataDir}/cert.pem`);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.close();
  };
  return {
    server,
    port: server.addr.port,
    dataDir,
    certPem,
    config,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      if (!opts.keepData) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}
