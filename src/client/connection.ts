// Owns one logical chat/1 session over as many TLS connections as it takes: framing, request/ref
// correlation, sends with acks, reconnect with backoff, resume without gap or duplicate, and
// resending what was not acknowledged. Reusable by any client (terminal, scripts, benchmarks).
import type tls from "node:tls";
import { DEFAULT_LIMITS as SERVER_DEFAULT_LIMITS, wireLimits } from "../config/config.ts";
import { type ByeCode, byeInfo, retryAfterBye, retryAfterError } from "../error_catalogue.ts";
import { ChatError } from "../errors.ts";
import {
  type ClientFrame,
  PROTOCOL_VERSION,
  type ResumePoint,
  type RoomInfo,
  type ServerFrame,
  type UnreadMap,
  type WireLimits,
  type WireMessage,
} from "../protocol/frames.ts";
import { LineSplitter } from "../protocol/line_decoder.ts";
import type { ReadFrame } from "../protocol/unread.ts";
import { decodeServerFrame, encodeClientFrame } from "../protocol/native_codec.ts";
import { checkBody } from "../protocol/text_rules.ts";
import { Backoff, type BackoffOptions } from "./backoff.ts";
import { sanitize } from "./render.ts";
import { type Candidate, describeCandidate, ServerList } from "./server_list.ts";
import { dialTls } from "./tls_dial.ts";
import type { TrustPolicy } from "./trust.ts";

type Frame<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
/** The server's confirmation that a message was stored. */
export type Ack = Frame<"ack">;
/** A page of history. */
export type HistoryPage = Frame<"history">;

/** Who to log in as. */
export interface Credentials {
  user: string;
  /** The password; "" when only a session token is known (then a refused token ends it). */
  password: string;
  /**
   * A session token (PROTOCOL.md §2.1) to log in with instead of the password. When the server
   * refuses it, the password is used (if known) and the token forgotten (`onToken(null)`).
   */
  token?: string;
  /** Ask for a session token for this device label on every password login or registration. */
  device?: string;
  /** Told of every token the server issued (and of null when the known one was refused). */
  onToken?: (token: string | null, expiresAt: number) => void;
  /** Create the account first (only on the first connection; reconnects log in). */
  register?: boolean;
  invite?: string;
}

/** Where a message goes: a room, or a user (direct message). */
export type SendTarget = { room: string; to?: undefined } | { to: string; room?: undefined };

/** What happens on a connection, for the UI or script on top. */
export type ConnectionEvent =
  /** A message; `replay` when it came from a resume backlog (missed while away). */
  | { type: "msg"; msg: WireMessage; replay: boolean }
  | { type: "presence"; room: string; user: string; event: "join" | "leave" }
  /**
   * End of a resume backlog for a room (or the DMs). `count`: the backlog's messages from others
   * that this session had not delivered before (own messages and ones already seen are not
   * missed); `serverCount`: what the server sent.
   */
  | {
    type: "resumed";
    room?: string;
    dm?: boolean;
    count: number;
    serverCount: number;
    more: boolean;
  }
  /** The set of joined rooms changed. */
  | { type: "rooms"; rooms: string[] }
  /** The login's read markers (docs/PROTOCOL.md §7.1), after every (re)connect. */
  | { type: "markers"; user: string; markers?: UnreadMap; latest?: ResumePoint }
  /** Another session of this user moved a read marker. */
  | { type: "read"; frame: ReadFrame }
  /** An error the server sent that answers no request. */
  | { type: "notice"; code: string; message: string }
  /** The connection was lost; a reconnect follows unless `closed` comes next. */
  | { type: "down"; code: string; message: string }
  /** The next reconnect attempt is scheduled. */
  | { type: "retry"; attempt: number; delayMs: number; reason: string }
  /** Logged in (again, when `reconnect`); `server` is where (`name:port (address)`). */
  | { type: "up"; reconnect: boolean; server?: string }
  /** The session is over for good; `error` says why when it was not `close()`. */
  | { type: "closed"; error: ChatError | null };

/** Options of {@linkcode ChatConnection.open}; defaults in brackets. */
export interface ChatConnectionOptions {
  host: string;
  port: number;
  /**
   * Several servers (or names with several addresses) of one cluster: each connection attempt
   * is a round over them (`ServerList`), and `host`/`port` are not used [just `host:port`].
   */
  servers?: ServerList;
  /** An extra trusted CA in PEM (`--ca`). */
  caPem?: string;
  policy: TrustPolicy;
  credentials: Credentials;
  /** Sent in `hello` ["chat-client/0.1.0"]. */
  clientName?: string;
  onEvent?: (ev: ConnectionEvent) => void;
  /** Reconnect after a drop [true], how often [unbounded], and the backoff. */
  reconnect?: { enabled?: boolean; maxAttempts?: number } & BackoffOptions;
  /** Ping after this much silence from the server [20 s]; give up after [60 s]. */
  keepalive?: { pingAfterMs?: number; deadAfterMs?: number };
  /** A request without an answer fails after this [30 s]. */
  requestTimeoutMs?: number;
  /** Longest line accepted from the server [16 MiB]: a history page can be large. */
  maxLineBytes?: number;
  /** Milliseconds clock for keepalive and send pacing [Date.now]. */
  clock?: () => number;
}

