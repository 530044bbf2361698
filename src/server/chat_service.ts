// Owns what a logged-in user can do — rooms, sends, history, resume — for every codec alike.
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import { checkTopic } from "../admin/admin_service.ts";
import type {
  ResumePoint,
  RoomInfo,
  ServerFrame,
  UnreadMap,
  WireMessage,
} from "../protocol/frames.ts";
import {
  checkBody,
  checkCid,
  checkReason,
  checkRoomName,
  checkUserName,
} from "../protocol/text_rules.ts";
import {
  dmStream,
  type MessageRecord,
  type RoomRecord,
  roomStream,
  type Store,
  type StoredMessage,
  type StreamKey,
  type UserRecord,
} from "../store/store.ts";
import type { Hub, HubMember, MsgEvent } from "./hub.ts";
import { relayableTags } from "../protocol/irc_codec.ts";
import type { ResumedInfo, SessionUser } from "./session.ts";
import type { FanoutEvent } from "./fanout.ts";
import { type Clock, KeyedBuckets } from "./token_bucket.ts";

/** A backlog is written in slices of about this many bytes, each after the last was sent. */
const BACKLOG_SLICE_BYTES = 64 * 1024;

export const DEFAULT_ROOM = "general";

/** DM conversations with unread messages listed in the login `ok` (the newest first). */
const DM_MARKERS_MAX = 200;

/** `search` results: default and largest `limit`. */
const SEARCH_DEFAULT = 20;
const SEARCH_MAX = 100;

/** Rooms read per store call while a `rooms` page is filled. */
const ROOMS_READ = 200;

/** What the service needs of a session beyond hub membership (Session implements it). */
export interface ServiceSession extends HubMember {
  /** The logged-in user (its role decides what it may see and manage). */
  readonly user: SessionUser | null;
  /** Remote address, for audit lines. */
  readonly remote: string;
  /** Writes a frame that answers no request (membership changes). */
  notice(frame: ServerFrame): void;
  /** Room ids this session is in. */
  readonly rooms: Set<number>;
  /** True once the connection ended; nothing may subscribe it after that. */
  readonly closed: boolean;
  /** Starts a position in a stream (`hold`: keep live messages back until `caughtUp`). */
  track(stream: StreamKey, hold: boolean): boolean;
  untrack(stream: StreamKey): boolean;
  readonly streams: Iterable<StreamKey>;
  /** Overflows of the stream's hold so far. */
  holdResets(stream: StreamKey): number;
  /** Sends one backlog message of a stream that catches up. */
  backlog(stream: StreamKey, msg: WireMessage): void;
  /** Ends a stream's catch-up at backlog position `through`; held messages after it follow. */
  caughtUp(stream: StreamKey, through: number): void;
  /** Queues the end-of-backlog marker. */
  resumed(info: ResumedInfo): void;
  /** Resolves when what was queued so far is written (backlog pacing). */
  drained(): Promise<void>;
  /** Reports an error that answers no request (fatal ones close the connection). */
  fail(err: unknown): void;
  /** A turn to issue a store write in request order (see Session.nextTurn). */
  nextTurn(): { wait: Promise<void> | null; pass: () => void };
  /**
   * The session entered a room it did not ask for (another session of its user joined it, or
   * someone else added the user), in the turn its messages start; see ProtocolAdapter.
   */
  entered?(room: string, users: string[], topic: string): void;
  /** The session left a room it did not ask to leave (`by`: who removed the user). */
  left?(room: string, by?: string): void;
  /** What the user said on leaving (IRC QUIT), shown with the `leave` of its last session. */
  readonly quitReason?: string;
}

/** Result of a send: what to acknowledge. */
export interface SendResult {
  id: number;
  ts: number;
  duplicate: boolean;
  room?: string;
  to?: string;
}

/**
 * The chat operations. Codecs translate their frames into these calls and the results back.
 *
 * Delivery model (docs/DEVELOPERS.md): a message is published to the fan-out only after its
 * commit; each stream (a room; a user's direct messages) is delivered in commit order; a session
 * that resumes follows the stream first, then reads its backlog from the store in slices, with
 * live messages held back meanwhile, so it sees every message once, in order.
 */
export class ChatService {
  #store: Store;
  #hub: Hub;
  #config: ServerConfig;
  #clock: Clock;
  #roomsById = new Map<number, RoomRecord>();
  #roomsByName = new Map<string, RoomRecord>();
  #userNames = new Map<number, string>();
  /** Room creations per user (`roomCreateBurst` / `roomCreateRefillMs`). */
  #creations: KeyedBuckets;
  /** Messages stored since start, for stats. */
  stored = 0;

