// Owns the fan-out seam: the plain-data events every node publishes and receives, and the
// in-process implementation of the interface (a bus between nodes implements the same one).
import type { WireMessage } from "../protocol/frames.ts";
import type { StreamLink } from "../store/store.ts";

/** A connection anywhere in the cluster: the node that holds it and its number there. */
export interface ConnRef {
  node: string;
  conn: number;
}

/**
 * What crosses the seam. Plain data only (no closures, no object identities), so the same event
 * can be serialised onto a bus unchanged.
 */
export type FanoutEvent =
  /** A committed message, with its link in every stream it belongs to. */
  | {
    kind: "msg";
    msg: WireMessage;
    roomId: number;
    links: StreamLink[];
    origin: ConnRef;
    /** Client-only tags the sender attached (IRC `+name`): live only, never stored. */
    tags?: Record<string, string>;
  }
  /**
   * Client-only tags on their own (IRC TAGMSG: typing, reactions): live to a room's members
   * (`roomId`) or to users' sessions (`userIds`: a DM's recipient and sender); never stored.
   */
  | {
    kind: "tagmsg";
    roomId?: number;
    room?: string;
    userIds?: number[];
    to?: string;
    from: string;
    tags: Record<string, string>;
    /** The relay's id (not a message id: nothing was stored). */
    msgid: string;
    ts: number;
    origin: ConnRef;
  }
  /** A user came online in a room (first session) or left it (last session). */
  | {
    kind: "presence";
    roomId: number;
    room: string;
    userId: number;
    user: string;
    event: "join" | "leave";
    /** A `leave` because the user went offline (their last session ended), not a part. */
    quit?: boolean;
    /** For `leave`: what the user said (a part's reason, an IRC QUIT message). */
    reason?: string;
    origin: ConnRef;
  }
  /**
   * Close every session of a user (admin disable or remove, a password change), with `bye`
   * `code`; `except` is spared (the session that changed the password).
   */
  | {
    kind: "kick";
    userId: number;
    code: string;
    message: string;
    except?: ConnRef;
    /** Only the sessions that logged in with (or were issued) one of these session tokens. */
    tokenIds?: number[];
  }
  /**
   * A user became a member of a room (`added`: invited, or added by an admin) or stopped being
   * one (`removed`: kicked, removed by an admin); their sessions on every node follow, live.
   */
  | {
    kind: "membership";
    roomId: number;
    room: string;
    userId: number;
    change: "added" | "removed";
    /** Who did it, as shown to the user (a user name, or `admin`). */
    by: string;
    /**
     * Set when the user joined or parted on connection `origin` themselves: that node moved its
     * sessions already; on the others the user's sessions follow as for a join or part of their
     * own (IRC JOIN/PART, no notice of someone else's hand).
     */
    origin?: ConnRef;
  }
  /**
   * A user's read marker moved (docs/PROTOCOL.md §7.1): their other sessions, on every node, get
   * a `read` frame. `room` names a room, `with` the DM peer (as the user sees it); `unread` is
   * counted through `through`.
   */
  | {
    kind: "read";
    userId: number;
    roomId: number;
    room?: string;
    with?: string;
    id: number;
    unread: number;
    through: number;
    origin: ConnRef;
  }
  /**
   * A room's record changed (topic, archived): caches must forget it. `topic`: a user set the
   * topic (who, when), shown to the room's members; `origin` is the session that set it.
   */
  | {
    kind: "room_changed";
    roomId: number;
    name: string;
    topic?: { text: string; by: string; ts: number };
    origin?: ConnRef;
  }
  /** A user's record changed (name, role, disabled, removed): caches must forget it. */
  | { kind: "user_changed"; userId: number }
  /**
   * Everything another node has online (sent by a bus when a node starts, after an outage and
   * when asked): replaces what was known of that node's presence.
   */
  | { kind: "presence_sync"; node: string; rooms: PresenceRoom[] }
  /** A node stopped, or missed its heartbeats: its users are no longer online through it. */
  | { kind: "node_down"; node: string }
  /**
   * Events may have been lost (the bus was unreachable, or a gap in a node's sequence): re-read
   * every followed stream from the store, forget cached records, re-check online accounts.
   */
  | { kind: "resync" };

/** Who one node has online in one room. */
export interface PresenceRoom {
  roomId: number;
  room: string;
  users: { userId: number; user: string }[];
}

/**
 * The fan-out interface.
 *
 * 1. `publish` MUST be called only after the event's cause is committed (a message after its
 *    transaction and sync): receivers may read the store for what an event refers to.
 * 2. Every subscriber of every node receives each event at most once; across nodes events of one
 *    stream may arrive late or out of order, so receivers order messages by their stream links
 *    (Hub) and treat the store as the truth.
 * 3. `publish` never throws and never blocks the caller.
 */
export interface Fanout {
  /** This node's name (the `node` of ConnRefs made here). */
  readonly node: string;
  publish(ev: FanoutEvent): void;
  /**
   * Registers the one receiver of this node (the Hub), and what it has online, which a bus
   * sends to other nodes as a `presence_sync` (a node's own events never come back to it as
   * `presence_sync`, `node_down` or `resync` from itself).
   */
  subscribe(receive: (ev: FanoutEvent) => void, presence?: () => PresenceRoom[]): void;
  close(): Promise<void>;
}

/** Single node: events go straight to this process's receiver, synchronously, in order. */
export class LocalFanout implements Fanout {
  readonly node: string;
  #receive: (ev: FanoutEvent) => void = () => {};

  constructor(node = "local") {
    this.node = node;
  }

  publish(ev: FanoutEvent): void {
    this.#receive(ev);
  }

  subscribe(receive: (ev: FanoutEvent) => void): void {
    this.#receive = receive;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
