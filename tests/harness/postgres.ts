// Owns the tests' throwaway PostgreSQL servers (started by src/bench/local_engines.ts), their
// skip-or-fail policy when PostgreSQL is missing, the stop at process exit, and the shared one.
import {
  findPgBin,
  type LocalPostgres,
  PG_ROOT,
  startLocalPostgres,
} from "../../src/bench/local_engines.ts";

/** The password of the `postgres` role in every test server (loopback only, thrown away after). */
const PASSWORD = "chat-test-pw";

/** A running test PostgreSQL. `await using pg = await startPostgres()` stops it at scope end. */
export type TestPostgres = LocalPostgres;

export { findPgBin };

let warned = false;

/**
 * True when PostgreSQL binaries are installed. Otherwise a test file skips its PostgreSQL tests
 * (`ignore: !pgAvailable()`) after one loud line; but with `CI=true` in the environment a missing
 * PostgreSQL is an error, so CI can never pass by skipping them.
 */
export function pgAvailable(): boolean {
  if (findPgBin() !== null) return true;
  if (Deno.env.get("CI") === "true") {
    throw new Error(
      `PostgreSQL is not installed (no ${PG_ROOT}/*/bin/initdb, PG_BIN unset) and CI=true: ` +
        "the PostgreSQL tests must run in CI (.ci/run installs postgresql)",
    );
  }
  if (!warned) {
    warned = true;
    console.warn(
      `SKIPPED: PostgreSQL not installed (no ${PG_ROOT}/*/bin/initdb): the PostgreSQL tests ` +
        "did not run; install postgresql to run them",
    );
  }
  return false;
}

/** Servers of this process still running: stopped synchronously when the process exits. */
const running = new Set<LocalPostgres>();
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const pg of running) {
      try {
        pg.stopSync();
      } catch { /* best effort at exit */ }
    }
    running.clear();
  });
}

/**
 * Starts a fresh PostgreSQL (src/bench/local_engines.ts: initdb into a temp dir, 127.0.0.1 on a
 * free port, password auth over TCP), with fsync off (a test cluster is thrown away; durability is
 * PostgreSQL's own business) and 100 connections. `stop()` (or disposal) stops it and removes the
 * dir; a server still running when the process exits is stopped then.
 */
export async function startPostgres(
  opts: { settings?: Record<string, string> } = {},
): Promise<TestPostgres> {
  const pg = await startLocalPostgres({
    durable: false,
    password: PASSWORD,
    settings: { max_connections: "100", ...opts.settings },
  });
  hookUnload();
  running.add(pg);
  const stop = async () => {
    running.delete(pg);
    await pg.stop();
  };
  return { ...pg, stop, [Symbol.asyncDispose]: stop };
}

let shared: Promise<TestPostgres> | null = null;

/**
 * One PostgreSQL for the whole test file (process), started on first use and stopped when the
 * process exits. Tests take a fresh database each (`createDatabase`) so they never share rows.
 * Tests that stop and start the server MUST use their own `startPostgres()` instead.
 */
export function sharedPostgres(): Promise<TestPostgres> {
  return shared ??= startPostgres();
}
