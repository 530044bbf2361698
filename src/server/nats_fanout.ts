// Owns the fan-out between nodes over NATS: events as JSON envelopes on the cluster's subjects,
// per-node sequence numbers to notice loss, heartbeats and presence snapshots, and the buffer
// that holds this node's events while the bus is unreachable.
import { getLogger } from "@logtape/logtape";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";
import type { Fanout, FanoutEvent, PresenceRoom } from "./fanout.ts";

const log = getLogger(["chat", "bus"]);
const enc = new TextEncoder();
const dec = new TextDecoder();

/** How to reach NATS and how this node behaves on it. */
export interface NatsFanoutOptions {
  /** `host:port` of one or more NATS servers of one NATS cluster. */
  servers: string[];
  /** This node's name: unique in the cluster (ConnRefs are made of it). */
  node: string;
  /** Subject prefix part, so several chat clusters can share one NATS (default `chat`). */
  cluster?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** TLS to NATS: required when set; files are PEM (CA to trust, client certificate and key). */
  tls?: { caFile?: string; certFile?: string; keyFile?: string } | null;
  /** Heartbeat period (default 1000 ms); a node silent for `missedHeartbeats` of them is down. */
  heartbeatMs?: number;
  /** Default 3. */
  missedHeartbeats?: number;
  /** Events held while disconnected, in bytes (default 8 MiB); past it they are dropped. */
  bufferBytes?: number;
  timers?: Timers;
}

/** What travels on the bus: an event or a control record, from a node, numbered. */
interface Envelope {
  /** Node name and incarnation (a restarted node with the same name starts a new sequence). */
  n: string;
  i: string;
  /** This node's sequence number of the envelope (1, 2, …; every envelope it sends counts). */
  s: number;
  e?: FanoutEvent;
  /** Control: heartbeat, presence snapshot part, a request for snapshots, a goodbye. */
  c?: "hb" | "snap" | "want" | "bye";
  /** `want`: the node asked (absent: every node). */
  to?: string;
  /** `snap`: rooms in this part; `last` closes the snapshot. */
  rooms?: PresenceRoom[];
  last?: boolean;
}

/** What this node knows of another node. */
interface Peer {
  inc: string;
  seq: number;
  lastSeen: number;
  /** This node's heartbeat periods in a row in which nothing came from the peer. */
  silentPeriods: number;
  /** A presence snapshot being received in parts. */
  snap: PresenceRoom[] | null;
}

/** A presence snapshot is cut into envelopes of about this many users (NATS max_payload 1 MB). */
const SNAPSHOT_USERS_PER_PART = 5_000;

/**
 * Fan-out over NATS core (no JetStream: the database is the truth, the bus only a hint).
 *
 * 1. `publish` delivers the event to this node's receiver at once, synchronously (this node's
 *    users never wait for the bus), then sends it as JSON on `chat.<cluster>.<topic>` without
 *    waiting. Its own envelopes are not echoed back (`noEcho`, and skipped by node name).
 * 2. The node subscribes to `chat.<cluster>.>`, everything of the cluster: the Hub drops what
 *    nobody here follows at its first lookup, which costs less than a subscription per room
 *    (and the race of an event sent before a new subscription reached the server).
 * 3. Every envelope of a node carries its next sequence number. A receiver that sees a gap, or
 *    (re)connects, may have missed events: it emits `resync` (the Hub re-reads its streams from
 *    the store) and asks that node for a presence snapshot.
 * 4. While disconnected, envelopes are buffered up to `bufferBytes` and sent on reconnect; past
 *    that they are dropped (the receivers see the gap). Reconnection is retried forever with
 *    backoff (a quarter of the outage so far, 250 ms to 2 s).
 * 5. Each node sends a heartbeat every `heartbeatMs`; a node not heard from for
 *    `missedHeartbeats` periods (while this one is connected) is `node_down`, as is one that
 *    says `bye` when it stops. Periods are counted on this node's own ticks, not only on the
 *    clock: after this node's event loop was blocked (a long GC, a slow disk), the one late tick
 *    counts as one silent period, however long the block, and what arrived meanwhile is read
 *    before the next, so a node that was itself stalled does not declare healthy peers down.
 */
