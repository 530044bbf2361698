// Owns who is online where, and fan-out: each event is encoded once per codec and queued to many.
import type { WireMessage } from "../protocol/frames.ts";
import { Admission } from "./admission.ts";

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
  /** True while the member holds live deliveries back (resume): it gets them one by one. */
  readonly holding?: boolean;
}

/** A room event waiting for the end of the current turn. */
interface PendingRoomEvent {
  roomId: number;
  ev: HubEvent;
  exceptConnId: number;
  msgId: number;
}

/**
 * Rooms and presence in memory. Presence counts users, not connections: `join` is announced when a
 * user's first session enters a room, `leave` when the last one leaves.
 *
 * Room fan-out is batched per turn:
 * 1. `toRoom` records the event and schedules a flush in a microtask; every event of the same turn
 *    (all messages of one group commit) is then encoded once per codec, the frames of consecutive
 *    events of one room are joined into one buffer, and that one buffer is queued to each member.
 *    Per message and member that leaves a loop step, not an enqueue and a copy.
 * 2. Each member still gets exactly the events it would have got at `toRoom` time, in the same
 *    order: any change of membership (`addSession`, `removeSession`, `subscribe`, `unsubscribe`)
 *    and `toUsers` flush what is pending first, so membership is never read later than it was.
 * 3. A member that sent some of the batched events gets the runs of the joined buffer between
 *    its own frames (subarrays, no copy). A member holding deliveries back (resume) gets the
 *    events one by one with their ids, as before.
 */
export class Hub {
  /** roomId → userId → sessions of that user in the room. */
  #rooms = new Map<number, Map<number, Set<HubMember>>>();
  /** userId → all sessions of that user. */
  #users = new Map<number, Set<HubMember>>();
  #roomNames = new Map<number, string>();
  /**
   * Input flow control for everything fanned out here: sends wait at this gate while too many are
   * in flight or receivers' queues are backed up (see Admission).
   */
  readonly admission = new Admission();
  /** Counters for stats. */
  delivered = 0;
  #pending: PendingRoomEvent[] = [];
  #flushScheduled = false;

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
    return first;
  }

  /** Takes a session out of a room; true when that was the user's last session there. */
  unsubscribe(m: HubMember, roomId: number): boolean {
    this.flush();
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

  /**
   * Delivers to every session in a room except `exceptConnId`, at the end of the current turn
   * (batched with the turn's other room events; see the class contract).
   */
  toRoom(roomId: number, ev: HubEvent, exceptConnId = -1, msgId = 0): void {
    if (!this.#rooms.has(roomId)) return;
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

  /** Delivers pending[start, end), all events of one room, to its members. */
  #fanOut(pending: PendingRoomEvent[], start: number, end: number): void {
    const roomId = pending[start].roomId;
    const byUser = this.#rooms.get(roomId);
    if (!byUser) return;
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
    // The newest message id of the batch (0 when it is all presence, which may be lazy).
    let batchMsgId = 0;
    for (let i = start; i < end; i++) batchMsgId = Math.max(batchMsgId, pending[i].msgId);
    const except = new Set<number>();
    for (let i = start; i < end; i++) {
      if (pending[i].exceptConnId !== -1) except.add(pending[i].exceptConnId);
    }
    for (const set of byUser.values()) {
      for (const m of set) {
        const list = encodeAll(m.encoder);
        if (count === 1 || m.holding) {
          for (let i = 0; i < count; i++) {
            const p = pending[start + i];
            const bytes = list[i];
            if (bytes && m.connId !== p.exceptConnId) {
              m.deliver(bytes, p.msgId, p.msgId ? roomId : 0);
              this.delivered++;
            }
          }
          continue;
        }
        let all = joined.get(m.encoder);
        if (all === undefined) {
          all = join(list);
          joined.set(m.encoder, all);
        }
        if (!all) continue;
        const scope = batchMsgId ? roomId : 0;
        if (!except.has(m.connId)) {
          m.deliver(all.bytes, batchMsgId, scope);
          this.delivered += all.shown;
          continue;
        }
        // The member sent some of these: it gets the runs between its own frames (no copies).
        let runStart = 0;
        for (let i = 0; i < count; i++) {
          if (pending[start + i].exceptConnId !== m.connId) {
            if (list[i]) this.delivered++;
            continue;
          }
          const own = all.offsets[i];
          if (own > runStart) m.deliver(all.bytes.subarray(runStart, own), batchMsgId, scope);
          runStart = all.offsets[i + 1];
        }
        if (all.bytes.length > runStart) m.deliver(all.bytes.subarray(runStart), batchMsgId, scope);
      }
    }
  }

  /** Delivers to every session of the given users except `exceptConnId`. */
  toUsers(userIds: Iterable<number>, ev: HubEvent, exceptConnId = -1, msgId = 0): void {
    this.flush();
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
