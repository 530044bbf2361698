// Owns what a logged-in user can do — rooms, sends, history, resume — for every codec alike.
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import type { ResumePoint, RoomInfo, WireMessage } from "../protocol/frames.ts";
import { checkBody, checkCid, checkRoomName, checkUserName } from "../protocol/text_rules.ts";
import type { MessageRecord, RoomRecord, Store, UserRecord } from "../store/store.ts";
import { type Hub, type HubMember, once } from "./hub.ts";
import type { Clock } from "./token_bucket.ts";

export const DEFAULT_ROOM = "general";

/** What the service needs of a session beyond hub membership. */
export interface ServiceSession extends HubMember {
  /** Room ids this session is subscribed to. */
  readonly rooms: Set<number>;
  /** True once the connection ended; nothing may subscribe it after that. */
  readonly closed: boolean;
  /** Starts holding live deliveries (during a resume backlog). */
  hold(): void;
  /** Releases held deliveries whose message id is greater than `afterId` (0: all). */
  release(afterIds: Map<number, number>): void;
  /** Queues a backlog message (bypasses the hold). */
  backlog(msg: WireMessage): void;
  /** Queues the end-of-resume marker. */
  resumed(info: { room?: string; dm?: boolean; count: number; more: boolean }): void;
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
 * Ordering contract: a message is delivered only after its transaction committed, in commit
 * order, so a client that saw id N in a room has seen every earlier id of that room it is owed.
 */
export class ChatService {
  #store: Store;
  #hub: Hub;
  #config: ServerConfig;
  #clock: Clock;
  #roomsById = new Map<number, RoomRecord>();
  #roomsByName = new Map<string, RoomRecord>();
  #userNames = new Map<number, string>();
  /** Messages stored since start, for stats. */
  stored = 0;

  constructor(opts: { store: Store; hub: Hub; config: ServerConfig; clock: Clock }) {
    this.#store = opts.store;
    this.#hub = opts.hub;
    this.#config = opts.config;
    this.#clock = opts.clock;
  }

