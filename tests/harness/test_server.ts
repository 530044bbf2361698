// Owns starting throwaway servers for tests: temp data dir, real TLS on loopback port 0, cleanup.
import { resolveConfig, type ServerConfig, type ServerLimits } from "../../src/config/config.ts";
import { startServer } from "../../src/server/mod.ts";
import type { ChatServer } from "../../src/server/server.ts";
import type { FallbackProtocol } from "../../src/server/server.ts";
import { seedProtocol } from "../../src/server/seed_protocol.ts";
import type { Clock } from "../../src/server/token_bucket.ts";
import type { FakeClock } from "./fake_clock.ts";
import { tempDir } from "./temp_dir.ts";
import type { Store } from "../../src/store/store.ts";

/** A running test server; `await using` closes it and removes the data dir it made. */
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
  roomCreateBurst: 1000,
  roomCreateRefillMs: 1,
};

/**
 * Starts a server on 127.0.0.1:0 with a fresh data dir, or `dataDir` (which stays the caller's:
 * it is never removed here). `keepData` keeps the fresh one too.
 *
 * `clock`: the server's clock (rate limiters and throttles, deadlines and keepalive, timestamps)
 * is this fake one, so a test advances it instead of sleeping for a refill. The keepalive
 * sweeper still ticks on a real timer and reads this clock: advancing it past `pingIntervalMs`
 * or `idleTimeoutMs` pings or closes silent clients. Send queues and the admission gate keep
 * real timers (their pacing must not wait for a test to advance).
 */
export async function startTestServer(
  opts: {
    dataDir?: string;
    limits?: Partial<ServerLimits>;
    config?: Partial<Omit<ServerConfig, "limits">>;
    fallback?: FallbackProtocol;
    keepData?: boolean;
    /** The server's clock (rate limits, timeouts, timestamps); default `Date.now`. */
    clock?: FakeClock | Clock;
    /** Wraps the server's store, e.g. `(s) => new SlowStore(s)` (tests/store/slow_store.ts). */
    wrapStore?: (s: Store) => Store;
  } = {},
): Promise<TestServer> {
  const fresh = opts.dataDir === undefined ? await tempDir("chat-test-") : undefined;
  const dataDir = opts.dataDir ?? fresh!.path;
  const config = resolveConfig({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    logLevel: "error",
    ...opts.config,
    limits: { ...TEST_LIMITS, ...opts.limits },
  });
  let server: ChatServer;
  try {
    server = await startServer(config, {
      fallback: opts.fallback ?? seedProtocol,
      clock: typeof opts.clock === "function" ? opts.clock : opts.clock?.now,
      // A session waiting for a message token sleeps on the same fake time its bucket reads.
      clockTimers: typeof opts.clock === "function" ? undefined : opts.clock,
      wrapStore: opts.wrapStore,
    });
  } catch (err) {
    await fresh?.[Symbol.asyncDispose]();
    throw err;
  }
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
      if (fresh && !opts.keepData) await fresh[Symbol.asyncDispose]();
    },
  };
}