  constructor(opts: { store: Store; hub: Hub; config: ServerConfig; clock: Clock }) {
    this.#store = opts.store;
    this.#hub = opts.hub;
    this.#config = opts.config;
    this.#clock = opts.clock;
    this.#creations = new KeyedBuckets({
      capacity: opts.config.limits.roomCreateBurst,
      refillMs: opts.config.limits.roomCreateRefillMs,
      clock: opts.clock,
    });
    this.#hub.setSource({
      heads: (keys) => this.#store.streamHeads(keys),
      backfill: (stream, afterId, beforeId) => this.#backfill(stream, afterId, beforeId),
      changed: (ev) => {
        if (ev.kind === "room_changed") {
          this.#forgetRoom(ev.roomId, ev.name);
        } else this.#userNames.delete(ev.userId);
      },
      membership: (ev) => this.#membership(ev),
      read: (ev, sessions) => {
        for (const sess of sessions as ServiceSession[]) {
          sess.notice({
            type: "read",
            ...(ev.room !== undefined ? { room: ev.room } : { with: ev.with }),
            id: ev.id,
            unread: ev.unread,
            through: ev.through,
          });
        }
      },
      forgetAll: () => {
        this.#roomsById.clear();
        this.#roomsByName.clear();
        this.#userNames.clear();
      },
      revoked: async (userIds) => {
        const out: number[] = [];
        for (const id of userIds) {
          const u = await this.#store.userById(id);
          if (!u || u.disabled || u.removed) out.push(id);
        }
        return out;
      },
    });
  }

  get hub(): Hub {
    return this.#hub;
  }

  /** The server's configuration (policies and limits). */
  get config(): Readonly<ServerConfig> {
    return this.#config;
  }

  /** Makes sure `general` exists (called once at start). */
  async init(): Promise<void> {
    this.#cacheRoom(await this.#store.ensureRoom(DEFAULT_ROOM, "room", this.#clock()));
  }

  #cacheRoom(r: RoomRecord): RoomRecord {
    this.#roomsById.set(r.id, r);
    this.#roomsByName.set(r.name, r);
    return r;
  }

  #forgetRoom(id: number, name: string): void {
    this.#roomsByName.delete(name);
    this.#roomsById.delete(id);
  }

  /** Forgets a cached room on every node (after an admin changed it). */
  invalidateRoom(name: string): void {
    const r = this.#roomsByName.get(name);
    this.#hub.fanout.publish({ kind: "room_changed", roomId: r?.id ?? 0, name });
  }

  /** Forgets a cached user on every node (renamed, removed). */
  invalidateUser(userId: number): void {
    this.#hub.fanout.publish({ kind: "user_changed", userId });
  }

  async #room(name: string): Promise<RoomRecord | null> {
    const cached = this.#roomsByName.get(name);
    if (cached) return cached;
    const r = await this.#store.roomByName(name);
    return r ? this.#cacheRoom(r) : null;
  }

  async #roomById(id: number): Promise<RoomRecord | null> {
    const cached = this.#roomsById.get(id);
    if (cached) return cached;
    const r = await this.#store.roomById(id);
    return r ? this.#cacheRoom(r) : null;
  }

  async #userName(id: number): Promise<string> {
    const cached = this.#userNames.get(id);
    if (cached !== undefined) return cached;
    const u = await this.#store.userById(id);
    const name = u && !u.removed ? u.name : "(removed)";
    this.#userNames.set(id, name);
    return name;
  }

  /** `dm:<low>:<high>` for the conversation of two users. */
  static dmRoomName(a: number, b: number): string {
    return a <= b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
  }

  static #dmPeers(name: string): [number, number] {
    const [, a, b] = name.split(":");
    return [Number(a), Number(b)];
  }

  /** Converts a stored message to its wire form. */
  async toWire(m: MessageRecord): Promise<WireMessage> {
    const room = await this.#roomById(m.roomId);
    const from = await this.#userName(m.senderId);
    if (room && room.kind === "dm") {
      const [a, b] = ChatService.#dmPeers(room.name);
      const toId = m.senderId === a ? b : a;
      const to = await this.#userName(toId);
      return { id: m.id, ts: m.ts, from, to, body: m.body, ...(m.notice ? { notice: true } : {}) };
    }
    const name = room?.name ?? "?";
    return {
      id: m.id,
      ts: m.ts,
      room: name,
      from,
      body: m.body,
      ...(m.notice ? { notice: true } : {}),
    };
  }

  /** Committed messages a stream is missing on this node, as fan-out events. */
  async #backfill(stream: StreamKey, afterId: number, beforeId: number): Promise<MsgEvent[]> {
    const out: MsgEvent[] = [];
    const rows = await this.#store.streamAfter(stream, afterId, 10_000, beforeId);
    let prev = afterId;
    for (const m of rows) {
      out.push({
        kind: "msg",
        msg: await this.toWire(m),
        roomId: m.roomId,
        links: [{ stream, prev }],
        origin: { node: "", conn: -1 },
      });
      prev = m.id;
    }
    return out;
  }

  /**
   * Puts a freshly authenticated session online: follows every stream of the user (its rooms and
   * its direct messages), announces presence, answers through `online` (the login `ok`, before
   * any backlog or live message), then streams the resume backlog.
   */
  async attach(
    s: ServiceSession,
    user: UserRecord,
    resume: ResumePoint | undefined,
    online: (rooms: string[], latest: ResumePoint, markers: UnreadMap) => void,
  ): Promise<void> {
    this.#userNames.set(user.id, user.name);
    const general = (await this.#room(DEFAULT_ROOM))!;
    await this.#store.addMember(general.id, user.id, this.#clock());
    const rooms = await this.#store.roomsOfUser(user.id);
    for (const r of rooms) this.#cacheRoom(r);
    // Last check before going online: the account may have been disabled during the awaits above
    // (a kick only reaches sessions that are already online).
    const fresh = await this.#store.userById(user.id);
    if (!fresh || fresh.disabled) {
      throw new ChatError("auth_failed", "Cannot log in: wrong user name or password");
    }
    if (s.closed) return;
    const wanted = new Map<string, number>();
    for (const [name, id] of Object.entries(resume?.rooms ?? {})) {
      if (Number.isSafeInteger(id) && id >= 0) wanted.set(name.toLowerCase(), id);
    }
    const resumeDm = resume?.dm !== undefined && Number.isSafeInteger(resume.dm) && resume.dm >= 0
      ? resume.dm
      : undefined;
    const dm = dmStream(user.id);
    // Every stream holds its live messages until the `ok` is out (nothing may precede it); those
    // not resumed are released right after it, from their starting position.
    s.track(dm, true);
    this.#hub.addSession(s);
    for (const r of rooms) this.#enter(s, r, true);
    // Where live delivery starts in each stream: the login's `latest` (see Hub.follow).
    const starts = await Promise.all([
      this.#hub.follow(dm),
      ...rooms.map((r) => this.#hub.follow(roomStream(r.id))),
    ]);
    if (s.closed) return;
    // Unread counts through `latest`: what arrives live after it is the client's to count.
    const markers = await this.#markers(user.id, rooms, starts.slice(1), starts[0]);
    if (s.closed) return;
    online(rooms.map((r) => r.name), {
      rooms: Object.fromEntries(rooms.map((r, i) => [r.name, starts[i + 1]])),
      dm: starts[0],
    }, markers);
    if (resumeDm === undefined) s.caughtUp(dm, starts[0]);
    rooms.forEach((r, i) => {
      if (!wanted.has(r.name)) s.caughtUp(roomStream(r.id), starts[i + 1]);
    });
    void this.#catchUpAll(s, [
      ...rooms.filter((r) => wanted.has(r.name)).map((r) => ({
        stream: roomStream(r.id),
        from: wanted.get(r.name)!,
        info: { room: r.name },
      })),
      ...(resumeDm !== undefined ? [{ stream: dm, from: resumeDm, info: { dm: true } }] : []),
    ]);
  }

  /** The login's read markers and unread counts (docs/PROTOCOL.md §7.1). */
  async #markers(
    userId: number,
    rooms: RoomRecord[],
    through: number[],
    dmThrough: number,
  ): Promise<UnreadMap> {
    const counts = await this.#store.unreadCounts(userId, {
      rooms: new Map(rooms.map((r, i) => [r.id, through[i]])),
      dmThrough,
      dmLimit: DM_MARKERS_MAX,
    });
    const out: UnreadMap = { rooms: {}, dm: {} };
    for (const c of counts) {
      const state = { read: c.readId, count: c.unread };
      const room = await this.#roomById(c.roomId);
      if (!room) continue;
      if (room.kind === "room") out.rooms[room.name] = state;
      else {
        const [a, b] = ChatService.#dmPeers(room.name);
        out.dm[await this.#userName(a === userId ? b : a)] = state;
      }
    }
    return out;
  }

  /**
   * Moves the user's read marker in a room they are in, or in their DM conversation `with`,
   * forward to `id` (clamped to the conversation's newest message); answers with the marker now
   * stored and the unread count behind it. When it moved, the user's other sessions on every
   * node are told (a `read` frame).
   */
  async markRead(
    s: ServiceSession,
    req: { room?: string; with?: string; id: number },
  ): Promise<{ room?: string; with?: string; id: number; unread: number; through: number }> {
    // Taken before the first await: markers are written in the order the requests arrived.
    const turn = s.nextTurn();
    let written: Promise<{ readId: number; moved: boolean }>;
    let roomId: number;
    let label: { room?: string; with?: string };
    let head: number;
    try {
      if ((req.room === undefined) === (req.with === undefined)) {
        throw new ChatError("bad_frame", "Cannot mark read: give exactly one of room or with");
      }
      if (!Number.isSafeInteger(req.id) || req.id < 0) {
        throw new ChatError("bad_frame", "Cannot mark read: id must be a message id");
      }
      if (req.room !== undefined) {
        const r = await this.#memberRoom(s, req.room);
        roomId = r.id;
        label = { room: r.name };
      } else {
        const dm = await this.#dmRoom(s, req.with!);
        roomId = dm.room.id;
        label = { with: dm.peer.name };
      }
      head = (await this.#store.latestIds(s.userId, [roomId])).rooms.get(roomId) ?? 0;
      await turn.wait;
      written = this.#store.setReadMarker(s.userId, roomId, Math.min(req.id, head));
    } finally {
      turn.pass();
    }
    const { readId, moved } = await written;
    const [count] = await this.#store.unreadCounts(s.userId, { rooms: new Map([[roomId, head]]) });
    const answer = { ...label, id: readId, unread: count?.unread ?? 0, through: head };
    if (moved) {
      this.#hub.fanout.publish({
        kind: "read",
        userId: s.userId,
        roomId,
        ...answer,
        origin: this.#hub.ref(s.connId),
      });
    }
    return answer;
  }

  /**
   * Full-text search over the rooms the user is a member of and their own DM conversations
   * (docs/PROTOCOL.md §7.2), newest first, trimmed to a quarter of the send queue like `history`.
   */
  async search(
    s: ServiceSession,
    req: { text: string; room?: string; limit?: number },
  ): Promise<{ messages: WireMessage[]; more: boolean }> {
    const limit = req.limit ?? SEARCH_DEFAULT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > SEARCH_MAX) {
      throw new ChatError("bad_frame", `Cannot search: limit must be 1-${SEARCH_MAX}`);
    }
    const roomId = req.room !== undefined ? (await this.#memberRoom(s, req.room)).id : undefined;
    const rows = await this.#store.searchMessages({
      text: req.text,
      roomId,
      memberId: s.userId,
      limit: limit + 1,
    });
    const budget = this.#config.limits.sendQueueBytes / 4;
    const messages: WireMessage[] = [];
    let bytes = 0;
    let more = rows.length > limit;
    for (const m of rows.slice(0, limit)) {
      const w = await this.toWire(m);
      bytes += jsonSize(w);
      if (bytes > budget && messages.length > 0) {
        more = true;
        break;
      }
      messages.push(w);
    }
    return { messages, more };
  }

  async #catchUpAll(
    s: ServiceSession,
    jobs: { stream: StreamKey; from: number; info: { room?: string; dm?: boolean } }[],
  ): Promise<void> {
    for (const j of jobs) {
      if (s.closed) return;
      try {
        await this.#catchUp(s, j.stream, j.from, j.info);
      } catch (err) {
        // The store failed mid-backlog: the client reconnects and resumes from what it got.
        if (!s.closed) {
          s.fail(
            err instanceof ChatError ? new ChatError(err.code, err.message, { fatal: true }) : err,
          );
        }
        return;
      }
    }
  }

  /**
   * Streams the backlog of `stream` after id `from` to a session that follows it and holds its
   * live messages, then hands over to live delivery. Exactly once: a slice is read from the store
   * only after the previous one was written; when a read that began after the hold's last
   * overflow comes back short, everything committed before it is sent, and everything after it
   * is held (released here, duplicates by id dropped).
   */
  async #catchUp(
    s: ServiceSession,
    stream: StreamKey,
    from: number,
    info: { room?: string; dm?: boolean },
  ): Promise<void> {
    const page = this.#config.limits.resumeMaxMessages;
    let cursor = from;
    let count = 0;
    for (;;) {
      const resets = s.holdResets(stream);
      const rows = await this.#store.streamAfter(stream, cursor, page);
      if (s.closed) return;
      let bytes = 0;
      for (const m of rows) {
        const w = await this.toWire(m);
        s.backlog(stream, w);
        cursor = m.id;
        count++;
        bytes += w.body.length + 100;
        if (bytes >= BACKLOG_SLICE_BYTES) {
          bytes = 0;
          await s.drained();
          if (s.closed) return;
        }
      }
      if (rows.length < page && s.holdResets(stream) === resets) break;
      await s.drained();
      if (s.closed) return;
    }
    s.caughtUp(stream, cursor);
    s.resumed({ ...info, count, more: false });
  }

  /** Enters a room on this node (and announces the user when it is their first session). */
  #enter(s: ServiceSession, r: RoomRecord, hold: boolean): void {
    s.rooms.add(r.id);
    s.track(roomStream(r.id), hold);
    if (this.#hub.subscribe(s, r.id, r.name)) this.#announce(r, s, "join");
  }

  #announce(
    r: { id: number; name: string },
    s: HubMember,
    event: "join" | "leave",
    quit = false,
    reason?: string,
  ): void {
    this.#hub.fanout.publish({
      kind: "presence",
      roomId: r.id,
      room: r.name,
      userId: s.userId,
      user: s.userName,
      event,
      ...(quit ? { quit: true } : {}),
      ...(reason !== undefined ? { reason } : {}),
      origin: this.#hub.ref(s.connId),
    });
  }

  /** Takes a session offline, announcing `leave` where it was the user's last session. */
  detach(s: ServiceSession): void {
    for (const roomId of s.rooms) {
      if (this.#hub.unsubscribe(s, roomId)) {
        // The cache may have forgotten the room (changed meanwhile); the hub knows its name.
        const name = this.#roomsById.get(roomId)?.name ?? this.#hub.roomName(roomId);
        if (name !== undefined) {
          this.#announce({ id: roomId, name }, s, "leave", true, s.quitReason);
        }
      }
    }
    for (const stream of [...s.streams]) {
      s.untrack(stream);
      this.#hub.unfollow(stream);
    }
    s.rooms.clear();
    this.#hub.removeSession(s);
  }

  /**
   * Joins (creating when needed) a room; answers through `joined` once the session is in it,
   * then, with `since`, streams what was missed after that id (ended by `resumed`).
   *
   * A private room that the user is not a member of answers exactly as a missing one would
   * (`no_such_room`), except to administrators, who may join any room. A new room is created
   * private when `makePrivate`, within `roomCreate`, the creation bucket, `roomsPerUser` and
   * `maxRooms`; its creator is its owner and first member.
   */
  async join(
    s: ServiceSession,
    rawName: string,
    since: number | undefined,
    makePrivate: boolean,
    joined: (r: { room: string; users: string[]; private: boolean }) => Promise<void>,
  ): Promise<void> {
    const name = checkRoomName(rawName);
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) {
      throw new ChatError("bad_frame", "Cannot join: since must be a message id");
    }
    let r = await this.#room(name);
    let created = false;
    if (!r) ({ room: r, created } = await this.#create(s, name, makePrivate));
    if (
      r.private && !created && !isAdmin(s) && !(await this.#store.isMember(r.id, s.userId))
    ) {
      throw noSuchRoom("join", name);
    }
    if (r.archived) {
      throw new ChatError("no_such_room", `Cannot join ${name}: the room is archived`);
    }
    if (r.kind !== "room") throw noSuchRoom("join", name);
    await this.#store.addMember(r.id, s.userId, this.#clock());
    if (s.closed) return;
    const stream = roomStream(r.id);
    const room = r;
    const fresh = !s.rooms.has(room.id);
    // Nothing this connection was already sent is sent again (`join since` on a room it is in).
    const already = fresh ? 0 : s.sentThrough(stream);
    // The joiner holds the room's live messages until its `ok` is out.
    if (fresh) this.#enter(s, room, true);
    else if (since !== undefined) s.track(stream, true);
    // The user's other sessions follow the membership, live from now (no catch-up).
    const others = [...this.#hub.sessionsOf(s.userId)].filter((o) =>
      o !== s && !(o as ServiceSession).rooms.has(room.id)
    ) as ServiceSession[];
    for (const o of others) {
      this.#enter(o, room, false);
      o.entered?.(room.name, this.#hub.online(room.id), room.topic);
    }
    if (fresh) this.#ownMembership(s, room, "added");
    const starts = await Promise.all(
      [...(fresh ? [s] : []), ...others].map(() => this.#hub.follow(stream)),
    );
    if (s.closed) return;
    await joined({
      room: room.name,
      users: this.#hub.online(room.id),
      private: room.private === true,
    });
    if (since !== undefined) {
      await this.#catchUp(s, stream, Math.max(since, already), { room: room.name });
    } else if (fresh) s.caughtUp(stream, starts[0]);
  }

  /** Creates a room for `join`, within the create policy and the limits (see `join`). */
  async #create(
    s: ServiceSession,
    name: string,
    makePrivate: boolean,
  ): Promise<{ room: RoomRecord; created: boolean }> {
    if (this.#config.roomCreate === "admin" && !isAdmin(s)) {
      throw new ChatError(
        "forbidden",
        `Cannot create room ${name}: only administrators create rooms`,
      );
    }
    const key = String(s.userId);
    const wait = this.#creations.take(key);
    if (wait > 0) {
      throw new ChatError(
        "throttled",
        `Cannot create room ${name}: too many new rooms, retry later`,
        {
          retryAfterMs: wait,
        },
      );
    }
    let made: { room: RoomRecord; created: boolean };
    try {
      made = await this.#store.createRoom({
        name,
        ts: this.#clock(),
        private: makePrivate,
        ownerId: s.userId,
        maxRooms: this.#config.limits.maxRooms,
        maxPerOwner: this.#config.limits.roomsPerUser,
      });
    } catch (err) {
      this.#creations.refund(key);
      throw err;
    }
    // Someone else created it meanwhile: this was a join, not a creation.
    if (!made.created) this.#creations.refund(key);
    return { room: this.#cacheRoom(made.room), created: made.created };
  }

  /** Leaves a room for good (membership removed); `general` cannot be left. */
  async part(s: ServiceSession, rawName: string, rawReason?: string): Promise<{ room: string }> {
    const name = checkRoomName(rawName);
    const reason = checkReason(rawReason);
    if (name === DEFAULT_ROOM) {
      throw new ChatError("cannot_part", `Cannot part ${DEFAULT_ROOM}: everyone stays in it`);
    }
    const r = await this.#room(name);
    if (!r || !s.rooms.has(r.id)) {
      throw new ChatError("not_member", `Cannot part ${name}: not a member`);
    }
    await this.#store.removeMember(r.id, s.userId);
    const stream = roomStream(r.id);
    for (const sess of [...this.#hub.sessionsOf(s.userId)] as ServiceSession[]) {
      if (!sess.rooms?.delete(r.id)) continue;
      if (sess.untrack(stream)) this.#hub.unfollow(stream);
      if (this.#hub.unsubscribe(sess, r.id)) this.#announce(r, sess, "leave", false, reason);
      if (sess !== s) sess.left?.(r.name);
    }
    this.#ownMembership(s, r, "removed");
    return { room: r.name };
  }

  /** Who is online in a room the session is in. */
  async who(s: ServiceSession, rawName: string): Promise<{ room: string; users: string[] }> {
    const r = await this.#memberRoom(s, rawName);
    return { room: r.name, users: this.#hub.online(r.id) };
  }

  /**
   * One page of the room list, by name after `after`: public rooms, and private ones only to
   * their members (administrators see every room). The page stops before a quarter of the send
   * queue (`more` then says to ask again with `after` = the last name), like `history`.
   */
  async rooms(
    s: ServiceSession,
    after: string | undefined,
  ): Promise<{ rooms: RoomInfo[]; more: boolean }> {
    const budget = this.#config.limits.sendQueueBytes / 4;
    const out: RoomInfo[] = [];
    let bytes = 0;
    let cursor = after ?? "";
    for (;;) {
      const rows = await this.#store.roomsPage({
        after: cursor,
        limit: ROOMS_READ,
        visibleTo: isAdmin(s) ? undefined : s.userId,
      });
      for (const r of rows) {
        const info: RoomInfo = {
          name: r.name,
          topic: r.topic,
          members: r.members,
          online: this.#hub.onlineCount(r.id),
          joined: s.rooms.has(r.id),
          private: r.private === true,
        };
        bytes += JSON.stringify(info).length + 1;
        if (bytes > budget && out.length > 0) return { rooms: out, more: true };
        out.push(info);
        cursor = r.name;
      }
      if (rows.length < ROOMS_READ) return { rooms: out, more: false };
    }
  }

  /**
   * A room the session may name: missing, archived and private rooms it is not a member of all
   * get the same `no_such_room` (a private room's existence is not revealed), except that
   * administrators see private rooms.
   */
  async #visibleRoom(s: ServiceSession, name: string, action: string): Promise<RoomRecord> {
    return visible(s, name, action, await this.#room(name));
  }

  async #memberRoom(s: ServiceSession, rawName: string): Promise<RoomRecord> {
    const name = checkRoomName(rawName);
    return member(s, name, await this.#visibleRoom(s, name, "use"));
  }

  /** `#memberRoom` when the room is cached (same checks, same errors); null when it is not. */
  #memberRoomNow(s: ServiceSession, rawName: string): RoomRecord | null {
    const name = checkRoomName(rawName);
    const cached = this.#roomsByName.get(name);
    return cached ? member(s, name, visible(s, name, "use", cached)) : null;
  }

  /**
   * Adds `userName` to a room's members (a member of the room, or an administrator, may): their
   * sessions on every node enter it live and get a `membership` notice. Audited.
   */
  async invite(
    s: ServiceSession,
    rawRoom: string,
    userName: string,
  ): Promise<{ room: string; user: string }> {
    const name = checkRoomName(rawRoom);
    const r = await this.#visibleRoom(s, name, "invite to");
    if (!s.rooms.has(r.id) && !isAdmin(s)) {
      throw new ChatError("not_member", `Cannot invite to ${name}: join it first`);
    }
    checkUserName(userName);
    const u = await this.#store.userByName(userName);
    if (!u) throw new ChatError("no_such_user", `Cannot invite ${userName}: no such user`);
    if (await this.#store.isMember(r.id, u.id)) return { room: r.name, user: u.name };
    await this.#store.addMember(r.id, u.id, this.#clock());
    await this.#auditBy(s, "rooms.invite", r.name, { user: u.name });
    this.#hub.fanout.publish({
      kind: "membership",
      roomId: r.id,
      room: r.name,
      userId: u.id,
      change: "added",
      by: s.userName,
    });
    return { room: r.name, user: u.name };
  }

  /**
   * Removes a member from a room (administrators only: the command table says so). Their
   * sessions on every node leave it live, with a `membership` notice; for a private room that
   * ends their access to its messages and history. Audited.
   */
  async kick(
    s: ServiceSession,
    rawRoom: string,
    userName: string,
  ): Promise<{ room: string; user: string }> {
    const name = checkRoomName(rawRoom);
    if (name === DEFAULT_ROOM) {
      throw new ChatError("cannot_part", `Cannot kick from ${DEFAULT_ROOM}: everyone stays in it`);
    }
    const r = await this.#visibleRoom(s, name, "kick from");
    checkUserName(userName);
    const u = await this.#store.userByName(userName);
    if (!u) throw new ChatError("no_such_user", `Cannot kick ${userName}: no such user`);
    if (!(await this.#store.isMember(r.id, u.id))) {
      throw new ChatError("not_member", `Cannot kick ${u.name}: not a member of ${r.name}`);
    }
    await this.#store.removeMember(r.id, u.id);
    await this.#auditBy(s, "rooms.kick", r.name, { user: u.name });
    this.#hub.fanout.publish({
      kind: "membership",
      roomId: r.id,
      room: r.name,
      userId: u.id,
      change: "removed",
      by: s.userName,
    });
    return { room: r.name, user: u.name };
  }

  /**
   * Sets a room's topic under the `roomTopic` policy: `anyone` (any member), `owner` (its
   * creator, or an administrator), `admin` (checked by the command table). Audited. Every node
   * forgets the cached room, and the room's members but `s` are shown the new topic (a `topic`
   * hub event: IRC's TOPIC).
   */
  async setTopic(
    s: ServiceSession,
    rawRoom: string,
    rawTopic: string,
  ): Promise<{ room: string; topic: string }> {
    const name = checkRoomName(rawRoom);
    const r = await this.#visibleRoom(s, name, "set the topic of");
    const policy = this.#config.roomTopic;
    if (policy === "anyone" && !s.rooms.has(r.id) && !isAdmin(s)) {
      throw new ChatError("not_member", `Cannot set the topic of ${name}: join it first`);
    }
    if (policy === "owner" && !isAdmin(s) && r.ownerId !== s.userId) {
      throw new ChatError(
        "forbidden",
        `Cannot set the topic of ${name}: only its owner or an administrator may`,
      );
    }
    const topic = checkTopic(rawTopic, "set topic");
    const ts = this.#clock();
    await this.#store.updateRoom(r.id, { topic, topicBy: s.userName, topicAt: ts });
    await this.#auditBy(s, "rooms.topic", r.name, { topic });
    this.#hub.fanout.publish({
      kind: "room_changed",
      roomId: r.id,
      name: r.name,
      topic: { text: topic, by: s.userName, ts },
      origin: this.#hub.ref(s.connId),
    });
    return { room: r.name, topic };
  }

  async #auditBy(
    s: ServiceSession,
    action: string,
    target: string,
    detail: Record<string, unknown>,
  ): Promise<void> {
    await this.#store.audit({
      ts: this.#clock(),
      actor: s.userName,
      action,
      target,
      remote: s.remote,
      detail,
    });
  }

  /**
   * A membership changed by someone else's hand (this node's or another's): the user's sessions
   * here enter the room live, or leave it, and are told with a `membership` notice.
   */
  #membership(ev: Extract<FanoutEvent, { kind: "membership" }>): void {
    // The user's own join or part: the node it happened on moved its sessions in join/part.
    const own = ev.origin !== undefined;
    if (own && ev.origin!.node === this.#hub.fanout.node) return;
    const sessions = [...this.#hub.sessionsOf(ev.userId)] as ServiceSession[];
    if (sessions.length === 0) return;
    const stream = roomStream(ev.roomId);
    if (ev.change === "removed") {
      const r = this.#roomsById.get(ev.roomId) ?? { id: ev.roomId, name: ev.room };
      for (const sess of sessions) {
        if (!sess.rooms.delete(ev.roomId)) continue;
        if (sess.untrack(stream)) this.#hub.unfollow(stream);
        if (this.#hub.unsubscribe(sess, ev.roomId)) this.#announce(r, sess, "leave");
        if (own) {
          sess.left?.(ev.room);
          continue;
        }
        sess.notice({ type: "membership", room: ev.room, event: "removed", by: ev.by });
        sess.left?.(ev.room, ev.by);
      }
      return;
    }
    void this.#roomById(ev.roomId).then((r) => {
      if (!r) return;
      for (const sess of sessions) {
        if (sess.closed || sess.rooms.has(r.id)) continue;
        this.#enter(sess, r, false);
        sess.entered?.(r.name, this.#hub.online(r.id), r.topic);
        void this.#hub.follow(stream).catch(() => {/* the store is down: no live delivery */});
        if (!own) sess.notice({ type: "membership", room: r.name, event: "added", by: ev.by });
      }
    }, () => {/* the store is down: the user sees the room at the next login */});
  }

  /**
   * Tells the other nodes that the user joined or parted on `s` (this node's sessions moved
   * already): their sessions of the user follow (see #membership).
   */
  #ownMembership(
    s: ServiceSession,
    r: { id: number; name: string },
    change: "added" | "removed",
  ): void {
    this.#hub.fanout.publish({
      kind: "membership",
      roomId: r.id,
      room: r.name,
      userId: s.userId,
      change,
      by: s.userName,
      origin: this.#hub.ref(s.connId),
    });
  }

  async #dmRoom(
    s: ServiceSession,
    peerName: string,
  ): Promise<{ room: RoomRecord; peer: UserRecord }> {
    checkUserName(peerName);
    const peer = await this.#store.userByName(peerName);
    if (!peer) throw new ChatError("no_such_user", `Cannot message ${peerName}: no such user`);
    const name = ChatService.dmRoomName(s.userId, peer.id);
    let room = await this.#room(name);
    if (!room) {
      room = this.#cacheRoom(await this.#store.ensureRoom(name, "dm", this.#clock()));
      await Promise.all([
        this.#store.addMember(room.id, s.userId, this.#clock()),
        this.#store.addMember(room.id, peer.id, this.#clock()),
      ]);
    }
    this.#userNames.set(peer.id, peer.name);
    return { room, peer };
  }

  /**
   * Relays client-only tags (IRC TAGMSG: typing notices, reactions) live to a room the session
   * is in, or to a user and the sender's other sessions; nothing is stored. `tags` are checked
   * again here (relayableTags: client-only names, safe values, within 4094 bytes). Returns the
   * id the relayed lines carry (`msgid`): a TAGMSG is not a message, so it is not a message id.
   */
  async relayTags(
    s: ServiceSession,
    req: { room?: string; to?: string; tags: Record<string, string> },
  ): Promise<{ msgid: string; ts: number; room?: string; to?: string }> {
    if ((req.room === undefined) === (req.to === undefined)) {
      throw new ChatError("bad_frame", "Cannot relay tags: give exactly one of room or to");
    }
    const tags = relayableTags(req.tags);
    if (!tags) throw new ChatError("bad_frame", "Cannot relay tags: no client-only tag to relay");
    const ts = this.#clock();
    const msgid = `${this.#tagPrefix}${(++this.#tagSeq).toString(36)}`;
    const origin = this.#hub.ref(s.connId);
    if (req.room !== undefined) {
      const r = await this.#memberRoom(s, req.room);
      this.#hub.fanout.publish({
        kind: "tagmsg",
        roomId: r.id,
        room: r.name,
        from: s.userName,
        tags,
        msgid,
        ts,
        origin,
      });
      return { msgid, ts, room: r.name };
    }
    checkUserName(req.to);
    const peer = await this.#store.userByName(req.to!);
    if (!peer) throw new ChatError("no_such_user", `Cannot message ${req.to}: no such user`);
    this.#hub.fanout.publish({
      kind: "tagmsg",
      userIds: [...new Set([peer.id, s.userId])],
      to: peer.name,
      from: s.userName,
      tags,
      msgid,
      ts,
      origin,
    });
    return { msgid, ts, to: peer.name };
  }

  /** Relay ids: unique per process (random) and never a number, so never a message's id. */
  #tagPrefix = `t${crypto.randomUUID().slice(0, 8)}-`;
  #tagSeq = 0;

  /** Validates, stores (commit before return) and publishes a message. */
  async send(
    s: ServiceSession,
    req: {
      cid: string;
      body: string;
      room?: string;
      to?: string;
      notice?: boolean;
      /** Client-only tags (IRC `+name`): relayed live with the message, never stored. */
      tags?: Record<string, string>;
    },
  ): Promise<SendResult> {
    // Taken before the first await: the write is issued in the order the sends arrived.
    const turn = s.nextTurn();
    let stored: Promise<StoredMessage>;
    let target: { roomId: number; room?: string; to?: string };
    try {
      checkCid(req.cid);
      const body = checkBody(req.body, this.#config.limits);
      if ((req.room === undefined) === (req.to === undefined)) {
        throw new ChatError("bad_frame", "Cannot send: give exactly one of room or to");
      }
      let dmUsers: number[] | undefined;
      if (req.room !== undefined) {
        // A cached room is checked without an await (one send per message under load).
        const r = this.#memberRoomNow(s, req.room) ?? await this.#memberRoom(s, req.room);
        target = { roomId: r.id, room: r.name };
      } else {
        const { room, peer } = await this.#dmRoom(s, req.to!);
        target = { roomId: room.id, to: peer.name };
        dmUsers = [s.userId, peer.id];
      }
      if (turn.wait) await turn.wait;
      stored = this.#store.appendMessage({
        roomId: target.roomId,
        senderId: s.userId,
        body,
        cid: req.cid,
        ts: this.#clock(),
        dmUsers,
        ...(req.notice === true ? { notice: true } : {}),
      });
    } finally {
      turn.pass();
    }
    const { message: m, duplicate, links } = await stored;
    // Checked here, not trusted: a chat/1 frame's unknown fields reach this request too.
    const tags = relayableTags(req.tags);
    if (!duplicate) {
      this.stored++;
      const notice = m.notice ? { notice: true as const } : {};
      this.#hub.fanout.publish({
        kind: "msg",
        msg: target.room !== undefined
          ? { id: m.id, ts: m.ts, room: target.room, from: s.userName, body: m.body, ...notice }
          : { id: m.id, ts: m.ts, from: s.userName, to: target.to, body: m.body, ...notice },
        ...(tags !== undefined ? { tags } : {}),
        roomId: target.roomId,
        links,
        origin: this.#hub.ref(s.connId),
      });
    }
    if (duplicate && m.roomId !== target.roomId) {
      // The cid was stored in another conversation: the ack names where the message is (§5).
      const w = await this.toWire(m);
      return w.room !== undefined
        ? { id: m.id, ts: m.ts, duplicate, room: w.room }
        : { id: m.id, ts: m.ts, duplicate, to: w.to };
    }
    return target.room !== undefined
      ? { id: m.id, ts: m.ts, duplicate, room: target.room }
      : { id: m.id, ts: m.ts, duplicate, to: target.to };
  }

  /** A page of history of a room the session is in, or of a DM conversation. */
  async history(
    s: ServiceSession,
    req: { room?: string; with?: string; limit?: number; before?: number },
  ): Promise<{ room?: string; with?: string; messages: WireMessage[]; more: boolean }> {
    const max = this.#config.limits.historyMax;
    const limit = req.limit ?? 50;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > max) {
      throw new ChatError("bad_frame", `Cannot read history: limit must be 1-${max}`);
    }
    if ((req.room === undefined) === (req.with === undefined)) {
      throw new ChatError("bad_frame", "Cannot read history: give exactly one of room or with");
    }
    let room: RoomRecord;
    let label: { room?: string; with?: string };
    if (req.room !== undefined) {
      room = await this.#memberRoom(s, req.room);
      label = { room: room.name };
    } else {
      const dm = await this.#dmRoom(s, req.with!);
      room = dm.room;
      label = { with: dm.peer.name };
    }
    const page = await this.#store.history(room.id, limit, req.before);
    // Every reply fits its bound: past a quarter of the send queue, the oldest are left for the
    // next page (`more`), so no history request can get the asker cut as a slow consumer.
    const budget = this.#config.limits.sendQueueBytes / 4;
    const messages: WireMessage[] = [];
    let bytes = 0;
    let more = page.more;
    for (let i = page.messages.length - 1; i >= 0; i--) {
      const w = await this.toWire(page.messages[i]);
      bytes += jsonSize(w);
      if (bytes > budget && messages.length > 0) {
        more = true;
        break;
      }
      messages.push(w);
    }
    messages.reverse();
    return { ...label, messages, more };
  }

  /** Publishes a membership changed outside a session (the admin tool): sessions follow. */
  membershipChanged(
    room: RoomRecord,
    userId: number,
    change: "added" | "removed",
    by: string,
  ): void {
    this.#hub.fanout.publish({
      kind: "membership",
      roomId: room.id,
      room: room.name,
      userId,
      change,
      by,
    });
  }

  /**
   * Ends every other session of the user that changed its password, on every node, with `bye`
   * `password_changed`: they were opened with the old password.
   */
  passwordChanged(s: ServiceSession): void {
    this.#hub.fanout.publish({
      kind: "kick",
      userId: s.userId,
      code: "password_changed",
      message: "The password of this account was changed; log in with the new one",
      except: this.#hub.ref(s.connId),
    });
  }

  /** The rooms a session is in with who is online in each, now (no store read). */
  roomsOnline(s: ServiceSession): { room: string; users: string[] }[] {
    const out: { room: string; users: string[] }[] = [];
    for (const id of s.rooms) {
      // The cache forgets a changed room (a topic set) until it is read again; the hub knows it.
      const name = this.#roomsById.get(id)?.name ?? this.#hub.roomName(id);
      if (name !== undefined) out.push({ room: name, users: this.#hub.online(id) });
    }
    return out.sort((a, b) => a.room < b.room ? -1 : 1);
  }

  /**
   * The topic of a room ("" when it has none), with who set it and when as stored (absent for a
   * topic set before the store kept it); `no_such_room` when it does not exist.
   */
  async topic(
    rawName: string,
  ): Promise<{ room: string; topic: string; setBy?: { by: string; ts: number } }> {
    const name = checkRoomName(rawName);
    const r = await this.#room(name);
    if (!r || r.archived) throw new ChatError("no_such_room", `Cannot use ${name}: no such room`);
    const known = r.topic !== "" && r.topicBy != null && r.topicAt != null;
    return {
      room: r.name,
      topic: r.topic,
      ...(known ? { setBy: { by: r.topicBy!, ts: r.topicAt! } } : {}),
    };
  }

  /**
   * Messages of a room the session is in, or of its DM conversation `with`, in the id range
   * after < id < before (either bound open), oldest first: the newest `limit` of the range
   * (`newest`) or the oldest. A bound may be a time (`afterTs`/`beforeTs`, milliseconds), read
   * as the ids of the messages stored at that time. Trimmed to a quarter of the send queue like
   * `history`. For IRC's CHATHISTORY.
   */
  async historyRange(
    s: ServiceSession,
    q: {
      room?: string;
      with?: string;
      after?: number;
      before?: number;
      afterTs?: number;
      beforeTs?: number;
      around?: number;
      aroundTs?: number;
      limit: number;
      newest: boolean;
    },
  ): Promise<{ room?: string; with?: string; messages: WireMessage[] }> {
    if (q.around !== undefined || q.aroundTs !== undefined) {
      // Around a reference: the newest half of the limit before it, the rest from it on.
      const older = Math.floor(q.limit / 2);
      const base = { room: q.room, with: q.with };
      const ref = q.around !== undefined
        ? { before: q.around, after: q.around - 1 }
        : { beforeTs: q.aroundTs, afterTs: q.aroundTs! - 1 };
      const a = older > 0
        ? await this.historyRange(s, {
          ...base,
          ...("before" in ref ? { before: ref.before } : { beforeTs: ref.beforeTs }),
          limit: older,
          newest: true,
        })
        : null;
      const b = await this.historyRange(s, {
        ...base,
        ...("after" in ref ? { after: ref.after } : { afterTs: ref.afterTs }),
        limit: q.limit - older,
        newest: false,
      });
      return { ...b, messages: [...(a?.messages ?? []), ...b.messages] };
    }
    const max = this.#config.limits.historyMax;
    if (!Number.isSafeInteger(q.limit) || q.limit < 1 || q.limit > max) {
      throw new ChatError("bad_frame", `Cannot read history: limit must be 1-${max}`);
    }
    let room: RoomRecord;
    let label: { room?: string; with?: string };
    if (q.room !== undefined) {
      room = await this.#memberRoom(s, q.room);
      label = { room: room.name };
    } else {
      const dm = await this.#dmRoom(s, q.with!);
      room = dm.room;
      label = { with: dm.peer.name };
    }
    let after = q.after ?? 0;
    let before = q.before ?? Number.MAX_SAFE_INTEGER;
    if (q.afterTs !== undefined) {
      // Highest id stored at or before that time: ids follow commit order, times follow ids.
      const r = await this.#store.messageRange({ roomId: room.id, untilTs: q.afterTs + 1 });
      after = Math.max(after, r.maxId);
    }
    if (q.beforeTs !== undefined) {
      const r = await this.#store.messageRange({ roomId: room.id, untilTs: q.beforeTs });
      before = Math.min(before, r.maxId + 1);
    }
    let rows: MessageRecord[];
    if (before <= after + 1) rows = [];
    else if (q.newest) {
      const page = await this.#store.history(
        room.id,
        q.limit,
        before === Number.MAX_SAFE_INTEGER ? undefined : before,
      );
      rows = page.messages.filter((m) => m.id > after);
    } else {
      rows = (await this.#store.messagesAfter(room.id, after, q.limit)).filter((m) =>
        m.id < before
      );
    }
    const budget = this.#config.limits.sendQueueBytes / 4;
    const messages: WireMessage[] = [];
    let bytes = 0;
    const order = q.newest ? [...rows].reverse() : rows;
    for (const m of order) {
      const w = await this.toWire(m);
      bytes += jsonSize(w);
      if (bytes > budget && messages.length > 0) break;
      messages.push(w);
    }
    if (q.newest) messages.reverse();
    return { ...label, messages };
  }

  /**
   * Conversations of the session's user (its rooms, and its DM peers) whose newest message was
   * stored in fromTs <= ts <= toTs, oldest first, at most `limit`. DM conversations are found
   * by name per account, so this reads O(accounts) rows: fine for a business server's size.
   */
  async conversations(
    s: ServiceSession,
    fromTs: number,
    toTs: number,
    limit: number,
  ): Promise<{ room?: string; with?: string; ts: number }[]> {
    const out: { room?: string; with?: string; ts: number }[] = [];
    const lo = Math.min(fromTs, toTs);
    const hi = Math.max(fromTs, toTs);
    const consider = async (roomId: number, label: { room?: string; with?: string }) => {
      const page = await this.#store.history(roomId, 1);
      const last = page.messages[0];
      if (last && last.ts >= lo && last.ts <= hi) out.push({ ...label, ts: last.ts });
    };
    for (const id of s.rooms) {
      const r = await this.#roomById(id);
      if (r) await consider(r.id, { room: r.name });
    }
    for (const u of await this.#store.listUsers()) {
      if (u.removed || u.id === s.userId) continue;
      const dm = await this.#room(ChatService.dmRoomName(s.userId, u.id));
      if (dm) await consider(dm.id, { with: u.name });
    }
    out.sort((a, b) => a.ts - b.ts);
    return out.slice(0, limit);
  }

  /** Ends every session of a user on every node (admin disable/remove). */
  kickUser(userId: number, message: string): number {
    const here = this.#hub.sessionsOf(userId).size;
    this.#hub.fanout.publish({ kind: "kick", userId, code: "kicked", message });
    return here;
  }

  /**
   * Closes, on every node, the sessions of a user that logged in with one of `tokenIds` (revoked
   * session tokens), with `bye` `kicked`; returns how many here.
   */
  kickTokens(userId: number, tokenIds: number[], message: string): number {
    if (tokenIds.length === 0) return 0;
    let here = 0;
    for (const m of this.#hub.sessionsOf(userId)) {
      if (tokenIds.includes(m.sessionToken?.id ?? -1)) here++;
    }
    this.#hub.fanout.publish({ kind: "kick", userId, code: "kicked", message, tokenIds });
    return here;
  }
}

