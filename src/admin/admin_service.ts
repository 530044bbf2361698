// Owns what an administrator may change — users, invites, rooms, certificates, history — and its
// audit lines. The same code runs inside the server (admin socket) and in the CLI (no server).
import { ChatError } from "../errors.ts";
import { checkRoomName, checkUserName, hasUnsafeText } from "../protocol/text_rules.ts";
import { inviteCodeHash } from "../server/auth.ts";
import type { ServerStats } from "../server/server.ts";
import type { InviteRecord, RoomRecord, StorageStats, Store, UserRecord } from "../store/store.ts";

/** Account roles. */
export type Role = "admin" | "member";

/** A user as admin output shows it: never the password hash. */
export interface UserView {
  id: number;
  name: string;
  role: Role;
  disabled: boolean;
  createdAt: number;
}

/** `users show`: the user, their rooms, and live sessions (null when no server runs). */
export interface UserDetail extends UserView {
  rooms: string[];
  online: number | null;
}

/** A session token as listed (never the token: only its id, the public half). */
export interface SessionView {
  id: number;
  device: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
}

/** `users sessions`: the user's tokens, and what a `--revoke` took away. */
export interface SessionsResult {
  sessions: SessionView[];
  revoked: number[];
  kicked: number;
}

/** An invite as listed; the code itself is never stored and never shown again. */
export interface InviteView {
  id: number;
  status: "active" | "revoked" | "expired" | "used up";
  usesLeft: number | null;
  expiresAt: number | null;
  createdAt: number;
  createdBy: string | null;
}

/** A room as listed. */
export interface RoomView {
  id: number;
  name: string;
  topic: string;
  archived: boolean;
  /** Members only (docs/PROTOCOL.md §7). */
  private: boolean;
  members: number;
  createdAt: number;
}

/** Live numbers of a running server (`chat admin stats`). */
export interface LiveStats extends Omit<ServerStats, "loop"> {
  uptimeMs: number;
  /** Event-loop lag (ServerStats.loop); absent from a server that does not report it. */
  loop?: ServerStats["loop"];
  certificate: { fingerprint: string; notAfter: number };
  retentionDays: number;
  storage: StorageStats;
}

/** What a running server lets the admin service do to live state. */
export interface LiveHooks {
  /** Closes every session of the user with `bye` `kicked`; returns how many. */
  kickUser(userId: number, message: string): number;
  /** Closes the user's sessions that used one of these session tokens; returns how many. */
  kickTokens(userId: number, tokenIds: number[], message: string): number;
  /** Sessions the user has open now. */
  sessionsOf(userId: number): number;
  /** Drops the server's cached name of a user after the account was removed. */
  forgetUser(userId: number): void;
  /** Drops the server's cached copy of a room after it changed. */
  invalidateRoom(name: string): void;
  /** A member was added to or removed from a room: their sessions follow on every node. */
  membershipChanged(room: RoomRecord, userId: number, change: "added" | "removed"): void;
  /** Loads the server's certificate files again and serves them to new connections. */
  reloadCertificate(): Promise<{ fingerprint: string; certPath: string }>;
  stats(): Promise<LiveStats>;
}

/** Audit actions a client may record for work it did itself (reads of the database). */
export const RECORDABLE_ACTIONS = ["history.export", "history.search"] as const;

/** Topics: this many UTF-8 bytes at most. */
export const MAX_TOPIC_BYTES = 300;

const PHC_ARGON2ID = /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** `bytes` as lowercase RFC 4648 base32 without padding. */
export function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

function userView(u: UserRecord): UserView {
  return { id: u.id, name: u.name, role: u.role, disabled: u.disabled, createdAt: u.createdAt };
}

function inviteView(i: InviteRecord, now: number): InviteView {
  const status = i.revoked
    ? "revoked"
    : i.expiresAt !== null && i.expiresAt <= now
    ? "expired"
    : i.usesLeft !== null && i.usesLeft <= 0
    ? "used up"
    : "active";
  return {
    id: i.id,
    status,
    usesLeft: i.usesLeft,
    expiresAt: i.expiresAt,
    createdAt: i.createdAt,
    createdBy: i.createdBy,
  };
}

