// Owns the SQLite schema: ordered migrations, applied by PRAGMA user_version.

/** Migration n (1-based) brings the schema from version n-1 to n. Never edit a released one. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE rooms (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'dm')),
    archived INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE memberships (
    room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
  ) WITHOUT ROWID;
  CREATE INDEX memberships_user ON memberships(user_id, room_id);
  CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    sender_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    cid TEXT NOT NULL,
    ts INTEGER NOT NULL,
    UNIQUE (sender_id, cid)
  );
  CREATE INDEX messages_room ON messages(room_id, id);
  CREATE TABLE invites (
    id INTEGER PRIMARY KEY,
    code_hash TEXT NOT NULL UNIQUE,
    uses_left INTEGER,
    expires_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    created_by TEXT
  );
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    target TEXT,
    remote TEXT,
    detail TEXT
  );
  CREATE INDEX audit_ts ON audit(ts);
  `,
  // 2: full-text search over message bodies (admin `history search`), kept in sync by triggers
  // and filled from the rows already stored; an index on ts for retention, prune and export.
  `
  CREATE VIRTUAL TABLE messages_fts USING fts5(
    body, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
  );
  CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
  END;
  CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
  END;
  CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
  END;
  INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
  CREATE INDEX messages_ts ON messages(ts);
  `,
  // 3: the search index is filled behind the hot path. An insert trigger into FTS5 cut durable
  // message throughput from ~67,000 to ~18,000 rows/s (measured, docs/PERFORMANCE.md), so new rows
  // are indexed in batches by SqliteStore.indexSearch up to a watermark; delete and update keep
  // the index right only for rows it already holds.
  `
  DROP TRIGGER messages_fts_insert;
  DROP TRIGGER messages_fts_delete;
  DROP TRIGGER messages_fts_update;
  CREATE TABLE fts_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_through INTEGER NOT NULL
  );
  INSERT INTO fts_state(id, indexed_through) VALUES (1, coalesce((SELECT max(id) FROM messages), 0));
  CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
  WHEN old.id <= (SELECT indexed_through FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
  END;
  CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
  WHEN old.id <= (SELECT indexed_through FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
  END;
  `,
  // 4: ids are never reused (issue 12). Without AUTOINCREMENT SQLite gives a new row max(id) + 1,
  // so deleting the newest account (or pruning every message) handed its id to the next insert:
  // the next registration inherited the removed user's messages and DM conversations. users,
  // rooms and messages are rebuilt with AUTOINCREMENT (rows, ids, indexes, search index rowids and
  // foreign keys kept); a removed account becomes a tombstone (removed = 1, no name_key, no hash).
  // Ids that a removed account left behind in messages and DM room names get a tombstone, and the
  // message sequence starts above the search watermark, the highest message id ever indexed.
  // Runs with foreign_keys off (SqliteStore.open checks them before COMMIT): dropping users would
  // otherwise cascade into memberships.
  `
  CREATE TABLE users_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    name_key TEXT UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    disabled INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    created_at INTEGER NOT NULL,
    CHECK ((removed = 0) = (name_key IS NOT NULL))
  );
  INSERT INTO users_v4(id, name, name_key, password_hash, role, disabled, created_at)
    SELECT id, name, name_key, password_hash, role, disabled, created_at FROM users;
  INSERT INTO users_v4(id, name, name_key, password_hash, role, disabled, removed, created_at)
    SELECT ref, '', NULL, '', 'member', 1, 1, 0 FROM (
      SELECT sender_id AS ref FROM messages
      UNION SELECT CAST(substr(name, 4, instr(substr(name, 4), ':') - 1) AS INTEGER)
        FROM rooms WHERE kind = 'dm'
      UNION SELECT CAST(substr(name, 4 + instr(substr(name, 4), ':')) AS INTEGER)
        FROM rooms WHERE kind = 'dm'
    ) WHERE ref > 0 AND ref NOT IN (SELECT id FROM users);
  CREATE TABLE rooms_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'room' CHECK (kind IN ('room', 'dm')),
    archived INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  INSERT INTO rooms_v4(id, name, topic, kind, archived, created_at)
    SELECT id, name, topic, kind, archived, created_at FROM rooms;
  CREATE TABLE messages_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    sender_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    cid TEXT NOT NULL,
    ts INTEGER NOT NULL,
    UNIQUE (sender_id, cid)
  );
  INSERT INTO messages_v4(id, room_id, sender_id, body, cid, ts)
    SELECT id, room_id, sender_id, body, cid, ts FROM messages;
  DROP TABLE messages;
  DROP TABLE rooms;
  DROP TABLE users;
  ALTER TABLE users_v4 RENAME TO users;
  ALTER TABLE rooms_v4 RENAME TO rooms;
  ALTER TABLE messages_v4 RENAME TO messages;
  CREATE INDEX messages_room ON messages(room_id, id);
  CREATE INDEX messages_ts ON messages(ts);
  CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
  WHEN old.id <= (SELECT indexed_through FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
  END;
  CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
  WHEN old.id <= (SELECT indexed_through FROM fts_state) BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body);
  END;
  INSERT INTO sqlite_sequence(name, seq)
    SELECT 'messages', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages');
  UPDATE sqlite_sequence SET seq = max(seq, (SELECT indexed_through FROM fts_state))
    WHERE name = 'messages';
  `,
  // 5: private rooms (members only; docs/PROTOCOL.md §7) and the room's owner (its creator, who
  // may set its topic under `roomTopic: "owner"`); owner_id is counted for `roomsPerUser`.
  `
  ALTER TABLE rooms ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE rooms ADD COLUMN owner_id INTEGER;
  CREATE INDEX rooms_owner ON rooms(owner_id);
  `,
  // 6: read markers (docs/PROTOCOL.md §7.1): per user, the newest message read in each room and
  // DM conversation. message_id has no foreign key: a prune may delete the message it names.
  `
  CREATE TABLE read_markers (
    user_id INTEGER NOT NULL REFERENCES users(id),
    room_id INTEGER NOT NULL REFERENCES rooms(id),
    message_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
  ) WITHOUT ROWID;
  `,
  // 7: session tokens (issue 13 item 2): reconnect without re-hashing a password. Only the SHA-256
  // of a token's secret is stored; the id is the token's public half.
  `
  CREATE TABLE session_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL,
    device TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX session_tokens_user ON session_tokens(user_id, last_used_at);
  `,
  // 8: who set a room's topic and when (IRC's RPL_TOPICWHOTIME); null for topics set before.
  `
  ALTER TABLE rooms ADD COLUMN topic_by TEXT;
  ALTER TABLE rooms ADD COLUMN topic_at INTEGER;
  `,
  // 9: a message may be a notice (IRC NOTICE: never answered automatically), so history replays
  // it as one (docs/IRC.md). Additive: older builds ignore the column and show a message.
  `
  ALTER TABLE messages ADD COLUMN notice INTEGER NOT NULL DEFAULT 0;
  `,
];

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;
