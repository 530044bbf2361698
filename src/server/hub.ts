// Owns who is online where, and fan-out: each event is encoded once per codec and queued to many.
import type { WireMessage } from "../protocol/frames.ts";

/** A codec-neutral event the hub delivers. */
export type HubEvent =
  | { kind: "msg"; msg: WireMessage }
  | {
    kind: "presence";
    room: string;
    user: string;
    event: "join" | "leave";
    /** Names online in the room after the change (computed once, on first use). */
    online: () => string[];
  };

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
   * Queues encoded bytes. `msgId` and `scope` (room id, -1 for direct messages, 0 for presence) let
   * a resuming session drop what its backlog already had.
   */
  deliver(bytes: Uint8Array, msgId: number, scope: number): void;
}

/**
 * Rooms and presence in memory. Presence counts users, not connections: `join` is announced when a
 * user's first session enters a room, `leave` when the last one leaves.
 */
export class Hub {
  /** roomId → userId → sessions of that user in the room. */
  #rooms = new Map<number, Map<number, Set<HubMember>>>();
  /** userId → all sessions of that user. */
  #users = new Map<number, Set<HubMember>>();
  #roomNames = new Map<number, string>();
  /** Counters for stats. */
  delivered = 0;

  /** Registers a session as online (for direct messages and kicks). */
  addSession(m: HubMember): void {
    let set = this.#users.get(m.userId);
    if (!set) this.#users.set(m.userId, set = new Set());
    set.add(m);
  }

  /** Removes a session everywhere; returns the rooms whose presence changed (user left). */
  removeSession(m: HubMember): number[] {
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
    this.#roomNames.set(roomId, roomName);
    let byUser = this.#rooms.get(roomId);
    if (!byUser) this.#rooms.set(roomId, byUser = new Map());
    let set = byUser.get(m.userId);
    const first = !set;
    if (!set) byUser.set(m.userId, set = new Set());
    set.add(m);
    return first;
  }

  /** Takes a session out of a room; true when that was the user's last session there. */
  unsubscribe(m: HubMember, roomId: number): boolean {
    const set = this.#rooms.get(roomId)?.get(m.userId);
    if (!set?.delete(m)) return false;
    if (set.size === 0) {
      this.#rooms.get(roomId)!.delete(m.userId);
      return true;
    }
    return false;
  }

  isSubscribed(m: HubMember, roomId: number): boolean {
    return this.#rooms.get(roomId)?.get(m.userId)?.has(m) ?? false;
  }

  /** Sorted names of users online in a room. */
  online(roomId: number): string[] {
    const byUser = this.#rooms.get(roomId);
    if (!byUser) return [];
    const names: string[] = [];
    for (const set of byUser.values()) {
      const first = set.values().next().value;
      if (first) names.push(first.userName);
    }
    return names.sort((a, b) => a.localeCompare(b));
  }

  onlineCount(roomId: number): number {
    return this.#rooms.get(roomId)?.size ?? 0;
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

  /** Delivers to every session in a room except `exceptConnId`. */
  toRoom(roomId: number, ev: HubEvent, exceptConnId = -1, msgId = 0): void {
    const byUser = this.#rooms.get(roomId);
    if (!byUser) return;
    const cache = new Map<EventEncoder, Uint8Array | null>();
    const scope = msgId ? roomId : 0;
    for (const set of byUser.values()) {
      for (const m of set) {
        if (m.connId !== exceptConnId) this.#deliver(m, ev, cache, msgId, scope);
      }
    }
  }

  /** Delivers to every session of the given users except `exceptConnId`. */
  toUsers(userIds: Iterable<number>, ev: HubEvent, exceptConnId = -1, msgId = 0): void {
    const cache = new Map<EventEncoder, Uint8Array | null>();
    const seen = new Set<number>();
    for (const uid of userIds) {
      if (seen.has(uid)) continue;
      seen.add(uid);
      for (const m of this.#users.get(uid) ?? []) {
        if (m.connId !== exceptConnId) this.#deliver(m, ev, cache, msgId, msgId ? -1 : 0);
      }
    }
  }

  #deliver(
    m: HubMember,
    ev: HubEvent,
    cache: Map<EventEncoder, Uint8Array | null>,
    msgId: number,
    scope: number,
  ): void {
    let bytes = cache.get(m.encoder);
    if (bytes === undefined) {
      bytes = m.encoder.encodeEvent(ev);
      cache.set(m.encoder, bytes);
    }
    if (bytes) {
      m.deliver(bytes, msgId, scope);
      this.delivered++;
    }
  }
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
