// Owns the storage contract: what the server needs from a database, independent of the engine.
import { ChatError } from "../errors.ts";

/**
 * A registered account, or the tombstone of a removed one (`removed`). A tombstone keeps its id
 * forever and nothing else: its name is "" (and free for a new registration), its password hash
 * is "", it is `disabled` and belongs to no room. Show its messages as from "(removed)".
 */
export interface UserRecord {
  id: number;
  /** Spelling chosen at registration, shown to others ("" for a removed account). */
  name: string;
  passwordHash: string;
  role: "admin" | "member";
  disabled: boolean;
  removed: boolean;
  createdAt: number;
}

/** A room or a direct-message conversation. */
export interface RoomRecord {
  id: number;
  /** Lowercase room name, or `dm:<lowId>:<highId>` for a direct conversation. */
  name: string;
  topic: string;
  /** Who set the topic (an account or administrator name); null when not known or no topic. */
  topicBy?: string | null;
  /** When the topic was set (ms since the epoch); null when not known. */
  topicAt?: number | null;
  kind: "room" | "dm";
  archived: boolean;
  createdAt: number;
  /** Members only: not listed, joined or read by others (docs/PROTOCOL.md §7). Default false. */
  private?: boolean;
  /** The user who created it (null: created by an administrator, or before owners existed). */
  ownerId?: number | null;
}

/** A room to create with `createRoom`, and the limits that creation must stay within. */
export interface NewRoom {
  name: string;
  ts: number;
  private: boolean;
  ownerId: number | null;
  /** Refused (`too_many_rooms`) when this many rooms (kind room) exist already. */
  maxRooms: number;
  /** Refused (`too_many_rooms`) when the owner created this many rooms already. */
  maxPerOwner: number;
}

/** A page of the room list (`rooms` request): rooms with a name after `after`. */
export interface RoomsPageQuery {
  /** Names greater than this ("" for the first page). */
  after: string;
  limit: number;
  /** Private rooms are included only when this user is a member (undefined: all of them). */
  visibleTo?: number;
}

/** A stored message, as the hub delivers it. */
export interface MessageRecord {
  id: number;
  roomId: number;
  senderId: number;
  body: string;
  cid: string;
  ts: number;
  /** An IRC NOTICE (never answered automatically); absent for an ordinary message. */
  notice?: true;
}

/** What a sender asks to store. */
export interface NewMessage {
  roomId: number;
  senderId: number;
  body: string;
  cid: string;
  ts: number;
  /** Store it as a notice (MessageRecord.notice). */
  notice?: true;
  /** For a direct message: the participants (one id for notes to self). */
  dmUsers?: number[];
}

/**
 * A delivery stream: the messages one subscriber follows in commit order. `r:<roomId>` is a room's
 * messages; `u:<userId>` is every direct message to or from that user, all conversations together.
 */
export type StreamKey = `r:${number}` | `u:${number}`;

/** The stream of a room's messages. */
export function roomStream(roomId: number): StreamKey {
  return `r:${roomId}`;
}

/** The stream of a user's direct messages (every conversation). */
export function dmStream(userId: number): StreamKey {
  return `u:${userId}`;
}

/** A message's place in one of its streams: the id of the stream's previous message (0: none). */
export interface StreamLink {
  stream: StreamKey;
  prev: number;
}

/** Result of storing a message: `duplicate` when (senderId, cid) was stored before. */
export interface StoredMessage {
  message: MessageRecord;
  duplicate: boolean;
  /**
   * For a new message, its link in every stream it belongs to (its room's, or both participants'
   * DM streams). Empty for a duplicate. Fan-out uses the links to deliver each stream in commit
   * order however late (or out of order) results and bus events arrive.
   */
  links: StreamLink[];
}

/** One line of the audit trail. Never holds a password or a message body. */
export interface AuditEntry {
  ts: number;
  actor: string | null;
  action: string;
  target: string | null;
  remote: string | null;
  detail?: Record<string, unknown>;
}

