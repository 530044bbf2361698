// Owns SlowStore: any Store, answering late and out of order, as an asynchronous engine would.
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
  UnreadCount,
  UserRecord,
} from "../../src/store/store.ts";
import { prng } from "../harness/prng.ts";

/** Longest delay of an answer, in ms. */
const MAX_DELAY_MS = 3;

/**
 * Wraps a Store so that it behaves like an engine on the other end of a network (PostgreSQL).
 *
 * 1. Every call is forwarded to the wrapped store at once, so the engine sees calls in call order.
 * 2. Its answer (value or rejection) is delivered after a random 0–3 ms delay, so answers come
 *    back late and in any order: a later call may resolve before an earlier one.
 * 3. The delays come from a PRNG seeded with `seed` (default: random; `CHAT_SLOW_STORE_SEED` in the
 *    environment replays one). `seed` is public so that a failing test can print it.
 * 4. `close()` closes the wrapped store (and answers late like every other call).
 */
export class SlowStore implements Store {
  readonly seed: number;
  #inner: Store;
  #random: () => number;

  constructor(inner: Store, opts: { seed?: number } = {}) {
    this.#inner = inner;
    this.seed = opts.seed ?? envSeed() ?? Math.floor(Math.random() * 2 ** 32);
    this.#random = prng(this.seed);
  }

