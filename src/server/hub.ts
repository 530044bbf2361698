// Owns who is online where (on this node, and what other nodes announced), the order of every
// delivery stream, and fan-out: each event is encoded once per codec and queued to many.
import type { WireMessage } from "../protocol/frames.ts";
import type { StreamKey } from "../store/store.ts";
import { Admission } from "./admission.ts";
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";
import type { ConnRef, Fanout, FanoutEvent, PresenceRoom } from "./fanout.ts";

/** A codec-neutral event as encoders see it (node-local: `online` may look at the hub). */
/** Client-only tags relayed on their own (IRC TAGMSG): never stored, `msgid` is the relay's. */
export interface RelayedTags {
  from: string;
  room?: string;
  to?: string;
  tags: Record<string, string>;
  msgid: string;
  ts: number;
}

export type HubEvent =
  /** `tags`: client-only tags the sender attached (live only). */
  | { kind: "msg"; msg: WireMessage; tags?: Record<string, string> }
  /** Client-only tags on their own (IRC TAGMSG), to a room (`room`) or a user (`to`). */
  | ({ kind: "tagmsg" } & RelayedTags)
  | {
    kind: "presence";
    room: string;
    user: string;
    event: "join" | "leave";
    /** A `leave` because the user went offline, not a part (IRC shows QUIT for it). */
    quit?: boolean;
    /** For `leave`: what the user said, when they said something. */
    reason?: string;
    /** Names online in the room after the change (computed once, on first use). */
    online: () => string[];
  }
  /** A user set a room's topic (`ts`: when). */
  | { kind: "topic"; room: string; topic: string; user: string; ts: number };

/** Turns hub events into a protocol's bytes; null when that protocol does not show the event. */
export interface EventEncoder {
  encodeEvent(ev: HubEvent): Uint8Array | null;
}

/** What the hub needs of a connected, authenticated session. */
export interface HubMember {
  readonly connId: number;
  readonly userId: number;
  readonly userName: string;
  readonly encoder: EventEncoder;
  /**
   * The highest message id of `stream` this member has been sent, or -1 while it catches up on
   * that stream (it then takes each message on its own, with its id, to hold back).
   */
  sentThrough(stream: StreamKey): number;
  /**
   * Queues encoded bytes: messages of `stream` up to id `lastId`, or (stream null, lastId 0) a
   * presence notice, which may wait a little to share a write.
   */
  deliver(stream: StreamKey | null, bytes: Uint8Array, lastId: number): void;
  /** Ends the session with `bye` (a kick from an administrator, from any node). */
  kick(code: string, message: string): void;
  /** The session token this member logged in with or was issued, if any. */
  readonly sessionToken?: { id: number } | null;
  /** True once the session ended: nothing more is written to it (presence owed is skipped). */
  readonly closed?: boolean;
}

/** Reads what fan-out needs from the store (the service provides it). */
export interface HubSource {
  /** Newest committed id per stream: where live delivery starts for a new local stream. */
  heads(keys: StreamKey[]): Promise<Map<StreamKey, number>>;
  /** Committed messages of a stream with afterId < id < beforeId, oldest first, as events. */
  backfill(stream: StreamKey, afterId: number, beforeId: number): Promise<MsgEvent[]>;
  /** A record changed elsewhere: forget cached copies. */
  changed(ev: Extract<FanoutEvent, { kind: "room_changed" | "user_changed" }>): void;
  /** A user joined or left a room by someone else's hand: move their sessions here. */
  membership(ev: Extract<FanoutEvent, { kind: "membership" }>): void;
  /** A user's read marker moved: tell their sessions here (but the one that moved it). */
  read?(ev: Extract<FanoutEvent, { kind: "read" }>, sessions: HubMember[]): void;
  /** Events may have been lost: forget every cached record. */
  forgetAll?(): void;
  /** Of these users, those whose account was disabled or removed (a kick may have been lost). */
  revoked?(userIds: number[]): Promise<number[]>;
}

export type MsgEvent = Extract<FanoutEvent, { kind: "msg" }>;
type PresenceEvent = Extract<FanoutEvent, { kind: "presence" }>;

/** A user other nodes have online in one room. */
interface RemoteUser {
  user: string;
  /** Nodes with a session of the user in the room. */
  nodes: Set<string>;
}

/** How long a stream waits for a missing earlier message before reading it from the store. */
export const GAP_WAIT_MS = 250;

/**
 * Order of one stream on this node. Messages are released in the order of their links (each
 * names the stream's previous message), however out of order results or bus events arrive.
 */
interface StreamOrder {
  /** Id of the last message released (or the head read when the stream started here). */
  last: number;
  /** Null until the starting head is known; then every subscriber waits for nothing. */
  ready: Promise<number> | null;
  started: boolean;
  /** Events not yet released, by the id of the message before them. */
  waiting: Map<number, MsgEvent>;
  gapTimer: TimerHandle | undefined;
  /** Local subscribers (sessions in the room, or sessions of the user). */
  members: number;
}