/** An invite code (only its SHA-256 is stored). */
export interface InviteRecord {
  id: number;
  codeHash: string;
  usesLeft: number | null;
  expiresAt: number | null;
  revoked: boolean;
  createdAt: number;
  createdBy: string | null;
}

/**
 * A session token (docs/PROTOCOL.md §2.1): only the SHA-256 of its secret is stored. `id` is the
 * public half of the token, `tokenHash` the hex SHA-256 of the secret half.
 */
export interface SessionTokenRecord {
  id: number;
  userId: number;
  tokenHash: string;
  /** The device label the client gave (1–64 characters). */
  device: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
}

/** Which messages an admin export, count or prune looks at. All bounds optional. */
export interface MessageFilter {
  roomId?: number;
  /** Only messages with `ts >= sinceTs`. */
  sinceTs?: number;
  /** Only messages with `ts < untilTs`. */
  untilTs?: number;
}

/** Row counts every engine reports, and the figures only one engine has, for `chat admin stats`. */
export interface StorageStats {
  /** Accounts (not counting removed ones), rooms (not DMs), stored messages. */
  users: number;
  rooms: number;
  messages: number;
  engine: EngineStats;
}

/**
 * What only the engine can tell, by name. SQLite: `fileBytes` and `walBytes` (main file and its
 * write-ahead log), `freeBytes` (inside the file, holding no data), and this process's group-commit
 * counters `commitBatches`, `commitWrites`, `walSyncs`. A name ending in `Bytes` is a byte count.
 */
export interface EngineStats {
  name: string;
  figures: Record<string, number>;
}

/** A user's read marker in one room or DM conversation, and what is unread behind it. */
export interface UnreadCount {
  roomId: number;
  /** The marker: id of the newest message read there (0: none). */
  readId: number;
  /** Messages with readId < id <= the through id asked for, sent by someone else. */
  unread: number;
}

/** Page of history. */
export interface HistoryPage {
  messages: MessageRecord[];
  more: boolean;
}

/**
 * The storage contract. Every engine runs tests/store/store_contract.ts, directly and wrapped in
 * tests/store/slow_store.ts (answers delivered late and out of order).
 *
 * 1. Writes that must be durable before the caller proceeds (messages, users, audit) resolve only
 *    after their transaction committed; implementations may group several into one transaction.
 * 2. Writes issued by one caller are applied in call order, whether or not the caller awaits each:
 *    the engine MUST NOT reorder two calls made one after the other, however late answers come.
 *    So one caller's appendMessage calls get ids that increase in call order.
 * 3. Ids (users, rooms, messages) are unique forever and never reused, not after `removeUser`,
 *    not after `pruneMessages`, not after a restart: a new row's id is above every id handed out.
 * 4. Ordering (the delivery model, docs/DEVELOPERS.md): within one stream (a room; one user's
 *    direct messages, all conversations), message ids increase in commit order: a reader that sees
 *    id N of a stream also sees every earlier id of that stream. With several writers (nodes on
 *    one database) an engine MUST serialise commits per stream to keep this (a row lock on the
 *    room and on each DM participant, taken before the id is drawn). Every list of messages is in
 *    ascending id unless it says otherwise.
 */
