// Owns one connection's state machine: login state, ordered replies, deadlines, delivery streams
// and close. It sees whole messages (from a MessageTransport) and requests, never bytes on a wire.
import { getLogger } from "@logtape/logtape";
import { ChatError } from "../errors.ts";
import type { ServerLimits } from "../config/config.ts";
import type { ServerFrame, WireMessage } from "../protocol/frames.ts";
import type { StreamKey, UserRecord } from "../store/store.ts";
import type { AuthService, LoginResult } from "./auth.ts";
import type { Timers } from "./clock.ts";
import type { ChatService } from "./chat_service.ts";
import {
  admit,
  type CommandContext,
  COMMANDS,
  type ReplyBuffer,
  type Request,
} from "./commands.ts";
import type { EventEncoder, HubMember } from "./hub.ts";
import { SendQueue } from "./send_queue.ts";
import { type Clock, TokenBucket } from "./token_bucket.ts";
import type { MessageTransport } from "./transport.ts";

const log = getLogger(["chat", "session"]);

/** What a wire protocol plugs into a session: its codec and its dialogue. */
export interface ProtocolAdapter {
  readonly name: string;
  /** Encodes deliveries (messages, presence); one shared instance per protocol. */
  readonly encoder: EventEncoder;
  /** The connection is ready (the seed protocol greets first). */
  start(): void;
  /**
   * One inbound message: decode it and `session.dispatch` the request, or answer it locally
   * (hello, ping). Throwing reports the error (fatal ones close the connection). MUST decode
   * before its first await: the message's bytes are valid only until then.
   */
  onMessage(msg: Uint8Array): Promise<void> | void;
  /** A reply or notice in this protocol's bytes; null when the protocol shows nothing for it. */
  encodeReply(frame: ServerFrame, req: Request | null): Uint8Array | null;
  /** Keepalive probe after inbound silence. */
  ping(): void;
  /**
   * The session entered a room it did not ask for (another session of its user joined it, or
   * someone else added the user), with who is online there and its topic. Called in the turn
   * the session starts getting the room's messages, so what it writes comes before them.
   */
  roomEntered?(room: string, users: string[], topic: string): void;
  /** The session left a room it did not ask to leave (`by`: who removed the user, if not a part). */
  roomLeft?(room: string, by?: string): void;
  /** Wants empty lines too (they are skipped otherwise, and never count as frames). */
  readonly keepEmptyLines?: boolean;
}

/** Everything a session needs from the server. */
export interface SessionDeps {
  service: ChatService;
  auth: AuthService;
  limits: ServerLimits;
  clock: Clock;
  /** Monotonic time for the send queue's pacing. */
  timers: Timers;
  /** Timers on `clock` itself: waits for a message token (the rate bucket reads `clock`). */
  pacer: Timers;
  /** Called once when the session ended (for registry bookkeeping). */
  onClosed: (s: Session) => void;
}

/** What a session keeps of its user (not the whole record: no password hash per connection). */
export type SessionUser = Pick<UserRecord, "id" | "name" | "role">;

/** End-of-backlog marker of one stream. */
export interface ResumedInfo {
  room?: string;
  dm?: boolean;
  count: number;
  more: boolean;
}

interface HeldMessage {
  bytes: Uint8Array;
  id: number;
}

/** This session's position in one delivery stream. */
interface StreamPosition {
  /** Highest message id sent (or counted as seen: the session's own). */
  sent: number;
  /** While catching up: live messages held back until the backlog is out; else null. */
  held: HeldMessage[] | null;
  /** How often `held` overflowed and was dropped (those messages are then read again). */
  resets: number;
}

/** One request's place in the reply order. */
class ReplySlot implements ReplyBuffer {
  frames: Uint8Array[] = [];
  done = false;
  headWaiters: (() => void)[] | null = null;
  readonly req: Request | null;
  #session: Session;

  constructor(session: Session, req: Request | null) {
    this.#session = session;
    this.req = req;
  }