function roomView(r: RoomRecord, members: number): RoomView {
  return {
    id: r.id,
    name: r.name,
    topic: r.topic,
    archived: r.archived,
    private: r.private === true,
    members,
    createdAt: r.createdAt,
  };
}

/**
 * Administrative operations on a Store.
 *
 * - Every change is checked first and then written; a wrong input throws a ChatError
 *   ("Cannot <action>: <detail>") and changes nothing.
 * - Every change writes one audit line: actor `admin:<os user>`, remote `local`.
 * - With `live` hooks (inside a running server) changes reach live state at once: disabled or
 *   removed users are kicked, changed rooms leave the room cache, certificates are reloaded.
 *   Without them (no server runs) the next server start reads the new state from the database.
 */
export class AdminService {
  #store: Store;
  #clock: () => number;
  #live: LiveHooks | undefined;
  #random: (n: number) => Uint8Array;

  constructor(
    opts: {
      store: Store;
      clock?: () => number;
      live?: LiveHooks;
      random?: (n: number) => Uint8Array;
    },
  ) {
    this.#store = opts.store;
    this.#clock = opts.clock ?? Date.now;
    this.#live = opts.live;
    this.#random = opts.random ?? ((n) => crypto.getRandomValues(new Uint8Array(n)));
  }

  /** True inside a running server. */
  get live(): boolean {
    return this.#live !== undefined;
  }

