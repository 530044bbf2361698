// Owns the PostgreSQL implementation of Store: pool, migrations, stream locks and group commit.
import postgres from "postgres";
import { ChatError } from "../errors.ts";
import { PG_MIGRATIONS, PG_SCHEMA_VERSION, pgCompatibleFrom } from "./pg_migrations.ts";
import type {
  AuditEntry,
  HistoryPage,
  InviteRecord,
  MessageFilter,
  MessageRecord,
  NewMessage,
  NewRoom,
  RoomRecord,
  RoomsPageQuery,
  SessionTokenRecord,
  StorageStats,
  Store,
  StoredMessage,
  StreamKey,
  StreamLink,
  UnreadCount,
  UserRecord,
} from "./store.ts";
import { type Row, rowMappers } from "./rows.ts";
import { invalidInvite } from "./store.ts";

/** Booleans are stored as boolean columns. */
const { toUser, toRoom, toMessage, toInvite, toSessionToken } = rowMappers((v) => v === true);
type Param = string | number | boolean | null;
type Sql = postgres.Sql;
type Conn = postgres.ReservedSql;

/** Options for connecting. Pool size and timeouts here win over the same settings in the URL. */
export interface PostgresStoreOptions {
  /**
   * `postgres://user:password@host:port/database?sslmode=require&…`. `sslmode` is `disable`,
   * `prefer`, `require` or `verify-full`; other query parameters are sent to the server as settings
   * (e.g. `statement_timeout=10000`, `application_name=chat`).
   */
  url: string;
  /** Connections in the pool (default 10): one writes at a time, the others read. */
  poolSize?: number;
  /** How long connecting may take before the attempt fails (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Idle connections are closed after this long (default 60000 ms; 0 keeps them). */
  idleTimeoutMs?: number;
}

/** Rows deleted per statement by pruneMessages, as on SQLite. */
const PRUNE_BATCH = 2000;

/** A batch that hit a deadlock or serialization failure is run again, at most this often. */
const MAX_BATCH_RETRIES = 3;

/** Any two-integer key for pg_advisory_xact_lock, held while migrating ("chat", "schema"). */
const MIGRATION_LOCK = [0x63686174, 0x736368] as const;

/** Rows a write locks before anything else in its transaction (see #runBatch). */
interface Locks {
  /** Creating a room under the room limits: one creator at a time across every node. */
  roomCreation?: boolean;
  rooms?: number[];
  users?: number[];
}

/** The advisory lock key that serialises room creation (counting, then inserting). */
const ROOM_CREATION_LOCK = [0x63686174, 0x726f6f6d] as const;

/** One statement of a write: text with `$n` placeholders and its parameters. */
interface Step {
  text: string;
  params: Param[];
}

/** What a batch knows while writes settle: each stream's head as of the write being settled. */
interface BatchState {
  heads: Map<StreamKey, number>;
}

interface PendingWrite {
  locks: Locks;
  steps: Step[];
  /** Turns the steps' rows into the write's value, after COMMIT, in batch order. */
  finish: (rows: Row[][], state: BatchState) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** Columns of `messages` that a MessageRecord needs (leaves the search vector on the server). */
const MSG_COLS = "id, room_id, sender_id, body, cid, ts, notice";

/** A PostgreSQL array literal of ids, for `$n::bigint[]` (ids are checked to be integers). */
function idArray(ids: Iterable<number>): string {
  const list = [...ids];
  for (const id of list) {
    if (!Number.isSafeInteger(id)) throw new TypeError(`not an id: ${id}`);
  }
  return `{${list.join(",")}}`;
}

/** SQL condition for a MessageFilter; placeholders start after `params`'s current length. */
function filterSql(f: MessageFilter, params: Param[], prefix = ""): string {
  const parts: string[] = [];
  if (f.roomId !== undefined) {
    params.push(f.roomId);
    parts.push(`${prefix}room_id = $${params.length}`);
  }
  if (f.sinceTs !== undefined) {
    params.push(f.sinceTs);
    parts.push(`${prefix}ts >= $${params.length}`);
  }
  if (f.untilTs !== undefined) {
    params.push(f.untilTs);
    parts.push(`${prefix}ts < $${params.length}`);
  }
  return parts.length ? parts.join(" AND ") : "true";
}

/**
 * The words of a text as the search index holds them: lower case, accents removed (NFKD, marks
 * dropped), split at everything that is not a letter or a digit — as SQLite's `unicode61
 * remove_diacritics 2` tokenizer splits. Both the stored vector and the query are made from this,
 * so the two engines find the same messages.
 */
export function searchWords(text: string): string[] {
  return text.normalize("NFKD").replace(/\p{M}+/gu, "").toLowerCase()
    .split(/[^\p{L}\p{N}]+/u).filter((w) => w !== "");
}

/**
 * Plain words to a tsquery for `to_tsquery('simple', …)`: every word required (`&`), a word that
 * splits into several (`foo-bar`) as a phrase (`<->`), a trailing `*` as a prefix match (`:*`).
 * The lexemes are letters and digits only, so nothing in the text is query syntax. Null when no
 * word is left.
 */
export function tsQuery(text: string): string | null {
  const terms: string[] = [];
  for (const raw of text.split(/\s+/)) {
    const prefix = /[^*]\*+$/.test(raw);
    const words = searchWords(raw.replace(/\*+$/, ""));
    if (words.length === 0) continue;
    terms.push(
      words.map((w, i) => `'${w}'${prefix && i === words.length - 1 ? ":*" : ""}`).join(" <-> "),
    );
  }
  return terms.length ? terms.join(" & ") : null;
}

/** The URL without its password, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    // Query parameters could carry a password too (`password=`): keep only their names.
    for (const k of [...u.searchParams.keys()]) {
      if (/pass|secret|key/i.test(k)) u.searchParams.set(k, "***");
    }
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

/** SQLSTATE of a server error, or null for a client-side failure (connection, timeout). */
function sqlState(err: unknown): string | null {
  return err instanceof postgres.PostgresError ? err.code : null;
}

/** Errors after which the batch may simply run again: nothing of it was committed. */
function retryable(err: unknown): boolean {
  const s = sqlState(err);
  return s === "40P01" || s === "40001";
}

/** Errors that say the connection or the server is gone, not that one statement was wrong. */
function connectionLost(err: unknown): boolean {
  const s = sqlState(err);
  return s === null || s.startsWith("08") || s.startsWith("57P") || s === "53300";
}

function describe(err: unknown): string {
  const e = err as { message?: string; code?: string };
  return e?.message ?? String(err);
}

/**
 * PostgreSQL store on a connection pool (npm `postgres`).
 *
 * 1. Group commit: every write of one event-loop turn joins one transaction on one connection,
 *    sent pipelined (BEGIN, the stream locks, every write's statements, COMMIT in one round trip).
 *    Each write's promise resolves after COMMIT; one transaction runs at a time, so writes commit
 *    in call order (store.ts, rule 2), and writes arriving meanwhile form the next batch.
 * 2. Stream locks (store.ts, rule 4): before any write of the batch runs, it takes the room
 *    creation lock when it creates a room (an advisory lock: the room limits are counted and the
 *    room inserted by one transaction at a time on every node), then locks the room rows
 *    (`FOR NO KEY UPDATE`) of every room it writes messages to or changes, in id order, then the
 *    user rows of every DM participant and changed account, in id order. Every node locks in this
 *    one order, so two nodes never deadlock on them, and a message's id (drawn by its INSERT, after
 *    the locks) is above every id its streams got in transactions that committed before.
 *    `FOR NO KEY UPDATE` does not block the `FOR KEY SHARE` locks of foreign-key checks, so
 *    inserting memberships and messages elsewhere does not queue behind a stream.
 * 3. A statement that fails rolls the batch back; the batch then runs again one write at a time,
 *    each inside a SAVEPOINT, so the failing write rejects alone and the others commit (as
 *    GroupCommit on SQLite). Statements that can fail for expected reasons (a taken name, a
 *    duplicate cid) are written with ON CONFLICT so that they do not.
 * 4. A deadlock or serialization failure (another node) reruns the batch, up to 3 times. A lost
 *    connection, a failed COMMIT or a PostgreSQL that is down rejects the batch with
 *    `storage_failed`; nothing of it is acknowledged. The pool reconnects on the next call, so
 *    service resumes by itself once PostgreSQL is back.
 */
export class PostgresStore implements Store {
  #sql: Sql;
  #queue: PendingWrite[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The batch being committed, if any: the next one starts after it. */
  #inFlight: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  readonly location: string;
  #poolSize: number;
  /** Group-commit counters, for stats. */
  batches = 0;
  writes = 0;
  retries = 0;
  isolations = 0;