  get hub(): Hub {
    return this.#hub;
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

  /** Forgets cached rooms (after an admin changes one). */
  invalidateRoom(name: string): void {
    const r = this.#roomsByName.get(name);
    if (r) {
      this.#roomsByName.delete(name);
      this.#roomsById.delete(r.id);
    }
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
    const name = u ? u.name : "(removed)";
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

  /** Converts a stored message to its wire form as seen by `viewerId` (0 for a room message). */
  async toWire(m: MessageRecord): Promise<WireMessage> {
    const room = await this.#roomById(m.roomId);
    const from = await this.#userName(m.senderId);
    if (room && room.kind === "dm") {
      const [a, b] = ChatService.#dmPeers(room.name);
      const toId = m.senderId === a ? b : a;
      return { id: m.id, ts: m.ts, from, to: await this.#userName(toId), body: m.body };
    }
    return { id: m.id, ts: m.ts, room: room?.name ?? "?", from, body: m.body };
  }

  /**
   * Puts a freshly authenticated session online: registers it, subscribes it to every room of the
   * user, announces presence, and sends the resume backlog before any live message.
   * Returns the names of the rooms the session is in.
   */
  async attach(
    s: ServiceSession,
    user: UserRecord,
    resume: ResumePoint | undefined,
    online: (rooms: string[], latest: ResumePoint) => void,
  ): Promise<string[]> {
    this.#userNames.set(user.id, user.name);
    const general = (await this.#room(DEFAULT_ROOM))!;
    await this.#store.addMember(general.id, user.id, this.#clock());
    const rooms = await this.#store.roomsOfUser(user.id);
    for (const r of rooms) this.#cacheRoom(r);
    // Last check before going online: the account may have been disabled during the awaits above
    // (an admin kick only reaches sessions that are already online).
    const fresh = await this.#store.userById(user.id);
    if (!fresh || fresh.disabled) {
      throw new ChatError("auth_failed", "Cannot log in: wrong user name or password");
    }
    if (s.closed) return [];
    s.hold();
    this.#hub.addSession(s);
    for (const r of rooms) this.#enter(s, r);
    const newest = await this.#store.latestIds(user.id, rooms.map((r) => r.id));
    online(rooms.map((r) => r.name), {
      rooms: Object.fromEntries(rooms.map((r) => [r.name, newest.rooms.get(r.id) ?? 0])),
      dm: newest.dm,
    });
    const after = new Map<number, number>();
    try {
      if (resume?.rooms) {
        for (const [rawName, lastId] of Object.entries(resume.rooms)) {
          const r = rooms.find((x) => x.name === rawName.toLowerCase());
          if (!r) continue;
          after.set(r.id, await this.#sendBacklog(s, r, lastId));
        }
      }
      if (resume?.dm !== undefined) {
        const limit = this.#config.limits.resumeMaxMessages;
        const msgs = await this.#store.directMessagesAfter(user.id, resume.dm, limit + 1);
        const page = msgs.slice(0, limit);
        for (const m of page) s.backlog(await this.toWire(m));
        const lastDm = page.length ? page[page.length - 1].id : resume.dm;
        after.set(-1, lastDm);
        s.resumed({ dm: true, count: page.length, more: msgs.length > limit });
      }
    } finally {
      s.release(after);
    }
    return rooms.map((r) => r.name);
  }

  async #sendBacklog(s: ServiceSession, r: RoomRecord, lastId: number): Promise<number> {
    const limit = this.#config.limits.resumeMaxMessages;
    const msgs = await this.#store.messagesAfter(r.id, lastId, limit + 1);
    const page = msgs.slice(0, limit);
    for (const m of page) s.backlog(await this.toWire(m));
    s.resumed({ room: r.name, count: page.length, more: msgs.length > limit });
    return page.length ? page[page.length - 1].id : lastId;
  }

  #enter(s: ServiceSession, r: RoomRecord): void {
    s.rooms.add(r.id);
    if (this.#hub.subscribe(s, r.id, r.name)) {
      this.#announce(r, s.userName, "join", s.connId);
    }
  }

  #announce(r: RoomRecord, user: string, event: "join" | "leave", exceptConnId: number): void {
    this.#hub.toRoom(r.id, {
      kind: "presence",
      room: r.name,
      user,
      event,
      online: once(() => this.#hub.online(r.id)),
    }, exceptConnId);
  }

  /** Takes a session offline, announcing `leave` where it was the user's last session. */
  detach(s: ServiceSession): void {
    for (const roomId of s.rooms) {
      if (this.#hub.unsubscribe(s, roomId)) {
        const r = this.#roomsById.get(roomId);
        if (r) this.#announce(r, s.userName, "leave", s.connId);
      }
    }
    s.rooms.clear();
    this.#hub.removeSession(s);
  }

  /** Joins (creating when needed) a room; with `since`, sends what was missed first. */
  async join(
    s: ServiceSession,
    rawName: string,
    since?: number,
  ): Promise<{ room: string; users: string[] }> {
    const name = checkRoomName(rawName);
    let r = await this.#room(name);
    if (r?.archived) {
      throw new ChatError("no_such_room", `Cannot join ${name}: the room is archived`);
    }
    if (!r) r = this.#cacheRoom(await this.#store.ensureRoom(name, "room", this.#clock()));
    if (r.archived) {
      throw new ChatError("no_such_room", `Cannot join ${name}: the room is archived`);
    }
    await this.#store.addMember(r.id, s.userId, this.#clock());
    if (since === undefined) {
      this.#enter(s, r);
    } else {
      s.hold();
      this.#enter(s, r);
      const after = new Map<number, number>();
      try {
        after.set(r.id, await this.#sendBacklog(s, r, since));
      } finally {
        s.release(after);
      }
    }
    // Other sessions of the same user follow the membership too.
    for (const other of this.#hub.sessionsOf(s.userId)) {
      if (other !== s && "rooms" in other) this.#enter(other as ServiceSession, r);
    }
    return { room: r.name, users: this.#hub.online(r.id) };
  }

  /** Leaves a room for good (membership removed); `general` cannot be left. */
  async part(s: ServiceSession, rawName: string): Promise<{ room: string }> {
    const name = checkRoomName(rawName);
    if (name === DEFAULT_ROOM) {
      throw new ChatError("cannot_part", `Cannot part ${DEFAULT_ROOM}: everyone stays in it`);
    }
    const r = await this.#room(name);
    if (!r || !s.rooms.has(r.id)) {
      throw new ChatError("not_member", `Cannot part ${name}: not a member`);
    }
    await this.#store.removeMember(r.id, s.userId);
    for (const sess of [...this.#hub.sessionsOf(s.userId)] as ServiceSession[]) {
      if (!sess.rooms?.delete(r.id)) continue;
      if (this.#hub.unsubscribe(sess, r.id)) this.#announce(r, s.userName, "leave", sess.connId);
    }
    return { room: r.name };
  }

  /** Who is online in a room the session is in. */
  async who(s: ServiceSession, rawName: string): Promise<{ room: string; users: string[] }> {
    const r = await this.#memberRoom(s, rawName);
    return { room: r.name, users: this.#hub.online(r.id) };
  }

  /** All rooms with counts. */
  async rooms(s: ServiceSession): Promise<RoomInfo[]> {
    const all = await this.#store.listRooms();
    return all.filter((r) => !r.archived).map((r) => ({
      name: r.name,
      topic: r.topic,
      members: r.members,
      online: this.#hub.onlineCount(r.id),
      joined: s.rooms.has(r.id),
    }));
  }

  async #memberRoom(s: ServiceSession, rawName: string): Promise<RoomRecord> {
    const name = checkRoomName(rawName);
    const r = await this.#room(name);
    if (!r || r.archived) throw new ChatError("no_such_room", `Cannot use ${name}: no such room`);
    if (!s.rooms.has(r.id)) throw new ChatError("not_member", `Cannot use ${name}: join it first`);
    return r;
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

  /** Validates, stores (commit before return) and delivers a message. */
  async send(
    s: ServiceSession,
    req: { cid: string; body: string; room?: string; to?: string },
  ): Promise<SendResult> {
    checkCid(req.cid);
    const body = checkBody(req.body, this.#config.limits);
    if ((req.room === undefined) === (req.to === undefined)) {
      throw new ChatError("bad_frame", "Cannot send: give exactly one of room or to");
    }
    if (req.room !== undefined) {
      const r = await this.#memberRoom(s, req.room);
      const stored = await this.#store.appendMessage({
        roomId: r.id,
        senderId: s.userId,
        body,
        cid: req.cid,
        ts: this.#clock(),
      });
      const m = stored.message;
      if (!stored.duplicate) {
        this.stored++;
        this.#hub.toRoom(
          r.id,
          {
            kind: "msg",
            msg: { id: m.id, ts: m.ts, room: r.name, from: s.userName, body: m.body },
          },
          s.connId,
          m.id,
        );
      }
      return { id: m.id, ts: m.ts, duplicate: stored.duplicate, room: r.name };
    }
    const { room, peer } = await this.#dmRoom(s, req.to!);
    const stored = await this.#store.appendMessage({
      roomId: room.id,
      senderId: s.userId,
      body,
      cid: req.cid,
      ts: this.#clock(),
    });
    const m = stored.message;
    if (!stored.duplicate) {
      this.stored++;
      this.#hub.toUsers(
        [peer.id, s.userId],
        {
          kind: "msg",
          msg: { id: m.id, ts: m.ts, from: s.userName, to: peer.name, body: m.body },
        },
        s.connId,
        m.id,
      );
    }
    return { id: m.id, ts: m.ts, duplicate: stored.duplicate, to: peer.name };
  }

  /** A page of history of a room the session is in, or of a DM conversation. */
  async history(
    s: ServiceSession,
    req: { room?: string; with?: string; limit?: number; before?: number },
  ): Promise<{ room?: string; with?: string; messages: WireMessage[]; more: boolean }> {
    const max = this.#config.limits.historyMax;
    const limit = req.limit ?? 50;
    if (limit < 1 || limit > max) {
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
    const messages: WireMessage[] = [];
    for (const m of page.messages) messages.push(await this.toWire(m));
    return { ...label, messages, more: page.more };
  }

  /** Closes every session of a user (admin disable/remove); returns how many. */
  kickUser(userId: number, close: (s: HubMember) => void): number {
    const sessions = [...this.#hub.sessionsOf(userId)];
    for (const s of sessions) close(s);
    return sessions.length;
  }
}