  send(frame: ServerFrame): void {
    const ref = this.req?.ref;
    const full = ref !== undefined ? { ...frame, ref } as ServerFrame : frame;
    const bytes = this.#session.adapter.encodeReply(full, this.req);
    if (bytes) this.#session.replyBytes(this, bytes);
  }

  atHead(): Promise<void> {
    if (this.#session.isHead(this)) return Promise.resolve();
    return new Promise((r) => (this.headWaiters ??= []).push(r));
  }
}

/**
 * One client connection.
 *
 * States: open (before login) → online (logged in) → draining (the server stops: requests still
 * read get `shutting_down`, requests in flight finish) → closed.
 * 1. Messages are handled in arrival order; a pipelined request (send) runs concurrently with
 *    later ones while it waits for its commit, bounded by `maxInflight` and the admission gate.
 * 2. Every request gets its replies, and they leave in request order whatever order the work
 *    finishes in (an asynchronous store answers late and out of order).
 * 3. Deliveries follow per-stream positions: while a stream catches up (resume), its live
 *    messages are held and released after the backlog, each message exactly once.
 * 4. Failure boundary: any exception in this connection's handling ends this connection only.
 */
export class Session implements HubMember, CommandContext {
  static #nextId = 1;
  readonly connId = Session.#nextId++;
  readonly remote: string;
  readonly acceptedAt: number;
  /** Room ids this session is in. */
  readonly rooms = new Set<number>();
  readonly queue: SendQueue;
  #transport: MessageTransport;
  #deps: SessionDeps;
  #adapter!: ProtocolAdapter;
  #user: SessionUser | null = null;
  #closed = false;
  #draining = false;
  #streams = new Map<StreamKey, StreamPosition>();
  #lastKey: StreamKey | null = null;
  #lastPos: StreamPosition | undefined;
  #bucket: TokenBucket;
  /** Pacing: ms waited for tokens (draining at half speed), when last updated, who waits now. */
  #pacedMs = 0;
  #pacedAt = 0;
  #paceWake: (() => void) | null = null;
  #flooded = false;
  #inflight = 0;
  #inflightDone: (() => void) | null = null;
  #replies: ReplySlot[] = [];
  /** The latest store turn handed out (see `nextTurn`). */
  #lastTurn: StoreTurn | null = null;
  #loggingIn = false;
  /** Since when the login in progress runs (clock ms), and the time earlier ones took. */
  #loginStartedAt = 0;
  #loginMs = 0;
  /** The session token this connection logged in with or was issued (logout revokes it). */
  sessionToken: { id: number; device: string } | null = null;
  /** Requests read and not yet answered in full, and who waits for none to be left. */
  #open = 0;
  #settledWaiters: (() => void)[] = [];
  /** Deliveries held until `releaseDeliveries` (null: not holding), and their bytes. */
  #heldOut: Uint8Array[] | null = null;
  #heldOutBytes = 0;
  /** Time of the last message received. */
  lastRx: number;
  pingSent = false;
  preAuthFrames = 0;
  closeReason = "";
  /** What the user said on leaving (IRC QUIT), shown with the `leave` of its last session. */
  quitReason: string | undefined;