  private constructor(sql: Sql, location: string, poolSize: number) {
    this.#sql = sql;
    this.location = location;
    this.#poolSize = poolSize;
  }

  /**
   * Connects, checks the schema version and migrates. Fails with `db_open_failed` (unreachable,
   * refused, bad credentials: the message says which, without the password) or `db_too_new` (the
   * database needs a newer build).
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const location = redactUrl(opts.url);
    const poolSize = opts.poolSize ?? 10;
    let sql: Sql;
    try {
      sql = postgres(opts.url, {
        max: poolSize,
        connect_timeout: (opts.connectTimeoutMs ?? 5000) / 1000,
        idle_timeout: (opts.idleTimeoutMs ?? 60_000) / 1000 || undefined,
        onnotice: () => {},
        // Our own timestamps and ids are bigint: keep them as the exact decimal string.
        connection: { application_name: "chat" },
      });
    } catch (err) {
      throw new ChatError("db_open_failed", `Cannot open database ${location}: ${describe(err)}`, {
        fatal: true,
      });
    }
    try {
      await PostgresStore.#migrate(sql, location);
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => {});
      if (err instanceof ChatError) throw err;
      const why = connectionLost(err) && sqlState(err) === null
        ? `PostgreSQL is unreachable (${describe(err)})`
        : describe(err);
      throw new ChatError("db_open_failed", `Cannot open database ${location}: ${why}`, {
        fatal: true,
        cause: err,
      });
    }
    return new PostgresStore(sql, location, poolSize);
  }

  /** Applies the migrations this database lacks, one transaction each, under an advisory lock. */
  static async #migrate(sql: Sql, location: string): Promise<void> {
    await sql.begin(async (tx) => {
      await tx.unsafe(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK[0]}, ${MIGRATION_LOCK[1]})`);
      await tx.unsafe(
        `CREATE TABLE IF NOT EXISTS chat_schema (
           version INT PRIMARY KEY,
           compatible_from INT NOT NULL,
           applied_at BIGINT NOT NULL
         )`,
      );
      const [top] = await tx.unsafe(
        "SELECT version, compatible_from FROM chat_schema ORDER BY version DESC LIMIT 1",
      );
      const version = top ? Number(top.version) : 0;
      if (version > PG_SCHEMA_VERSION && Number(top.compatible_from) > PG_SCHEMA_VERSION) {
        throw new ChatError(
          "db_too_new",
          `Cannot open database ${location}: its schema version ${version} needs a build of ` +
            `schema ${top.compatible_from} or newer (this one has ${PG_SCHEMA_VERSION}); ` +
            "run a newer chat",
          { fatal: true },
        );
      }
      for (let v = version; v < PG_SCHEMA_VERSION; v++) {
        await tx.unsafe(PG_MIGRATIONS[v].sql);
        await tx.unsafe(
          "INSERT INTO chat_schema(version, compatible_from, applied_at) VALUES ($1, $2, $3)",
          [v + 1, pgCompatibleFrom(v + 1), Date.now()],
        );
      }
    });
  }

  /** A read on any pool connection; a lost connection becomes `storage_failed` (retryable). */
  async #q(text: string, params: Param[] = []): Promise<Row[]> {
    try {
      return await this.#sql.unsafe(text, params as never[], { prepare: true }) as Row[];
    } catch (err) {
      throw new ChatError(
        "storage_failed",
        connectionLost(err)
          ? `Cannot read: the database is unreachable (${describe(err)})`
          : `Cannot read: the database refused the query (${describe(err)})`,
        { cause: err },
      );
    }
  }

  // group commit

  #enqueue<T>(
    w: { locks?: Locks; steps: Step[]; finish: (rows: Row[][], state: BatchState) => T },
  ): Promise<T> {
    if (this.#closing) {
      return Promise.reject(new ChatError("storage_failed", "Cannot write: the store is closed"));
    }
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        locks: w.locks ?? {},
        steps: w.steps,
        finish: w.finish,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      if (this.#timer === undefined && this.#inFlight === null) {
        this.#timer = setTimeout(() => this.#flush(), 0);
      }
    });
  }

  /** Starts the next batch unless one is in flight (that one starts the next when it is done). */
  #flush(): void {
    this.#timer = undefined;
    if (this.#inFlight !== null || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#inFlight = this.#commit(batch).finally(() => {
      this.#inFlight = null;
      if (this.#queue.length > 0) this.#flush();
    });
  }

  async #commit(batch: PendingWrite[]): Promise<void> {
    let attempt = 0;
    let careful = false;
    for (;;) {
      let outcome: { ok: boolean; value: unknown }[][] | null = null;
      try {
        outcome = await this.#runBatch(batch, careful);
      } catch (err) {
        if (retryable(err) && attempt < MAX_BATCH_RETRIES) {
          attempt++;
          this.retries++;
          continue;
        }
        if (!careful && !connectionLost(err) && !retryable(err) && !(err instanceof BatchFailed)) {
          // One statement was refused: find which write by running each in a savepoint.
          careful = true;
          this.isolations++;
          continue;
        }
        const cause = err instanceof BatchFailed ? err.cause : err;
        const failure = new ChatError(
          "storage_failed",
          connectionLost(cause)
            ? `Cannot store: the database is unreachable, nothing was stored (${describe(cause)})`
            : `Cannot store: the database refused the write (${describe(cause)})`,
          { cause },
        );
        for (const w of batch) w.reject(failure);
        return;
      }
      this.batches++;
      this.writes += batch.length;
      const state: BatchState = { heads: new Map() };
      const heads = outcome.pop()!;
      for (const h of heads) {
        const [key, head] = h.value as [StreamKey, number];
        state.heads.set(key, head);
      }
      for (let i = 0; i < batch.length; i++) {
        const w = batch[i];
        const r = outcome[i];
        const failed = r.find((s) => !s.ok);
        if (failed) {
          w.reject(
            new ChatError(
              "storage_failed",
              `Cannot store: the database refused the write (${describe(failed.value)})`,
              { cause: failed.value },
            ),
          );
          continue;
        }
        try {
          w.resolve(w.finish(r.map((s) => s.value as Row[]), state));
        } catch (err) {
          w.reject(err);
        }
      }
      return;
    }
  }

  /**
   * Runs one batch in one transaction on one connection and commits it. Returns, per write, each
   * step's rows (or its error, in careful mode), and last the stream heads read by the locks.
   * Fast mode sends everything pipelined and throws the first error (the batch rolled back).
   */
  async #runBatch(batch: PendingWrite[], careful: boolean): Promise<
    { ok: boolean; value: unknown }[][]
  > {
    const rooms = new Set<number>();
    const users = new Set<number>();
    const roomCreation = batch.some((w) => w.locks.roomCreation);
    for (const w of batch) {
      for (const r of w.locks.rooms ?? []) rooms.add(r);
      for (const u of w.locks.users ?? []) users.add(u);
    }
    let conn: Conn;
    try {
      conn = await this.#sql.reserve();
    } catch (err) {
      throw new BatchFailed(err);
    }
    const run = (s: Step) => conn.unsafe(s.text, s.params as never[], { prepare: true });
    const sent: Promise<unknown>[] = [];
    // Every promise is observed at once, so an early failure leaves no unhandled rejection.
    const send = <T>(p: Promise<T>): Promise<T> => {
      p.catch(() => {});
      sent.push(p);
      return p;
    };
    try {
      send(conn.unsafe("BEGIN"));
      if (roomCreation) {
        send(conn.unsafe(
          `SELECT pg_advisory_xact_lock(${ROOM_CREATION_LOCK[0]}, ${ROOM_CREATION_LOCK[1]})`,
        ));
      }
      const lockRooms = rooms.size
        ? send(run({
          text: `SELECT id, last_message_id AS head FROM rooms WHERE id = ANY($1::bigint[])
                 ORDER BY id FOR NO KEY UPDATE`,
          params: [idArray([...rooms].sort((a, b) => a - b))],
        }))
        : Promise.resolve([]);
      const lockUsers = users.size
        ? send(run({
          text: `SELECT id, last_dm_id AS head FROM users WHERE id = ANY($1::bigint[])
                 ORDER BY id FOR NO KEY UPDATE`,
          params: [idArray([...users].sort((a, b) => a - b))],
        }))
        : Promise.resolve([]);
      const results: { ok: boolean; value: unknown }[][] = [];
      if (!careful) {
        const steps = batch.map((w) => w.steps.map((s) => send(run(s))));
        const commit = send(conn.unsafe("COMMIT"));
        // The first failure is the cause; the statements after it only say "aborted".
        for (const p of sent) await p;
        const done = await commit;
        if ((done as unknown as { command?: string }).command === "ROLLBACK") {
          throw new BatchFailed(new Error("COMMIT rolled back"));
        }
        for (const s of steps) {
          const rows: { ok: boolean; value: unknown }[] = [];
          for (const p of s) rows.push({ ok: true, value: await p });
          results.push(rows);
        }
      } else {
        for (const p of sent) await p;
        for (const w of batch) {
          await conn.unsafe("SAVEPOINT w");
          const rows: { ok: boolean; value: unknown }[] = [];
          try {
            for (const s of w.steps) rows.push({ ok: true, value: await run(s) });
            await conn.unsafe("RELEASE w");
          } catch (err) {
            if (connectionLost(err) || retryable(err)) throw err;
            await conn.unsafe("ROLLBACK TO w");
            await conn.unsafe("RELEASE w");
            rows.push({ ok: false, value: err });
          }
          results.push(rows);
        }
        const done = await conn.unsafe("COMMIT");
        if ((done as unknown as { command?: string }).command === "ROLLBACK") {
          throw new BatchFailed(new Error("COMMIT rolled back"));
        }
      }
      const heads: { ok: boolean; value: unknown }[] = [];
      for (const r of await lockRooms as Row[]) {
        heads.push({ ok: true, value: [`r:${Number(r.id)}`, Number(r.head)] });
      }
      for (const r of await lockUsers as Row[]) {
        heads.push({ ok: true, value: [`u:${Number(r.id)}`, Number(r.head)] });
      }
      results.push(heads);
      return results;
    } catch (err) {
      // Roll back whatever is open (a failed statement left the transaction aborted), unless the
      // connection itself is gone; then the server rolls back as the session ends.
      await Promise.allSettled(sent);
      if (!connectionLost(err instanceof BatchFailed ? err.cause : err)) {
        await conn.unsafe("ROLLBACK").catch(() => {});
      }
      throw err;
    } finally {
      conn.release();
    }
  }

  // users

  createUser(
    u: Parameters<Store["createUser"]>[0],
  ): Promise<UserRecord> {
    if (u.inviteCodeHash !== undefined) {
      return this.#createInvitedUser({ ...u, inviteCodeHash: u.inviteCodeHash });
    }
    return this.#enqueue({
      steps: [{
        text: `INSERT INTO users(name, name_key, password_hash, role, created_at)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name_key) DO NOTHING RETURNING *`,
        params: [u.name, u.name.toLowerCase(), u.passwordHash, u.role ?? "member", u.ts],
      }],
      finish: ([rows]) => {
        if (rows.length === 0) {
          throw new ChatError("user_exists", `Cannot register: the name ${u.name} is taken`);
        }
        return toUser(rows[0]);
      },
    });
  }

  /**
   * One transaction: lock the invite's row if it is valid (step 1; a concurrent registration with
   * the same invite waits here and then sees the use taken), then create the account and take the
   * use only if the account was created (step 2: a data-modifying CTE runs whatever the outcome,
   * so the UPDATE is conditioned on the INSERT's result).
   */
  #createInvitedUser(
    u: Parameters<Store["createUser"]>[0] & { inviteCodeHash: string },
  ): Promise<UserRecord> {
    const valid = `code_hash = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > $2)
                   AND (uses_left IS NULL OR uses_left > 0)`;
    return this.#enqueue({
      steps: [{
        text: `SELECT id FROM invites WHERE ${valid} FOR UPDATE`,
        params: [u.inviteCodeHash, u.ts],
      }, {
        text: `WITH created AS (
                 INSERT INTO users(name, name_key, password_hash, role, created_at)
                 SELECT $3, $4, $5, $6, $2 WHERE EXISTS (SELECT 1 FROM invites WHERE ${valid})
                 ON CONFLICT (name_key) DO NOTHING RETURNING *
               ), used AS (
                 UPDATE invites SET uses_left = uses_left - 1
                 WHERE ${valid} AND EXISTS (SELECT 1 FROM created) RETURNING id
               )
               SELECT * FROM created`,
        params: [
          u.inviteCodeHash,
          u.ts,
          u.name,
          u.name.toLowerCase(),
          u.passwordHash,
          u.role ?? "member",
        ],
      }],
      finish: ([invite, rows]) => {
        if (invite.length === 0) throw invalidInvite();
        if (rows.length === 0) {
          throw new ChatError("user_exists", `Cannot register: the name ${u.name} is taken`);
        }
        return toUser(rows[0]);
      },
    });
  }

  async userByName(name: string): Promise<UserRecord | null> {
    const [r] = await this.#q(
      "SELECT * FROM users WHERE name_key = $1 AND NOT removed",
      [name.toLowerCase()],
    );
    return r ? toUser(r) : null;
  }

  async userById(id: number): Promise<UserRecord | null> {
    const [r] = await this.#q("SELECT * FROM users WHERE id = $1", [id]);
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.#q("SELECT * FROM users WHERE NOT removed ORDER BY name_key")).map(toUser);
  }

  updateUser(
    id: number,
    patch: Partial<Pick<UserRecord, "passwordHash" | "role" | "disabled">>,
  ): Promise<void> {
    return this.#enqueue({
      locks: { users: [id] },
      steps: [{
        text: `UPDATE users SET password_hash = coalesce($2, password_hash),
                 role = coalesce($3, role), disabled = coalesce($4::boolean, disabled)
               WHERE id = $1`,
        params: [id, patch.passwordHash ?? null, patch.role ?? null, patch.disabled ?? null],
      }],
      finish: () => {},
    });
  }

  removeUser(id: number): Promise<void> {
    // A tombstone, never a DELETE: the row keeps the id taken (ids are never reused).
    return this.#enqueue({
      locks: { users: [id] },
      steps: [
        {
          text: `UPDATE users SET name = '', name_key = NULL, password_hash = '', disabled = true,
                   removed = true WHERE id = $1`,
          params: [id],
        },
        { text: "DELETE FROM memberships WHERE user_id = $1", params: [id] },
        { text: "DELETE FROM read_markers WHERE user_id = $1", params: [id] },
        { text: "DELETE FROM session_tokens WHERE user_id = $1", params: [id] },
      ],
      finish: () => {},
    });
  }

  // rooms

  async roomByName(name: string): Promise<RoomRecord | null> {
    const [r] = await this.#q("SELECT * FROM rooms WHERE name = $1", [name]);
    return r ? toRoom(r) : null;
  }

  async roomById(id: number): Promise<RoomRecord | null> {
    const [r] = await this.#q("SELECT * FROM rooms WHERE id = $1", [id]);
    return r ? toRoom(r) : null;
  }

  async ensureRoom(name: string, kind: "room" | "dm", ts: number): Promise<RoomRecord> {
    const existing = await this.roomByName(name);
    if (existing) return existing;
    const made = await this.#enqueue({
      steps: [{
        text: `WITH made AS (
                 INSERT INTO rooms(name, kind, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING RETURNING *)
               SELECT * FROM made UNION ALL
               SELECT * FROM rooms WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM made)`,
        params: [name, kind, ts],
      }],
      finish: ([rows]) => rows.length ? toRoom(rows[0]) : null,
    });
    // Null only when another node made it after this statement's snapshot: it is committed now.
    return made ?? (await this.roomByName(name))!;
  }

  async listRooms(): Promise<(RoomRecord & { members: number })[]> {
    const rows = await this.#q(
      `SELECT r.*, (SELECT count(*) FROM memberships m WHERE m.room_id = r.id) AS members
       FROM rooms r WHERE r.kind = 'room' ORDER BY r.name`,
    );
    return rows.map((r) => ({ ...toRoom(r), members: Number(r.members) }));
  }

  createRoom(r: NewRoom): Promise<{ room: RoomRecord; created: boolean }> {
    return (async () => {
      const made = await this.#enqueue({
        locks: { roomCreation: true },
        steps: [{
          // One statement: the counts are read after the creation lock, in the same transaction
          // as the insert, so creators on every node pass the limits one at a time.
          text: `WITH existing AS (SELECT * FROM rooms WHERE name = $1),
                 counts AS (
                   SELECT (SELECT count(*) FROM rooms WHERE kind = 'room') AS total,
                          (SELECT count(*) FROM rooms WHERE owner_id = $4::bigint) AS mine),
                 made AS (
                   INSERT INTO rooms(name, kind, created_at, private, owner_id)
                   SELECT $1, 'room', $2, $3::boolean, $4::bigint FROM counts
                   WHERE NOT EXISTS (SELECT 1 FROM existing) AND total < $5
                     AND ($4::bigint IS NULL OR mine < $6)
                   ON CONFLICT (name) DO NOTHING RETURNING *)
                 SELECT (SELECT row_to_json(made) FROM made) AS made,
                        (SELECT row_to_json(existing) FROM existing) AS existing,
                        total, mine FROM counts`,
          params: [r.name, r.ts, r.private, r.ownerId, r.maxRooms, r.maxPerOwner],
        }],
        finish: ([[row]]): { room: RoomRecord; created: boolean } | null => {
          if (row.made) return { room: toRoom(row.made as Row), created: true };
          if (row.existing) return { room: toRoom(row.existing as Row), created: false };
          if (Number(row.total) >= r.maxRooms) {
            throw new ChatError(
              "too_many_rooms",
              `Cannot create room ${r.name}: the server has its maximum of ${r.maxRooms} rooms`,
            );
          }
          if (r.ownerId !== null && Number(row.mine) >= r.maxPerOwner) {
            throw new ChatError(
              "too_many_rooms",
              `Cannot create room ${r.name}: you created ${r.maxPerOwner} rooms, the most allowed`,
            );
          }
          return null; // made by ensureRoom elsewhere after this statement's snapshot
        },
      });
      return made ?? { room: (await this.roomByName(r.name))!, created: false };
    })();
  }

  async roomsPage(q: RoomsPageQuery): Promise<(RoomRecord & { members: number })[]> {
    const rows = await this.#q(
      `SELECT r.*, (SELECT count(*) FROM memberships m WHERE m.room_id = r.id) AS members
       FROM rooms r
       WHERE r.kind = 'room' AND NOT r.archived AND r.name > $1
         AND (NOT r.private OR $2::bigint IS NULL OR EXISTS
              (SELECT 1 FROM memberships m WHERE m.room_id = r.id AND m.user_id = $2::bigint))
       ORDER BY r.name LIMIT $3`,
      [q.after, q.visibleTo ?? null, q.limit],
    );
    return rows.map((r) => ({ ...toRoom(r), members: Number(r.members) }));
  }

  async roomMembers(roomId: number): Promise<{ id: number; name: string }[]> {
    const rows = await this.#q(
      `SELECT u.id, u.name FROM memberships m JOIN users u ON u.id = m.user_id
       WHERE m.room_id = $1 ORDER BY u.name_key`,
      [roomId],
    );
    return rows.map((r) => ({ id: Number(r.id), name: String(r.name) }));
  }

  updateRoom(
    id: number,
    patch: Partial<Pick<RoomRecord, "topic" | "topicBy" | "topicAt" | "archived" | "private">>,
  ): Promise<void> {
    return this.#enqueue({
      locks: { rooms: [id] },
      steps: [{
        text: `UPDATE rooms SET topic = coalesce($2, topic),
                 topic_by = CASE WHEN $2::text IS NULL THEN topic_by ELSE $5::text END,
                 topic_at = CASE WHEN $2::text IS NULL THEN topic_at ELSE $6::bigint END,
                 archived = coalesce($3::boolean, archived),
                 private = coalesce($4::boolean, private) WHERE id = $1`,
        params: [
          id,
          patch.topic ?? null,
          patch.archived ?? null,
          patch.private ?? null,
          patch.topicBy ?? null,
          patch.topicAt ?? null,
        ],
      }],
      finish: () => {},
    });
  }

  addMember(roomId: number, userId: number, ts: number): Promise<void> {
    return this.#enqueue({
      steps: [{
        text: `INSERT INTO memberships(room_id, user_id, joined_at) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING`,
        params: [roomId, userId, ts],
      }],
      finish: () => {},
    });
  }

  removeMember(roomId: number, userId: number): Promise<void> {
    return this.#enqueue({
      steps: [{
        text: "DELETE FROM memberships WHERE room_id = $1 AND user_id = $2",
        params: [roomId, userId],
      }],
      finish: () => {},
    });
  }

  async roomsOfUser(userId: number): Promise<RoomRecord[]> {
    const rows = await this.#q(
      `SELECT r.* FROM memberships m JOIN rooms r ON r.id = m.room_id
       WHERE m.user_id = $1 AND r.kind = 'room' AND NOT r.archived ORDER BY r.name`,
      [userId],
    );
    return rows.map(toRoom);
  }

  async isMember(roomId: number, userId: number): Promise<boolean> {
    const rows = await this.#q(
      "SELECT 1 FROM memberships WHERE room_id = $1 AND user_id = $2",
      [roomId, userId],
    );
    return rows.length > 0;
  }

  // messages

  /**
   * Inserts under the stream locks the batch took first (the room row; for a DM each participant's
   * user row), moves the heads (`rooms.last_message_id`, `users.last_dm_id`) to the new id in the
   * same statement, and links the message to the heads it replaced. A duplicate (sender, cid)
   * inserts nothing, moves no head and returns the stored original.
   */
  async appendMessage(m: NewMessage): Promise<StoredMessage> {
    const dmUsers = m.dmUsers === undefined ? [] : [...new Set(m.dmUsers)];
    const stored = await this.#enqueue({
      locks: { rooms: [m.roomId], users: dmUsers },
      steps: [{
        text: `WITH made AS (
                 INSERT INTO messages(room_id, sender_id, body, cid, ts, search, notice)
                 VALUES ($1, $2, $3, $4, $5, to_tsvector('simple', $6), $8)
                 ON CONFLICT (sender_id, cid) DO NOTHING RETURNING id),
               room_head AS (
                 UPDATE rooms SET last_message_id = made.id FROM made WHERE rooms.id = $1),
               dm_heads AS (
                 UPDATE users SET last_dm_id = made.id FROM made
                 WHERE users.id = ANY($7::bigint[]))
               SELECT id, true AS fresh FROM made UNION ALL
               SELECT id, false FROM messages
               WHERE sender_id = $2 AND cid = $4 AND NOT EXISTS (SELECT 1 FROM made)`,
        params: [
          m.roomId,
          m.senderId,
          m.body,
          m.cid,
          m.ts,
          searchWords(m.body).join(" "),
          idArray(dmUsers),
          m.notice === true,
        ],
      }],
      finish: ([rows], state): StoredMessage | null => {
        if (rows.length === 0) return null;
        const id = Number(rows[0].id);
        if (rows[0].fresh !== true) return null; // the original: read whole below
        const keys: StreamKey[] = dmUsers.length === 0
          ? [`r:${m.roomId}`]
          : dmUsers.map((u) => `u:${u}` as StreamKey);
        const links: StreamLink[] = keys.map((stream) => {
          const prev = state.heads.get(stream) ?? 0;
          state.heads.set(stream, id);
          return { stream, prev };
        });
        const { dmUsers: _, ...fields } = m;
        return { message: { id, ...fields }, duplicate: false, links };
      },
    });
    if (stored) return stored;
    // A duplicate; or (empty rows) one that another node committed after this statement began.
    const [orig] = await this.#q(
      `SELECT ${MSG_COLS} FROM messages WHERE sender_id = $1 AND cid = $2`,
      [m.senderId, m.cid],
    );
    if (!orig) {
      throw new ChatError("storage_failed", "Cannot store: the message vanished while storing it");
    }
    return { message: toMessage(orig), duplicate: true, links: [] };
  }

  async streamHeads(keys: StreamKey[]): Promise<Map<StreamKey, number>> {
    const rooms = keys.filter((k) => k[0] === "r").map((k) => Number(k.slice(2)));
    const users = keys.filter((k) => k[0] === "u").map((k) => Number(k.slice(2)));
    const rows = await this.#q(
      `SELECT 'r:' || id AS k, last_message_id AS head FROM rooms WHERE id = ANY($1::bigint[])
       UNION ALL
       SELECT 'u:' || id, last_dm_id FROM users WHERE id = ANY($2::bigint[])`,
      [idArray(rooms), idArray(users)],
    );
    const found = new Map(rows.map((r) => [String(r.k), Number(r.head)]));
    return new Map(keys.map((k) => [k, found.get(k) ?? 0]));
  }

  async streamAfter(
    key: StreamKey,
    afterId: number,
    limit: number,
    beforeId = Number.MAX_SAFE_INTEGER,
  ): Promise<MessageRecord[]> {
    const id = Number(key.slice(2));
    const rows = key[0] === "r"
      ? await this.#q(
        `SELECT ${MSG_COLS} FROM messages WHERE room_id = $1 AND id > $2 AND id < $3
         ORDER BY id LIMIT $4`,
        [id, afterId, beforeId, limit],
      )
      : await this.#dmAfter(id, afterId, limit, beforeId);
    return rows.map(toMessage);
  }

  #dmAfter(userId: number, afterId: number, limit: number, beforeId: number): Promise<Row[]> {
    return this.#q(
      `SELECT m.id, m.room_id, m.sender_id, m.body, m.cid, m.ts, m.notice FROM memberships mb
       JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
       JOIN messages m ON m.room_id = mb.room_id AND m.id > $2 AND m.id < $3
       WHERE mb.user_id = $1 ORDER BY m.id LIMIT $4`,
      [userId, afterId, beforeId, limit],
    );
  }

  async messagesAfter(roomId: number, afterId: number, limit: number): Promise<MessageRecord[]> {
    return (await this.#q(
      `SELECT ${MSG_COLS} FROM messages WHERE room_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
      [roomId, afterId, limit],
    )).map(toMessage);
  }

  async directMessagesAfter(
    userId: number,
    afterId: number,
    limit: number,
  ): Promise<MessageRecord[]> {
    return (await this.#dmAfter(userId, afterId, limit, Number.MAX_SAFE_INTEGER)).map(toMessage);
  }

  /**
   * Read from the messages themselves, as SQLite does (the head columns move only for messages
   * stored with their streams, `dmUsers` for a DM; this answers for any).
   */
  async latestIds(
    userId: number,
    roomIds: number[],
  ): Promise<{ rooms: Map<number, number>; dm: number }> {
    const rows = await this.#q(
      `SELECT r.id, coalesce((SELECT max(m.id) FROM messages m WHERE m.room_id = r.id), 0) AS top
       FROM unnest($1::bigint[]) AS r(id)
       UNION ALL
       SELECT 0, coalesce(max((SELECT max(m.id) FROM messages m WHERE m.room_id = mb.room_id)), 0)
       FROM memberships mb JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
       WHERE mb.user_id = $2`,
      [idArray(roomIds), userId],
    );
    // Room ids start at 1: the row with id 0 is the DM figure, wherever UNION ALL put it.
    const top = new Map(rows.map((r) => [Number(r.id), Number(r.top)]));
    const dm = top.get(0) ?? 0;
    return { rooms: new Map(roomIds.map((r) => [r, top.get(r) ?? 0])), dm };
  }

  // read markers

  setReadMarker(
    userId: number,
    roomId: number,
    messageId: number,
  ): Promise<{ readId: number; moved: boolean }> {
    // The conditional upsert compares with the newest committed marker, so concurrent moves
    // from several nodes keep the highest.
    return this.#enqueue({
      steps: [{
        text: `WITH old AS (
                 SELECT message_id FROM read_markers WHERE user_id = $1 AND room_id = $2
               ), up AS (
                 INSERT INTO read_markers(user_id, room_id, message_id)
                 SELECT $1, $2, $3::bigint WHERE $3::bigint > 0
                 ON CONFLICT (user_id, room_id) DO UPDATE SET message_id = EXCLUDED.message_id
                 WHERE read_markers.message_id < EXCLUDED.message_id
                 RETURNING message_id
               )
               SELECT (SELECT message_id FROM up) AS moved_to,
                      (SELECT message_id FROM old) AS before`,
        params: [userId, roomId, messageId],
      }],
      finish: ([rows]) => {
        const r = rows[0];
        if (r.moved_to !== null) return { readId: Number(r.moved_to), moved: true };
        return { readId: r.before === null ? 0 : Number(r.before), moved: false };
      },
    });
  }

  async unreadCounts(
    userId: number,
    q: { rooms: Map<number, number>; dmThrough?: number; dmLimit?: number },
  ): Promise<UnreadCount[]> {
    const ids = [...q.rooms.keys()];
    const rows = ids.length === 0 ? [] : await this.#q(
      `SELECT q.room_id, coalesce(rm.message_id, 0) AS read_id,
         (SELECT count(*) FROM messages m WHERE m.room_id = q.room_id
            AND m.id > coalesce(rm.message_id, 0) AND m.id <= q.through
            AND m.sender_id <> $3) AS n
       FROM unnest($1::bigint[], $2::bigint[]) AS q(room_id, through)
       LEFT JOIN read_markers rm ON rm.user_id = $3 AND rm.room_id = q.room_id`,
      [idArray(ids), idArray([...q.rooms.values()]), userId],
    );
    const byRoom = new Map(rows.map((r) => [Number(r.room_id), r]));
    const out: UnreadCount[] = ids.map((roomId) => {
      const r = byRoom.get(roomId);
      return { roomId, readId: Number(r?.read_id ?? 0), unread: Number(r?.n ?? 0) };
    });
    if (q.dmThrough !== undefined) {
      const dms = await this.#q(
        `SELECT * FROM (
           SELECT mb.room_id, coalesce(rm.message_id, 0) AS read_id,
             (SELECT count(*) FROM messages m WHERE m.room_id = mb.room_id
                AND m.id > coalesce(rm.message_id, 0) AND m.id <= $1 AND m.sender_id <> $2) AS n
           FROM memberships mb JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
           LEFT JOIN read_markers rm ON rm.user_id = mb.user_id AND rm.room_id = mb.room_id
           WHERE mb.user_id = $2
         ) d WHERE n > 0 ORDER BY room_id DESC LIMIT $3`,
        [q.dmThrough, userId, q.dmLimit ?? 200],
      );
      for (const r of dms) {
        out.push({ roomId: Number(r.room_id), readId: Number(r.read_id), unread: Number(r.n) });
      }
    }
    return out;
  }

  async history(roomId: number, limit: number, beforeId?: number): Promise<HistoryPage> {
    const rows = await this.#q(
      `SELECT ${MSG_COLS} FROM messages WHERE room_id = $1 AND id < $2
       ORDER BY id DESC LIMIT $3`,
      [roomId, beforeId ?? Number.MAX_SAFE_INTEGER, limit + 1],
    );
    return { messages: rows.slice(0, limit).map(toMessage).reverse(), more: rows.length > limit };
  }

  // invites

  createInvite(
    i: {
      codeHash: string;
      usesLeft: number | null;
      expiresAt: number | null;
      ts: number;
      createdBy: string | null;
    },
  ): Promise<InviteRecord> {
    return this.#enqueue({
      steps: [{
        text: `INSERT INTO invites(code_hash, uses_left, expires_at, created_at, created_by)
               VALUES ($1, $2, $3, $4, $5) RETURNING *`,
        params: [i.codeHash, i.usesLeft, i.expiresAt, i.ts, i.createdBy],
      }],
      finish: ([rows]) => toInvite(rows[0]),
    });
  }

  async listInvites(): Promise<InviteRecord[]> {
    return (await this.#q("SELECT * FROM invites ORDER BY id")).map(toInvite);
  }

  revokeInvite(id: number): Promise<boolean> {
    return this.#enqueue({
      steps: [{
        text: "UPDATE invites SET revoked = true WHERE id = $1 RETURNING id",
        params: [id],
      }],
      finish: ([rows]) => rows.length > 0,
    });
  }

  // session tokens

  createSessionToken(
    t: Omit<SessionTokenRecord, "id">,
    keep: number,
  ): Promise<SessionTokenRecord> {
    return this.#enqueue({
      steps: [
        {
          text: `INSERT INTO session_tokens(user_id, token_hash, device, created_at, last_used_at,
                   expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
          params: [t.userId, t.tokenHash, t.device, t.createdAt, t.lastUsedAt, t.expiresAt],
        },
        {
          text: "DELETE FROM session_tokens WHERE user_id = $1 AND expires_at <= $2",
          params: [t.userId, t.createdAt],
        },
        {
          // The new token has the user's highest id (identities only grow): it always stays.
          text: `DELETE FROM session_tokens WHERE user_id = $1 AND id NOT IN (
                   SELECT id FROM session_tokens WHERE user_id = $1
                   ORDER BY id = (SELECT max(id) FROM session_tokens WHERE user_id = $1) DESC,
                     last_used_at DESC, id DESC LIMIT $2)`,
          params: [t.userId, Math.max(1, keep)],
        },
      ],
      finish: ([rows]) => toSessionToken(rows[0]),
    });
  }

  async sessionToken(id: number): Promise<SessionTokenRecord | null> {
    const [r] = await this.#q("SELECT * FROM session_tokens WHERE id = $1", [id]);
    return r ? toSessionToken(r) : null;
  }

  async listSessionTokens(userId: number): Promise<SessionTokenRecord[]> {
    return (await this.#q("SELECT * FROM session_tokens WHERE user_id = $1 ORDER BY id", [userId]))
      .map(toSessionToken);
  }

  touchSessionToken(id: number, lastUsedAt: number): Promise<void> {
    return this.#enqueue({
      steps: [{
        text: "UPDATE session_tokens SET last_used_at = $2 WHERE id = $1",
        params: [id, lastUsedAt],
      }],
      finish: () => {},
    });
  }

  revokeSessionTokens(userId: number, id?: number): Promise<number[]> {
    return this.#enqueue({
      steps: [
        id === undefined
          ? { text: "DELETE FROM session_tokens WHERE user_id = $1 RETURNING id", params: [userId] }
          : {
            text: "DELETE FROM session_tokens WHERE user_id = $1 AND id = $2 RETURNING id",
            params: [userId, id],
          },
      ],
      finish: ([rows]) => rows.map((r) => Number(r.id)).sort((a, b) => a - b),
    });
  }

  // audit

  audit(e: AuditEntry): Promise<void> {
    return this.#enqueue({
      steps: [{
        text: `INSERT INTO audit(ts, actor, action, target, remote, detail)
               VALUES ($1, $2, $3, $4, $5, $6)`,
        params: [
          e.ts,
          e.actor,
          e.action,
          e.target,
          e.remote,
          e.detail ? JSON.stringify(e.detail) : null,
        ],
      }],
      finish: () => {},
    });
  }

  async auditTrail(
    opts: { limit: number; sinceTs?: number },
  ): Promise<(AuditEntry & { id: number })[]> {
    const rows = await this.#q(
      "SELECT * FROM audit WHERE ts >= $1 ORDER BY id DESC LIMIT $2",
      [opts.sinceTs ?? 0, opts.limit],
    );
    return rows.reverse().map((r) => ({
      id: Number(r.id),
      ts: Number(r.ts),
      actor: r.actor === null ? null : String(r.actor),
      action: String(r.action),
      target: r.target === null ? null : String(r.target),
      remote: r.remote === null ? null : String(r.remote),
      detail: r.detail === null ? undefined : JSON.parse(String(r.detail)),
    }));
  }

  // administration

  async messageRange(f: MessageFilter): Promise<{ count: number; maxId: number }> {
    const params: Param[] = [];
    const where = filterSql(f, params);
    const [r] = await this.#q(
      `SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM messages WHERE ${where}`,
      params,
    );
    return { count: Number(r.n), maxId: Number(r.max_id) };
  }

  async messagesPage(
    f: MessageFilter & { afterId: number; maxId: number; limit: number },
  ): Promise<MessageRecord[]> {
    const params: Param[] = [];
    const where = filterSql(f, params);
    params.push(f.afterId, f.maxId, f.limit);
    const n = params.length;
    return (await this.#q(
      `SELECT ${MSG_COLS} FROM messages WHERE ${where} AND id > $${n - 2} AND id <= $${n - 1}
       ORDER BY id LIMIT $${n}`,
      params,
    )).map(toMessage);
  }

  /** PostgreSQL text search over the `search` vector (GIN index); see searchWords and tsQuery. */
  async searchMessages(
    q: { text: string; roomId?: number; sinceTs?: number; memberId?: number; limit: number },
  ): Promise<MessageRecord[]> {
    const query = tsQuery(q.text);
    if (query === null) return [];
    const params: Param[] = [query];
    let where = filterSql({ roomId: q.roomId, sinceTs: q.sinceTs }, params);
    if (q.memberId !== undefined) {
      params.push(q.memberId);
      where += ` AND room_id IN (SELECT mb.room_id FROM memberships mb
        JOIN rooms r ON r.id = mb.room_id AND NOT r.archived WHERE mb.user_id = $${params.length})`;
    }
    params.push(q.limit);
    return (await this.#q(
      `SELECT ${MSG_COLS} FROM messages
       WHERE search @@ to_tsquery('simple', $1) AND ${where} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    )).map(toMessage);
  }

  async pruneMessages(beforeTs: number, roomId?: number): Promise<number> {
    const params: Param[] = [];
    const where = filterSql({ roomId, untilTs: beforeTs }, params);
    const text = `WITH gone AS (DELETE FROM messages WHERE id IN
        (SELECT id FROM messages WHERE ${where} ORDER BY id LIMIT ${PRUNE_BATCH}) RETURNING 1)
      SELECT count(*) AS n FROM gone`;
    let total = 0;
    for (;;) {
      // One short batch per transaction: live writes of other nodes never wait long behind it.
      const n = await this.#enqueue({
        steps: [{ text, params }],
        finish: ([rows]) => Number(rows[0].n),
      });
      total += n;
      if (n < PRUNE_BATCH) return total;
    }
  }

  async storageStats(): Promise<StorageStats> {
    const [r] = await this.#q(
      `SELECT (SELECT count(*) FROM users WHERE NOT removed) AS users,
              (SELECT count(*) FROM rooms WHERE kind = 'room') AS rooms,
              (SELECT count(*) FROM messages) AS messages,
              pg_database_size(current_database()) AS db_bytes,
              pg_total_relation_size('messages') AS messages_bytes,
              pg_indexes_size('messages') AS messages_index_bytes,
              current_setting('server_version_num')::int AS version,
              (SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database()) AS connections`,
    );
    return {
      users: Number(r.users),
      rooms: Number(r.rooms),
      messages: Number(r.messages),
      engine: {
        name: "postgres",
        figures: {
          databaseBytes: Number(r.db_bytes),
          messagesTableBytes: Number(r.messages_bytes),
          messagesIndexBytes: Number(r.messages_index_bytes),
          serverVersion: Number(r.version),
          serverConnections: Number(r.connections),
          poolSize: this.#poolSize,
          commitBatches: this.batches,
          commitWrites: this.writes,
          batchRetries: this.retries,
          batchIsolations: this.isolations,
        },
      },
    };
  }

  /** Runs a read-only query for admin tools (parameterised, `$n` placeholders). */
  query(text: string, ...params: Param[]): Promise<Row[]> {
    return this.#q(text, params);
  }

  close(): Promise<void> {
    return this.#closing ??= (async () => {
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
      }
      // Commit what was asked before close: the batch in flight, then whatever queued behind it.
      while (this.#inFlight !== null || this.#queue.length > 0) {
        if (this.#inFlight === null) this.#flush();
        await this.#inFlight;
      }
      await this.#sql.end({ timeout: 5 });
    })();
  }
}

/** A batch that failed as a whole (no connection, or COMMIT did not commit): not per write. */
class BatchFailed extends Error {
  constructor(override readonly cause: unknown) {
    super(describe(cause));
  }
}