interface Pending {
  op: string;
  resolve: (f: ServerFrame) => void;
  reject: (e: ChatError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface OutboxEntry {
  frame: Extract<ClientFrame, { type: "send" }>;
  resolve: (ack: Ack) => void;
  reject: (e: ChatError) => void;
  retries: number;
}

/** How often one send is repeated after each kind of refusal (`src/error_catalogue.ts`). */
const SEND_RETRIES = { after_hint: 100, backoff: 3, reconnect: 10 } as const;

/** How the client words each `bye` when it reports the drop. */
const BYE_REASONS: Partial<Record<ByeCode, string>> = {
  shutdown: "the server is restarting or shutting down",
  idle_timeout: "the server heard nothing from us in time",
  slow_consumer: "we were not reading fast enough",
};

/**
 * A session that ends within this long of its login counts as cut "right after login"; MAX_QUICK_DROPS
 * in a row stop the reconnects (the same cut would follow every time, each costing the
 * server a password hash), and a session that lasted longer starts the count and backoff over.
 */
const STABLE_MS = 60_000;
const MAX_QUICK_DROPS = 3;

const DM_SCOPE = "\0dm";
/** Until the server's `hello` says otherwise: the server defaults. */
const DEFAULT_LIMITS: WireLimits = wireLimits(SERVER_DEFAULT_LIMITS);

/** The server's limits, each replaced by its default when missing or not a positive number. */
function checkedLimits(given: unknown): WireLimits {
  const out = { ...DEFAULT_LIMITS };
  if (typeof given !== "object" || given === null) return out;
  for (const k of Object.keys(out) as (keyof WireLimits)[]) {
    const v = (given as Record<string, unknown>)[k];
    if (typeof v === "number" && Number.isFinite(v) && v > 0) out[k] = v;
  }
  return out;
}

/** A bounded set of recently seen message ids (oldest forgotten first). */
class RecentIds {
  #set = new Set<number>();
  #cap: number;
  constructor(cap: number) {
    this.#cap = cap;
  }
  has(id: number): boolean {
    return this.#set.has(id);
  }
  add(id: number): void {
    this.#set.add(id);
    if (this.#set.size > this.#cap) this.#set.delete(this.#set.values().next().value!);
  }
  get max(): number {
    let m = 0;
    for (const id of this.#set) if (id > m) m = id;
    return m;
  }
}

/**
 * A chat/1 session that survives dropped connections.
 *
 * Contract:
 * 1. `open()` connects, verifies the certificate, says hello and logs in; it throws (a
 *    ChatError) when any of that fails, without retrying.
 * 2. After a drop (EOF, reset, `bye`, keepalive timeout) it reconnects with backoff and jitter,
 *    logs in with `resume` = the last message id seen per room and for DMs, and delivers the
 *    backlog then live messages: every message id is delivered once (`msg` events), in order.
 * 3. `send()` resolves with the server's ack, which means the message is stored. A send not
 *    acknowledged when the connection dropped is sent again, with the same `cid`, after the
 *    reconnect; the server stores a `cid` once. A refusal is retried as the error catalogue's
 *    `retry` says (after `retryAfterMs`, with backoff, or after the reconnect; a few times at
 *    most); it rejects on any other refusal (`invalid_text`, `not_member`, …) or when the session
 *    ends first.
 * 4. Other requests fail with `connection_lost` when the connection drops before the reply;
 *    they are not repeated (the caller decides).
 * 5. Certificate changes, authentication failures, any error whose catalogue `retry` is `never`
 *    while reconnecting, and a `bye` the catalogue says not to come back after (`kicked`) end the
 *    session (`closed` event with the error); `close()` ends it on purpose.
 */
export class ChatConnection {
  #opts: ChatConnectionOptions;
  #clock: () => number;
  #creds: Credentials;
  #socket: tls.TLSSocket | null = null;
  #generation = 0;
  #splitter: LineSplitter;
  #pending = new Map<string, Pending>();
  #helloWaiter: Pending | null = null;
  #outbox = new Map<string, OutboxEntry>();
  #queue: string[] = [];
  #lastSeen = new Map<string, number>();
  #lastDm: number | undefined;
  #delivered = new RecentIds(20000);
  #resuming = new Set<string>();
  /** Per scope being resumed: backlog messages from others delivered for the first time. */
  #missed = new Map<string, number>();
  #rooms: string[] = [];
  #user = "";
  #hello: Frame<"hello"> | null = null;
  #limits: WireLimits = DEFAULT_LIMITS;
  #state: "connecting" | "up" | "down" | "closed" = "connecting";
  #closing = false;
  #fatal: ChatError | null = null;
  #bye: { code: string; message: string } | null = null;
  #serverError: { code: string; message: string } | null = null;
  #ref = 0;
  #cid = 0;
  #cidPrefix = crypto.getRandomValues(new Uint32Array(2)).reduce(
    (s, n) => s + n.toString(36),
    "",
  );
  #lastRx = 0;
  #pingSent = false;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #backoff: Backoff;
  #servers: ServerList;
  /** When the current session logged in, and how many sessions in a row ended soon after. */
  #upAt = 0;
  #quickDrops = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retryWake: (() => void) | null = null;
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;
  #tokens = 0;
  #tokensAt = 0;
  #closedResolve!: (err: ChatError | null) => void;
  /** Resolves once the session is over: null after `close()`, else the reason. */
  readonly closed: Promise<ChatError | null>;

  private constructor(opts: ChatConnectionOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? Date.now;
    this.#creds = { ...opts.credentials };
    this.#splitter = new LineSplitter(opts.maxLineBytes ?? 16 * 1024 * 1024);
    this.#backoff = new Backoff(opts.reconnect);
    this.#servers = opts.servers ?? new ServerList([{ host: opts.host, port: opts.port }]);
    this.closed = new Promise((r) => this.#closedResolve = r);
  }

  /** Connects and logs in; see the class contract. */
  static async open(opts: ChatConnectionOptions): Promise<ChatConnection> {
    const c = new ChatConnection(opts);
    try {
      await c.#connect(false);
    } catch (err) {
      c.#finish(null, true);
      throw err;
    }
    c.#emit({ type: "up", reconnect: false, server: c.remote });
    return c;
  }

  /** The user name as the server spells it. */
  get user(): string {
    return this.#user;
  }

  /** Rooms this session is in. */
  get rooms(): readonly string[] {
    return this.#rooms;
  }

  /** Limits from the server's hello (defaults before the first hello). */
  get limits(): WireLimits {
    return this.#limits;
  }

  /** The server's name/version and registration policy. */
  get server(): { name: string; registration: string } {
    return { name: this.#hello?.server ?? "", registration: this.#hello?.registration ?? "" };
  }

  /** Where the session is (or was last) logged in: `name:port`, and the address when it differs. */
  get remote(): string {
    const c = this.#servers.current;
    return c ? describeCandidate(c) : "";
  }

  /** True while logged in on a live connection. */
  get connected(): boolean {
    return this.#state === "up";
  }

  /** Sends not yet acknowledged (queued or in flight). */
  get unacknowledged(): number {
    return this.#outbox.size;
  }

  /** Last message id seen per room and for direct messages (what a reconnect resumes from). */
  get resumePoint(): ResumePoint {
    return this.#resumePoint();
  }

  /**
   * Sends a message; resolves with the ack once it is stored. Checks the text locally first
   * (`invalid_text`, `too_large`) so nothing the server would refuse is sent.
   */
  send(target: SendTarget, body: string): Promise<Ack> {
    if (this.#state === "closed") return Promise.reject(this.#closedError("send"));
    try {
      checkBody(body, this.limits);
    } catch (err) {
      return Promise.reject(err);
    }
    const cid = `${this.#cidPrefix}-${++this.#cid}`;
    const frame: OutboxEntry["frame"] = target.room !== undefined
      ? { type: "send", ref: cid, cid, room: target.room, body }
      : { type: "send", ref: cid, cid, to: target.to, body };
    return new Promise<Ack>((resolve, reject) => {
      this.#outbox.set(cid, { frame, resolve, reject, retries: 0 });
      if (this.#state === "up") {
        this.#queue.push(cid);
        this.#pump();
      }
    });
  }

  /** Joins (creating when needed) a room. */
  async join(room: string): Promise<{ room: string; users: string[] }> {
    const ok = await this.#request({ type: "join", room }) as Frame<"ok">;
    const name = ok.room ?? room.toLowerCase();
    if (!this.#rooms.includes(name)) {
      this.#rooms = [...this.#rooms, name];
      this.#emit({ type: "rooms", rooms: this.#rooms });
    }
    if (!this.#lastSeen.has(name)) await this.#baseline(name).catch(() => {});
    return { room: name, users: ok.users ?? [] };
  }

  /** Leaves a room for good. */
  async part(room: string): Promise<string> {
    const ok = await this.#request({ type: "part", room }) as Frame<"ok">;
    const name = ok.room ?? room.toLowerCase();
    this.#rooms = this.#rooms.filter((r) => r !== name);
    this.#lastSeen.delete(name);
    this.#emit({ type: "rooms", rooms: this.#rooms });
    return name;
  }

  /** Who is online in a room. */
  async who(room: string): Promise<{ room: string; users: string[] }> {
    const f = await this.#request({ type: "who", room }) as Frame<"who">;
    return { room: f.room, users: f.users };
  }

  /** All rooms with counts and whether this user joined them. */
  /** Every room listed to this user, page after page (`more`: ask again after the last name). */
  async listRooms(): Promise<RoomInfo[]> {
    const all: RoomInfo[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#request(
        after === undefined ? { type: "rooms" } : { type: "rooms", after },
      ) as Frame<"rooms">;
      all.push(...page.rooms);
      if (!page.more || page.rooms.length === 0) return all;
      after = page.rooms[page.rooms.length - 1].name;
    }
  }

  /** A page of history of a room or a DM conversation, oldest first. */
  async history(
    q: { room: string; with?: undefined } | { with: string; room?: undefined },
    limit = 50,
    before?: number,
  ): Promise<HistoryPage> {
    const frame: ClientFrame = {
      type: "history",
      ...(q.room !== undefined ? { room: q.room } : { with: q.with }),
      limit,
      ...(before !== undefined ? { before } : {}),
    };
    return await this.#request(frame) as HistoryPage;
  }

  /** Changes the password; later reconnects use the new one. */
  async passwd(oldPassword: string, newPassword: string): Promise<void> {
    const ok = await this.#request({ type: "passwd", old: oldPassword, new: newPassword });
    this.#creds.password = newPassword;
    // Every token of the account was revoked; this device got a new one (or none: use the
    // password from now on).
    if (ok.type === "ok" && typeof ok.token === "string") this.#tookToken(ok);
    else if (this.#creds.token !== undefined) {
      this.#creds.token = undefined;
      this.#creds.onToken?.(null, 0);
    }
  }

  /**
   * Ends the session: says `quit`, closes the socket (waiting up to a second for it), stops
   * reconnecting, and rejects sends still unacknowledged. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    this.#retryWake?.();
    const socket = this.#socket;
    if (socket && !socket.destroyed) {
      const gone = new Promise<void>((r) => socket.once("close", () => r()));
      if (this.#state === "up") this.#write({ type: "quit" });
      socket.end();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([gone, new Promise<void>((r) => timer = setTimeout(r, 1000))]);
      clearTimeout(timer);
      socket.destroy();
      await Promise.race([gone, new Promise<void>((r) => timer = setTimeout(r, 1000))]);
      clearTimeout(timer);
    }
    this.#finish(null);
  }

  // ---- connection life ----

  /**
   * One connection attempt: a round over the servers' addresses, starting from the one that
   * worked last, until one logs in. A refusal the catalogue says never to retry ends the round at
   * once (a changed certificate, a wrong password), except `cert_unknown` and `not_chat_server`,
   * which only rule that address out. When nothing logged in, the round fails with a retryable
   * error if any address gave one (a node may come back), else with the first refusal.
   */
  async #connect(reconnect: boolean): Promise<boolean> {
    const { candidates, errors } = await this.#servers.round();
    let retryable: ChatError | undefined = errors[0];
    let refused: ChatError | undefined;
    for (const c of candidates) {
      if (this.#closing) throw this.#closedError("connect");
      try {
        const up = await this.#establish(reconnect, c);
        this.#servers.markGood(c);
        return up;
      } catch (err) {
        const e = err instanceof ChatError ? err : this.#explain(err);
        if (retryAfterError(e.code).kind !== "never") retryable = e;
        else if (e.code === "cert_unknown" || e.code === "not_chat_server") refused ??= e;
        else throw e;
      }
    }
    throw retryable ?? refused ??
      new ChatError("connect_failed", "Cannot connect: no server address to try");
  }

  async #establish(reconnect: boolean, at: Candidate): Promise<boolean> {
    this.#state = "connecting";
    this.#bye = null;
    this.#serverError = null;
    const { socket } = await dialTls({
      host: at.host,
      port: at.port,
      address: at.address,
      caPem: this.#opts.caPem,
      policy: this.#opts.policy,
    });
    if (this.#closing) {
      socket.destroy();
      throw this.#closedError("connect");
    }
    const gen = ++this.#generation;
    this.#socket = socket;
    this.#splitter = new LineSplitter(this.#opts.maxLineBytes ?? 16 * 1024 * 1024);
    this.#lastRx = this.#clock();
    this.#pingSent = false;
    socket.on("data", (chunk: Uint8Array) => {
      if (gen === this.#generation) this.#onData(chunk);
    });
    socket.on("error", () => {/* the close that follows reports it */});
    socket.on("close", () => {
      if (gen === this.#generation) this.#onSocketClosed();
    });
    try {
      this.#hello = await this.#exchangeHello();
      this.#limits = checkedLimits(this.#hello.limits);
      const c = this.#creds;
      const resume = reconnect ? this.#resumePoint() : undefined;
      this.#resuming.clear();
      this.#missed.clear();
      for (const room of Object.keys(resume?.rooms ?? {})) this.#resuming.add(room);
      if (resume?.dm !== undefined) this.#resuming.add(DM_SCOPE);
      const ok = await this.#logIn(c, reconnect, resume);
      this.#creds.register = false;
      this.#user = ok.user ?? c.user;
      const rooms = ok.rooms ?? [];
      for (const r of [...this.#lastSeen.keys()]) if (!rooms.includes(r)) this.#lastSeen.delete(r);
      this.#rooms = rooms;
      this.#state = "up";
      this.#upAt = this.#clock();
      this.#startKeepalive();
      this.#emit({ type: "rooms", rooms });
      this.#emit({ type: "markers", user: this.#user, markers: ok.markers, latest: ok.latest });
      // Rooms never seen before (first login, or joined elsewhere): note where live traffic
      // starts, so a later resume neither repeats old history nor skips anything.
      for (const r of [...this.#resuming]) {
        if (r !== DM_SCOPE && !rooms.includes(r)) this.#resuming.delete(r);
      }
      if (ok.latest) {
        // The server says where live traffic starts (newest ids at login): exact resume points.
        for (const r of rooms) {
          if (!this.#lastSeen.has(r)) this.#lastSeen.set(r, ok.latest.rooms?.[r] ?? 0);
        }
        this.#lastDm ??= ok.latest.dm ?? 0;
      } else {
        await Promise.all(
          rooms.filter((r) => !this.#lastSeen.has(r)).map((r) => this.#baseline(r).catch(() => {})),
        );
      }
      // The connection may have dropped meanwhile; then the reconnect that follows takes over.
      if (gen !== this.#generation || this.#state !== "up") return false;
      // Every DM after login arrives live, so the newest id known now is a safe DM resume point.
      this.#lastDm ??= Math.max(0, this.#delivered.max, ...this.#lastSeen.values());
      // Resend, in order, everything not acknowledged (same cid: stored at most once).
      this.#queue = [...this.#outbox.keys()];
      this.#resetTokens();
      this.#pump();
      return true;
    } catch (err) {
      this.#generation++;
      this.#stopKeepalive();
      this.#rejectPending("connect");
      socket.destroy();
      this.#socket = null;
      if ((this.#state as string) !== "closed") this.#state = "down";
      throw this.#explain(err);
    }
  }

  /**
   * Registers or logs in: with the session token when one is known, falling back to the password
   * (on the same connection) when the server refuses the token.
   */
  async #logIn(
    c: Credentials,
    reconnect: boolean,
    resume: ResumePoint | undefined,
  ): Promise<Frame<"ok">> {
    const device = c.device ? { device: c.device } : {};
    const rs = resume ? { resume } : {};
    const passwordLogin = async () =>
      await this.#request({
        type: "login",
        user: c.user,
        password: c.password,
        ...device,
        ...rs,
      }) as Frame<"ok">;
    let ok: Frame<"ok">;
    if (c.register && !reconnect) {
      ok = await this.#request({
        type: "register",
        user: c.user,
        password: c.password,
        ...(c.invite ? { invite: c.invite } : {}),
        ...device,
      }) as Frame<"ok">;
    } else if (c.token !== undefined) {
      try {
        ok = await this.#request({ type: "login", user: c.user, token: c.token, ...rs }) as Frame<
          "ok"
        >;
      } catch (err) {
        if (!(err instanceof ChatError) || err.code !== "auth_failed") throw err;
        // Revoked or expired: forget it, and use the password when we have one.
        c.token = undefined;
        c.onToken?.(null, 0);
        if (c.password === "") throw err;
        ok = await passwordLogin();
      }
    } else {
      ok = await passwordLogin();
    }
    this.#tookToken(ok);
    return ok;
  }

  /** Keeps a token the server issued (login, register, passwd) and tells the owner. */
  #tookToken(ok: Frame<"ok">): void {
    if (typeof ok.token !== "string") return;
    this.#creds.token = ok.token;
    this.#creds.onToken?.(ok.token, typeof ok.tokenExpiresAt === "number" ? ok.tokenExpiresAt : 0);
  }

  /**
   * Revokes this session's token on the server (`logout`), forgets it, and ends the session.
   */
  async logout(): Promise<void> {
    await this.#request({ type: "logout" }).catch((err) => {
      if (!(err instanceof ChatError) || err.code !== "connection_lost") throw err;
    });
    this.#creds.token = undefined;
    this.#creds.onToken?.(null, 0);
    await this.close();
  }

  #exchangeHello(): Promise<Frame<"hello">> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#helloWaiter = null;
        reject(new ChatError("timed_out", "Cannot say hello: the server did not answer"));
      }, this.#opts.requestTimeoutMs ?? 30_000);
      this.#helloWaiter = {
        op: "hello",
        resolve: (f) => resolve(f as Frame<"hello">),
        reject,
        timer,
      };
      this.#write({
        type: "hello",
        version: PROTOCOL_VERSION,
        client: this.#opts.clientName ?? "chat-client/0.1.0",
      });
    });
  }