/** A room event waiting for the end of the current turn. */
interface PendingRoomEvent {
  roomId: number;
  ev: HubEvent;
  exceptConnId: number;
  msgId: number;
}

/** Shortest wait of a room's presence notices for the rest of their batch (contract 5). */
export const PRESENCE_WAIT_MS = 50;
/** Longest wait (reached at 4,000 users online here). */
export const PRESENCE_WAIT_MAX_MS = 1000;

/** One room's presence notices that wait to be fanned out together. */
interface PresenceBatch {
  events: PendingRoomEvent[];
  /** Members owed only the events from this index on (they joined or were served mid-batch). */
  from: Map<HubMember, number>;
  /** Per codec: each event's bytes, encoded once when first needed. */
  frames: Map<EventEncoder, (Uint8Array | null)[]>;
}

/**
 * Rooms, presence and ordered delivery on one node. Presence counts users, not connections, and
 * is cluster-wide: a node announces `join` when a user's first session on it enters a room and
 * `leave` when its last one there leaves; members see `join` only when no other node had the user
 * online there, and `leave` only when no node has any more (other nodes' users are known from
 * their `presence` events, `presence_sync` snapshots and `node_down`).
 *
 * 1. Every event arrives through the Fanout (this node's own as well as other nodes'), after its
 *    commit. Message events are released per stream in link order (`StreamOrder`): a message
 *    whose predecessor has not arrived waits `GAP_WAIT_MS`, then the gap is read from the store.
 *    A stream starts on this node when its first local subscriber arrives: `subscribe` resolves
 *    with the stream's head then, and only later messages are delivered live (earlier ones are
 *    the subscriber's backlog to read from the store).
 * 2. Room fan-out is batched per turn: events released in the same turn (a group commit) are
 *    encoded once per codec, consecutive events of one room joined into one buffer, and that one
 *    buffer queued to each member. A member catching up on the stream, or one that was already
 *    sent part of the batch, gets the events one by one.
 * 3. Each member gets exactly the events it would have got at release time, in order: every
 *    change of membership and every direct delivery flushes what is pending first.
 * 4. A member that sent some of the batched events gets the runs of the joined buffer between
 *    its own frames (subarrays, no copy).
 * 5. Presence notices (a user came online in a room or left it) wait for one shared timer
 *    (`PRESENCE_WAIT_MS`, 1 ms longer per 4 users online, at most `PRESENCE_WAIT_MAX_MS`) and go
 *    out per room as one buffer encoded once per codec and queued to every member: a login storm
 *    of N users costs each member one write per interval, not N frames of its own to copy and
 *    write (docs/PERFORMANCE.md, "Memory under real logins"). Order per member is kept: any other
 *    event of the room sends the room's waiting notices first; a member that joins mid-batch is
 *    owed only the later ones; and before anything else is written to a member (a reply, a
 *    message of another room, a direct message: `presenceDue`) it is given what it is owed.
 *    When the node stops (`stopPresence`) none is fanned out here any more: every session is
 *    told `bye` instead of the leaves of all those closed before it.
 */
export class Hub {
  /** roomId → userId → sessions of that user in the room. */
  #rooms = new Map<number, Map<number, Set<HubMember>>>();
  /** userId → all sessions of that user. */
  #users = new Map<number, Set<HubMember>>();
  #roomNames = new Map<number, string>();
  /** Other nodes' online users: roomId → userId → name and the nodes holding them. Empty alone. */
  #remote = new Map<number, Map<number, RemoteUser>>();
  /** The same, by node: node → roomId → userIds. */
  #byNode = new Map<string, Map<number, Set<number>>>();
  /** A resync runs; another was asked for meanwhile. */
  #resyncing = false;
  #resyncAgain = false;
  #streams = new Map<StreamKey, StreamOrder>();
  #fanout: Fanout;
  #source: HubSource | null = null;
  /**
   * Input flow control for everything fanned out here: sends wait at this gate while too many are
   * in flight or receivers' queues are backed up (see Admission).
   */
  readonly admission: Admission;
  #timers: Timers;
  /** Counters for stats. */
  delivered = 0;
  #pending: PendingRoomEvent[] = [];
  #flushScheduled = false;
  /** Presence notices waiting for `#presenceTimer`, by room (contract 5). */
  #presenceBatches = new Map<number, PresenceBatch>();
  #presenceTimer: TimerHandle | undefined;
  /** Set by `stopPresence`: the node stops, and presence is no longer fanned out here. */
  #presenceStopped = false;

