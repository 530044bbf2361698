// Owns copying a whole database between engines (SQLite data dir <-> PostgreSQL), ids kept, verified.
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import { ChatError } from "../errors.ts";
import { PostgresStore, redactUrl, searchWords } from "./postgres_store.ts";
import { SqliteStore } from "./sqlite_store.ts";

type Row = Record<string, unknown>;
type Value = string | number | null;

/** A table both engines have, with the columns that carry data (engine-only columns left out). */
interface Table {
  name: string;
  cols: string[];
  /** Key columns, for paging in key order. */
  key: string[];
  /** 0/1 in SQLite, boolean in PostgreSQL. */
  bools?: string[];
  /** Integers (PostgreSQL returns bigint as text). */
  ints: string[];
}

/**
 * Every table with data, parents first. Read markers are copied (the server keeps them, §7.1);
 * resume positions live in the clients (they resume by id), so there is nothing more to carry.
 */
export const TABLES: readonly Table[] = [
  {
    name: "users",
    cols: ["id", "name", "name_key", "password_hash", "role", "disabled", "removed", "created_at"],
    key: ["id"],
    bools: ["disabled", "removed"],
    ints: ["id", "created_at"],
  },
  {
    name: "rooms",
    cols: [
      "id",
      "name",
      "topic",
      "topic_by",
      "topic_at",
      "kind",
      "archived",
      "created_at",
      "private",
      "owner_id",
    ],
    key: ["id"],
    bools: ["archived", "private"],
    ints: ["id", "created_at", "owner_id", "topic_at"],
  },
  {
    name: "memberships",
    cols: ["room_id", "user_id", "joined_at"],
    key: ["room_id", "user_id"],
    ints: ["room_id", "user_id", "joined_at"],
  },
  {
    name: "messages",
    cols: ["id", "room_id", "sender_id", "body", "cid", "ts", "notice"],
    key: ["id"],
    bools: ["notice"],
    ints: ["id", "room_id", "sender_id", "ts"],
  },
  {
    name: "read_markers",
    cols: ["user_id", "room_id", "message_id"],
    key: ["user_id", "room_id"],
    ints: ["user_id", "room_id", "message_id"],
  },
  {
    name: "invites",
    cols: ["id", "code_hash", "uses_left", "expires_at", "revoked", "created_at", "created_by"],
    key: ["id"],
    bools: ["revoked"],
    ints: ["id", "uses_left", "expires_at", "created_at"],
  },
  {
    name: "audit",
    cols: ["id", "ts", "actor", "action", "target", "remote", "detail"],
    key: ["id"],
    ints: ["id", "ts"],
  },
  {
    // Sessions survive a migration: clients keep logging in with their tokens.
    name: "session_tokens",
    cols: ["id", "user_id", "token_hash", "device", "created_at", "last_used_at", "expires_at"],
    key: ["id"],
    ints: ["id", "user_id", "created_at", "last_used_at", "expires_at"],
  },
];

/** Tables whose ids come from a sequence that must stay above every id ever handed out. */
const SEQUENCED = ["users", "rooms", "messages", "invites", "audit", "session_tokens"];

/** Rows per page read and per INSERT written. */
const PAGE = 500;

/** One table's figures after a copy: rows and SHA-256 of its rows on each side. */
export interface TableCheck {
  table: string;
  sourceRows: number;
  targetRows: number;
  sourceSha256: string;
  targetSha256: string;
  ok: boolean;
}

/** A row in engine-neutral form: booleans as 0/1, integers as numbers, text as text. */
function canonical(t: Table, r: Row): Value[] {
  return t.cols.map((c) => {
    const v = r[c];
    if (v === null || v === undefined) return null;
    if (t.bools?.includes(c)) return v === true || Number(v) === 1 ? 1 : 0;
    if (t.ints.includes(c)) return Number(v);
    return String(v);
  });
}

/** Reading and writing one engine's tables. */
interface Side {
  page(t: Table, after: Value[] | null, limit: number): Promise<Value[][]>;
  insert(t: Table, rows: Value[][]): Promise<void>;
}