  /** Records where live traffic of `room` starts (the newest stored message id). */
  async #baseline(room: string): Promise<void> {
    const page = await this.history({ room }, 1);
    const newest = page.messages.at(-1)?.id ?? 0;
    this.#lastSeen.set(room, Math.max(this.#lastSeen.get(room) ?? 0, newest));
  }

  #resumePoint(): ResumePoint {
    const rooms: Record<string, number> = {};
    for (const [room, id] of this.#lastSeen) rooms[room] = id;
    return this.#lastDm === undefined ? { rooms } : { rooms, dm: this.#lastDm };
  }

  #onSocketClosed(): void {
    this.#socket = null;
    this.#stopKeepalive();
    clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    this.#queue = [];
    const wasUp = this.#state === "up";
    this.#rejectPending(this.#bye ? "bye" : "close");
    if (!wasUp) return; // #establish reports its own failure
    if (this.#closing) {
      this.#finish(null);
      return;
    }
    this.#state = "down";
    const reason = this.#dropReason();
    this.#emit({ type: "down", code: reason.code, message: reason.message });
    const reconnect = this.#opts.reconnect?.enabled ?? true;
    if (this.#fatal || !reconnect) {
      this.#finish(
        this.#fatal ?? ChatError.fromPeer(reason.code, `Cannot stay connected: ${reason.message}`),
      );
      return;
    }
    // A server restart is worth waiting for; any other cut that keeps coming right after login
    // will not change by retrying.
    if (this.#clock() - this.#upAt >= STABLE_MS || reason.code === "shutdown") {
      this.#quickDrops = 0;
      this.#backoff.reset();
    } else if (++this.#quickDrops >= MAX_QUICK_DROPS) {
      this.#finish(
        new ChatError(
          "reconnect_failed",
          `Cannot stay connected: the server ended the session ${this.#quickDrops} times in a ` +
            `row right after login (${reason.message}); not trying again`,
        ),
      );
      return;
    }
    this.#reconnectLoop(reason.message);
  }

  #dropReason(): { code: string; message: string } {
    if (this.#bye) {
      const code = this.#bye.code;
      const ours = Object.hasOwn(BYE_REASONS, code) ? BYE_REASONS[code as ByeCode] : undefined;
      const why = ours ?? (this.#bye.message || code);
      return { code, message: why };
    }
    if (this.#serverError) return this.#serverError;
    return { code: "connection_lost", message: "the connection was lost" };
  }

  async #reconnectLoop(reason: string): Promise<void> {
    const max = this.#opts.reconnect?.maxAttempts ?? Infinity;
    let last = reason;
    let minDelay = 0;
    while (!this.#closing) {
      if (this.#backoff.attempt >= max) {
        this.#finish(
          new ChatError(
            "reconnect_failed",
            `Cannot reconnect: gave up after ${max} attempts (${last})`,
          ),
        );
        return;
      }
      const delayMs = Math.max(minDelay, this.#backoff.next());
      this.#emit({ type: "retry", attempt: this.#backoff.attempt, delayMs, reason: last });
      await new Promise<void>((r) => {
        this.#retryWake = r;
        this.#retryTimer = setTimeout(r, delayMs);
      });
      this.#retryWake = null;
      if (this.#closing) break;
      try {
        if (await this.#connect(true)) {
          this.#emit({ type: "up", reconnect: true, server: this.remote });
        }
        return;
      } catch (err) {
        const e = err instanceof ChatError ? err : new ChatError("internal", String(err));
        if (retryAfterError(e.code).kind === "never") {
          this.#finish(e);
          return;
        }
        last = e.message.replace(/^Cannot [^:]*: /, "");
        minDelay = e.retryAfterMs ?? 0;
      }
    }
    this.#finish(null);
  }

  /** Ends the session for good; idempotent. */
  #finish(err: ChatError | null, silent = false): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closing = true;
    this.#stopKeepalive();
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#pumpTimer);
    this.#socket?.destroy();
    this.#rejectPending("close");
    const sendErr = err ?? this.#closedError("send");
    for (const e of this.#outbox.values()) e.reject(sendErr);
    this.#outbox.clear();
    if (!silent) this.#emit({ type: "closed", error: err });
    this.#closedResolve(err);
  }

  #closedError(op: string): ChatError {
    return new ChatError(
      "closed",
      `Cannot ${op}: the connection was closed before the server confirmed it`,
    );
  }

  // ---- keepalive ----

  #startKeepalive(): void {
    this.#stopKeepalive();
    const pingAfter = this.#opts.keepalive?.pingAfterMs ?? 20_000;
    const deadAfter = this.#opts.keepalive?.deadAfterMs ?? 60_000;
    const tick = Math.max(50, Math.min(5000, Math.floor(pingAfter / 2)));
    this.#keepalive = setInterval(() => {
      const silent = this.#clock() - this.#lastRx;
      if (silent > deadAfter) {
        this.#serverError = {
          code: "connection_lost",
          message: `no answer from the server for ${Math.round(silent / 1000)} s`,
        };
        this.#socket?.destroy();
      } else if (silent > pingAfter && !this.#pingSent) {
        this.#pingSent = true;
        this.#write({ type: "ping" });
      }
    }, tick);
  }

  #stopKeepalive(): void {
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
  }

  // ---- frames in ----

  #onData(chunk: Uint8Array): void {
    this.#lastRx = this.#clock();
    this.#pingSent = false;
    let lines: Uint8Array[];
    try {
      lines = this.#splitter.push(chunk);
    } catch {
      this.#serverError = { code: "line_too_long", message: "the server sent a line too long" };
      this.#socket?.destroy();
      return;
    }
    for (const line of lines) {
      let frame: ServerFrame;
      try {
        frame = decodeServerFrame(line);
      } catch {
        continue; // Not a frame: ignore rather than trust it.
      }
      this.#onFrame(frame);
    }
  }

  #onFrame(f: ServerFrame): void {
    switch (f.type) {
      case "ping":
        this.#write({ type: "pong" });
        return;
      case "hello": {
        const w = this.#helloWaiter;
        this.#helloWaiter = null;
        if (w) {
          clearTimeout(w.timer);
          w.resolve(f);
        }
        return;
      }
      case "ok":
      case "who":
      case "rooms":
      case "history":
        this.#settle(f.ref, f);
        return;
      case "ack":
        this.#onAck(f);
        return;
      case "error":
        this.#onError(f);
        return;
      case "msg":
        this.#onMsg(f);
        return;
      case "presence":
        this.#emit({ type: "presence", room: f.room, user: f.user, event: f.event });
        return;
      case "resumed":
        this.#onResumed(f);
        return;
      case "read":
        this.#emit({ type: "read", frame: f });
        return;
      case "membership": {
        // Someone added us to a room or removed us from one (docs/PROTOCOL.md §7).
        const room = sanitize(String(f.room));
        const by = sanitize(String(f.by));
        if (f.event === "added" && !this.#rooms.includes(room)) {
          this.#rooms = [...this.#rooms, room];
        } else if (f.event === "removed") {
          this.#rooms = this.#rooms.filter((r) => r !== room);
          this.#lastSeen.delete(room);
        }
        this.#emit({ type: "rooms", rooms: this.#rooms });
        this.#emit({
          type: "notice",
          code: `membership_${f.event === "added" ? "added" : "removed"}`,
          message: f.event === "added"
            ? `${by} added you to #${room}`
            : `${by} removed you from #${room}`,
        });
        return;
      }
      case "bye":
        this.#bye = { code: sanitize(String(f.code)), message: sanitize(String(f.message ?? "")) };
        if (retryAfterBye(this.#bye.code).kind === "never") {
          // `kicked` (and whatever else the catalogue says not to come back after) ends the session.
          const why = this.#bye.message || byeInfo(this.#bye.code)?.meaning || this.#bye.code;
          this.#fatal = ChatError.fromPeer(this.#bye.code, `Cannot stay connected: ${why}`, {
            fatal: true,
          });
        }
        return;
      default:
        return;
    }
  }

  #settle(ref: string | undefined, f: ServerFrame): void {
    if (ref === undefined) return;
    const p = this.#pending.get(ref);
    if (!p) return;
    this.#pending.delete(ref);
    clearTimeout(p.timer);
    p.resolve(f);
  }

  #onAck(f: Ack): void {
    const key = f.ref ?? f.cid;
    const e = this.#outbox.get(key);
    if (!e) return;
    this.#outbox.delete(key);
    this.#delivered.add(f.id);
    e.resolve(f);
  }

  #onError(f: Frame<"error">): void {
    // Server text ends up on terminals (error lines, stderr): never trust it to be inert.
    const err = ChatError.fromPeer(sanitize(String(f.code)), sanitize(String(f.message ?? "")), {
      retryAfterMs: typeof f.retryAfterMs === "number" ? f.retryAfterMs : undefined,
    });
    err.ref = f.ref;
    const entry = f.ref !== undefined ? this.#outbox.get(f.ref) : undefined;
    if (entry) {
      this.#sendRefused(f.ref!, entry, err);
      return;
    }
    if (f.ref !== undefined && this.#pending.has(f.ref)) {
      const p = this.#pending.get(f.ref)!;
      this.#pending.delete(f.ref);
      clearTimeout(p.timer);
      p.reject(err);
      return;
    }
    if (this.#helloWaiter) {
      const w = this.#helloWaiter;
      this.#helloWaiter = null;
      clearTimeout(w.timer);
      w.reject(err);
      return;
    }
    this.#serverError = { code: err.code, message: err.message };
    this.#emit({ type: "notice", code: err.code, message: err.message });
  }

  #sendRefused(cid: string, e: OutboxEntry, err: ChatError): void {
    const again = (ms: number) => {
      setTimeout(() => {
        if (this.#state === "up" && this.#outbox.has(cid)) {
          this.#queue.unshift(cid);
          this.#pump();
        }
      }, ms);
    };
    const retry = retryAfterError(err.code);
    if (retry.kind !== "never" && e.retries++ < SEND_RETRIES[retry.kind]) {
      switch (retry.kind) {
        case "after_hint": // rate_limited: the bucket is empty; wait as long as the server says.
          this.#tokens = 0;
          again(err.retryAfterMs ?? 1000);
          return;
        case "backoff": // storage_failed: the server may recover; wait longer each time.
          again(1000 * e.retries);
          return;
        case "reconnect": // shutting_down: resent after the reconnect (same cid: stored once).
          return;
      }
    }
    this.#outbox.delete(cid);
    e.reject(err);
  }

  #onMsg(f: Frame<"msg">): void {
    const msg: WireMessage = { id: f.id, ts: f.ts, from: f.from, body: f.body };
    if (f.room !== undefined) msg.room = f.room;
    if (f.to !== undefined) msg.to = f.to;
    const scope = msg.room ?? DM_SCOPE;
    if (msg.room !== undefined) {
      if (f.id > (this.#lastSeen.get(msg.room) ?? 0)) this.#lastSeen.set(msg.room, f.id);
    } else if (f.id > (this.#lastDm ?? 0)) {
      this.#lastDm = f.id;
    }
    if (this.#delivered.has(f.id)) return;
    this.#delivered.add(f.id);
    const replay = this.#resuming.has(scope);
    if (replay && msg.from.toLowerCase() !== this.#user.toLowerCase()) {
      this.#missed.set(scope, (this.#missed.get(scope) ?? 0) + 1);
    }
    this.#emit({ type: "msg", msg, replay });
  }

  #onResumed(f: Frame<"resumed">): void {
    const scope = f.room ?? DM_SCOPE;
    this.#resuming.delete(scope);
    const count = this.#missed.get(scope) ?? 0;
    this.#missed.delete(scope);
    this.#emit({
      type: "resumed",
      room: f.room,
      dm: f.dm,
      count,
      serverCount: f.count,
      more: f.more,
    });
    if (f.more && f.room !== undefined) {
      // More than one resume page was missed: fetch the rest (join since replays in order).
      const room = f.room;
      this.#resuming.add(room);
      this.#request({ type: "join", room, since: this.#lastSeen.get(room) ?? 0 }).catch(() => {});
    }
  }

  // ---- frames out ----

  /** Moves this user's read marker in a room or DM conversation (§7.1); resolves with the `ok`. */
  async markRead(
    target: { room: string; with?: undefined } | { with: string; room?: undefined },
    id: number,
  ): Promise<ReadFrame> {
    // An `error` answer rejects (as for every request).
    return await this.#request({ type: "read", ...target, id }) as unknown as ReadFrame;
  }

  #request(frame: ClientFrame): Promise<ServerFrame> {
    if (this.#state === "closed") return Promise.reject(this.#closedError(frame.type));
    if (
      !this.#socket || (this.#state !== "up" && frame.type !== "login" && frame.type !== "register")
    ) {
      return Promise.reject(
        new ChatError("not_connected", `Cannot ${frame.type}: not connected (reconnecting)`),
      );
    }
    const ref = `q${++this.#ref}`;
    return new Promise<ServerFrame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new ChatError("timed_out", `Cannot ${frame.type}: the server did not answer`));
      }, this.#opts.requestTimeoutMs ?? 30_000);
      this.#pending.set(ref, { op: frame.type, resolve, reject, timer });
      this.#write({ ...frame, ref } as ClientFrame);
    });
  }

  #rejectPending(why: "connect" | "bye" | "close"): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const w = this.#helloWaiter;
    this.#helloWaiter = null;
    if (w) pending.push(w);
    for (const p of pending) {
      clearTimeout(p.timer);
      const reason = this.#dropReason().message;
      p.reject(
        new ChatError(
          "connection_lost",
          `Cannot ${p.op}: ${
            why === "close" && this.#closing ? "the connection was closed" : reason
          }`,
        ),
      );
    }
  }

  #write(frame: ClientFrame): void {
    const s = this.#socket;
    if (s && !s.destroyed && s.writable) s.write(encodeClientFrame(frame));
  }

  #resetTokens(): void {
    this.#tokens = this.limits.messageBurst;
    this.#tokensAt = this.#clock();
  }

  /** Milliseconds until a send token is free (0: took one). Mirrors the server's bucket. */
  #takeToken(): number {
    const rate = this.limits.messagesPerSecond;
    if (rate <= 0) return 0;
    const now = this.#clock();
    const refillMs = 1000 / rate;
    this.#tokens = Math.min(
      this.limits.messageBurst,
      this.#tokens + (now - this.#tokensAt) / refillMs,
    );
    this.#tokensAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.#tokens) * refillMs));
  }

  #pump(): void {
    if (this.#state !== "up" || this.#pumpTimer !== undefined) return;
    while (this.#queue.length > 0) {
      const wait = this.#takeToken();
      if (wait > 0) {
        this.#pumpTimer = setTimeout(() => {
          this.#pumpTimer = undefined;
          this.#pump();
        }, wait);
        return;
      }
      const cid = this.#queue.shift()!;
      const e = this.#outbox.get(cid);
      if (e) this.#write(e.frame);
    }
  }

  #explain(err: unknown): ChatError {
    if (err instanceof ChatError) {
      if (err.code === "auth_failed") {
        return new ChatError(
          "auth_failed",
          `Cannot log in as ${this.#creds.user}: wrong user name or password`,
        );
      }
      return err;
    }
    return new ChatError("internal", `Cannot connect: ${(err as Error)?.message ?? String(err)}`);
  }

  #emit(ev: ConnectionEvent): void {
    try {
      this.#opts.onEvent?.(ev);
    } catch {
      // A faulty listener must not break the connection.
    }
  }
}