  constructor(fanout: Fanout, timers: Timers = REAL_TIMERS) {
    this.#fanout = fanout;
    this.#timers = timers;
    this.admission = new Admission({ timers });
    fanout.subscribe((ev) => this.#receive(ev), () => this.presenceSnapshot());
  }

  /** Where events are published (the node's name is `fanout.node`). */
  get fanout(): Fanout {
    return this.#fanout;
  }

  /** Connects the store-backed reads (the service, once it exists). */
  setSource(source: HubSource): void {
    this.#source = source;
  }

  /** A reference to a local connection, for events' `origin`. */
  ref(connId: number): ConnRef {
    return { node: this.#fanout.node, conn: connId };
  }

  #isOrigin(m: HubMember, origin: ConnRef): boolean {
    return m.connId === origin.conn && origin.node === this.#fanout.node;
  }

  // --- receiving -------------------------------------------------------------------------

  #receive(ev: FanoutEvent): void {
    switch (ev.kind) {
      case "msg":
        for (const link of ev.links) this.#sequence(link.stream, link.prev, ev);
        return;
      case "presence":
        this.#presence(ev);
        return;
      case "tagmsg": {
        const { from, room, to, tags, msgid, ts } = ev;
        const hubEv: HubEvent = { kind: "tagmsg", from, room, to, tags, msgid, ts };
        if (ev.roomId !== undefined) this.#toRoom(ev.roomId, hubEv, ev.origin, 0);
        else this.#toSessions(ev.userIds ?? [], hubEv, ev.origin);
        return;
      }
      case "kick":
        for (const m of [...this.sessionsOf(ev.userId)]) {
          if (ev.except && this.#isOrigin(m, ev.except)) continue;
          if (ev.tokenIds && !ev.tokenIds.includes(m.sessionToken?.id ?? -1)) continue;
          m.kick(ev.code, ev.message);
        }
        return;
      case "membership":
        this.#source?.membership(ev);
        return;
      case "read": {
        const to = [...this.sessionsOf(ev.userId)].filter((m) => !this.#isOrigin(m, ev.origin));
        if (to.length > 0) this.#source?.read?.(ev, to);
        return;
      }
      case "room_changed":
        this.#source?.changed(ev);
        if (ev.topic) {
          const { text, by, ts } = ev.topic;
          const topic: HubEvent = { kind: "topic", room: ev.name, topic: text, user: by, ts };
          this.#toRoom(ev.roomId, topic, ev.origin ?? { node: "", conn: -1 }, 0);
        }
        return;
      case "user_changed":
        this.#source?.changed(ev);
        return;
      case "presence_sync":
        this.#presenceSync(ev.node, ev.rooms);
        return;
      case "node_down":
        this.#presenceSync(ev.node, []);
        return;
      case "resync":
        void this.resync();
        return;
    }
  }

  #sequence(stream: StreamKey, prev: number, ev: MsgEvent): void {
    const order = this.#streams.get(stream);
    if (!order) return; // nobody here follows this stream
    const id = ev.msg.id;
    if (order.started && id <= order.last) return; // released before (or in every backlog)
    if (!order.started || prev !== order.last) {
      order.waiting.set(prev, ev);
      if (order.started) this.#armGap(stream, order);
      return;
    }
    this.#release(stream, order, ev);
    this.#drain(stream, order);
  }

  /** Releases waiting events that now follow in order. */
  #drain(stream: StreamKey, order: StreamOrder): void {
    for (;;) {
      const next = order.waiting.get(order.last);
      if (!next) break;
      order.waiting.delete(order.last);
      this.#release(stream, order, next);
    }
    // Anything left at or below `last` was released by a backfill or is in every backlog.
    for (const [prev, ev] of order.waiting) {
      if (ev.msg.id <= order.last) order.waiting.delete(prev);
    }
    if (order.waiting.size === 0 && order.gapTimer !== undefined) {
      this.#timers.clearTimeout(order.gapTimer);
      order.gapTimer = undefined;
    } else if (order.waiting.size > 0) this.#armGap(stream, order);
  }