/**
 * `r` if the session may name it: missing, archived and private rooms it is not a member of all
 * get the same `no_such_room` (a private room's existence is not revealed), except that
 * administrators see private rooms.
 */
function visible(
  s: ServiceSession,
  name: string,
  action: string,
  r: RoomRecord | null,
): RoomRecord {
  if (!r || r.archived || r.kind !== "room") throw noSuchRoom(action, name);
  if (r.private && !s.rooms.has(r.id) && !isAdmin(s)) throw noSuchRoom(action, name);
  return r;
}

/** `r` if the session is in it, else `not_member`. */
function member(s: ServiceSession, name: string, r: RoomRecord): RoomRecord {
  if (!s.rooms.has(r.id)) throw new ChatError("not_member", `Cannot use ${name}: join it first`);
  return r;
}

function isAdmin(s: ServiceSession): boolean {
  return s.user?.role === "admin";
}

/** The one refusal for a room that is missing, archived, or private to others. */
function noSuchRoom(action: string, name: string): ChatError {
  return new ChatError("no_such_room", `Cannot ${action} ${name}: no such room`);
}

/** Bytes of a message as chat/1 JSON, near enough for a reply budget (escapes included). */
function jsonSize(w: WireMessage): number {
  return JSON.stringify(w).length + 40;
}
