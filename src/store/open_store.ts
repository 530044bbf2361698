// Owns choosing and constructing the storage engine: the one place a Store is built from settings.
import { join } from "node:path";
import type { ServerConfig } from "../config/config.ts";
import { PostgresStore, redactUrl } from "./postgres_store.ts";
import { SqliteStore } from "./sqlite_store.ts";
import type { Store } from "./store.ts";

/** File name of the SQLite database inside the data dir. */
export const DB_FILE = "chat.db";

/**
 * Which engine to open, and its settings. One variant per engine, each with a branch in
 * `openStore` and a line in `describeStore` (which leaves credentials out).
 */
export type StoreSpec = SqliteSpec | PostgresSpec;

/** The embedded single-node engine: a file in the data dir. */
export type SqliteSpec = {
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

/** PostgreSQL, shared by every node of a cluster. */
export type PostgresSpec = {
  engine: "postgres";
  /** `postgres://user:password@host:port/db?sslmode=…` (secret: never logged). */
  url: string;
  /** Connections in the pool. */
  poolSize: number;
  /** How long connecting may take. */
  connectTimeoutMs: number;
};

/** True when a `store` setting names PostgreSQL rather than the data dir's SQLite file. */
export function isPostgresUrl(store: string): boolean {
  return /^postgres(ql)?:\/\//i.test(store);
}

/**
 * The engine and settings a configuration names: PostgreSQL when `store` is a `postgres://` URL,
 * else SQLite at `<dataDir>/chat.db`. `overrides` lets a second process on the same data (admin
 * CLI, bench) adjust SQLite's settings.
 */
export function storeSpec(
  config:
    & Pick<ServerConfig, "dataDir">
    & Partial<
      Pick<ServerConfig, "dbSynchronous" | "store" | "storePoolSize" | "storeConnectTimeoutMs">
    >,
  overrides: Partial<Omit<SqliteSpec, "engine">> = {},
): StoreSpec {
  if (config.store && isPostgresUrl(config.store)) {
    return {
      engine: "postgres",
      url: config.store,
      poolSize: config.storePoolSize ?? 10,
      connectTimeoutMs: config.storeConnectTimeoutMs ?? 5000,
    };
  }
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
    case "postgres":
      return `postgres ${redactUrl(spec.url)}`;
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
    case "postgres":
      return PostgresStore.open({
        url: spec.url,
        poolSize: spec.poolSize,
        connectTimeoutMs: spec.connectTimeoutMs,
      });
  }
}