  async #audit(
    actor: string,
    action: string,
    target: string | null,
    detail?: Record<string, unknown>,
  ): Promise<void> {
    await this.#store.audit({ ts: this.#clock(), actor, action, target, remote: "local", detail });
  }

  async #user(name: string, action: string): Promise<UserRecord> {
    const u = await this.#store.userByName(name);
    if (!u) throw new ChatError("no_such_user", `Cannot ${action} ${name}: no such user`);
    return u;
  }

  async #room(name: string, action: string): Promise<RoomRecord> {
    const key = checkRoomName(name);
    const r = await this.#store.roomByName(key);
    if (!r || r.kind !== "room") {
      throw new ChatError("no_such_room", `Cannot ${action} ${key}: no such room`);
    }
    return r;
  }

  // users

  async addUser(
    actor: string,
    a: { name: string; passwordHash: string; role: Role },
  ): Promise<UserView> {
    const name = checkUserName(a.name);
    if (!PHC_ARGON2ID.test(a.passwordHash)) {
      throw new ChatError("bad_request", "Cannot add user: the password hash is not argon2id");
    }
    if (await this.#store.userByName(name)) {
      throw new ChatError("user_exists", `Cannot add user ${name}: the name is taken`);
    }
    const u = await this.#store.createUser({
      name,
      passwordHash: a.passwordHash,
      role: a.role,
      ts: this.#clock(),
    });
    await this.#audit(actor, "users.add", u.name, { role: u.role });
    return userView(u);
  }

  async showUser(a: { name: string }): Promise<UserDetail> {
    const u = await this.#user(a.name, "show");
    const rooms = (await this.#store.roomsOfUser(u.id)).map((r) => r.name);
    return { ...userView(u), rooms, online: this.#live ? this.#live.sessionsOf(u.id) : null };
  }

  async setPassword(
    actor: string,
    a: { name: string; passwordHash: string; kick: boolean },
  ): Promise<{ kicked: number }> {
    const u = await this.#user(a.name, "change the password of");
    if (!PHC_ARGON2ID.test(a.passwordHash)) {
      throw new ChatError("bad_request", "Cannot change password: the hash is not argon2id");
    }
    await this.#store.updateUser(u.id, { passwordHash: a.passwordHash });
    // A new password ends every session token (reconnects must log in with the new password).
    await this.#store.revokeSessionTokens(u.id);
    const kicked = a.kick
      ? this.#live?.kickUser(u.id, "Your password was reset by an administrator") ?? 0
      : 0;
    await this.#audit(actor, "users.passwd", u.name, { kicked });
    return { kicked };
  }

  async disableUser(
    actor: string,
    a: { name: string },
  ): Promise<{ changed: boolean; kicked: number }> {
    const u = await this.#user(a.name, "disable");
    if (!u.disabled) await this.#store.updateUser(u.id, { disabled: true });
    await this.#store.revokeSessionTokens(u.id);
    // Kick even when it was disabled already: a login racing the earlier disable may have slipped in.
    const kicked = this.#live?.kickUser(u.id, "Your account was disabled by an administrator") ?? 0;
    await this.#audit(actor, "users.disable", u.name, { kicked });
    return { changed: !u.disabled, kicked };
  }

  async enableUser(actor: string, a: { name: string }): Promise<{ changed: boolean }> {
    const u = await this.#user(a.name, "enable");
    if (u.disabled) await this.#store.updateUser(u.id, { disabled: false });
    await this.#audit(actor, "users.enable", u.name);
    return { changed: u.disabled };
  }

  async removeUser(actor: string, a: { name: string }): Promise<{ kicked: number }> {
    const u = await this.#user(a.name, "remove");
    await this.#store.revokeSessionTokens(u.id);
    await this.#store.removeUser(u.id);
    this.#live?.forgetUser(u.id);
    const kicked = this.#live?.kickUser(u.id, "Your account was removed by an administrator") ?? 0;
    await this.#audit(actor, "users.remove", u.name, { id: u.id, kicked });
    return { kicked };
  }

  /**
   * Lists the user's session tokens; with `revoke` (a token id, or "all") deletes it or them first
   * and closes the sessions that used them.
   */
  async sessions(
    actor: string,
    a: { name: string; revoke: number | "all" | null },
  ): Promise<SessionsResult> {
    const u = await this.#user(a.name, "list the sessions of");
    let revoked: number[] = [];
    let kicked = 0;
    if (a.revoke !== null) {
      revoked = await this.#store.revokeSessionTokens(
        u.id,
        a.revoke === "all" ? undefined : a.revoke,
      );
      if (a.revoke !== "all" && revoked.length === 0) {
        throw new ChatError(
          "bad_request",
          `Cannot revoke session ${a.revoke} of ${u.name}: no such session`,
        );
      }
      kicked = this.#live?.kickTokens(
        u.id,
        revoked,
        "Your session was revoked by an administrator",
      ) ?? 0;
      await this.#audit(actor, "users.sessions.revoke", u.name, { revoked, kicked });
    }
    const sessions = (await this.#store.listSessionTokens(u.id)).map((t) => ({
      id: t.id,
      device: t.device,
      createdAt: t.createdAt,
      lastUsedAt: t.lastUsedAt,
      expiresAt: t.expiresAt,
    }));
    return { sessions, revoked, kicked };
  }

  async setRole(actor: string, a: { name: string; role: Role }): Promise<{ changed: boolean }> {
    const u = await this.#user(a.name, "change the role of");
    if (u.role !== a.role) await this.#store.updateUser(u.id, { role: a.role });
    // A grant (to admin) or a revoke (back to member) is recorded with who did it.
    const change = u.role === a.role ? "none" : a.role === "admin" ? "grant" : "revoke";
    await this.#audit(actor, "users.role", u.name, { from: u.role, to: a.role, change });
    return { changed: u.role !== a.role };
  }

  // invites

  /** Creates an invite; the code (160 random bits, base32) is returned once and never stored. */
  async createInvite(
    actor: string,
    a: { uses: number | null; expiresAt: number | null },
  ): Promise<{ code: string; invite: InviteView }> {
    const now = this.#clock();
    if (a.uses !== null && (!Number.isInteger(a.uses) || a.uses < 1)) {
      throw new ChatError("bad_request", "Cannot create invite: uses must be a positive integer");
    }
    if (a.expiresAt !== null && a.expiresAt <= now) {
      throw new ChatError("bad_request", "Cannot create invite: the expiry is in the past");
    }
    const code = base32(this.#random(20));
    const record = await this.#store.createInvite({
      codeHash: await inviteCodeHash(code),
      usesLeft: a.uses,
      expiresAt: a.expiresAt,
      ts: now,
      createdBy: actor,
    });
    await this.#audit(actor, "invites.create", `invite ${record.id}`, {
      uses: a.uses,
      expiresAt: a.expiresAt,
    });
    return { code, invite: inviteView(record, now) };
  }

  async listInvites(): Promise<InviteView[]> {
    const now = this.#clock();
    return (await this.#store.listInvites()).map((i) => inviteView(i, now));
  }

  async revokeInvite(actor: string, a: { id: number }): Promise<{ changed: boolean }> {
    const existing = (await this.#store.listInvites()).find((i) => i.id === a.id);
    if (!existing) {
      throw new ChatError("no_such_invite", `Cannot revoke invite ${a.id}: no such invite`);
    }
    if (!existing.revoked) await this.#store.revokeInvite(a.id);
    await this.#audit(actor, "invites.revoke", `invite ${a.id}`);
    return { changed: !existing.revoked };
  }

  // rooms

  async listRooms(): Promise<RoomView[]> {
    return (await this.#store.listRooms()).map((r) => roomView(r, r.members));
  }

  async createRoom(actor: string, a: { name: string; topic: string }): Promise<RoomView> {
    const name = checkRoomName(a.name);
    const topic = checkTopic(a.topic, "create room");
    if (await this.#store.roomByName(name)) {
      throw new ChatError("room_exists", `Cannot create room ${name}: it exists already`);
    }
    const r = await this.#store.ensureRoom(name, "room", this.#clock());
    if (topic !== "") {
      await this.#store.updateRoom(r.id, { topic, topicBy: actor, topicAt: this.#clock() });
    }
    this.#live?.invalidateRoom(name);
    await this.#audit(actor, "rooms.create", name, topic ? { topic } : undefined);
    return roomView({ ...r, topic }, 0);
  }

  async setTopic(actor: string, a: { name: string; topic: string }): Promise<{ changed: boolean }> {
    const r = await this.#room(a.name, "set the topic of");
    const topic = checkTopic(a.topic, "set topic");
    if (r.topic !== topic) {
      await this.#store.updateRoom(r.id, { topic, topicBy: actor, topicAt: this.#clock() });
    }
    this.#live?.invalidateRoom(r.name);
    await this.#audit(actor, "rooms.topic", r.name, { topic });
    return { changed: r.topic !== topic };
  }

  async setArchived(
    actor: string,
    a: { name: string; archived: boolean },
  ): Promise<{ changed: boolean }> {
    const action = a.archived ? "archive" : "unarchive";
    const r = await this.#room(a.name, action);
    if (r.name === "general") {
      throw new ChatError("cannot_archive", `Cannot ${action} general: everyone is always in it`);
    }
    if (r.archived !== a.archived) await this.#store.updateRoom(r.id, { archived: a.archived });
    this.#live?.invalidateRoom(r.name);
    await this.#audit(actor, `rooms.${action}`, r.name);
    return { changed: r.archived !== a.archived };
  }

  async setPrivate(
    actor: string,
    a: { name: string; private: boolean },
  ): Promise<{ changed: boolean }> {
    const action = a.private ? "make private" : "make public";
    const r = await this.#room(a.name, action);
    if (r.name === "general") {
      throw new ChatError("bad_request", `Cannot ${action} general: everyone is always in it`);
    }
    const was = r.private === true;
    if (was !== a.private) await this.#store.updateRoom(r.id, { private: a.private });
    this.#live?.invalidateRoom(r.name);
    await this.#audit(actor, a.private ? "rooms.private" : "rooms.public", r.name);
    return { changed: was !== a.private };
  }

  async roomMembers(a: { name: string }): Promise<{ room: string; members: string[] }> {
    const r = await this.#room(a.name, "list the members of");
    return { room: r.name, members: (await this.#store.roomMembers(r.id)).map((m) => m.name) };
  }

  /** Adds (`add`) or removes a member; their live sessions follow; audited with the actor. */
  async setMember(
    actor: string,
    a: { name: string; user: string; add: boolean },
  ): Promise<{ changed: boolean }> {
    const action = a.add ? "add a member to" : "remove a member from";
    const r = await this.#room(a.name, action);
    if (r.name === "general" && !a.add) {
      throw new ChatError(
        "cannot_part",
        "Cannot remove a member from general: everyone stays in it",
      );
    }
    const u = await this.#user(a.user, a.add ? "add" : "remove");
    const was = await this.#store.isMember(r.id, u.id);
    if (a.add && !was) await this.#store.addMember(r.id, u.id, this.#clock());
    if (!a.add && was) await this.#store.removeMember(r.id, u.id);
    const changed = was !== a.add;
    if (changed) this.#live?.membershipChanged(r, u.id, a.add ? "added" : "removed");
    await this.#audit(actor, a.add ? "rooms.add_member" : "rooms.remove_member", r.name, {
      user: u.name,
    });
    return { changed };
  }

  // certificates

  /**
   * Records that the certificate files were replaced (`init`, `import`, `rotate` or `reload`) and,
   * in a running server, serves them to new connections.
   */
  async certificateChanged(
    actor: string,
    a: { action: "init" | "import" | "rotate" | "reload"; fingerprint: string | null },
  ): Promise<{ reloaded: boolean; serving: string | null; certPath: string | null }> {
    let serving: string | null = null;
    let certPath: string | null = null;
    if (this.#live) {
      const r = await this.#live.reloadCertificate();
      serving = r.fingerprint;
      certPath = r.certPath;
    } else if (a.action === "reload") {
      throw new ChatError("server_not_running", "Cannot reload certificate: no server is running");
    }
    await this.#audit(actor, `certs.${a.action}`, a.fingerprint ?? serving, {
      ...(serving ? { serving } : {}),
    });
    return { reloaded: this.#live !== undefined, serving, certPath };
  }

  // history

  async prune(
    actor: string,
    a: { beforeTs: number; room: string | null },
  ): Promise<{ deleted: number }> {
    const room = a.room === null ? undefined : await this.#room(a.room, "prune");
    const deleted = await this.#store.pruneMessages(a.beforeTs, room?.id);
    await this.#audit(actor, "history.prune", room?.name ?? null, {
      before: new Date(a.beforeTs).toISOString(),
      deleted,
    });
    return { deleted };
  }

  /** Audits work the client did on the database itself (exports and searches). */
  async record(
    actor: string,
    a: { action: string; target: string | null; detail: Record<string, unknown> },
  ): Promise<Record<string, never>> {
    if (!(RECORDABLE_ACTIONS as readonly string[]).includes(a.action)) {
      throw new ChatError("bad_request", `Cannot record ${a.action}: not a recordable action`);
    }
    await this.#audit(actor, a.action, a.target, a.detail);
    return {};
  }

  async stats(): Promise<LiveStats> {
    if (!this.#live) {
      throw new ChatError("server_not_running", "Cannot read live stats: no server is running");
    }
    return await this.#live.stats();
  }
}

/** A topic as stored: at most MAX_TOPIC_BYTES, the text rules of bodies, trimmed. */
export function checkTopic(topic: string, action: string): string {
  if (new TextEncoder().encode(topic).length > MAX_TOPIC_BYTES) {
    throw new ChatError(
      "invalid_text",
      `Cannot ${action}: the topic is longer than ${MAX_TOPIC_BYTES} bytes`,
    );
  }
  // The same rule as message bodies.
  if (hasUnsafeText(topic)) {
    throw new ChatError(
      "invalid_text",
      `Cannot ${action}: control characters and bidirectional overrides are not allowed`,
    );
  }
  return topic.trim();
}