export class NatsFanout implements Fanout {
  readonly node: string;
  readonly #opts: NatsFanoutOptions;
  readonly #prefix: string;
  readonly #inc = crypto.randomUUID().slice(0, 8);
  readonly #timers: Timers;
  readonly #heartbeatMs: number;
  readonly #missed: number;
  readonly #bufferBytes: number;
  #receive: (ev: FanoutEvent) => void = () => {};
  #presence: () => PresenceRoom[] = () => [];
  #nc: NatsConnection | null = null;
  #sub: Subscription | null = null;
  #connected = false;
  #seq = 0;
  #buffer: { subject: string; data: Uint8Array }[] = [];
  #buffered = 0;
  #dropped = 0;
  #peers = new Map<string, Peer>();
  #timer: TimerHandle | undefined;
  /** When the heartbeat tick last ran (its lateness tells of a blocked event loop). */
  #lastTick = 0;
  #retry: TimerHandle | undefined;
  #lastWarn = -Infinity;
  /** When the bus was last lost (or first tried). */
  #downSince = 0;
  #closing = false;
  #dialing: Promise<void> | null = null;
  #watching: Promise<void> | null = null;
  #firstConnect: { promise: Promise<void>; resolve: () => void };
  /** Counters for stats and benchmarks. */
  readonly stats = { published: 0, received: 0, gaps: 0, reconnects: 0, dropped: 0 };

  constructor(opts: NatsFanoutOptions) {
    this.#opts = opts;
    this.node = opts.node;
    this.#prefix = `chat.${opts.cluster ?? "chat"}`;
    this.#timers = opts.timers ?? REAL_TIMERS;
    this.#heartbeatMs = opts.heartbeatMs ?? 1000;
    this.#missed = opts.missedHeartbeats ?? 3;
    this.#bufferBytes = opts.bufferBytes ?? 8 * 1024 * 1024;
    let resolve!: () => void;
    this.#firstConnect = { promise: new Promise<void>((r) => resolve = r), resolve };
    this.#downSince = this.#timers.now();
    this.#dial();
    this.#tick();
  }

  /** Resolves once the node is on the bus (the first connection; tests and start-up logs). */
  connected(): Promise<void> {
    return this.#firstConnect.promise;
  }

  get isConnected(): boolean {
    return this.#connected;
  }

  /** Other nodes heard from and not yet down. */
  get peers(): string[] {
    return [...this.#peers.keys()].sort();
  }

  subscribe(receive: (ev: FanoutEvent) => void, presence?: () => PresenceRoom[]): void {
    this.#receive = receive;
    if (presence) this.#presence = presence;
  }

  publish(ev: FanoutEvent): void {
    this.#receive(ev);
    if (ev.kind === "presence_sync" || ev.kind === "node_down" || ev.kind === "resync") return;
    this.#send(this.#subject(ev), { e: ev });
  }

  #subject(ev: FanoutEvent): string {
    switch (ev.kind) {
      case "msg":
        return ev.links[0]?.stream.startsWith("d:")
          ? `${this.#prefix}.dm.${ev.roomId}`
          : `${this.#prefix}.room.${ev.roomId}`;
      case "presence":
      case "room_changed":
        return `${this.#prefix}.room.${ev.roomId}`;
      case "tagmsg":
        return ev.roomId !== undefined
          ? `${this.#prefix}.room.${ev.roomId}`
          : `${this.#prefix}.user.${ev.userIds?.[0] ?? 0}`;
      case "kick":
      case "user_changed":
      case "read":
        return `${this.#prefix}.user.${ev.userId}`;
      default:
        return `${this.#prefix}.ctl`;
    }
  }

