// Owns choosing and constructing the storage engine: the one place a Store is built from settings.
import { join } from "node:path";
import type { ServerConfig } from "../config/config.ts";
import { SqliteStore } from "./sqlite_store.ts";
import type { Store } from "./store.ts";

/** File name of the SQLite database inside the data dir. */
export const DB_FILE = "chat.db";

/**
 * Which engine to open, and its settings. One variant per engine: a PostgreSQL engine would add
 * `{ engine: "postgres"; url: string; … }` here, a branch in `openStore`, and a line in
 * `describeStore` that leaves the password out.
 */
export type StoreSpec = {
  engine: "sqlite";
  /** Path of the database file. */
  path: string;
  /** `FULL` survives power loss; `NORMAL` survives process crashes only. */
  synchronous: "FULL" | "NORMAL";
  /**
   * Truncate the write-ahead log on close. A second process on a live database (the admin CLI)
   * says false, so that it does not hold up the server's writers.
   */
  checkpointOnClose: boolean;
};

/**
 * The engine and settings a configuration names: today always SQLite at `<dataDir>/chat.db`.
 * `overrides` lets a second process on the same data (admin CLI, bench) adjust engine settings.
 */
export function storeSpec(
  config: Pick<ServerConfig, "dataDir"> & Partial<Pick<ServerConfig, "dbSynchronous">>,
  overrides: Partial<Omit<StoreSpec, "engine">> = {},
): StoreSpec {
  return {
    engine: "sqlite",
    path: join(config.dataDir, DB_FILE),
    synchronous: config.dbSynchronous ?? "FULL",
    checkpointOnClose: true,
    ...overrides,
  };
}

/** The store for logs and errors: engine and location, never a credential. */
export function describeStore(spec: StoreSpec): string {
  switch (spec.engine) {
    case "sqlite":
      return `sqlite ${spec.path}`;
  }
}

/**
 * Opens (creating and migrating when needed) the store `spec` names. The only place in `src/` that
 * constructs a storage engine. Fails with a ChatError (`db_*` codes) the caller can report as is.
 */
export function openStore(spec: StoreSpec): Promise<Store> {
  switch (spec.engine) {
    case "sqlite":
      try {
        return Promise.resolve(SqliteStore.open({
          path: spec.path,
          synchronous: spec.synchronous,
          checkpointOnClose: spec.checkpointOnClose,
        }));
      } catch (err) {
        return Promise.reject(err);
      }
  }
}