function sqliteSide(db: DatabaseSync): Side {
  return {
    page(t, after, limit) {
      const where = after
        ? `WHERE (${t.key.join(", ")}) > (${t.key.map(() => "?").join(", ")})`
        : "";
      const rows = db.prepare(
        `SELECT ${t.cols.join(", ")} FROM ${t.name} ${where} ORDER BY ${t.key.join(", ")} LIMIT ?`,
      ).all(...(after ?? []), limit) as Row[];
      return Promise.resolve(rows.map((r) => canonical(t, r)));
    },
    insert(t, rows) {
      const stmt = db.prepare(
        `INSERT INTO ${t.name}(${t.cols.join(", ")}) VALUES (${t.cols.map(() => "?").join(", ")})`,
      );
      for (const r of rows) stmt.run(...r);
      return Promise.resolve();
    },
  };
}

function pgSide(sql: postgres.Sql | postgres.TransactionSql): Side {
  return {
    async page(t, after, limit) {
      const params: Value[] = [...(after ?? []), limit];
      const where = after
        ? `WHERE (${t.key.join(", ")}) > (${t.key.map((_, i) => `$${i + 1}`).join(", ")})`
        : "";
      const rows = await sql.unsafe(
        `SELECT ${t.cols.join(", ")} FROM ${t.name} ${where} ORDER BY ${t.key.join(", ")}
         LIMIT $${params.length}`,
        params as never[],
      ) as Row[];
      return rows.map((r) => canonical(t, r));
    },
    async insert(t, rows) {
      if (rows.length === 0) return;
      const params: (Value | boolean)[] = [];
      const search = t.name === "messages";
      const tuples = rows.map((r) => {
        const slots = t.cols.map((c, i) => {
          params.push(t.bools?.includes(c) ? r[i] === 1 : r[i]);
          return `$${params.length}`;
        });
        if (search) {
          params.push(searchWords(String(r[t.cols.indexOf("body")])).join(" "));
          slots.push(`to_tsvector('simple', $${params.length})`);
        }
        return `(${slots.join(", ")})`;
      });
      const cols = search ? [...t.cols, "search"] : t.cols;
      await sql.unsafe(
        `INSERT INTO ${t.name}(${cols.join(", ")}) VALUES ${tuples.join(", ")}`,
        params as never[],
      );
    },
  };
}

async function copyTable(from: Side, to: Side, t: Table): Promise<void> {
  let after: Value[] | null = null;
  for (;;) {
    const rows = await from.page(t, after, PAGE);
    await to.insert(t, rows);
    if (rows.length < PAGE) return;
    const last = rows[rows.length - 1];
    after = t.key.map((k) => last[t.cols.indexOf(k)]);
  }
}

/** Row count and SHA-256 over the canonical rows in key order (one JSON array per line). */
async function checksum(side: Side, t: Table): Promise<{ rows: number; sha256: string }> {
  const hash = createHash("sha256");
  let rows = 0;
  let after: Value[] | null = null;
  for (;;) {
    const page = await side.page(t, after, PAGE);
    for (const r of page) hash.update(JSON.stringify(r) + "\n");
    rows += page.length;
    if (page.length < PAGE) return { rows, sha256: hash.digest("hex") };
    const last = page[page.length - 1];
    after = t.key.map((k) => last[t.cols.indexOf(k)]);
  }
}

async function verify(a: Side, b: Side): Promise<TableCheck[]> {
  const out: TableCheck[] = [];
  for (const t of TABLES) {
    const [x, y] = [await checksum(a, t), await checksum(b, t)];
    out.push({
      table: t.name,
      sourceRows: x.rows,
      targetRows: y.rows,
      sourceSha256: x.sha256,
      targetSha256: y.sha256,
      ok: x.rows === y.rows && x.sha256 === y.sha256,
    });
  }
  return out;
}

function notEmpty(what: string, table: string): ChatError {
  return new ChatError(
    "bad_request",
    `Cannot migrate: ${what} already holds data (table ${table}); migrate into an empty one`,
  );
}

/** The highest id each sequenced table ever handed out on SQLite (AUTOINCREMENT), or max(id). */
function sqliteSequences(db: DatabaseSync): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of SEQUENCED) {
    const top = db.prepare(`SELECT coalesce(max(id), 0) AS m FROM ${t}`).get() as Row;
    out.set(t, Number(top.m));
  }
  for (const r of db.prepare("SELECT name, seq FROM sqlite_sequence").all() as Row[]) {
    const name = String(r.name);
    if (out.has(name)) out.set(name, Math.max(out.get(name)!, Number(r.seq)));
  }
  return out;
}

