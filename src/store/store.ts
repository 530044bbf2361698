// Owns the storage contract: what the server needs from a database, independent of the engine.

/** A registered account. */
export interface UserRecord {
  id: number;
  /** Spelling chosen at registration, shown to others. */
  name: string;
  passwordHash: string;
  role: "admin" | "member";
  disabled: boolean;
  createdAt: number;
}

/** A room or a direct-message conversation. */
export interface RoomRecord {
  id: number;
  /** Lowercase room name, or `dm:<lowId>:<highId>` for a direct conversation. */
  name: string;
  topic: string;
  kind: "room" | "dm";
  archived: boolean;
  createdAt: number;
}

/** A stored message, as the hub delivers it. */
export interface MessageRecord {
  id: number;
  roomId: number;
  senderId: number;
  body: string;
  cid: string;
  ts: number;
}

/** What a sender asks to store. */
export interface NewMessage {
  roomId: number;
  senderId: number;
  body: string;
  cid: string;
  ts: number;
}

/** Result of storing a message: `duplicate` when (senderId, cid) was stored before. */
export interface StoredMessage {
  message: MessageRecord;
  duplicate: boolean;
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

/** Page of history. */
export interface HistoryPage {
  messages: MessageRecord[];
  more: boolean;
}

/**
 * The storage contract. Every engine runs tests/store/store_contract.ts.
 * Writes that must be durable before the caller proceeds (messages, users, audit) resolve only
 * after their transaction committed; implementations may group several into one transaction.
 */
export interface Store {
  // users
  createUser(
    u: { name: string; passwordHash: string; role?: "admin" | "member"; ts: number },
  ): Promise<UserRecord>;
  userByName(name: string): Promise<UserRecord | null>;
  userById(id: number): Promise<UserRecord | null>;
  listUsers(): Promise<UserRecord[]>;
  updateUser(
    id: number,
    patch: Partial<Pick<UserRecord, "passwordHash" | "role" | "disabled">>,
  ): Promise<void>;
  removeUser(id: number): Promise<void>;

  // rooms and memberships
  roomByName(name: string): Promise<RoomRecord | null>;
  roomById(id: number): Promise<RoomRecord | null>;
  /** Returns the room, creating it when missing. */
  ensureRoom(name: string, kind: "room" | "dm", ts: number): Promise<RoomRecord>;
  listRooms(): Promise<(RoomRecord & { members: number })[]>;
  updateRoom(id: number, patch: Partial<Pick<RoomRecord, "topic" | "archived">>): Promise<void>;
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
  /** Newest `limit` messages of a room with id < beforeId (or newest), returned oldest first. */
  history(roomId: number, limit: number, beforeId?: number): Promise<HistoryPage>;

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
  /** Consumes one use of a valid invite; false when unknown, revoked, used up or expired. */
  consumeInvite(codeHash: string, now: number): Promise<boolean>;
  listInvites(): Promise<InviteRecord[]>;
  revokeInvite(id: number): Promise<boolean>;

  // audit
  audit(entry: AuditEntry): Promise<void>;
  auditTrail(opts: { limit: number; sinceTs?: number }): Promise<(AuditEntry & { id: number })[]>;

  /** Commits pending writes and closes. Idempotent. */
  close(): Promise<void>;
}
