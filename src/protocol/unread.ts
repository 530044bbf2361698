// Owns counting unread messages from the server's read markers (docs/PROTOCOL.md §7.1): one pure
// module for the web app and the terminal client, so both show the same numbers.
import type { ResumePoint, UnreadMap } from "./frames.ts";

/** A conversation's key: `#room`, or `@peer` (the peer's name in lower case). */
export type ConvKey = string;

/** The key of a room or DM peer. */
export function convKey(c: { room?: string; with?: string }): ConvKey {
  return c.room !== undefined ? `#${c.room}` : `@${(c.with ?? "").toLowerCase()}`;
}

/** The key of a delivered message's conversation, as `me` sees it. */
export function messageKey(m: { from: string; room?: string; to?: string }, me: string): ConvKey {
  if (m.room !== undefined) return `#${m.room}`;
  const mine = m.from.toLowerCase() === me.toLowerCase();
  return `@${(mine ? m.to ?? "" : m.from).toLowerCase()}`;
}

interface ConvState {
  /** The marker: newest id read. */
  read: number;
  /** Unread messages up to `through`, as the server counted them. */
  count: number;
  through: number;
  /** Others' messages delivered after `through` and after `read`. */
  live: Set<number>;
}

/** What a `read` answer or event carries. */
export interface ReadFrame {
  room?: string;
  with?: string;
  id: number;
  unread: number;
  through: number;
}

/**
 * Unread counts per conversation, kept exact from the login `ok`, `read` answers and events, and
 * delivered messages (the rule of docs/PROTOCOL.md §7.1).
 */
export class UnreadCounts {
  #convs = new Map<ConvKey, ConvState>();
  /** Where a conversation the login did not list starts counting (its `latest`). */
  #roomThrough = new Map<string, number>();
  #dmThrough = 0;
  #me = "";

  /** Starts again from a login's `ok` (every login, also after a reconnect). */
  reset(me: string, markers: UnreadMap | undefined, latest: ResumePoint | undefined): void {
    this.#me = me;
    this.#convs.clear();
    this.#roomThrough = new Map(Object.entries(latest?.rooms ?? {}));
    this.#dmThrough = latest?.dm ?? 0;
    for (const [room, s] of Object.entries(markers?.rooms ?? {})) {
      this.#convs.set(convKey({ room }), {
        read: s.read,
        count: s.count,
        through: this.#roomThrough.get(room) ?? 0,
        live: new Set(),
      });
    }
    for (const [peer, s] of Object.entries(markers?.dm ?? {})) {
      this.#convs.set(convKey({ with: peer }), {
        read: s.read,
        count: s.count,
        through: this.#dmThrough,
        live: new Set(),
      });
    }
  }

  #state(key: ConvKey): ConvState {
    let s = this.#convs.get(key);
    if (!s) {
      const through = key.startsWith("#")
        ? this.#roomThrough.get(key.slice(1)) ?? 0
        : this.#dmThrough;
      s = { read: 0, count: 0, through, live: new Set() };
      this.#convs.set(key, s);
    }
    return s;
  }

  /** A delivered message (live or backlog). True when a count changed. */
  message(m: { id: number; from: string; room?: string; to?: string }): boolean {
    if (m.from.toLowerCase() === this.#me.toLowerCase()) return false;
    const s = this.#state(messageKey(m, this.#me));
    if (m.id <= s.through || m.id <= s.read || s.live.has(m.id)) return false;
    s.live.add(m.id);
    return true;
  }

  /** A `read` answer or event: the marker moves up, the server's count replaces an older one. */
  marker(f: ReadFrame): void {
    const s = this.#state(convKey(f));
    s.read = Math.max(s.read, f.id);
    if (f.through >= s.through) {
      s.count = f.unread;
      s.through = f.through;
    }
    for (const id of s.live) if (id <= s.through || id <= s.read) s.live.delete(id);
  }

  /**
   * The user has read the conversation up to `id`. True when the marker moved (then send `read`
   * with this id; its answer goes to `marker`).
   */
  readUpTo(key: ConvKey, id: number): boolean {
    const s = this.#state(key);
    if (id <= s.read) return false;
    s.read = id;
    if (id >= s.through) s.count = 0;
    for (const x of s.live) if (x <= id) s.live.delete(x);
    return true;
  }

  /** Unread messages of a conversation. */
  count(key: ConvKey): number {
    const s = this.#convs.get(key);
    return s ? s.count + s.live.size : 0;
  }

  /** Conversations with unread messages, by key. */
  nonZero(): Map<ConvKey, number> {
    const out = new Map<ConvKey, number>();
    for (const key of this.#convs.keys()) {
      const n = this.count(key);
      if (n > 0) out.set(key, n);
    }
    return out;
  }
}