/**
 * Copies the SQLite database at `sqlitePath` into the (empty) PostgreSQL database at `url`, ids
 * kept, in one transaction, then verifies every table (row count and SHA-256 of its rows read
 * back from both). Sequences move above the highest id SQLite ever handed out, and the stream
 * heads are set from the copied messages. The SQLite file MUST NOT be written meanwhile (no
 * server running on the data dir).
 */
export async function copySqliteToPostgres(sqlitePath: string, url: string): Promise<TableCheck[]> {
  // Opening migrates both to the current schema (SQLite backs its file up first).
  await (SqliteStore.open({ path: sqlitePath, checkpointOnClose: true })).close();
  await (await PostgresStore.open({ url, poolSize: 2 })).close();
  const db = new DatabaseSync(sqlitePath, { readOnly: true } as never);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const source = sqliteSide(db);
    await sql.begin(async (tx) => {
      const target = pgSide(tx);
      for (const t of TABLES) {
        if ((await target.page(t, null, 1)).length > 0) throw notEmpty(redactUrl(url), t.name);
      }
      for (const t of TABLES) await copyTable(source, target, t);
      for (const [t, top] of sqliteSequences(db)) {
        await tx.unsafe(
          `SELECT setval(pg_get_serial_sequence('${t}', 'id'), greatest($1::bigint, 1), $1::bigint > 0)`,
          [top],
        );
      }
      await tx.unsafe(
        `UPDATE rooms r SET last_message_id = coalesce(
           (SELECT max(m.id) FROM messages m WHERE m.room_id = r.id), 0)`,
      );
      // DM rooms are named dm:<low id>:<high id>: both participants' streams, even a removed one's.
      await tx.unsafe(
        `UPDATE users u SET last_dm_id = coalesce((
           SELECT max(m.id) FROM rooms r JOIN messages m ON m.room_id = r.id
           WHERE r.kind = 'dm' AND u.id IN (split_part(r.name, ':', 2)::bigint,
                                            split_part(r.name, ':', 3)::bigint)), 0)`,
      );
    });
    return await verify(source, pgSide(sql));
  } finally {
    db.close();
    await sql.end({ timeout: 5 });
  }
}

/**
 * Copies the PostgreSQL database at `url` into a new SQLite database at `sqlitePath` (which MUST
 * NOT exist yet), ids kept, in one transaction, then verifies every table. SQLite's sequences
 * move above the highest id PostgreSQL handed out; the search index fills itself on first use.
 * PostgreSQL is read in one repeatable-read snapshot, so a live cluster may keep writing.
 */
export async function copyPostgresToSqlite(url: string, sqlitePath: string): Promise<TableCheck[]> {
  await (await PostgresStore.open({ url, poolSize: 2 })).close();
  await (SqliteStore.open({ path: sqlitePath })).close();
  const db = new DatabaseSync(sqlitePath);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
      const source = pgSide(tx);
      const target = sqliteSide(db);
      for (const t of TABLES) {
        if ((await target.page(t, null, 1)).length > 0) throw notEmpty(sqlitePath, t.name);
      }
      db.exec("PRAGMA foreign_keys=ON");
      db.exec("BEGIN IMMEDIATE");
      try {
        for (const t of TABLES) await copyTable(source, target, t);
        for (const t of SEQUENCED) {
          const [s] = await tx.unsafe(
            `SELECT last_value, is_called FROM ${t}_id_seq`,
          );
          const top = s.is_called ? Number(s.last_value) : 0;
          db.prepare("DELETE FROM sqlite_sequence WHERE name = ?").run(t);
          db.prepare("INSERT INTO sqlite_sequence(name, seq) VALUES (?, ?)").run(t, top);
        }
        db.exec("COMMIT");
      } catch (err) {
        if (db.isTransaction) db.exec("ROLLBACK");
        throw err;
      }
      return await verify(source, target);
    }) as TableCheck[];
  } finally {
    db.close();
    await sql.end({ timeout: 5 });
  }
}