export interface Store {
  // users
  /**
   * Creates an account; `user_exists` when the name (any case) is taken. With `inviteCodeHash`,
   * consumes one use of that invite in the same transaction (valid at `ts`): `invalid_invite` when
   * it is unknown, revoked, used up or expired, and then nothing is created; a taken name consumes
   * no use. So concurrent registrations never lose a use nor take one twice.
   */
  createUser(
    u: {
      name: string;
      passwordHash: string;
      role?: "admin" | "member";
      ts: number;
      inviteCodeHash?: string;
    },
  ): Promise<UserRecord>;
  /** The account with this name (any case); never a removed one. */
  userByName(name: string): Promise<UserRecord | null>;
  /** The account with this id, or its tombstone (`removed`) when it was removed. */
  userById(id: number): Promise<UserRecord | null>;
  /** Accounts ordered by name, without removed ones. */
  listUsers(): Promise<UserRecord[]>;
  updateUser(
    id: number,
    patch: Partial<Pick<UserRecord, "passwordHash" | "role" | "disabled">>,
  ): Promise<void>;
  /**
   * Turns the account into a tombstone (see UserRecord): frees its name, wipes its password hash,
   * leaves all its rooms, deletes its session tokens. Its id, and its messages under that id, stay. Unknown ids: no effect.
   */
  removeUser(id: number): Promise<void>;

  // rooms and memberships
  roomByName(name: string): Promise<RoomRecord | null>;
  roomById(id: number): Promise<RoomRecord | null>;
  /** Returns the room, creating it when missing. */
  ensureRoom(name: string, kind: "room" | "dm", ts: number): Promise<RoomRecord>;
  listRooms(): Promise<(RoomRecord & { members: number })[]>;
  /**
   * Changes a room. A patch with `topic` also sets `topicBy` and `topicAt` (to null when the patch
   * does not give them: who set a topic is never kept from an earlier one).
   */
  updateRoom(
    id: number,
    patch: Partial<Pick<RoomRecord, "topic" | "topicBy" | "topicAt" | "archived" | "private">>,
  ): Promise<void>;
  /**
   * Creates a room (kind room) unless it exists; the limits are checked in the same transaction
   * as the insert, so concurrent creators cannot pass them together. Resolves with the room and
   * whether this call created it.
   * @throws {ChatError} `too_many_rooms` when a limit would be passed (nothing is created).
   */
  createRoom(r: NewRoom): Promise<{ room: RoomRecord; created: boolean }>;
  /** Rooms (kind room, not archived) by name after `q.after`, with member counts. */
  roomsPage(q: RoomsPageQuery): Promise<(RoomRecord & { members: number })[]>;
  /** Ids and names of a room's members, by name. */
  roomMembers(roomId: number): Promise<{ id: number; name: string }[]>;
  addMember(roomId: number, userId: number, ts: number): Promise<void>;
  removeMember(roomId: number, userId: number): Promise<void>;
  /** Rooms (kind room, not archived) the user belongs to. */
  roomsOfUser(userId: number): Promise<RoomRecord[]>;
  isMember(roomId: number, userId: number): Promise<boolean>;

  // messages
  /** Stores a message; resolves after commit. Idempotent on (senderId, cid). */
  appendMessage(m: NewMessage): Promise<StoredMessage>;
  /** Messages of a room with id > afterId, oldest first, at most limit. */
  messagesAfter(roomId: number, afterId: number, limit: number): Promise<MessageRecord[]>;
  /** Direct messages involving the user with id > afterId, oldest first. */
  directMessagesAfter(userId: number, afterId: number, limit: number): Promise<MessageRecord[]>;
  /** Newest message id of each given room, and of the user's direct messages (0 when none). */
  latestIds(userId: number, roomIds: number[]): Promise<{ rooms: Map<number, number>; dm: number }>;
  /**
   * Newest message id of each stream (0 when empty), as committed now. Fan-out reads it once per
   * stream when the first subscriber of this process arrives (the point live delivery starts).
   */
  streamHeads(keys: StreamKey[]): Promise<Map<StreamKey, number>>;
  /** Messages of a stream with afterId < id < beforeId (beforeId optional), oldest first. */
  streamAfter(
    key: StreamKey,
    afterId: number,
    limit: number,
    beforeId?: number,
  ): Promise<MessageRecord[]>;
  /** Newest `limit` messages of a room with id < beforeId (or newest), returned oldest first. */
  history(roomId: number, limit: number, beforeId?: number): Promise<HistoryPage>;

