// Owns turning database rows into the Store's records, for every SQL engine alike.
import type {
  InviteRecord,
  MessageRecord,
  RoomRecord,
  SessionTokenRecord,
  UserRecord,
} from "./store.ts";

/** A row as a driver returns it: column name to value. */
export type Row = Record<string, unknown>;

/** The record builders for an engine whose boolean columns read through `flag`. */
export function rowMappers(flag: (v: unknown) => boolean) {
  return {
    toUser: (r: Row): UserRecord => ({
      id: Number(r.id),
      name: String(r.name),
      passwordHash: String(r.password_hash),
      role: r.role === "admin" ? "admin" : "member",
      disabled: flag(r.disabled),
      removed: flag(r.removed),
      createdAt: Number(r.created_at),
    }),
    toRoom: (r: Row): RoomRecord => ({
      id: Number(r.id),
      name: String(r.name),
      topic: String(r.topic),
      topicBy: r.topic_by === null || r.topic_by === undefined ? null : String(r.topic_by),
      topicAt: r.topic_at === null || r.topic_at === undefined ? null : Number(r.topic_at),
      kind: r.kind === "dm" ? "dm" : "room",
      archived: flag(r.archived),
      createdAt: Number(r.created_at),
      private: flag(r.private),
      ownerId: r.owner_id === null || r.owner_id === undefined ? null : Number(r.owner_id),
    }),
    toMessage: (r: Row): MessageRecord => ({
      id: Number(r.id),
      roomId: Number(r.room_id),
      senderId: Number(r.sender_id),
      body: String(r.body),
      cid: String(r.cid),
      ts: Number(r.ts),
      // Absent unless set, so records of ordinary messages look as they did before the column.
      ...(flag(r.notice) ? { notice: true as const } : {}),
    }),
    toInvite: (r: Row): InviteRecord => ({
      id: Number(r.id),
      codeHash: String(r.code_hash),
      usesLeft: r.uses_left === null ? null : Number(r.uses_left),
      expiresAt: r.expires_at === null ? null : Number(r.expires_at),
      revoked: flag(r.revoked),
      createdAt: Number(r.created_at),
      createdBy: r.created_by === null ? null : String(r.created_by),
    }),
    toSessionToken: (r: Row): SessionTokenRecord => ({
      id: Number(r.id),
      userId: Number(r.user_id),
      tokenHash: String(r.token_hash),
      device: String(r.device),
      createdAt: Number(r.created_at),
      lastUsedAt: Number(r.last_used_at),
      expiresAt: Number(r.expires_at),
    }),
  };
}