  #armGap(stream: StreamKey, order: StreamOrder): void {
    if (order.gapTimer !== undefined) return;
    order.gapTimer = this.#timers.setTimeout(() => {
      order.gapTimer = undefined;
      void this.#fillGap(stream, order);
    }, GAP_WAIT_MS);
  }

  /** Reads the messages a stream is missing from the store, then releases what follows. */
  async #fillGap(stream: StreamKey, order: StreamOrder): Promise<void> {
    if (order.waiting.size === 0 || !this.#source) return;
    let first = Infinity;
    for (const ev of order.waiting.values()) first = Math.min(first, ev.msg.id);
    let missing: MsgEvent[];
    try {
      missing = await this.#source.backfill(stream, order.last, first);
    } catch {
      this.#armGap(stream, order); // the store is down: try again later
      return;
    }
    if (this.#streams.get(stream) !== order) return; // stopped meanwhile
    for (const ev of missing) {
      if (ev.msg.id > order.last && ev.msg.id < first) this.#release(stream, order, ev);
    }
    // Nothing else was committed between: the waiting event follows what we have.
    const next = [...order.waiting.entries()].find(([, ev]) => ev.msg.id === first);
    if (next && first > order.last) {
      order.waiting.delete(next[0]);
      this.#release(stream, order, next[1]);
    }
    this.#drain(stream, order);
  }

  #release(stream: StreamKey, order: StreamOrder, ev: MsgEvent): void {
    order.last = ev.msg.id;
    if (stream[0] === "r") {
      const hubEv: HubEvent = ev.tags
        ? { kind: "msg", msg: ev.msg, tags: ev.tags }
        : { kind: "msg", msg: ev.msg };
      this.#toRoom(ev.roomId, hubEv, ev.origin, ev.msg.id);
    } else {
      this.#toUser(Number(stream.slice(2)), stream, ev);
    }
  }

  #presence(ev: PresenceEvent): void {
    const node = ev.origin.node;
    if (node !== this.#fanout.node) {
      this.#roomNames.set(ev.roomId, ev.room);
      const changed = ev.event === "join"
        ? this.#remoteAdd(node, ev.roomId, ev.userId, ev.user)
        : this.#remoteRemove(node, ev.roomId, ev.userId);
      if (!changed) return;
    }
    // Someone else still (or already) has the user online there: the cluster's view is the same.
    if (this.#onlineElsewhere(ev.roomId, ev.userId, node)) return;
    this.#notify(ev.roomId, ev.room, ev.user, ev.event, ev.origin, ev.quit === true, ev.reason);
  }

  #notify(
    roomId: number,
    room: string,
    user: string,
    event: "join" | "leave",
    origin: ConnRef,
    quit = false,
    reason?: string,
  ): void {
    this.#toRoom(
      roomId,
      {
        kind: "presence",
        room,
        user,
        event,
        ...(quit ? { quit: true } : {}),
        ...(reason !== undefined ? { reason } : {}),
        online: once(() => this.online(roomId)),
      },
      origin,
      0,
    );
  }

  /** True when a node other than `node` (this one included) has the user online in the room. */
  #onlineElsewhere(roomId: number, userId: number, node: string): boolean {
    const self = this.#fanout.node;
    if (node !== self && this.#rooms.get(roomId)?.has(userId)) return true;
    const r = this.#remote.get(roomId)?.get(userId);
    if (!r) return false;
    for (const n of r.nodes) if (n !== node) return true;
    return false;
  }

  /** Records that `node` has the user online in the room; false when it was known already. */
  #remoteAdd(node: string, roomId: number, userId: number, user: string): boolean {
    let rooms = this.#byNode.get(node);
    if (!rooms) this.#byNode.set(node, rooms = new Map());
    let users = rooms.get(roomId);
    if (!users) rooms.set(roomId, users = new Set());
    if (users.has(userId)) return false;
    users.add(userId);
    let byUser = this.#remote.get(roomId);
    if (!byUser) this.#remote.set(roomId, byUser = new Map());
    let r = byUser.get(userId);
    if (!r) byUser.set(userId, r = { user, nodes: new Set() });
    r.user = user;
    r.nodes.add(node);
    return true;
  }

  /** Records that `node` no longer has the user in the room; false when it was not known. */
  #remoteRemove(node: string, roomId: number, userId: number): boolean {
    const rooms = this.#byNode.get(node);
    const users = rooms?.get(roomId);
    if (!users?.delete(userId)) return false;
    if (users.size === 0) rooms!.delete(roomId);
    if (rooms!.size === 0) this.#byNode.delete(node);
    const byUser = this.#remote.get(roomId)!;
    const r = byUser.get(userId)!;
    r.nodes.delete(node);
    if (r.nodes.size === 0) byUser.delete(userId);
    if (byUser.size === 0) this.#remote.delete(roomId);
    return true;
  }

  /**
   * Replaces what is known of another node's presence with `rooms` (empty: the node is gone),
   * announcing to local members each user who thereby came online or went offline here.
   */
  #presenceSync(node: string, rooms: PresenceRoom[]): void {
    if (node === this.#fanout.node) return;
    const wanted = new Map<number, Map<number, string>>();
    for (const r of rooms) {
      this.#roomNames.set(r.roomId, r.room);
      wanted.set(r.roomId, new Map(r.users.map((u) => [u.userId, u.user])));
    }
    const origin: ConnRef = { node, conn: -1 };
    for (const [roomId, users] of [...(this.#byNode.get(node) ?? [])]) {
      for (const userId of [...users]) {
        if (wanted.get(roomId)?.has(userId)) continue;
        const name = this.#remote.get(roomId)?.get(userId)?.user ?? "";
        this.#remoteRemove(node, roomId, userId);
        if (!this.#onlineElsewhere(roomId, userId, node)) {
          this.#notify(roomId, this.#roomNames.get(roomId) ?? "", name, "leave", origin);
        }
      }
    }
    for (const [roomId, users] of wanted) {
      for (const [userId, user] of users) {
        if (!this.#remoteAdd(node, roomId, userId, user)) continue;
        if (!this.#onlineElsewhere(roomId, userId, node)) {
          this.#notify(roomId, this.#roomNames.get(roomId) ?? "", user, "join", origin);
        }
      }
    }
  }

  /** What this node has online, per room (sent to other nodes by a bus). */
  presenceSnapshot(): PresenceRoom[] {
    const out: PresenceRoom[] = [];
    for (const [roomId, byUser] of this.#rooms) {
      const users: PresenceRoom["users"] = [];
      for (const [userId, set] of byUser) {
        const first = set.values().next().value;
        if (first) users.push({ userId, user: first.userName });
      }
      out.push({ roomId, room: this.#roomNames.get(roomId) ?? "", users });
    }
    return out;
  }

  /**
   * Catches up after events may have been lost (a bus outage, a gap in a node's sequence): every
   * stream followed here reads its head from the store and releases, in order, what it had not
   * seen; cached records are forgotten and online accounts that were disabled or removed are
   * kicked. Runs one at a time; a request during a run starts one more run after it.
   */
  async resync(): Promise<void> {
    if (this.#resyncing) {
      this.#resyncAgain = true;
      return;
    }
    const source = this.#source;
    if (!source) return;
    this.#resyncing = true;
    try {
      do {
        this.#resyncAgain = false;
        source.forgetAll?.();
        await this.#catchUpStreams(source);
        if (source.revoked) {
          for (const userId of await source.revoked([...this.#users.keys()])) {
            for (const m of [...this.sessionsOf(userId)]) {
              m.kick("kicked", "Your account was disabled or removed by an administrator");
            }
          }
        }
      } while (this.#resyncAgain);
    } catch {
      // The store is down: the next outage or gap asks again; live gaps still read the store.
    } finally {
      this.#resyncing = false;
    }
  }

  async #catchUpStreams(source: HubSource): Promise<void> {
    const started = [...this.#streams].filter(([, o]) => o.started);
    if (started.length === 0) return;
    const heads = await source.heads(started.map(([k]) => k));
    for (const [stream, order] of started) {
      const head = heads.get(stream) ?? 0;
      while (this.#streams.get(stream) === order && head > order.last) {
        const from = order.last;
        const rows = await source.backfill(stream, from, head + 1);
        if (this.#streams.get(stream) !== order) break;
        // Rows are every committed message after `from`, in stream order: those past what was
        // released meanwhile follow it without a gap.
        for (const ev of rows) if (ev.msg.id > order.last) this.#release(stream, order, ev);
        this.#drain(stream, order);
        if (rows.length === 0 || order.last === from) break;
      }
    }
  }

  // --- membership --------------------------------------------------------------------------

  /**
   * Starts following `stream` for one more local subscriber. Resolves with the stream's position
   * at that moment: every later message is delivered live, every earlier one is the subscriber's
   * to read from the store (its backlog). MUST be awaited before that backlog is read.
   */
  follow(stream: StreamKey): Promise<number> {
    let order = this.#streams.get(stream);
    if (order) {
      order.members++;
      return order.ready ?? Promise.resolve(order.last);
    }
    order = {
      last: 0,
      ready: null,
      started: false,
      waiting: new Map(),
      gapTimer: undefined,
      members: 1,
    };
    this.#streams.set(stream, order);
    const o = order;
    const source = this.#source;
    o.ready = (source ? source.heads([stream]) : Promise.resolve(new Map<StreamKey, number>()))
      .then((heads) => {
        const head = heads.get(stream) ?? 0;
        if (this.#streams.get(stream) === o && !o.started) {
          o.started = true;
          o.last = head;
          o.ready = null;
          // Events that arrived meanwhile: those up to the head are in every backlog.
          const early = [...o.waiting.values()];
          o.waiting.clear();
          for (const ev of early) {
            if (ev.msg.id > o.last) {
              o.waiting.set(ev.links.find((l) => l.stream === stream)!.prev, ev);
            }
          }
          this.#drain(stream, o);
        }
        return head;
      }, (err) => {
        if (this.#streams.get(stream) === o) this.#streams.delete(stream);
        throw err;
      });
    return o.ready;
  }

  /** One subscriber fewer; the stream stops here with the last one. */
  unfollow(stream: StreamKey): void {
    const order = this.#streams.get(stream);
    if (!order || --order.members > 0) return;
    if (order.gapTimer !== undefined) this.#timers.clearTimeout(order.gapTimer);
    this.#streams.delete(stream);
  }

  /** Registers a session as online (for direct messages and kicks). */
  addSession(m: HubMember): void {
    this.flush();
    let set = this.#users.get(m.userId);
    if (!set) this.#users.set(m.userId, set = new Set());
    set.add(m);
  }

  /** Removes a session everywhere; returns the rooms whose presence changed (user left). */
  removeSession(m: HubMember): number[] {
    this.flush();
    this.presenceDue(m);
    const left: number[] = [];
    for (const [roomId, byUser] of this.#rooms) {
      const set = byUser.get(m.userId);
      if (set?.delete(m) && set.size === 0) {
        byUser.delete(m.userId);
        left.push(roomId);
      }
    }
    const set = this.#users.get(m.userId);
    if (set) {
      set.delete(m);
      if (set.size === 0) this.#users.delete(m.userId);
    }
    return left;
  }

  /** Puts a session in a room; true when the user was not online there before. */
  subscribe(m: HubMember, roomId: number, roomName: string): boolean {
    this.flush();
    this.#roomNames.set(roomId, roomName);
    let byUser = this.#rooms.get(roomId);
    if (!byUser) this.#rooms.set(roomId, byUser = new Map());
    let set = byUser.get(m.userId);
    const first = !set;
    if (!set) byUser.set(m.userId, set = new Set());
    set.add(m);
    // Notices already waiting were about the room before this member was in it.
    const batch = this.#presenceBatches.get(roomId);
    if (batch) batch.from.set(m, batch.events.length);
    return first;
  }

  /** Takes a session out of a room; true when that was the user's last session there. */
  unsubscribe(m: HubMember, roomId: number): boolean {
    this.flush();
    const batch = this.#presenceBatches.get(roomId);
    if (batch && this.isSubscribed(m, roomId)) this.#presenceOwed(batch, m);
    const set = this.#rooms.get(roomId)?.get(m.userId);
    if (!set?.delete(m)) return false;
    if (set.size === 0) {
      this.#rooms.get(roomId)!.delete(m.userId);
      if (this.#rooms.get(roomId)!.size === 0) this.#rooms.delete(roomId);
      return true;
    }
    return false;
  }

  /** The name a room had when a session entered it here (or another node announced it). */
  roomName(roomId: number): string | undefined {
    return this.#roomNames.get(roomId);
  }

  isSubscribed(m: HubMember, roomId: number): boolean {
    return this.#rooms.get(roomId)?.get(m.userId)?.has(m) ?? false;
  }

  /** Sorted names of users online in a room, on any node. */
  online(roomId: number): string[] {
    const byUser = this.#rooms.get(roomId);
    const remote = this.#remote.get(roomId);
    const names: string[] = [];
    if (byUser) {
      for (const set of byUser.values()) {
        const first = set.values().next().value;
        if (first) names.push(first.userName);
      }
    }
    if (remote) {
      for (const [userId, r] of remote) if (!byUser?.has(userId)) names.push(r.user);
    }
    return names.sort((a, b) => a.localeCompare(b));
  }

  /** Users online in a room, on any node. */
  onlineCount(roomId: number): number {
    const byUser = this.#rooms.get(roomId);
    const remote = this.#remote.get(roomId);
    let n = byUser?.size ?? 0;
    if (remote) { for (const userId of remote.keys()) if (!byUser?.has(userId)) n++; }
    return n;
  }

  /** Sessions of a user (empty when offline). */
  sessionsOf(userId: number): ReadonlySet<HubMember> {
    return this.#users.get(userId) ?? new Set();
  }

  get sessionCount(): number {
    let n = 0;
    for (const s of this.#users.values()) n += s.size;
    return n;
  }

  // --- delivery ----------------------------------------------------------------------------

  /** Queues a room event for the end of the current turn (batched; see the class contract). */
  #toRoom(roomId: number, ev: HubEvent, origin: ConnRef, msgId: number): void {
    if (!this.#rooms.has(roomId)) return;
    const exceptConnId = origin.node === this.#fanout.node ? origin.conn : -1;
    if (ev.kind === "presence") {
      if (this.#presenceStopped) return;
      return this.#deferPresence(roomId, { roomId, ev, exceptConnId, msgId });
    }
    if (this.#presenceBatches.has(roomId)) {
      // The room's waiting notices came before this event: out they go, after what preceded them.
      this.flush();
      this.#sendPresence(roomId);
    }
    this.#pending.push({ roomId, ev, exceptConnId, msgId });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Delivers the pending room events now. Safe to call at any time (and re-entrantly). */
  flush(): void {
    this.#flushScheduled = false;
    const pending = this.#pending;
    if (pending.length === 0) return;
    this.#pending = [];
    let start = 0;
    while (start < pending.length) {
      let end = start + 1;
      while (end < pending.length && pending[end].roomId === pending[start].roomId) end++;
      this.#fanOut(pending, start, end);
      start = end;
    }
  }

  /**
   * Gives `m` every waiting presence notice it is owed now, before something else is written to
   * it (the session calls this before each write that is not itself a presence notice).
   */
  presenceDue(m: HubMember): void {
    if (this.#presenceBatches.size === 0) return;
    for (const [roomId, batch] of this.#presenceBatches) {
      if (this.isSubscribed(m, roomId)) this.#presenceOwed(batch, m);
    }
  }

  /**
   * The node stops and every local session is about to be told `bye`: waiting presence notices
   * are dropped, and later ones (the leaves of those very sessions) are not fanned out here.
   * Otherwise each session's `leave` would be owed to every session closed after it: N²/2 frames
   * for N online, queued to connections that are closing (37 s of a shutdown at 19,900, and
   * queues cut as slow consumers; docs/PERFORMANCE.md, "Token reconnects at 19,900"). Other nodes
   * still get the events from the bus. Not undone: a stopped node does not start again.
   */
  stopPresence(): void {
    this.#presenceStopped = true;
    if (this.#presenceTimer !== undefined) this.#timers.clearTimeout(this.#presenceTimer);
    this.#presenceTimer = undefined;
    this.#presenceBatches.clear();
  }

  /** Stops the presence timer (the server stops); waiting notices are dropped (stopPresence). */
  close(): void {
    this.stopPresence();
  }

  #deferPresence(roomId: number, p: PendingRoomEvent): void {
    let batch = this.#presenceBatches.get(roomId);
    if (!batch) {
      this.#presenceBatches.set(roomId, batch = { events: [], from: new Map(), frames: new Map() });
    }
    batch.events.push(p);
    if (this.#presenceTimer === undefined) {
      const waitMs = Math.min(
        PRESENCE_WAIT_MAX_MS,
        Math.max(PRESENCE_WAIT_MS, this.#users.size / 4),
      );
      this.#presenceTimer = this.#timers.setTimeout(() => {
        this.#presenceTimer = undefined;
        for (const roomId of [...this.#presenceBatches.keys()]) this.#sendPresence(roomId);
      }, waitMs);
    }
  }

  /** The frames of a batch's first `n` events in `enc`'s bytes (encoded once each). */
  #presenceFrames(batch: PresenceBatch, enc: EventEncoder): (Uint8Array | null)[] {
    let list = batch.frames.get(enc);
    if (!list) batch.frames.set(enc, list = []);
    while (list.length < batch.events.length) {
      list.push(enc.encodeEvent(batch.events[list.length].ev));
    }
    return list;
  }

  /** Delivers what `m` is owed of a room's batch now, frame by frame (no joined buffer). */
  #presenceOwed(batch: PresenceBatch, m: HubMember): void {
    const k = batch.from.get(m) ?? 0;
    const n = batch.events.length;
    // A session that ended takes nothing: walking what it was owed only to drop each frame cost
    // O(batch) per session leaving, O(N²) when N leave in one turn.
    if (k >= n || m.closed) return;
    const list = this.#presenceFrames(batch, m.encoder);
    for (let i = k; i < n; i++) {
      const bytes = list[i];
      if (bytes && batch.events[i].exceptConnId !== m.connId) m.deliver(null, bytes, 0);
    }
    batch.from.set(m, n);
  }

  /** Fans out a room's waiting presence notices: one joined buffer per codec, shared. */
  #sendPresence(roomId: number): void {
    const batch = this.#presenceBatches.get(roomId);
    if (!batch) return;
    this.#presenceBatches.delete(roomId);
    if (this.#presenceBatches.size === 0 && this.#presenceTimer !== undefined) {
      this.#timers.clearTimeout(this.#presenceTimer);
      this.#presenceTimer = undefined;
    }
    const byUser = this.#rooms.get(roomId);
    if (!byUser) return;
    const n = batch.events.length;
    const origins = new Set<number>();
    for (const p of batch.events) if (p.exceptConnId !== -1) origins.add(p.exceptConnId);
    const joined = new Map<EventEncoder, Joined | null>();
    for (const set of byUser.values()) {
      for (const m of set) {
        const k = batch.from.get(m) ?? 0;
        if (k >= n) continue;
        let all = joined.get(m.encoder);
        if (all === undefined) {
          joined.set(m.encoder, all = join(this.#presenceFrames(batch, m.encoder)));
        }
        if (!all) continue;
        if (k === 0 && !origins.has(m.connId)) {
          m.deliver(null, all.bytes, 0);
          continue;
        }
        // Joined mid-batch, or told of itself: the runs it is owed, as subarrays.
        let runStart = all.offsets[k];
        for (let i = k; i < n; i++) {
          if (batch.events[i].exceptConnId !== m.connId) continue;
          if (all.offsets[i] > runStart) {
            m.deliver(null, all.bytes.subarray(runStart, all.offsets[i]), 0);
          }
          runStart = all.offsets[i + 1];
        }
        if (all.bytes.length > runStart) m.deliver(null, all.bytes.subarray(runStart), 0);
      }
    }
  }

  /** Delivers pending[start, end), all events of one room, to its members. */
  #fanOut(pending: PendingRoomEvent[], start: number, end: number): void {
    const roomId = pending[start].roomId;
    const byUser = this.#rooms.get(roomId);
    if (!byUser) return;
    const stream: StreamKey = `r:${roomId}`;
    const count = end - start;
    /** Per codec: each event's bytes (null: not shown), and all of them joined. */
    const frames = new Map<EventEncoder, (Uint8Array | null)[]>();
    const joined = new Map<EventEncoder, Joined | null>();
    const encodeAll = (enc: EventEncoder) => {
      let list = frames.get(enc);
      if (!list) {
        list = [];
        for (let i = start; i < end; i++) list.push(enc.encodeEvent(pending[i].ev));
        frames.set(enc, list);
      }
      return list;
    };
    // The first and newest message ids of the batch (0 when it is all presence).
    let firstMsgId = 0;
    let lastMsgId = 0;
    for (let i = start; i < end; i++) {
      const id = pending[i].msgId;
      if (id === 0) continue;
      if (firstMsgId === 0) firstMsgId = id;
      lastMsgId = id;
    }
    const except = new Set<number>();
    for (let i = start; i < end; i++) {
      if (pending[i].exceptConnId !== -1) except.add(pending[i].exceptConnId);
    }
    for (const set of byUser.values()) {
      for (const m of set) {
        const list = encodeAll(m.encoder);
        const sent = lastMsgId ? m.sentThrough(stream) : 0;
        if (lastMsgId && sent >= lastMsgId) continue; // it has all of them already
        if (count === 1 || sent < 0 || (firstMsgId && sent >= firstMsgId)) {
          for (let i = 0; i < count; i++) {
            const p = pending[start + i];
            const bytes = list[i];
            if (!bytes) continue;
            if (p.msgId === 0) {
              if (m.connId !== p.exceptConnId) m.deliver(null, bytes, 0);
              continue;
            }
            if (sent >= 0 && p.msgId <= sent) continue;
            if (m.connId === p.exceptConnId) {
              // Its own message: not sent to it, but counted as seen in order.
              m.deliver(stream, EMPTY, p.msgId);
              continue;
            }
            m.deliver(stream, bytes, p.msgId);
            this.delivered++;
          }
          continue;
        }
        let all = joined.get(m.encoder);
        if (all === undefined) {
          all = join(list);
          joined.set(m.encoder, all);
        }
        if (!all) continue;
        const target = lastMsgId ? stream : null;
        if (!except.has(m.connId)) {
          m.deliver(target, all.bytes, lastMsgId);
          this.delivered += all.shown;
          continue;
        }
        // The member sent some of these: it gets the runs between its own frames (no copies).
        let runStart = 0;
        let parts = 0;
        for (let i = 0; i < count; i++) {
          if (pending[start + i].exceptConnId !== m.connId) {
            if (list[i]) this.delivered++;
            continue;
          }
          const own = all.offsets[i];
          if (own > runStart) {
            m.deliver(target, all.bytes.subarray(runStart, own), lastMsgId);
            parts++;
          }
          runStart = all.offsets[i + 1];
        }
        if (all.bytes.length > runStart) {
          m.deliver(target, all.bytes.subarray(runStart), lastMsgId);
        } else if (lastMsgId) m.deliver(target, EMPTY, lastMsgId);
      }
    }
  }

  /** Delivers a direct message to every session of one user except its origin. */
  #toUser(userId: number, stream: StreamKey, ev: MsgEvent): void {
    this.flush();
    const members = this.#users.get(userId);
    if (!members) return;
    const cache = new Map<EventEncoder, Uint8Array | null>();
    const hubEv: HubEvent = ev.tags
      ? { kind: "msg", msg: ev.msg, tags: ev.tags }
      : { kind: "msg", msg: ev.msg };
    const id = ev.msg.id;
    for (const m of members) {
      const sent = m.sentThrough(stream);
      if (sent >= id) continue;
      if (this.#isOrigin(m, ev.origin)) {
        m.deliver(stream, EMPTY, id);
        continue;
      }
      let bytes = cache.get(m.encoder);
      if (bytes === undefined) {
        bytes = m.encoder.encodeEvent(hubEv);
        cache.set(m.encoder, bytes);
      }
      m.deliver(stream, bytes ?? EMPTY, id);
      if (bytes) this.delivered++;
    }
  }

  /** Delivers an event of no stream (a TAGMSG) to every session of these users but its origin. */
  #toSessions(userIds: number[], ev: HubEvent, origin: ConnRef): void {
    this.flush();
    const cache = new Map<EventEncoder, Uint8Array | null>();
    for (const userId of userIds) {
      for (const m of this.#users.get(userId) ?? []) {
        if (this.#isOrigin(m, origin)) continue;
        let bytes = cache.get(m.encoder);
        if (bytes === undefined) cache.set(m.encoder, bytes = m.encoder.encodeEvent(ev));
        if (bytes) m.deliver(null, bytes, 0);
      }
    }
  }
}

const EMPTY = new Uint8Array(0);

/** A batch's frames in one buffer: frame i is bytes[offsets[i], offsets[i + 1]). */
interface Joined {
  bytes: Uint8Array;
  /** Frames shown (not null). */
  shown: number;
  offsets: Int32Array;
}

/** The non-null frames of a batch in one buffer; null when none is shown. */
function join(list: (Uint8Array | null)[]): Joined | null {
  let size = 0;
  let shown = 0;
  let only: Uint8Array | null = null;
  const offsets = new Int32Array(list.length + 1);
  for (let i = 0; i < list.length; i++) {
    const b = list[i];
    offsets[i] = size;
    if (b) {
      size += b.length;
      shown++;
      only = b;
    }
  }
  offsets[list.length] = size;
  if (shown === 0) return null;
  if (shown === 1) return { bytes: only!, shown, offsets };
  const bytes = new Uint8Array(size);
  let off = 0;
  for (const b of list) {
    if (b) {
      bytes.set(b, off);
      off += b.length;
    }
  }
  return { bytes, shown, offsets };
}

/** Memoizes a computation for a presence event's `online` list. */
export function once<T>(f: () => T): () => T {
  let done = false;
  let value: T;
  return () => {
    if (!done) {
      value = f();
      done = true;
    }
    return value;
  };
}