  // read markers (docs/PROTOCOL.md §7.1)
  /**
   * Moves the user's marker in a room or DM conversation forward to `messageId` (a lower or equal
   * id leaves it); resolves after commit with the marker now stored and whether this call moved
   * it. Like every write, applied in call order.
   */
  setReadMarker(
    userId: number,
    roomId: number,
    messageId: number,
  ): Promise<{ readId: number; moved: boolean }>;
  /**
   * The user's markers and unread counts: one entry for every room of `q.rooms` (roomId → the id
   * to count through), in that order, and, when `q.dmThrough` is given, one for each DM
   * conversation the user is a member of that has an unread message up to it, newest
   * conversation (highest room id) first, at most `q.dmLimit` (default 200).
   */
  unreadCounts(
    userId: number,
    q: { rooms: Map<number, number>; dmThrough?: number; dmLimit?: number },
  ): Promise<UnreadCount[]>;

  // invites
  createInvite(
    i: {
      codeHash: string;
      usesLeft: number | null;
      expiresAt: number | null;
      ts: number;
      createdBy: string | null;
    },
  ): Promise<InviteRecord>;
  listInvites(): Promise<InviteRecord[]>;
  revokeInvite(id: number): Promise<boolean>;

  // session tokens
  /**
   * Stores a new token; resolves after commit. Then deletes the user's tokens expired at
   * `t.createdAt`, and the least recently used ones past the newest `keep` (so the new one stays).
   */
  createSessionToken(t: Omit<SessionTokenRecord, "id">, keep: number): Promise<SessionTokenRecord>;
  /** The token with this id (expired or not), or null when unknown or revoked. */
  sessionToken(id: number): Promise<SessionTokenRecord | null>;
  /** The user's tokens, oldest id first. */
  listSessionTokens(userId: number): Promise<SessionTokenRecord[]>;
  /** Sets a token's last use (nothing when it is gone). */
  touchSessionToken(id: number, lastUsedAt: number): Promise<void>;
  /**
   * Deletes the user's token `id`, or all of the user's tokens when `id` is omitted; resolves
   * after commit with the ids deleted (a token of another user is never touched).
   */
  revokeSessionTokens(userId: number, id?: number): Promise<number[]>;

  // audit
  audit(entry: AuditEntry): Promise<void>;
  auditTrail(opts: { limit: number; sinceTs?: number }): Promise<(AuditEntry & { id: number })[]>;

  // administration
  /** How many messages match, and the highest id among them (0 when none). */
  messageRange(f: MessageFilter): Promise<{ count: number; maxId: number }>;
  /** Messages matching `f` with afterId < id <= maxId, oldest first, at most `limit` (export). */
  messagesPage(
    f: MessageFilter & { afterId: number; maxId: number; limit: number },
  ): Promise<MessageRecord[]>;
  /**
   * Full-text search, newest first. `text` is plain words, all of which must occur (case and
   * accents ignored); a word ending in `*` matches as a prefix. No other query syntax applies.
   * `memberId`: only rooms and DM conversations that user is a member of (archived rooms not).
   */
  searchMessages(
    q: { text: string; roomId?: number; sinceTs?: number; memberId?: number; limit: number },
  ): Promise<MessageRecord[]>;
  /**
   * Deletes messages with `ts < beforeTs` (in the room, when given), in several short
   * transactions so live writes interleave; resolves with how many were deleted.
   */
  pruneMessages(beforeTs: number, roomId?: number): Promise<number>;
  storageStats(): Promise<StorageStats>;

  /** Commits pending writes and closes. Idempotent. */
  close(): Promise<void>;
}

/** The error of a registration whose invite is unknown, revoked, used up or expired. */
export function invalidInvite(): ChatError {
  return new ChatError(
    "invalid_invite",
    "Cannot register: the invite is unknown, used up or expired",
  );
}