  constructor(transport: MessageTransport, deps: SessionDeps) {
    this.#transport = transport;
    this.remote = transport.remote;
    this.#deps = deps;
    this.acceptedAt = this.lastRx = deps.clock();
    this.#bucket = new TokenBucket({
      capacity: deps.limits.messageBurst,
      refillMs: deps.limits.messagesPerSecond > 0 ? 1000 / deps.limits.messagesPerSecond : 0,
      clock: deps.clock,
    });
    this.queue = new SendQueue({
      sink: transport,
      maxBytes: deps.limits.sendQueueBytes,
      onOverflow: () => {
        log.warn("Closing {connId} from {remote}: send queue over {bytes} bytes", {
          connId: this.connId,
          remote: this.remote,
          bytes: deps.limits.sendQueueBytes,
        });
        this.close("slow_consumer", "", false);
      },
      onError: () => this.close("write_failed", "", false),
      meter: deps.service.hub.admission,
      timers: deps.timers,
    });
  }

  setAdapter(a: ProtocolAdapter): void {
    this.#adapter = a;
  }

  get adapter(): ProtocolAdapter {
    return this.#adapter;
  }

  get session(): Session {
    return this;
  }

  get service(): ChatService {
    return this.#deps.service;
  }

  get auth(): AuthService {
    return this.#deps.auth;
  }

  get limits(): ServerLimits {
    return this.#deps.limits;
  }

  get user(): SessionUser | null {
    return this.#user;
  }

  get userId(): number {
    return this.#user?.id ?? 0;
  }

  get userName(): string {
    return this.#user?.name ?? "";
  }

  get encoder(): EventEncoder {
    return this.#adapter.encoder;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Time since accept that counts against `authTimeoutMs`: the time the server spent on this
   * connection's login and registration checks (waiting in the hash queue behind others, hashing,
   * the store) is the server's, so it is left out, and the clock stops while a check runs. Each
   * check is bounded (the hash queue answers `busy` past its bound) and so are the attempts
   * (`preAuthMaxFrames`, the login buckets), so this stays a deadline.
   */
  authElapsed(now: number): number {
    if (this.#loggingIn) return this.#loginStartedAt - this.acceptedAt - this.#loginMs;
    return now - this.acceptedAt - this.#loginMs;
  }

  /**
   * Counts as inbound traffic now. For protocols whose clients never answer a ping (the seed
   * protocol): the keepalive sweep then pings again later instead of closing for silence.
   */
  markAlive(): void {
    this.lastRx = this.#deps.clock();
    this.pingSent = false;
  }

  /** Queues raw bytes for this client (`lazy`: may wait a little to share a write; see SendQueue). */
  write(bytes: Uint8Array, lazy = false): void {
    if (this.#closed) return;
    // Presence notices still waiting in the hub come before anything else (Hub contract 5).
    if (!lazy) this.#deps.service.hub.presenceDue(this);
    this.queue.enqueue(bytes, lazy ? { lazy } : undefined);
  }

  /** Writes a notice that answers no request (ping, bye, an unprompted error). */
  notice(frame: ServerFrame): void {
    const bytes = this.#adapter.encodeReply(frame, null);
    if (bytes) this.write(bytes);
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Runs one request through the command table (the one check of login state, role and rate)
   * and its handler. Resolves when the next message may be handled: at once for a pipelined
   * request (once admitted), after the handler for any other. Returns undefined, not a promise,
   * when the next message may be handled now (a send that took its rate token and was admitted
   * at once: under many-to-many load that is nearly every send, and each promise and microtask
   * hop it saves is per message).
   */
  dispatch(req: Request, bytes: number): Promise<void> | undefined {
    const spec = COMMANDS[req.op] as (typeof COMMANDS)["send"];
    const slot = this.#openSlot(req);
    let paced: Promise<void> | undefined;
    try {
      admit(spec, req as never, {
        authed: this.#user !== null,
        role: this.#user?.role ?? null,
        stopping: this.#draining,
        config: this.#deps.service.config,
      });
      if (spec.charge === "message") paced = this.#paceMessage();
    } catch (err) {
      this.#refused(slot, err);
      return;
    }
    if (paced) return this.#runAfter(paced, spec, req, bytes, slot);
    return this.#run(spec, req, bytes, slot);
  }

  #refused(slot: ReplySlot, err: unknown): void {
    if (err === FLOODED) this.#closeSlot(slot);
    else this.#answerError(slot, err);
  }

  async #runAfter(
    paced: Promise<void>,
    spec: (typeof COMMANDS)["send"],
    req: Request,
    bytes: number,
    slot: ReplySlot,
  ): Promise<void> {
    try {
      await paced;
    } catch (err) {
      this.#refused(slot, err);
      return;
    }
    await this.#run(spec, req, bytes, slot);
  }

  #run(
    spec: (typeof COMMANDS)["send"],
    req: Request,
    bytes: number,
    slot: ReplySlot,
  ): Promise<void> | undefined {
    if (spec.pipelined) {
      return this.#pipelined(() => spec.run(this, req as never, slot), bytes, slot);
    }
    return this.#runOne(spec, req, slot);
  }

  async #runOne(spec: (typeof COMMANDS)["send"], req: Request, slot: ReplySlot): Promise<void> {
    try {
      await spec.run(this, req as never, slot);
    } catch (err) {
      this.#answerError(slot, err);
      return;
    }
    this.#closeSlot(slot);
  }

  /**
   * Takes a message token: undefined when one was there, else a promise that resolves once one
   * was taken after waiting (PROTOCOL.md §8). The read loop awaits this, so meanwhile nothing
   * more is read and TCP pushes back on the client: a paste is slowed to the rate, never
   * refused. Time spent waiting adds up in `#pacedMs`, which drains at half the clock's speed;
   * past `messageFloodMs` the connection is cut with `bye` `flood` (a client that kept sending
   * faster than the rate for about twice that long).
   */
  #paceMessage(): Promise<void> | undefined {
    if (this.#deps.limits.messagesPerSecond <= 0) return undefined;
    const wait = this.#bucket.take();
    return wait === 0 ? undefined : this.#paceWait(wait);
  }

  async #paceWait(wait: number): Promise<void> {
    const l = this.#deps.limits;
    for (;;) {
      const now = this.#deps.clock();
      this.#pacedMs = Math.max(0, this.#pacedMs - (now - this.#pacedAt) / 2) + wait;
      this.#pacedAt = now;
      if (this.#pacedMs > l.messageFloodMs) {
        // Nothing more is read or handled; the read loop ends and says `bye` `flood` once the
        // requests in flight are answered (their acks are not lost). This one gets no answer:
        // like a request still in the network, the client sends it again after reconnecting.
        log.warn("Closing {connId} from {remote}: flooding (paced for too long)", {
          connId: this.connId,
          remote: this.remote,
        });
        this.#flooded = true;
        throw FLOODED;
      }
      await new Promise<void>((r) => {
        const timer = this.#deps.pacer.setTimeout(() => {
          this.#paceWake = null;
          r();
        }, wait);
        this.#paceWake = () => {
          this.#deps.pacer.clearTimeout(timer);
          this.#paceWake = null;
          r();
        };
      });
      // The wait was not silence: the client has been sending all along.
      this.markAlive();
      if (this.#closed || this.#draining) {
        throw new ChatError("shutting_down", "Cannot send: the server is stopping");
      }
      wait = this.#bucket.take();
      if (wait === 0) return;
    }
  }

  /**
   * Writes bytes that answer no request of the table (a protocol's own replies: IRC's PONG,
   * CAP, numerics) in reply order: after the replies to every request read before.
   */
  writeInOrder(bytes: Uint8Array): void {
    const slot = this.#openSlot(null);
    this.replyBytes(slot, bytes);
    this.#closeSlot(slot);
  }

  /**
   * Runs a pipelined request of `bytes` request bytes, bounded by `maxInflight` per session and
   * by the server's admission gate. While it waits, this session reads nothing more. Returns
   * undefined when it started at once (no wait).
   */
  #pipelined(
    op: () => Promise<void> | void,
    bytes: number,
    slot: ReplySlot,
  ): Promise<void> | undefined {
    if (this.#inflight >= PIPELINE_MAX_INFLIGHT) return this.#pipelinedLater(op, bytes, slot);
    const wait = this.#deps.service.hub.admission.admit(bytes);
    if (wait) return wait.then(() => this.#startPipelined(op, bytes, slot));
    this.#startPipelined(op, bytes, slot);
  }

  async #pipelinedLater(
    op: () => Promise<void> | void,
    bytes: number,
    slot: ReplySlot,
  ): Promise<void> {
    while (this.#inflight >= PIPELINE_MAX_INFLIGHT) {
      await new Promise<void>((r) => this.#inflightDone = r);
    }
    const wait = this.#deps.service.hub.admission.admit(bytes);
    if (wait) await wait;
    this.#startPipelined(op, bytes, slot);
  }

  /** Called once admitted (the gate's slot taken). */
  #startPipelined(op: () => Promise<void> | void, bytes: number, slot: ReplySlot): void {
    const gate = this.#deps.service.hub.admission;
    if (this.#closed || this.#draining) {
      gate.done(bytes);
      this.#answerError(
        slot,
        new ChatError("shutting_down", "Cannot send: the server is stopping"),
      );
      return;
    }
    this.#inflight++;
    const finish = () => {
      gate.done(bytes);
      this.#inflight--;
      const wake = this.#inflightDone;
      this.#inflightDone = null;
      wake?.();
    };
    let running: Promise<void>;
    try {
      // Started now, in request order: the handler takes its store turn (nextTurn) before the
      // next message is even read.
      running = Promise.resolve(op());
    } catch (err) {
      running = Promise.reject(err);
    }
    running.then(() => {
      finish();
      this.#closeSlot(slot);
    }, (err) => {
      finish();
      this.#answerError(slot, err);
    });
  }

  /**
   * A turn for writing to the store in request order: `wait` resolves once every earlier turn
   * passed (issued its write), and `pass()` MUST be called once this one issued its write or gave
   * up. So a session's sends are stored in the order sent, even when the lookups before them
   * take different times (an asynchronous store).
   */
  nextTurn(): { wait: Promise<void> | null; pass: () => void } {
    const prev = this.#lastTurn;
    const turn: StoreTurn = { passed: false, promise: null, resolve: null };
    this.#lastTurn = turn;
    // No promise when the previous turn has passed already (the common case with a synchronous
    // store: its send issued its write before this one was read): `wait` is null, nothing to await.
    let wait: Promise<void> | null = null;
    if (prev !== null && !prev.passed) {
      wait = prev.promise ??= new Promise<void>((r) => prev.resolve = r);
    }
    return {
      wait,
      pass: () => {
        turn.passed = true;
        turn.resolve?.();
      },
    };
  }

  #openSlot(req: Request | null): ReplySlot {
    const slot = new ReplySlot(this, req);
    this.#replies.push(slot);
    this.#open++;
    return slot;
  }

  /** True when `slot` is first in the reply line (its replies are written at once). */
  isHead(slot: ReplySlot): boolean {
    return this.#replies[0] === slot || this.#closed;
  }

  /** Called by a slot: writes now when it is first in line, else keeps the bytes for later. */
  replyBytes(slot: ReplySlot, bytes: Uint8Array): void {
    if (this.#replies[0] === slot) this.write(bytes);
    else slot.frames.push(bytes);
  }

  #closeSlot(slot: ReplySlot): void {
    slot.done = true;
    this.#open--;
    if (this.#replies[0] !== slot) return;
    this.#replies.shift();
    // The next slots in line write what they kept; finished ones leave the line too.
    while (this.#replies.length > 0) {
      const head = this.#replies[0];
      for (const b of head.frames) this.write(b);
      head.frames = [];
      const waiters = head.headWaiters;
      head.headWaiters = null;
      if (waiters) { for (const w of waiters) w(); }
      if (!head.done) break;
      this.#replies.shift();
    }
    if (this.#open === 0) {
      const waiters = this.#settledWaiters;
      this.#settledWaiters = [];
      for (const w of waiters) w();
    }
  }

  #answerError(slot: ReplySlot, err: unknown): void {
    const e = this.#toChatError(err);
    slot.send(errorFrame(e));
    this.#closeSlot(slot);
    if (e.fatal) this.close(e.code, e.message, false);
  }

  #toChatError(err: unknown): ChatError {
    if (err instanceof ChatError) return err;
    log.error("Unexpected failure on {connId} from {remote}: {error}", {
      connId: this.connId,
      remote: this.remote,
      error: err instanceof Error ? err.stack ?? err.message : String(err),
    });
    return new ChatError("internal", "Cannot continue: internal server error", { fatal: true });
  }

  /** Resolves when every request read so far has been answered. */
  settled(): Promise<void> {
    if (this.#open === 0) return Promise.resolve();
    return new Promise((r) => this.#settledWaiters.push(r));
  }

  // --- login ---------------------------------------------------------------------------------

  /**
   * Logs in with `check` (password or registration), puts the session online and answers `ok`
   * before any backlog or live message; then the resume backlog streams behind it.
   */
  async logIn(
    req: Extract<Request, { op: "login" | "register" }>,
    check: () => Promise<LoginResult>,
    reply: ReplyBuffer,
  ): Promise<void> {
    if (this.#loggingIn) {
      throw new ChatError("bad_frame", `Cannot ${req.op}: a login is already in progress`);
    }
    this.#loggingIn = true;
    this.#loginStartedAt = this.#deps.clock();
    try {
      const result = await check();
      const user = result.user;
      if (this.#closed) return;
      this.#user = { id: user.id, name: user.name, role: user.role };
      this.sessionToken = result.token;
      const issued = result.issued
        ? { token: result.issued.token, tokenExpiresAt: result.issued.expiresAt }
        : {};
      log.info("Login of {user} on {connId} from {remote} ({protocol})", {
        user: user.name,
        connId: this.connId,
        remote: this.remote,
        protocol: this.#adapter.name,
      });
      try {
        await this.#deps.service.attach(this, user, req.resume, (rooms, latest, markers) => {
          reply.send({
            type: "ok",
            op: req.op,
            user: user.name,
            rooms,
            latest,
            markers,
            ...issued,
          });
        });
      } catch (err) {
        // Not online after all (the store refused a write, e.g. on a full disk): back to logged
        // out, so the client may retry the login on this connection.
        if (!this.#closed) {
          this.#deps.service.detach(this);
          this.#user = null;
          this.sessionToken = null;
        }
        throw err;
      }
    } finally {
      this.#loggingIn = false;
      this.#loginMs += this.#deps.clock() - this.#loginStartedAt;
    }
  }

  // --- delivery streams (HubMember) ------------------------------------------------------------

  /**
   * Starts a position in `stream`; `hold` keeps live messages back until `caughtUp` (resume).
   * Returns false when the session already follows the stream.
   */
  track(stream: StreamKey, hold: boolean): boolean {
    const pos = this.#streams.get(stream);
    if (pos) {
      if (hold && !pos.held) pos.held = [];
      return false;
    }
    this.#streams.set(stream, { sent: 0, held: hold ? [] : null, resets: 0 });
    return true;
  }

  untrack(stream: StreamKey): boolean {
    if (this.#lastKey === stream) this.#lastKey = null;
    return this.#streams.delete(stream);
  }

  /** The position in `stream`; the last one looked up is kept (fan-out asks twice per batch). */
  #pos(stream: StreamKey): StreamPosition | undefined {
    if (this.#lastKey === stream) return this.#lastPos;
    const pos = this.#streams.get(stream);
    if (pos) {
      this.#lastKey = stream;
      this.#lastPos = pos;
    }
    return pos;
  }

  /** Streams this session follows. */
  get streams(): Iterable<StreamKey> {
    return this.#streams.keys();
  }

  sentThrough(stream: StreamKey): number {
    const pos = this.#pos(stream);
    if (!pos) return Number.MAX_SAFE_INTEGER; // not followed (left meanwhile): nothing to send
    return pos.held ? -1 : pos.sent;
  }

  deliver(stream: StreamKey | null, bytes: Uint8Array, lastId: number): void {
    if (this.#closed) return;
    if (stream === null) {
      // Presence while held is dropped: what the protocol writes on release tells the state.
      if (this.#heldOut === null) this.write(bytes, true); // may wait to share a write
      return;
    }
    const pos = this.#pos(stream);
    if (!pos) return;
    if (pos.held) {
      if (pos.held.length >= this.#deps.limits.resumeMaxMessages) {
        // Too many to keep: drop them and read them from the store again (see ChatService).
        pos.held = [];
        pos.resets++;
      }
      pos.held.push({ bytes, id: lastId });
      return;
    }
    if (lastId > pos.sent) pos.sent = lastId;
    if (bytes.length === 0) return;
    if (this.#heldOut === null) return this.write(bytes);
    this.#heldOut.push(bytes);
    this.#heldOutBytes += bytes.length;
    if (this.#heldOutBytes > this.#deps.limits.sendQueueBytes) {
      // The same bound as the send queue: a client that never ends its registration is cut.
      this.close("slow_consumer", "", false);
    }
  }

  /**
   * Holds this session's messages (rooms and direct messages, in delivery order) instead of
   * writing them, until `releaseDeliveries`; presence meanwhile is dropped. For a protocol whose
   * client is online before it can be shown anything (IRC, between SASL success and the end of
   * registration). Held bytes count against `sendQueueBytes`: past it the session is cut as a slow
   * consumer. MUST be called before login.
   */
  holdDeliveries(): void {
    this.#heldOut ??= [];
  }

  /**
   * Writes what was held and delivers live from now. Call in the turn the protocol's own preamble
   * (IRC's registration burst) is written, so nothing slips between them.
   */
  releaseDeliveries(): void {
    const held = this.#heldOut;
    this.#heldOut = null;
    this.#heldOutBytes = 0;
    for (const b of held ?? []) this.write(b);
  }

  /** See ProtocolAdapter.roomEntered. */
  entered(room: string, users: string[], topic: string): void {
    if (!this.#closed) this.#adapter.roomEntered?.(room, users, topic);
  }

  /** See ProtocolAdapter.roomLeft. */
  left(room: string, by?: string): void {
    if (!this.#closed) this.#adapter.roomLeft?.(room, by);
  }

  /** Overflows of the hold of `stream` so far (a catch-up read must start after the last one). */
  holdResets(stream: StreamKey): number {
    return this.#streams.get(stream)?.resets ?? 0;
  }

  /** Sends a backlog message of a stream that is catching up. */
  backlog(stream: StreamKey, msg: WireMessage): void {
    const bytes = this.#adapter.encoder.encodeEvent({ kind: "msg", msg });
    if (bytes) this.write(bytes);
    const pos = this.#streams.get(stream);
    if (pos && msg.id > pos.sent) pos.sent = msg.id;
  }

  /**
   * Ends the catch-up of `stream` at backlog position `through`: held messages after it go out
   * in order, and the stream is live from here.
   */
  caughtUp(stream: StreamKey, through: number): void {
    const pos = this.#streams.get(stream);
    if (!pos?.held) return;
    const held = pos.held;
    pos.held = null;
    if (through > pos.sent) pos.sent = through;
    for (const h of held) {
      if (h.id <= pos.sent) continue;
      pos.sent = h.id;
      if (h.bytes.length > 0) this.write(h.bytes);
    }
  }

  /** Writes the end-of-backlog marker. */
  resumed(info: ResumedInfo): void {
    this.notice({ type: "resumed", ...info });
  }

  /** Resolves once everything queued so far is written (backlog pacing). */
  drained(): Promise<void> {
    return this.queue.flushed();
  }

  kick(code: string, message: string): void {
    this.close(code, message, true);
  }

  // --- the read loop -------------------------------------------------------------------------

  /** Reads until EOF, error, close or drain. Never throws. */
  async run(): Promise<void> {
    try {
      this.#adapter.start();
      while (!this.#closed && !this.#draining && !this.#flooded) {
        const msgs = await this.#transport.read();
        if (msgs === null) break;
        this.lastRx = this.#deps.clock();
        this.pingSent = false;
        for (const msg of msgs) {
          if (this.#closed || this.#flooded) break;
          try {
            if (
              this.#user === null && msg.length > 0 &&
              ++this.preAuthFrames > this.#deps.limits.preAuthMaxFrames
            ) {
              throw new ChatError(
                "too_many_frames",
                "Cannot continue: too many frames before login",
                { fatal: true },
              );
            }
            const handled = this.#adapter.onMessage(msg);
            if (handled) await handled;
          } catch (err) {
            this.fail(err);
          }
        }
      }
    } catch (err) {
      if (!this.#closed) {
        if (err instanceof ChatError) this.fail(err);
        else {
          log.debug("Read ended on {connId}: {error}", {
            connId: this.connId,
            error: String(err),
          });
        }
      }
    } finally {
      // A draining session is closed by the server once its requests are answered.
      if (this.#flooded && !this.#closed) {
        void this.settled().then(() =>
          this.close("flood", "Excess flood: too many messages for too long", true)
        );
      } else if (!this.#draining) this.close(this.closeReason || "eof", "", false);
    }
  }

  /** Reports an error that answers no request; fatal errors close the connection. */
  fail(err: unknown): void {
    if (this.#closed) return;
    const e = this.#toChatError(err);
    this.notice(errorFrame(e));
    if (e.fatal) this.close(e.code, e.message, false);
  }

  /**
   * The server is stopping: requests read from now on get `shutting_down`, and nothing more is
   * read once the current messages are handled. Requests in flight finish (`settled`).
   */
  drain(): void {
    this.#draining = true;
    this.#paceWake?.();
  }

  /**
   * Ends the session: optionally sends `bye`, takes it offline, and closes the socket once queued
   * bytes are written (bounded by `graceMs`). Idempotent.
   */
  close(reason: string, message: string, sayBye: boolean, graceMs = 200): void {
    if (this.#closed) return;
    this.#paceWake?.();
    // Room events of this turn that were owed to this session go out before its last words.
    this.#deps.service.hub.flush();
    // Replies kept for their turn go out before the last words too.
    for (const slot of this.#replies) {
      for (const b of slot.frames) this.write(b);
      for (const w of slot.headWaiters ?? []) w();
    }
    this.#replies = [];
    if (sayBye) this.notice({ type: "bye", code: reason, message });
    this.#closed = true;
    this.closeReason ||= reason;
    if (this.#user) {
      this.#deps.service.detach(this);
      log.info("Logout of {user} on {connId} from {remote}: {reason}", {
        user: this.#user.name,
        connId: this.connId,
        remote: this.remote,
        reason,
      });
    }
    this.#deps.onClosed(this);
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const w of waiters) w();
    const finish = () => {
      this.queue.close();
      try {
        this.#transport.close();
      } catch { /* already closed */ }
    };
    if (this.queue.bytes === 0 || this.queue.overflowed) {
      finish();
    } else {
      const timer = setTimeout(finish, graceMs);
      this.queue.flushed().then(() => {
        clearTimeout(timer);
        finish();
      });
    }
  }
}

/** Thrown by the pacing of a flooding session: the request ends without an answer. */
const FLOODED = Symbol("flooded");

/** One store turn: passed, and the promise the next turn waits on (made only when it waits). */
interface StoreTurn {
  passed: boolean;
  promise: Promise<void> | null;
  resolve: (() => void) | null;
}
/** Pipelined requests (sends) one session may have in flight. */
const PIPELINE_MAX_INFLIGHT = 256;

/** The error frame for `e` (codecs add nothing: the ref comes from the reply slot). */
export function errorFrame(e: ChatError): ServerFrame {
  return {
    type: "error",
    ...(e.ref !== undefined ? { ref: e.ref } : {}),
    code: e.code,
    message: e.message,
    ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}),
  };
}
