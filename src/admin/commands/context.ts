// Owns what every admin command shares: its settings, the way to the data (running server or
// database), confirmation of destructive steps, password input, and JSON-or-human output.
import { ChatError } from "../../errors.ts";
import { checkPassword } from "../../protocol/text_rules.ts";
import { prepareDataDir } from "../../server/data_dir.ts";
import { PasswordHasher } from "../../server/password_hasher.ts";
import { openStore, type StoreSpec, storeSpec } from "../../store/open_store.ts";
import type { Store } from "../../store/store.ts";
import { AdminClient } from "../admin_client.ts";
import { type OpArgs, type OpName, type OpResult, runAdminOp } from "../admin_ops.ts";
import { AdminService } from "../admin_service.ts";
import type { AdminIo } from "../terminal.ts";

/** Settings of one admin command run. */
export interface AdminEnv {
  dataDir: string;
  /** A `postgres://` URL (`--store`, `CHAT_STORE`): the cluster's database instead of the data dir's. */
  store?: string;
  /** Machine-readable output on stdout. */
  json: boolean;
  /** Destructive steps proceed without asking. */
  yes: boolean;
  /** Audit actor, `admin:<os user>`. */
  actor: string;
  io: AdminIo;
  clock: () => number;
}

/** `admin:<os user>` from the environment (or the uid), reduced to safe characters. */
export function osActor(): string {
  let user = "";
  try {
    user = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "";
  } catch { /* no env permission */ }
  if (!user) {
    try {
      user = `uid${Deno.uid() ?? "unknown"}`;
    } catch {
      user = "unknown";
    }
  }
  return `admin:${user.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64)}`;
}

/** Attempts for a write that found the database locked (each after SQLite's own busy wait). */
const BUSY_ATTEMPTS = 3;

function isBusy(err: unknown): boolean {
  if (!(err instanceof ChatError)) return false;
  if (err.code === "db_locked") return true;
  if (err.code !== "storage_failed") return false;
  return sqliteSaysLocked(err.cause instanceof Error ? err.cause.message : err.message);
}

/**
 * Whether SQLite's text says another connection holds the lock (SQLITE_BUSY / SQLITE_LOCKED).
 * Only text can tell: Deno's node:sqlite errors carry no result code (just
 * `code: "ERR_SQLITE_ERROR"` and "database is locked"), and a `storage_failed` from the store
 * has that text inside its message.
 */
function sqliteSaysLocked(text: string): boolean {
  return /locked|busy/i.test(text);
}

/**
 * The way to the data for one command.
 *
 * - When a server runs on the data dir, `call` goes through its admin socket, so live state
 *   follows (kicks, room cache, certificate); otherwise `call` runs the same operation on the
 *   database directly, retrying when SQLite reports it locked.
 * - `store()` opens the database for reads (lists, audit, export, search) in either case: WAL
 *   lets them run beside a server without blocking it.
 */
export class AdminConnection implements AsyncDisposable {
  readonly env: AdminEnv;
  #client: AdminClient | null;
  #store: Store | null = null;
  #service: AdminService | null = null;

  private constructor(env: AdminEnv, client: AdminClient | null) {
    this.env = env;
    this.#client = client;
  }

  static async open(env: AdminEnv): Promise<AdminConnection> {
    return new AdminConnection(env, await AdminClient.connect(env.dataDir));
  }

  /** True when a server runs on the data dir (operations reach it live). */
  get live(): boolean {
    return this.#client !== null;
  }

  /** The store this data dir names. Beside a live server, checkpoints are left to it. */
  get storeSpec(): StoreSpec {
    return storeSpec({ dataDir: this.env.dataDir, store: this.env.store }, {
      checkpointOnClose: !this.live,
    });
  }