  /** Calls `fn` now; settles with its outcome after this call's random delay. */
  #late<T>(fn: () => Promise<T>): Promise<T> {
    let answer: Promise<T>;
    try {
      answer = fn();
    } catch (err) {
      answer = Promise.reject(err);
    }
    const delay = this.#random() * MAX_DELAY_MS;
    const wait = () => new Promise<void>((r) => setTimeout(r, delay));
    return answer.then(
      async (value) => {
        await wait();
        return value;
      },
      async (err) => {
        await wait();
        throw err;
      },
    );
  }

  createUser(
    u: { name: string; passwordHash: string; role?: "admin" | "member"; ts: number },
  ): Promise<UserRecord> {
    return this.#late(() => this.#inner.createUser(u));
  }
  userByName(name: string): Promise<UserRecord | null> {
    return this.#late(() => this.#inner.userByName(name));
  }
  userById(id: number): Promise<UserRecord | null> {
    return this.#late(() => this.#inner.userById(id));
  }
  listUsers(): Promise<UserRecord[]> {
    return this.#late(() => this.#inner.listUsers());
  }
  updateUser(
    id: number,
    patch: Partial<Pick<UserRecord, "passwordHash" | "role" | "disabled">>,
  ): Promise<void> {
    return this.#late(() => this.#inner.updateUser(id, patch));
  }
  removeUser(id: number): Promise<void> {
    return this.#late(() => this.#inner.removeUser(id));
  }

  roomByName(name: string): Promise<RoomRecord | null> {
    return this.#late(() => this.#inner.roomByName(name));
  }
  roomById(id: number): Promise<RoomRecord | null> {
    return this.#late(() => this.#inner.roomById(id));
  }
  ensureRoom(name: string, kind: "room" | "dm", ts: number): Promise<RoomRecord> {
    return this.#late(() => this.#inner.ensureRoom(name, kind, ts));
  }
  listRooms(): Promise<(RoomRecord & { members: number })[]> {
    return this.#late(() => this.#inner.listRooms());
  }
  updateRoom(
    id: number,
    patch: Partial<Pick<RoomRecord, "topic" | "topicBy" | "topicAt" | "archived" | "private">>,
  ): Promise<void> {
    return this.#late(() => this.#inner.updateRoom(id, patch));
  }
  createRoom(r: NewRoom): Promise<{ room: RoomRecord; created: boolean }> {
    return this.#late(() => this.#inner.createRoom(r));
  }
  roomsPage(q: RoomsPageQuery): Promise<(RoomRecord & { members: number })[]> {
    return this.#late(() => this.#inner.roomsPage(q));
  }
  roomMembers(roomId: number): Promise<{ id: number; name: string }[]> {
    return this.#late(() => this.#inner.roomMembers(roomId));
  }
  addMember(roomId: number, userId: number, ts: number): Promise<void> {
    return this.#late(() => this.#inner.addMember(roomId, userId, ts));
  }
  removeMember(roomId: number, userId: number): Promise<void> {
    return this.#late(() => this.#inner.removeMember(roomId, userId));
  }
  roomsOfUser(userId: number): Promise<RoomRecord[]> {
    return this.#late(() => this.#inner.roomsOfUser(userId));
  }
  isMember(roomId: number, userId: number): Promise<boolean> {
    return this.#late(() => this.#inner.isMember(roomId, userId));
  }

  appendMessage(m: NewMessage): Promise<StoredMessage> {
    return this.#late(() => this.#inner.appendMessage(m));
  }
  messagesAfter(roomId: number, afterId: number, limit: number): Promise<MessageRecord[]> {
    return this.#late(() => this.#inner.messagesAfter(roomId, afterId, limit));
  }
  directMessagesAfter(userId: number, afterId: number, limit: number): Promise<MessageRecord[]> {
    return this.#late(() => this.#inner.directMessagesAfter(userId, afterId, limit));
  }
  latestIds(
    userId: number,
    roomIds: number[],
  ): Promise<{ rooms: Map<number, number>; dm: number }> {
    return this.#late(() => this.#inner.latestIds(userId, roomIds));
  }
  streamHeads(keys: StreamKey[]): Promise<Map<StreamKey, number>> {
    return this.#late(() => this.#inner.streamHeads(keys));
  }
  streamAfter(
    key: StreamKey,
    afterId: number,
    limit: number,
    beforeId?: number,
  ): Promise<MessageRecord[]> {
    return this.#late(() => this.#inner.streamAfter(key, afterId, limit, beforeId));
  }
  history(roomId: number, limit: number, beforeId?: number): Promise<HistoryPage> {
    return this.#late(() => this.#inner.history(roomId, limit, beforeId));
  }

  setReadMarker(
    userId: number,
    roomId: number,
    messageId: number,
  ): Promise<{ readId: number; moved: boolean }> {
    return this.#late(() => this.#inner.setReadMarker(userId, roomId, messageId));
  }
  unreadCounts(
    userId: number,
    q: { rooms: Map<number, number>; dmThrough?: number; dmLimit?: number },
  ): Promise<UnreadCount[]> {
    return this.#late(() => this.#inner.unreadCounts(userId, q));
  }

  createInvite(
    i: {
      codeHash: string;
      usesLeft: number | null;
      expiresAt: number | null;
      ts: number;
      createdBy: string | null;
    },
  ): Promise<InviteRecord> {
    return this.#late(() => this.#inner.createInvite(i));
  }
  listInvites(): Promise<InviteRecord[]> {
    return this.#late(() => this.#inner.listInvites());
  }
  revokeInvite(id: number): Promise<boolean> {
    return this.#late(() => this.#inner.revokeInvite(id));
  }

  createSessionToken(
    t: Omit<SessionTokenRecord, "id">,
    keep: number,
  ): Promise<SessionTokenRecord> {
    return this.#late(() => this.#inner.createSessionToken(t, keep));
  }
  sessionToken(id: number): Promise<SessionTokenRecord | null> {
    return this.#late(() => this.#inner.sessionToken(id));
  }
  listSessionTokens(userId: number): Promise<SessionTokenRecord[]> {
    return this.#late(() => this.#inner.listSessionTokens(userId));
  }
  touchSessionToken(id: number, lastUsedAt: number): Promise<void> {
    return this.#late(() => this.#inner.touchSessionToken(id, lastUsedAt));
  }
  revokeSessionTokens(userId: number, id?: number): Promise<number[]> {
    return this.#late(() => this.#inner.revokeSessionTokens(userId, id));
  }

  audit(entry: AuditEntry): Promise<void> {
    return this.#late(() => this.#inner.audit(entry));
  }
  auditTrail(opts: { limit: number; sinceTs?: number }): Promise<(AuditEntry & { id: number })[]> {
    return this.#late(() => this.#inner.auditTrail(opts));
  }

  messageRange(f: MessageFilter): Promise<{ count: number; maxId: number }> {
    return this.#late(() => this.#inner.messageRange(f));
  }
  messagesPage(
    f: MessageFilter & { afterId: number; maxId: number; limit: number },
  ): Promise<MessageRecord[]> {
    return this.#late(() => this.#inner.messagesPage(f));
  }
  searchMessages(
    q: { text: string; roomId?: number; sinceTs?: number; memberId?: number; limit: number },
  ): Promise<MessageRecord[]> {
    return this.#late(() => this.#inner.searchMessages(q));
  }
  pruneMessages(beforeTs: number, roomId?: number): Promise<number> {
    return this.#late(() => this.#inner.pruneMessages(beforeTs, roomId));
  }
  storageStats(): Promise<StorageStats> {
    return this.#late(() => this.#inner.storageStats());
  }

  close(): Promise<void> {
    return this.#late(() => this.#inner.close());
  }
}

function envSeed(): number | undefined {
  let raw: string | undefined;
  try {
    raw = Deno.env.get("CHAT_SLOW_STORE_SEED");
  } catch { /* no env permission */ }
  return raw && /^\d+$/.test(raw) ? Number(raw) : undefined;
}
