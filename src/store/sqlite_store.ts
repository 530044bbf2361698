// Owns the SQLite implementation of Store: opening safely, migrating, and group-committed writes.
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { ChatError } from "../errors.ts";
import { GroupCommit, type WalSync } from "./group_commit.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./migrations.ts";
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

/** Booleans are stored as 0/1 integers. */
const { toUser, toRoom, toMessage, toInvite, toSessionToken } = rowMappers((v) =>
  Number(v ?? 0) !== 0
);

/** Messages added to the search index per batch, and how often the background batch runs. */
const SEARCH_INDEX_BATCH = 5000;
const SEARCH_INDEX_INTERVAL_MS = 1000;
/**
 * Ticks the background batch waits while messages are being written (a batch of 5,000 holds the
 * event loop ~10 ms, in the middle of a burst of sends); the batch after a wait takes the rows
 * of the ticks it skipped, so the indexing rate stays the same.
 */
const SEARCH_INDEX_MAX_DEFER = 3;

/** Options for opening the database. */
export interface SqliteStoreOptions {
  /** Path of the database file. */
  path: string;
  /** `FULL` (default) survives power loss; `NORMAL` survives process crashes only. */
  synchronous?: "FULL" | "NORMAL";
  /** How long a locked database is retried before failing (default 5000 ms). */
  busyTimeoutMs?: number;
  /**
   * Truncate the write-ahead log on close (default true). A second process on a live database (the
   * admin CLI) says false: a TRUNCATE checkpoint would hold up the server's writers while it runs.
   */
  checkpointOnClose?: boolean;
}

/** SQL condition and parameters for a MessageFilter (columns of `messages`, optional prefix). */
function filterSql(f: MessageFilter, prefix = ""): { where: string; params: number[] } {
  const parts: string[] = [];
  const params: number[] = [];
  if (f.roomId !== undefined) {
    parts.push(`${prefix}room_id = ?`);
    params.push(f.roomId);
  }
  if (f.sinceTs !== undefined) {
    parts.push(`${prefix}ts >= ?`);
    params.push(f.sinceTs);
  }
  if (f.untilTs !== undefined) {
    parts.push(`${prefix}ts < ?`);
    params.push(f.untilTs);
  }
  return { where: parts.length ? parts.join(" AND ") : "1", params };
}

/**
 * Plain words to an FTS5 query: every word quoted (so `-`, `:`, `"`, `OR` and `NEAR` are text, not
 * syntax), all words required, a trailing `*` kept as a prefix match. Null when no word is left.
 */
export function ftsQuery(text: string): string | null {
  const terms: string[] = [];
  for (const raw of text.split(/\s+/)) {
    const prefix = /[^*]\*+$/.test(raw);
    const word = raw.replace(/\*+$/, "");
    if (word === "") continue;
    terms.push(`"${word.replaceAll('"', '""')}"${prefix ? "*" : ""}`);
  }
  return terms.length ? terms.join(" ") : null;
}

/** Rows deleted per transaction by pruneMessages: short enough that live writes barely wait. */
const PRUNE_BATCH = 2000;

/**
 * False when an existing file cannot be opened for writing (a read-only mount, or permissions):
 * SQLite then reports only "unable to open database file" for a database in WAL mode.
 */
function writable(path: string): boolean {
  try {
    Deno.openSync(path, { read: true, write: true }).close();
    return true;
  } catch (err) {
    return err instanceof Deno.errors.NotFound;
  }
}

/** SQLite result codes this file tells apart (https://sqlite.org/rescode.html). */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_CORRUPT = 11;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;
const SQLITE_CONSTRAINT_UNIQUE = 2067;

/**
 * The SQLite result code node:sqlite put on an error (`errcode`, an extended code), or null.
 * Deno 2.9.6 sets it on errors from prepared statements only: errors from `exec()` and from the
 * `DatabaseSync` constructor carry a message and nothing else, which is why `open` runs its
 * single statements through `prepare` and reads a constructor failure as "cannot open".
 */
function sqliteCode(err: unknown): number | null {
  const code = (err as { errcode?: unknown } | null)?.errcode;
  return typeof code === "number" ? code : null;
}

/** Runs one statement through a prepared statement, so a failure carries its result code. */
function run(db: DatabaseSync, sql: string): void {
  db.prepare(sql).run();
}

function openFailure(path: string, err: unknown): ChatError {
  const detail = (err as Error).message ?? String(err);
  // No code: the constructor (which only opens the file: SQLITE_CANTOPEN) or a migration's
  // exec() failed; then only a file that cannot be written is told apart, by trying to.
  const primary = (sqliteCode(err) ?? SQLITE_CANTOPEN) & 0xff;
  // An existing file that cannot be opened for writing is reported by SQLite as READONLY or, in
  // WAL mode (it cannot create the -shm file), only as CANTOPEN.
  if (primary === SQLITE_READONLY || (primary === SQLITE_CANTOPEN && !writable(path))) {
    return new ChatError("db_readonly", `Cannot open database ${path}: it is read-only`, {
      fatal: true,
    });
  }
  if (primary === SQLITE_BUSY || primary === SQLITE_LOCKED) {
    return new ChatError(
      "db_locked",
      `Cannot open database ${path}: it is locked by another process (${detail})`,
      { fatal: true },
    );
  }
  if (primary === SQLITE_CORRUPT || primary === SQLITE_NOTADB) return damaged(path, detail);
  return new ChatError("db_open_failed", `Cannot open database ${path}: ${detail}`, {
    fatal: true,
  });
}