  /** Numbers and sends an envelope, or buffers it while disconnected. Never throws. */
  #send(subject: string, body: Omit<Envelope, "n" | "i" | "s">): void {
    if (this.#closing && body.c !== "bye") return;
    const env: Envelope = { n: this.node, i: this.#inc, s: ++this.#seq, ...body };
    const data = enc.encode(JSON.stringify(env));
    if (this.#connected && this.#nc) {
      try {
        this.#nc.publish(subject, data);
        this.stats.published++;
        return;
      } catch (err) {
        // Closed or too large: the receivers see the gap in the sequence.
        log.warn("Cannot publish on {subject}: {error}", { subject, error: String(err) });
        return;
      }
    }
    if (this.#buffered + data.length > this.#bufferBytes) {
      // The database is the truth: receivers notice the gap and read what they missed.
      this.#dropped += this.#buffer.length + 1;
      this.stats.dropped += this.#buffer.length + 1;
      this.#buffer = [];
      this.#buffered = 0;
      return;
    }
    this.#buffer.push({ subject, data });
    this.#buffered += data.length;
  }

  // --- connection ----------------------------------------------------------------------------

  #dial(): void {
    if (this.#closing) return;
    const o = this.#opts;
    this.#dialing = (async () => {
      let nc: NatsConnection;
      try {
        nc = await connect({
          servers: o.servers,
          name: `chat ${this.node}`,
          noEcho: true,
          user: o.user,
          pass: o.pass,
          token: o.token,
          tls: o.tls ? { ...o.tls } : undefined,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: () => this.#backoff(),
          pingInterval: 5_000,
          maxPingOut: 2,
          timeout: 5_000,
        });
      } catch (err) {
        if (this.#closing) return;
        const ms = this.#backoff();
        if (ms === 250 || this.#timers.now() - this.#lastWarn > 60_000) {
          this.#lastWarn = this.#timers.now();
          log.warn("Cannot reach the bus ({servers}): {error}; retrying in {ms} ms", {
            servers: o.servers.join(","),
            error: String(err),
            ms,
          });
        }
        this.#retry = this.#timers.setTimeout(() => {
          this.#retry = undefined;
          this.#dial();
        }, ms);
        return;
      }
      if (this.#closing) {
        await nc.close().catch(() => {});
        return;
      }
      this.#nc = nc;
      this.#sub = nc.subscribe(`${this.#prefix}.>`, {
        callback: (err, msg) => {
          if (!err) this.#onMessage(msg.data);
        },
      });
      this.#watching = this.#watch(nc);
      // The SUB is on the server once a round trip came back: from then on nothing is missed.
      await nc.flush().catch(() => {});
      this.#online();
    })();
  }

  /**
   * Next (re)connect delay: a quarter of the outage so far, from 250 ms to 2 s. The NATS client
   * asks on every turn of its dial loop and dials a server once that long passed since its last
   * attempt, so the delay depends on the time, not on how often it is asked.
   */
  #backoff(): number {
    const down = this.#timers.now() - this.#downSince;
    return Math.min(2_000, Math.max(250, Math.floor(down / 4)));
  }

  async #watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (this.#closing) continue;
      switch (s.type) {
        case "disconnect":
          if (this.#connected) {
            log.warn("Lost the bus ({server}); reconnecting", { server: s.server });
          }
          if (this.#connected) this.#downSince = this.#timers.now();
          this.#connected = false;
          break;
        case "reconnect":
          this.stats.reconnects++;
          log.info("Back on the bus ({server})", { server: s.server });
          this.#online();
          break;
        case "slowConsumer":
          // Events were dropped on the way in.
          this.stats.gaps++;
          this.#receive({ kind: "resync" });
          break;
      }
    }
  }

  /**
   * On the bus (first time or again): what was buffered goes out, other nodes' sequences start
   * afresh (what was missed is read from the store instead), presence is exchanged.
   */
  #online(): void {
    if (this.#closing || !this.#nc) return;
    this.#connected = true;
    const buffer = this.#buffer;
    this.#buffer = [];
    this.#buffered = 0;
    for (const b of buffer) {
      try {
        this.#nc.publish(b.subject, b.data);
        this.stats.published++;
      } catch { /* gaps are noticed */ }
    }
    if (this.#dropped > 0) {
      log.warn("Dropped {n} bus events while disconnected (other nodes read them from the store)", {
        n: this.#dropped,
      });
      this.#dropped = 0;
    }
    const now = this.#timers.now();
    for (const p of this.#peers.values()) {
      p.seq = -1;
      p.lastSeen = now;
      p.silentPeriods = 0;
    }
    this.#sendSnapshot();
    this.#send(`${this.#prefix}.ctl`, { c: "want" });
    this.#receive({ kind: "resync" });
    this.#firstConnect.resolve();
  }

  #sendSnapshot(): void {
    const rooms = this.#presence();
    let part: PresenceRoom[] = [];
    let users = 0;
    for (const r of rooms) {
      for (let i = 0; i < r.users.length || i === 0; i += SNAPSHOT_USERS_PER_PART) {
        const slice = r.users.slice(i, i + SNAPSHOT_USERS_PER_PART);
        if (users + slice.length > SNAPSHOT_USERS_PER_PART && part.length) {
          this.#send(`${this.#prefix}.ctl`, { c: "snap", rooms: part });
          part = [];
          users = 0;
        }
        part.push({ roomId: r.roomId, room: r.room, users: slice });
        users += slice.length;
      }
    }
    this.#send(`${this.#prefix}.ctl`, { c: "snap", rooms: part, last: true });
  }

  // --- receiving ---------------------------------------------------------------------------

  #onMessage(data: Uint8Array): void {
    let env: Envelope;
    try {
      env = JSON.parse(dec.decode(data));
    } catch {
      log.warn("Ignored a bus message that is not JSON");
      return;
    }
    if (typeof env?.n !== "string" || typeof env.s !== "number") return;
    if (env.n === this.node) {
      if (env.i !== this.#inc) {
        log.error("Another node uses this node's name {node}: give every node its own", {
          node: this.node,
        });
      }
      return;
    }
    this.stats.received++;
    const now = this.#timers.now();
    let peer = this.#peers.get(env.n);
    if (peer && peer.inc !== env.i) {
      // The node restarted: what it had online is gone.
      this.#receive({ kind: "node_down", node: env.n });
      peer = undefined;
    }
    if (!peer && env.c === "bye") return;
    if (!peer) {
      peer = { inc: env.i, seq: env.s, lastSeen: now, silentPeriods: 0, snap: null };
      this.#peers.set(env.n, peer);
      if (env.c !== "snap") this.#send(`${this.#prefix}.ctl`, { c: "want", to: env.n });
    } else {
      if (peer.seq >= 0 && env.s !== peer.seq + 1) {
        // Something from that node was lost: read the store, ask for its presence again.
        this.stats.gaps++;
        log.info("Missed {n} bus events from {node}; reading the store", {
          n: env.s - peer.seq - 1,
          node: env.n,
        });
        this.#receive({ kind: "resync" });
        this.#send(`${this.#prefix}.ctl`, { c: "want", to: env.n });
      }
      peer.seq = env.s;
      peer.lastSeen = now;
    }
    if (env.e) {
      this.#receive(env.e);
      return;
    }
    switch (env.c) {
      case "want":
        if (env.to === undefined || env.to === this.node) this.#sendSnapshot();
        return;
      case "snap":
        peer.snap = [...(peer.snap ?? []), ...(env.rooms ?? [])];
        if (env.last) {
          this.#receive({ kind: "presence_sync", node: env.n, rooms: mergeRooms(peer.snap) });
          peer.snap = null;
        }
        return;
      case "bye":
        this.#peers.delete(env.n);
        this.#receive({ kind: "node_down", node: env.n });
        return;
    }
  }

  /**
   * Heartbeat out; peers silent too long are down (only judged while this node is connected):
   * silent for `missedHeartbeats` of this node's periods in a row and for that long on the clock.
   */
  #tick(): void {
    this.#lastTick = this.#timers.now();
    this.#timer = this.#timers.setTimeout(() => {
      if (this.#closing) return;
      const previous = this.#lastTick;
      const now = this.#timers.now();
      const blocked = now - previous - this.#heartbeatMs;
      if (blocked >= this.#heartbeatMs * this.#missed) {
        log.warn(
          "This node's event loop was blocked for {ms} ms: peers are judged on what comes next",
          {
            ms: Math.round(blocked),
          },
        );
      }
      if (this.#connected) {
        this.#send(`${this.#prefix}.ctl`, { c: "hb" });
        const deadline = now - this.#heartbeatMs * this.#missed;
        for (const [node, p] of [...this.#peers]) {
          p.silentPeriods = p.lastSeen < previous ? p.silentPeriods + 1 : 0;
          if (p.lastSeen >= deadline || p.silentPeriods < this.#missed) continue;
          log.warn("Node {node} missed {n} heartbeats: its users are offline", {
            node,
            n: this.#missed,
          });
          this.#peers.delete(node);
          this.#receive({ kind: "node_down", node });
        }
      }
      this.#tick();
    }, this.#heartbeatMs);
  }

  /** Says goodbye (other nodes drop this one's presence at once), flushes and disconnects. */
  async close(): Promise<void> {
    if (this.#closing) return;
    if (this.#connected) this.#send(`${this.#prefix}.ctl`, { c: "bye" });
    this.#closing = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    if (this.#retry !== undefined) this.#timers.clearTimeout(this.#retry);
    await this.#dialing;
    const nc = this.#nc;
    this.#nc = null;
    this.#connected = false;
    if (nc) {
      if (!nc.isClosed()) {
        // Bounded: a bus that is gone must not hold up the shutdown.
        let t: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          nc.flush().catch(() => {}),
          new Promise((r) => t = setTimeout(r, 1000)),
        ]);
        clearTimeout(t);
      }
      this.#sub?.unsubscribe();
      await nc.close().catch(() => {});
    }
    await this.#watching;
  }
}

/** Joins the parts of a snapshot (a large room may span several). */
function mergeRooms(parts: PresenceRoom[]): PresenceRoom[] {
  const byId = new Map<number, PresenceRoom>();
  for (const p of parts) {
    const r = byId.get(p.roomId);
    if (r) r.users.push(...p.users);
    else byId.set(p.roomId, { roomId: p.roomId, room: p.room, users: [...p.users] });
  }
  return [...byId.values()];
}
