// Owns the tests' throwaway nats-server (src/bench/local_engines.ts's LocalNats: a free loopback
// port, no auth, stop and restart on the same port) and the skip (or, in CI, the failure) when
// nats-server is missing.
import { findNatsServer, LocalNats } from "../../src/bench/local_engines.ts";

export { freePort } from "../../src/bench/local_engines.ts";

/**
 * True when tests that need nats-server can run. When it is missing they are skipped with one
 * loud line, except in CI (`CI=true`), where a missing nats-server fails the run.
 */
export const NATS_AVAILABLE: boolean = (() => {
  if (findNatsServer()) return true;
  if (Deno.env.get("CI") === "true") {
    throw new Error("nats-server is not installed, and CI must run the bus tests (.ci/run)");
  }
  console.warn("SKIPPED: nats-server not found (apt-get install nats-server): bus tests skipped");
  return false;
})();

/** A nats-server on 127.0.0.1; `await using` stops it; `stop()` is a SIGKILL (an outage). */
export const NatsServer = LocalNats;
export type NatsServer = LocalNats;