function damaged(path: string, detail: string): ChatError {
  return new ChatError(
    "db_corrupt",
    `Cannot open database ${path}: the file is damaged (${detail}); restore a backup`,
    { fatal: true },
  );
}

/** SQLite store on node:sqlite: WAL, migrations by user_version, group commit. */
export class SqliteStore implements Store {
  #db: DatabaseSync;
  #writes: GroupCommit;
  #stmts = new Map<string, StatementSync>();
  #closed = false;
  #indexer: number;
  #checkpointOnClose = true;
  readonly path: string;

  #wal: WalFile | undefined;
  /**
   * Newest committed message id per stream, filled on first use. This connection is the only
   * writer of messages (the data dir is claimed by one server; admin tools only delete), so the
   * cache stays exact; a rolled-back batch clears it.
   */
  #heads = new Map<StreamKey, number>();

  private constructor(db: DatabaseSync, path: string, wal: WalFile | undefined) {
    this.#db = db;
    this.path = path;
    this.#wal = wal;
    this.#writes = new GroupCommit(db, { wal, onRollback: () => this.#heads.clear() });
    // Fill the search index off the hot path; unref'd so a CLI process can exit.
    let seenWrites = 0;
    let deferred = 0;
    this.#indexer = setInterval(() => {
      const writes = this.#writes.writes;
      if (writes !== seenWrites && deferred < SEARCH_INDEX_MAX_DEFER) {
        seenWrites = writes;
        deferred++;
        return;
      }
      seenWrites = writes;
      const rows = SEARCH_INDEX_BATCH * (deferred + 1);
      deferred = 0;
      try {
        this.indexSearch(rows);
      } catch { /* busy or closing: the next tick or the next search catches up */ }
    }, SEARCH_INDEX_INTERVAL_MS) as unknown as number;
    Deno.unrefTimer(this.#indexer);
  }

  /**
   * Opens (creating when missing) and migrates the database. Fails fast with a ChatError for a
   * read-only, locked, corrupt or newer-version file; backs the file up before migrating it.
   */
  static open(opts: SqliteStoreOptions): SqliteStore {
    const path = opts.path;
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { timeout: opts.busyTimeoutMs ?? 5000 } as never);
    } catch (err) {
      throw openFailure(path, err);
    }
    try {
      const check = db.prepare("PRAGMA quick_check").get() as Row | undefined;
      if (!check || check.quick_check !== "ok") {
        throw damaged(path, `quick_check says ${JSON.stringify(check?.quick_check ?? null)}`);
      }
      // Check the version before anything writes: a newer file must stay byte-for-byte untouched.
      const version = Number((db.prepare("PRAGMA user_version").get() as Row).user_version);
      if (version > SCHEMA_VERSION) {
        throw new ChatError(
          "db_too_new",
          `Cannot open database ${path}: its schema version ${version} is newer than this build ` +
            `understands (${SCHEMA_VERSION}); run a newer chat`,
          { fatal: true },
        );
      }
      run(db, "PRAGMA journal_mode=WAL");
      run(db, `PRAGMA synchronous=${opts.synchronous ?? "FULL"}`);
      if (version < SCHEMA_VERSION) {
        if (version > 0) SqliteStore.#backup(db, path, version);
        // Foreign keys stay off while migrating (a rebuilt table is dropped and replaced, which
        // would cascade) and are checked before each migration commits.
        run(db, "PRAGMA foreign_keys=OFF");
        for (let v = version; v < SCHEMA_VERSION; v++) {
          run(db, "BEGIN IMMEDIATE");
          try {
            db.exec(MIGRATIONS[v]);
            const broken = db.prepare("PRAGMA foreign_key_check").all();
            if (broken.length > 0) {
              throw new Error(
                `migration ${v + 1} left rows without their parent: ${JSON.stringify(broken)}`,
              );
            }
            db.exec(`PRAGMA user_version=${v + 1}`);
            db.exec("COMMIT");
          } catch (err) {
            db.exec("ROLLBACK");
            throw err;
          }
        }
      }
      run(db, "PRAGMA foreign_keys=ON");
    } catch (err) {
      try {
        db.close();
      } catch { /* already failing */ }
      if (err instanceof ChatError) throw err;
      throw openFailure(path, err);
    }
    // FULL durability without an fsync on the event loop: SQLite commits without syncing
    // (NORMAL still syncs around checkpoints, so the file stays consistent) and group commit
    // syncs the WAL off the main thread before it acknowledges (see GroupCommit, item 4).
    let wal: WalFile | undefined;
    if ((opts.synchronous ?? "FULL") === "FULL") {
      db.exec("PRAGMA synchronous=NORMAL");
      wal = new WalFile(`${path}-wal`);
    }
    const store = new SqliteStore(db, path, wal);
    store.#checkpointOnClose = opts.checkpointOnClose ?? true;
    return store;
  }

  /**
   * Copies the database file before a migration. (`VACUUM INTO` is unavailable: Deno's node:sqlite
   * sets the attached-database limit to 0.) The main file and its WAL are copied while holding the
   * write lock, so together they are a consistent snapshot.
   */
  static #backup(db: DatabaseSync, path: string, version: number): void {
    const target = `${path}.v${version}.${Date.now()}.bak`;
    run(db, "BEGIN IMMEDIATE");
    try {
      Deno.copyFileSync(path, target);
      let walBytes = 0;
      try {
        walBytes = Deno.statSync(`${path}-wal`).size;
      } catch { /* no WAL file: nothing to copy */ }
      if (walBytes > 0) Deno.copyFileSync(`${path}-wal`, `${target}-wal`);
    } finally {
      db.exec("COMMIT");
    }
  }

  #stmt(sql: string): StatementSync {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  #get(sql: string, ...params: (string | number | null)[]): Row | undefined {
    return this.#stmt(sql).get(...params) as Row | undefined;
  }

  #all(sql: string, ...params: (string | number | null)[]): Row[] {
    return this.#stmt(sql).all(...params) as Row[];
  }

  /** Group-commit counters, for stats. */
  get writeStats(): { batches: number; writes: number; syncs: number } {
    return {
      batches: this.#writes.batches,
      writes: this.#writes.writes,
      syncs: this.#writes.syncs,
    };
  }

  // users

  createUser(
    u: Parameters<Store["createUser"]>[0],
  ): Promise<UserRecord> {
    return this.#writes.enqueue(() => {
      // Under a savepoint when an invite is consumed: a taken name rolls the use back.
      if (u.inviteCodeHash !== undefined && !this.#consumeInvite(u.inviteCodeHash, u.ts)) {
        throw invalidInvite();
      }
      try {
        const row = this.#get(
          "INSERT INTO users(name, name_key, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *",
          u.name,
          u.name.toLowerCase(),
          u.passwordHash,
          u.role ?? "member",
          u.ts,
        );
        return toUser(row!);
      } catch (err) {
        // name_key is the only UNIQUE column of users (the id is a PRIMARY KEY, another code).
        if (sqliteCode(err) === SQLITE_CONSTRAINT_UNIQUE) {
          throw new ChatError("user_exists", `Cannot register: the name ${u.name} is taken`);
        }
        throw err;
      }
    }, { savepoint: u.inviteCodeHash !== undefined });
  }

  userByName(name: string): Promise<UserRecord | null> {
    // A tombstone has no name_key; `removed = 0` says so once more.
    const r = this.#get(
      "SELECT * FROM users WHERE name_key = ? AND removed = 0",
      name.toLowerCase(),
    );
    return Promise.resolve(r ? toUser(r) : null);
  }

  userById(id: number): Promise<UserRecord | null> {
    const r = this.#get("SELECT * FROM users WHERE id = ?", id);
    return Promise.resolve(r ? toUser(r) : null);
  }

  listUsers(): Promise<UserRecord[]> {
    return Promise.resolve(
      this.#all("SELECT * FROM users WHERE removed = 0 ORDER BY name_key").map(toUser),
    );
  }

  updateUser(
    id: number,
    patch: Partial<Pick<UserRecord, "passwordHash" | "role" | "disabled">>,
  ): Promise<void> {
    return this.#writes.enqueue(() => {
      if (patch.passwordHash !== undefined) {
        this.#stmt("UPDATE users SET password_hash = ? WHERE id = ?").run(patch.passwordHash, id);
      }
      if (patch.role !== undefined) {
        this.#stmt("UPDATE users SET role = ? WHERE id = ?").run(patch.role, id);
      }
      if (patch.disabled !== undefined) {
        this.#stmt("UPDATE users SET disabled = ? WHERE id = ?").run(patch.disabled ? 1 : 0, id);
      }
    }, { savepoint: true });
  }

  removeUser(id: number): Promise<void> {
    // A tombstone, never a DELETE: the row keeps the id taken (ids are never reused).
    return this.#writes.enqueue(() => {
      this.#stmt(
        `UPDATE users SET name = '', name_key = NULL, password_hash = '', disabled = 1, removed = 1
         WHERE id = ?`,
      ).run(id);
      this.#stmt("DELETE FROM memberships WHERE user_id = ?").run(id);
      this.#stmt("DELETE FROM read_markers WHERE user_id = ?").run(id);
      this.#stmt("DELETE FROM session_tokens WHERE user_id = ?").run(id);
    }, { savepoint: true });
  }

  // rooms

  roomByName(name: string): Promise<RoomRecord | null> {
    const r = this.#get("SELECT * FROM rooms WHERE name = ?", name);
    return Promise.resolve(r ? toRoom(r) : null);
  }

  roomById(id: number): Promise<RoomRecord | null> {
    const r = this.#get("SELECT * FROM rooms WHERE id = ?", id);
    return Promise.resolve(r ? toRoom(r) : null);
  }

  ensureRoom(name: string, kind: "room" | "dm", ts: number): Promise<RoomRecord> {
    const existing = this.#get("SELECT * FROM rooms WHERE name = ?", name);
    if (existing) return Promise.resolve(toRoom(existing));
    return this.#writes.enqueue(() => {
      this.#stmt(
        "INSERT INTO rooms(name, kind, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
      ).run(name, kind, ts);
      return toRoom(this.#get("SELECT * FROM rooms WHERE name = ?", name)!);
    });
  }

  listRooms(): Promise<(RoomRecord & { members: number })[]> {
    const rows = this.#all(
      `SELECT r.*, (SELECT count(*) FROM memberships m WHERE m.room_id = r.id) AS members
       FROM rooms r WHERE r.kind = 'room' ORDER BY r.name`,
    );
    return Promise.resolve(rows.map((r) => ({ ...toRoom(r), members: Number(r.members) })));
  }

  createRoom(r: NewRoom): Promise<{ room: RoomRecord; created: boolean }> {
    return this.#writes.enqueue(() => {
      const existing = this.#get("SELECT * FROM rooms WHERE name = ?", r.name);
      if (existing) return { room: toRoom(existing), created: false };
      const total = Number(this.#get("SELECT count(*) AS n FROM rooms WHERE kind = 'room'")!.n);
      if (total >= r.maxRooms) {
        throw new ChatError(
          "too_many_rooms",
          `Cannot create room ${r.name}: the server has its maximum of ${r.maxRooms} rooms`,
        );
      }
      if (r.ownerId !== null) {
        const mine = Number(
          this.#get("SELECT count(*) AS n FROM rooms WHERE owner_id = ?", r.ownerId)!.n,
        );
        if (mine >= r.maxPerOwner) {
          throw new ChatError(
            "too_many_rooms",
            `Cannot create room ${r.name}: you created ${r.maxPerOwner} rooms, the most allowed`,
          );
        }
      }
      const row = this.#get(
        `INSERT INTO rooms(name, kind, created_at, private, owner_id) VALUES (?, 'room', ?, ?, ?)
         RETURNING *`,
        r.name,
        r.ts,
        r.private ? 1 : 0,
        r.ownerId,
      );
      return { room: toRoom(row!), created: true };
    }, { savepoint: true });
  }

  roomsPage(q: RoomsPageQuery): Promise<(RoomRecord & { members: number })[]> {
    const rows = this.#all(
      `SELECT r.*, (SELECT count(*) FROM memberships m WHERE m.room_id = r.id) AS members
       FROM rooms r
       WHERE r.kind = 'room' AND r.archived = 0 AND r.name > ?
         AND (r.private = 0 OR ? IS NULL OR EXISTS
              (SELECT 1 FROM memberships m WHERE m.room_id = r.id AND m.user_id = ?))
       ORDER BY r.name LIMIT ?`,
      q.after,
      q.visibleTo ?? null,
      q.visibleTo ?? null,
      q.limit,
    );
    return Promise.resolve(rows.map((r) => ({ ...toRoom(r), members: Number(r.members) })));
  }

  roomMembers(roomId: number): Promise<{ id: number; name: string }[]> {
    const rows = this.#all(
      `SELECT u.id, u.name FROM memberships m JOIN users u ON u.id = m.user_id
       WHERE m.room_id = ? ORDER BY u.name_key`,
      roomId,
    );
    return Promise.resolve(rows.map((r) => ({ id: Number(r.id), name: String(r.name) })));
  }

  updateRoom(
    id: number,
    patch: Partial<Pick<RoomRecord, "topic" | "topicBy" | "topicAt" | "archived" | "private">>,
  ): Promise<void> {
    return this.#writes.enqueue(() => {
      if (patch.private !== undefined) {
        this.#stmt("UPDATE rooms SET private = ? WHERE id = ?").run(patch.private ? 1 : 0, id);
      }
      if (patch.topic !== undefined) {
        this.#stmt("UPDATE rooms SET topic = ?, topic_by = ?, topic_at = ? WHERE id = ?")
          .run(patch.topic, patch.topicBy ?? null, patch.topicAt ?? null, id);
      }
      if (patch.archived !== undefined) {
        this.#stmt("UPDATE rooms SET archived = ? WHERE id = ?").run(patch.archived ? 1 : 0, id);
      }
    }, { savepoint: true });
  }

  addMember(roomId: number, userId: number, ts: number): Promise<void> {
    return this.#writes.enqueue(() => {
      this.#stmt(
        "INSERT INTO memberships(room_id, user_id, joined_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      ).run(roomId, userId, ts);
    });
  }

  removeMember(roomId: number, userId: number): Promise<void> {
    return this.#writes.enqueue(() => {
      this.#stmt("DELETE FROM memberships WHERE room_id = ? AND user_id = ?").run(roomId, userId);
    });
  }

  roomsOfUser(userId: number): Promise<RoomRecord[]> {
    const rows = this.#all(
      `SELECT r.* FROM memberships m JOIN rooms r ON r.id = m.room_id
       WHERE m.user_id = ? AND r.kind = 'room' AND r.archived = 0 ORDER BY r.name`,
      userId,
    );
    return Promise.resolve(rows.map(toRoom));
  }

  isMember(roomId: number, userId: number): Promise<boolean> {
    return Promise.resolve(
      this.#get(
        "SELECT 1 AS x FROM memberships WHERE room_id = ? AND user_id = ?",
        roomId,
        userId,
      ) !==
        undefined,
    );
  }

  // messages

  appendMessage(m: NewMessage): Promise<StoredMessage> {
    return this.#writes.enqueue(() => {
      // `run` and the rowid rather than `RETURNING id`: RETURNING makes SQLite build a result
      // row and step the statement twice (about 3 µs of the ~12 µs an insert took here). With
      // `DO NOTHING`, no change means the cid was taken (`changes` and the last rowid are the
      // statement's own, not a trigger's).
      const inserted = this.#stmt(
        `INSERT INTO messages(room_id, sender_id, body, cid, ts, notice) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(sender_id, cid) DO NOTHING`,
      ).run(m.roomId, m.senderId, m.body, m.cid, m.ts, m.notice ? 1 : 0);
      if (inserted.changes === 1) {
        const id = Number(inserted.lastInsertRowid);
        const links: StreamLink[] = [];
        if (m.dmUsers === undefined) links.push(this.#link(`r:${m.roomId}`, id));
        else {
          for (const u of new Set(m.dmUsers)) links.push(this.#link(`u:${u}`, id));
        }
        return {
          message: {
            id,
            roomId: m.roomId,
            senderId: m.senderId,
            body: m.body,
            cid: m.cid,
            ts: m.ts,
            ...(m.notice ? { notice: true as const } : {}),
          },
          duplicate: false,
          links,
        };
      }
      const original = this.#get(
        "SELECT * FROM messages WHERE sender_id = ? AND cid = ?",
        m.senderId,
        m.cid,
      );
      return { message: toMessage(original!), duplicate: true, links: [] };
    });
  }

  /** Inside a write: the stream's previous head, and `id` as its new head. */
  #link(stream: StreamKey, id: number): StreamLink {
    let prev = this.#heads.get(stream);
    // The new row is already inserted: the head before it is the newest below it.
    if (prev === undefined) prev = this.#headBelow(stream, id);
    this.#heads.set(stream, id);
    return { stream, prev };
  }

  #headBelow(stream: StreamKey, below: number): number {
    const id = Number(stream.slice(2));
    const row = stream[0] === "r"
      ? this.#get(
        "SELECT coalesce(max(id), 0) AS m FROM messages WHERE room_id = ? AND id < ?",
        id,
        below,
      )
      : this.#get(
        `SELECT coalesce(max((SELECT max(m.id) FROM messages m
                              WHERE m.room_id = mb.room_id AND m.id < ?)), 0) AS m
         FROM memberships mb JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
         WHERE mb.user_id = ?`,
        below,
        id,
      );
    return Number(row!.m);
  }

  streamHeads(keys: StreamKey[]): Promise<Map<StreamKey, number>> {
    const out = new Map<StreamKey, number>();
    for (const k of keys) {
      let head = this.#heads.get(k);
      if (head === undefined) {
        head = this.#headBelow(k, Number.MAX_SAFE_INTEGER);
        this.#heads.set(k, head);
      }
      out.set(k, head);
    }
    return Promise.resolve(out);
  }

  streamAfter(
    key: StreamKey,
    afterId: number,
    limit: number,
    beforeId = Number.MAX_SAFE_INTEGER,
  ): Promise<MessageRecord[]> {
    const id = Number(key.slice(2));
    const rows = key[0] === "r"
      ? this.#all(
        "SELECT * FROM messages WHERE room_id = ? AND id > ? AND id < ? ORDER BY id LIMIT ?",
        id,
        afterId,
        beforeId,
        limit,
      )
      : this.#all(
        `SELECT m.* FROM memberships mb
         JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
         JOIN messages m ON m.room_id = mb.room_id AND m.id > ? AND m.id < ?
         WHERE mb.user_id = ? ORDER BY m.id LIMIT ?`,
        afterId,
        beforeId,
        id,
        limit,
      );
    return Promise.resolve(rows.map(toMessage));
  }

  messagesAfter(roomId: number, afterId: number, limit: number): Promise<MessageRecord[]> {
    return Promise.resolve(
      this.#all(
        "SELECT * FROM messages WHERE room_id = ? AND id > ? ORDER BY id LIMIT ?",
        roomId,
        afterId,
        limit,
      ).map(toMessage),
    );
  }

  latestIds(
    userId: number,
    roomIds: number[],
  ): Promise<{ rooms: Map<number, number>; dm: number }> {
    const rooms = new Map<number, number>();
    for (const id of roomIds) {
      const r = this.#get("SELECT coalesce(max(id), 0) AS m FROM messages WHERE room_id = ?", id);
      rooms.set(id, Number(r!.m));
    }
    const dm = this.#get(
      `SELECT coalesce(max((SELECT max(m.id) FROM messages m WHERE m.room_id = mb.room_id)), 0) AS m
       FROM memberships mb JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
       WHERE mb.user_id = ?`,
      userId,
    );
    return Promise.resolve({ rooms, dm: Number(dm!.m) });
  }

  directMessagesAfter(userId: number, afterId: number, limit: number): Promise<MessageRecord[]> {
    return Promise.resolve(
      this.#all(
        `SELECT m.* FROM memberships mb
         JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
         JOIN messages m ON m.room_id = mb.room_id AND m.id > ?
         WHERE mb.user_id = ? ORDER BY m.id LIMIT ?`,
        afterId,
        userId,
        limit,
      ).map(toMessage),
    );
  }

  // read markers

  setReadMarker(
    userId: number,
    roomId: number,
    messageId: number,
  ): Promise<{ readId: number; moved: boolean }> {
    return this.#writes.enqueue(() => {
      const old = this.#get(
        "SELECT message_id FROM read_markers WHERE user_id = ? AND room_id = ?",
        userId,
        roomId,
      );
      const before = old ? Number(old.message_id) : 0;
      if (messageId <= before) return { readId: before, moved: false };
      this.#stmt(
        `INSERT INTO read_markers(user_id, room_id, message_id) VALUES (?, ?, ?)
         ON CONFLICT(user_id, room_id) DO UPDATE SET message_id = excluded.message_id`,
      ).run(userId, roomId, messageId);
      return { readId: messageId, moved: true };
    });
  }

  unreadCounts(
    userId: number,
    q: { rooms: Map<number, number>; dmThrough?: number; dmLimit?: number },
  ): Promise<UnreadCount[]> {
    const out: UnreadCount[] = [];
    for (const [roomId, through] of q.rooms) {
      const r = this.#get(
        `SELECT coalesce((SELECT message_id FROM read_markers WHERE user_id = ? AND room_id = ?), 0)
           AS read_id`,
        userId,
        roomId,
      )!;
      const readId = Number(r.read_id);
      const n = this.#get(
        `SELECT count(*) AS n FROM messages
         WHERE room_id = ? AND id > ? AND id <= ? AND sender_id <> ?`,
        roomId,
        readId,
        through,
        userId,
      )!;
      out.push({ roomId, readId, unread: Number(n.n) });
    }
    if (q.dmThrough !== undefined) {
      const rows = this.#all(
        `SELECT * FROM (
           SELECT mb.room_id AS room_id, coalesce(rm.message_id, 0) AS read_id,
             (SELECT count(*) FROM messages m WHERE m.room_id = mb.room_id
                AND m.id > coalesce(rm.message_id, 0) AND m.id <= ? AND m.sender_id <> ?) AS n
           FROM memberships mb JOIN rooms r ON r.id = mb.room_id AND r.kind = 'dm'
           LEFT JOIN read_markers rm ON rm.user_id = mb.user_id AND rm.room_id = mb.room_id
           WHERE mb.user_id = ?
         ) WHERE n > 0 ORDER BY room_id DESC LIMIT ?`,
        q.dmThrough,
        userId,
        userId,
        q.dmLimit ?? 200,
      );
      for (const r of rows) {
        out.push({ roomId: Number(r.room_id), readId: Number(r.read_id), unread: Number(r.n) });
      }
    }
    return Promise.resolve(out);
  }

  history(roomId: number, limit: number, beforeId?: number): Promise<HistoryPage> {
    const rows = this.#all(
      "SELECT * FROM messages WHERE room_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
      roomId,
      beforeId ?? Number.MAX_SAFE_INTEGER,
      limit + 1,
    );
    const more = rows.length > limit;
    const page = rows.slice(0, limit).map(toMessage).reverse();
    return Promise.resolve({ messages: page, more });
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
    return this.#writes.enqueue(() =>
      toInvite(
        this.#get(
          `INSERT INTO invites(code_hash, uses_left, expires_at, created_at, created_by)
           VALUES (?, ?, ?, ?, ?) RETURNING *`,
          i.codeHash,
          i.usesLeft,
          i.expiresAt,
          i.ts,
          i.createdBy,
        )!,
      )
    );
  }

  /** Inside a write: takes one use of a valid invite; false when there is none to take. */
  #consumeInvite(codeHash: string, now: number): boolean {
    const r = this.#stmt(
      `UPDATE invites SET uses_left = uses_left - 1
       WHERE code_hash = ? AND revoked = 0 AND (expires_at IS NULL OR expires_at > ?)
         AND (uses_left IS NULL OR uses_left > 0)`,
    ).run(codeHash, now);
    return Number(r.changes) > 0;
  }

  listInvites(): Promise<InviteRecord[]> {
    return Promise.resolve(this.#all("SELECT * FROM invites ORDER BY id").map(toInvite));
  }

  revokeInvite(id: number): Promise<boolean> {
    return this.#writes.enqueue(() =>
      Number(this.#stmt("UPDATE invites SET revoked = 1 WHERE id = ?").run(id).changes) > 0
    );
  }

  // session tokens

  createSessionToken(
    t: Omit<SessionTokenRecord, "id">,
    keep: number,
  ): Promise<SessionTokenRecord> {
    return this.#writes.enqueue(() => {
      const row = toSessionToken(
        this.#get(
          `INSERT INTO session_tokens(user_id, token_hash, device, created_at, last_used_at,
             expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *`,
          t.userId,
          t.tokenHash,
          t.device,
          t.createdAt,
          t.lastUsedAt,
          t.expiresAt,
        )!,
      );
      this.#stmt("DELETE FROM session_tokens WHERE user_id = ? AND expires_at <= ?").run(
        t.userId,
        t.createdAt,
      );
      this.#stmt(
        `DELETE FROM session_tokens WHERE user_id = ? AND id NOT IN (
           SELECT id FROM session_tokens WHERE user_id = ?
           ORDER BY id = ? DESC, last_used_at DESC, id DESC LIMIT ?)`,
      ).run(t.userId, t.userId, row.id, Math.max(1, keep));
      return row;
    }, { savepoint: true });
  }

  sessionToken(id: number): Promise<SessionTokenRecord | null> {
    const r = this.#get("SELECT * FROM session_tokens WHERE id = ?", id);
    return Promise.resolve(r ? toSessionToken(r) : null);
  }

  listSessionTokens(userId: number): Promise<SessionTokenRecord[]> {
    return Promise.resolve(
      this.#all("SELECT * FROM session_tokens WHERE user_id = ? ORDER BY id", userId).map(
        toSessionToken,
      ),
    );
  }

  touchSessionToken(id: number, lastUsedAt: number): Promise<void> {
    return this.#writes.enqueue(() => {
      this.#stmt("UPDATE session_tokens SET last_used_at = ? WHERE id = ?").run(lastUsedAt, id);
    });
  }

  revokeSessionTokens(userId: number, id?: number): Promise<number[]> {
    return this.#writes.enqueue(() =>
      (id === undefined
        ? this.#all("DELETE FROM session_tokens WHERE user_id = ? RETURNING id", userId)
        : this.#all(
          "DELETE FROM session_tokens WHERE user_id = ? AND id = ? RETURNING id",
          userId,
          id,
        )).map((r) => Number(r.id)).sort((a, b) => a - b)
    );
  }

  // audit

  audit(e: AuditEntry): Promise<void> {
    return this.#writes.enqueue(() => {
      this.#stmt(
        "INSERT INTO audit(ts, actor, action, target, remote, detail) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(
        e.ts,
        e.actor,
        e.action,
        e.target,
        e.remote,
        e.detail ? JSON.stringify(e.detail) : null,
      );
    });
  }

  auditTrail(opts: { limit: number; sinceTs?: number }): Promise<(AuditEntry & { id: number })[]> {
    const rows = this.#all(
      "SELECT * FROM audit WHERE ts >= ? ORDER BY id DESC LIMIT ?",
      opts.sinceTs ?? 0,
      opts.limit,
    );
    return Promise.resolve(
      rows.reverse().map((r) => ({
        id: Number(r.id),
        ts: Number(r.ts),
        actor: r.actor === null ? null : String(r.actor),
        action: String(r.action),
        target: r.target === null ? null : String(r.target),
        remote: r.remote === null ? null : String(r.remote),
        detail: r.detail === null ? undefined : JSON.parse(String(r.detail)),
      })),
    );
  }

  // administration

  messageRange(f: MessageFilter): Promise<{ count: number; maxId: number }> {
    const { where, params } = filterSql(f);
    const r = this.#get(
      `SELECT count(*) AS n, coalesce(max(id), 0) AS max_id FROM messages WHERE ${where}`,
      ...params,
    )!;
    return Promise.resolve({ count: Number(r.n), maxId: Number(r.max_id) });
  }

  messagesPage(
    f: MessageFilter & { afterId: number; maxId: number; limit: number },
  ): Promise<MessageRecord[]> {
    const { where, params } = filterSql(f);
    return Promise.resolve(
      this.#all(
        `SELECT * FROM messages WHERE ${where} AND id > ? AND id <= ? ORDER BY id LIMIT ?`,
        ...params,
        f.afterId,
        f.maxId,
        f.limit,
      ).map(toMessage),
    );
  }

  /**
   * Adds up to `maxRows` not yet indexed messages to the full-text index, in one transaction;
   * returns how many. Runs behind the hot path (a timer) and before every search.
   */
  indexSearch(maxRows = SEARCH_INDEX_BATCH): number {
    if (this.#closed) return 0;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const from = Number(this.#get("SELECT indexed_through AS w FROM fts_state")!.w);
      const last = this.#get(
        "SELECT max(id) AS m FROM (SELECT id FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
        from,
        maxRows,
      );
      const to = last?.m === null || last?.m === undefined ? from : Number(last.m);
      let added = 0;
      if (to > from) {
        added = Number(
          this.#stmt(
            "INSERT INTO messages_fts(rowid, body) SELECT id, body FROM messages WHERE id > ? AND id <= ?",
          ).run(from, to).changes,
        );
        this.#stmt("UPDATE fts_state SET indexed_through = ?").run(to);
      }
      this.#db.exec("COMMIT");
      return added;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  searchMessages(
    q: { text: string; roomId?: number; sinceTs?: number; memberId?: number; limit: number },
  ): Promise<MessageRecord[]> {
    const match = ftsQuery(q.text);
    if (match === null) return Promise.resolve([]);
    // Catch the index up first, so a search sees every committed message.
    while (this.indexSearch() === SEARCH_INDEX_BATCH) { /* next batch */ }
    let { where, params } = filterSql({ roomId: q.roomId, sinceTs: q.sinceTs }, "m.");
    if (q.memberId !== undefined) {
      where += ` AND m.room_id IN (SELECT mb.room_id FROM memberships mb
        JOIN rooms r ON r.id = mb.room_id AND r.archived = 0 WHERE mb.user_id = ?)`;
      params = [...params, q.memberId];
    }
    return Promise.resolve(
      this.#all(
        `SELECT m.* FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
         WHERE messages_fts MATCH ? AND ${where} ORDER BY m.id DESC LIMIT ?`,
        match,
        ...params,
        q.limit,
      ).map(toMessage),
    );
  }

  async pruneMessages(beforeTs: number, roomId?: number): Promise<number> {
    const { where, params } = filterSql({ roomId, untilTs: beforeTs });
    const sql = `DELETE FROM messages WHERE id IN
      (SELECT id FROM messages WHERE ${where} ORDER BY id LIMIT ${PRUNE_BATCH})`;
    let total = 0;
    for (;;) {
      // One batch per transaction: a large prune never holds the write lock for long.
      const n = await this.#writes.enqueue(() => Number(this.#stmt(sql).run(...params).changes));
      total += n;
      if (n < PRUNE_BATCH) return total;
    }
  }

  storageStats(): Promise<StorageStats> {
    const size = (p: string) => {
      try {
        return Deno.statSync(p).size;
      } catch {
        return 0;
      }
    };
    const pageSize = Number((this.#get("PRAGMA page_size") as Row).page_size);
    const free = Number((this.#get("PRAGMA freelist_count") as Row).freelist_count);
    const counts = this.#get(
      `SELECT (SELECT count(*) FROM users WHERE removed = 0) AS users,
              (SELECT count(*) FROM rooms WHERE kind = 'room') AS rooms,
              (SELECT count(*) FROM messages) AS messages`,
    )!;
    return Promise.resolve({
      users: Number(counts.users),
      rooms: Number(counts.rooms),
      messages: Number(counts.messages),
      engine: {
        name: "sqlite",
        figures: {
          fileBytes: size(this.path),
          walBytes: size(`${this.path}-wal`),
          freeBytes: free * pageSize,
          commitBatches: this.#writes.batches,
          commitWrites: this.#writes.writes,
          walSyncs: this.#writes.syncs,
        },
      },
    });
  }

  /** Runs a read-only query for admin tools (parameterised). */
  query(sql: string, ...params: (string | number | null)[]): Row[] {
    return this.#all(sql, ...params);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#writes.close();
    clearInterval(this.#indexer);
    try {
      this.indexSearch(Number.MAX_SAFE_INTEGER);
    } catch { /* the next open catches up */ }
    this.#closed = true;
    this.#stmts.clear();
    if (this.#checkpointOnClose) {
      try {
        this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } catch { /* a checkpoint is an optimisation; the WAL is replayed on next open */ }
    }
    this.#db.close();
    this.#wal?.close();
    return Promise.resolve();
  }
}

/** The `-wal` file of the database, opened on first use, synced for group commit. */
class WalFile implements WalSync {
  #path: string;
  #file: Deno.FsFile | null = null;

  constructor(path: string) {
    this.#path = path;
  }

  #open(): Deno.FsFile {
    // SQLite keeps the same -wal file (restarting it in place) while a connection is open.
    return this.#file ??= Deno.openSync(this.#path, { read: true });
  }

  sync(): Promise<void> {
    try {
      return this.#open().syncData();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  syncNow(): void {
    this.#open().syncDataSync();
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}
