// Owns `chat admin migrate`: moving a single-node data dir into PostgreSQL and back, verified.
import { join } from "node:path";
import { ChatError } from "../../errors.ts";
import { prepareDataDir } from "../../server/data_dir.ts";
import {
  copyPostgresToSqlite,
  copySqliteToPostgres,
  type TableCheck,
} from "../../store/copy_store.ts";
import { DB_FILE, isPostgresUrl } from "../../store/open_store.ts";
import { redactUrl } from "../../store/postgres_store.ts";
import { table } from "../format.ts";
import { AdminClient } from "../admin_client.ts";
import { type AdminEnv, emit } from "./context.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `--to URL`: copies `<data>/chat.db` into an empty PostgreSQL database. `--from URL`: copies a
 * PostgreSQL database into a new `<data>/chat.db`. Ids are kept; every table is verified (rows
 * and SHA-256 read back from both sides) and printed. Returns 1 when a table does not match.
 */
export async function migrate(
  env: AdminEnv,
  opts: { to?: string; from?: string },
): Promise<number> {
  const url = opts.to ?? opts.from;
  if ((opts.to === undefined) === (opts.from === undefined) || !url || !isPostgresUrl(url)) {
    throw new ChatError(
      "bad_request",
      "Cannot migrate: give exactly one of --to postgres://… or --from postgres://…",
    );
  }
  const path = join(env.dataDir, DB_FILE);
  let checks: TableCheck[];
  if (opts.to !== undefined) {
    if (!(await exists(path))) {
      throw new ChatError("no_database", `Cannot migrate: there is no database at ${path}`);
    }
    const live = await AdminClient.connect(env.dataDir);
    if (live) {
      live.close();
      throw new ChatError(
        "bad_request",
        `Cannot migrate: a server is running on ${env.dataDir}; stop it first`,
      );
    }
    checks = await copySqliteToPostgres(path, url);
  } else {
    if (await exists(path)) {
      throw new ChatError(
        "bad_request",
        `Cannot migrate: ${path} exists; --from copies into a new data dir only`,
      );
    }
    await prepareDataDir(env.dataDir);
    checks = await copyPostgresToSqlite(url, path);
  }
  const ok = checks.every((c) => c.ok);
  const [from, to] = opts.to !== undefined ? [path, redactUrl(url)] : [redactUrl(url), path];
  emit(env, { from, to, ok, tables: checks }, () =>
    `Copied ${from} to ${to}.\n` +
    table(
      ["TABLE", "ROWS", "SHA-256 (SOURCE)", "SHA-256 (COPY)", "CHECK"],
      checks.map((c) => [
        c.table,
        c.sourceRows === c.targetRows ? c.sourceRows : `${c.sourceRows} vs ${c.targetRows}`,
        c.sourceSha256.slice(0, 16),
        c.targetSha256.slice(0, 16),
        c.ok ? "ok" : "MISMATCH",
      ]),
    ) +
    (ok ? "Every table matches.\n" : "Some tables do not match: do not use the copy.\n"));
  return ok ? 0 : 1;
}