  /**
   * The database. Without `create`, a missing database is an error (a mistyped --data should not
   * leave an empty database behind); with it the data dir and database are created.
   */
  async store(opts: { create?: boolean } = {}): Promise<Store> {
    if (this.#store) return this.#store;
    const spec = this.storeSpec;
    if (spec.engine === "postgres") {
      // The database is shared: nothing in the data dir to create or check.
    } else if (opts.create) {
      // As the server does: an owner-only dir and a chat.db created 0600 whatever the umask.
      await prepareDataDir(this.env.dataDir);
    } else if (spec.engine === "sqlite") {
      try {
        await Deno.stat(spec.path);
      } catch {
        throw new ChatError(
          "no_database",
          `Cannot open ${spec.path}: there is no database (check --data or CHAT_DATA)`,
        );
      }
    }
    for (let attempt = 1;; attempt++) {
      try {
        this.#store = await openStore(spec);
        return this.#store;
      } catch (err) {
        if (!isBusy(err) || attempt >= BUSY_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  /** Runs an operation: on the running server, or on the database when none runs. */
  async call<K extends OpName>(op: K, args: OpArgs<K>): Promise<OpResult<K>> {
    if (this.#client) return await this.#client.call(op, this.env.actor, args);
    this.#service ??= new AdminService({
      store: await this.store({ create: true }),
      clock: this.env.clock,
    });
    for (let attempt = 1;; attempt++) {
      try {
        return await runAdminOp(this.#service, op, this.env.actor, args) as OpResult<K>;
      } catch (err) {
        // A failed transaction rolled back: running the operation again is safe.
        if (!isBusy(err) || attempt >= BUSY_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  async close(): Promise<void> {
    this.#client?.close();
    this.#client = null;
    await this.#store?.close();
    this.#store = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Asks before a destructive step. With `--yes` it proceeds; without a terminal on stdin it
 * refuses (a script must say --yes); otherwise only `y` or `yes` proceeds.
 * @throws {ChatError} `confirmation_required` or `cancelled`.
 */
export async function confirm(env: AdminEnv, action: string, question: string): Promise<void> {
  if (env.yes) return;
  if (!env.io.stdinIsTerminal) {
    throw new ChatError(
      "confirmation_required",
      `Cannot ${action}: it needs confirmation and stdin is not a terminal; pass --yes`,
    );
  }
  const answer = await env.io.readLine(`${question} [y/N] `);
  if (!/^\s*y(es)?\s*$/i.test(answer ?? "")) {
    throw new ChatError("cancelled", `Cannot ${action}: cancelled`);
  }
}

/**
 * A new password: the first line of stdin with `fromStdin`, else asked twice on the terminal
 * without echo. Checked against the password rules (8-1024 bytes).
 */
export async function readNewPassword(
  env: AdminEnv,
  opts: { fromStdin: boolean; action: string },
): Promise<string> {
  let password: string | null;
  if (opts.fromStdin) {
    password = (await env.io.readStdin()).split(/\r?\n/)[0];
  } else if (env.io.stdinIsTerminal) {
    password = await env.io.readSecret("Password: ");
    const again = await env.io.readSecret("Repeat password: ");
    if (password !== again) {
      throw new ChatError("password_mismatch", `Cannot ${opts.action}: the passwords differ`);
    }
  } else {
    throw new ChatError(
      "password_required",
      `Cannot ${opts.action}: stdin is not a terminal to ask for a password; ` +
        "pipe it in with --password-stdin",
    );
  }
  if (password === null) {
    throw new ChatError("password_required", `Cannot ${opts.action}: no password given`);
  }
  checkPassword(password);
  return password;
}

/** argon2id PHC string with the server's parameters, computed in this process. */
export async function hashPassword(password: string): Promise<string> {
  const hasher = new PasswordHasher({ workers: 1, queue: 1 });
  try {
    return await hasher.hash(password);
  } finally {
    hasher.close();
  }
}

/** Prints `value` as JSON with --json, else the human text. */
export function emit(env: AdminEnv, value: unknown, human: () => string): void {
  env.io.out(env.json ? JSON.stringify(value, null, 2) + "\n" : human());
}

/** How a change reached the server, for human output. */
export function liveNote(conn: AdminConnection): string {
  return conn.live ? "" : " (no server running: applies from its next start)";
}
