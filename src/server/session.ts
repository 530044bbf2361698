// Owns one connection's life: lines in, frames out through its SendQueue, deadlines, and close.
import { getLogger } from "@logtape/logtape";
import { ChatError } from "../errors.ts";
import type { ServerLimits } from "../config/config.ts";
import { LineSplitter } from "../protocol/line_decoder.ts";
import type { ResumePoint, WireMessage } from "../protocol/frames.ts";
import type { UserRecord } from "../store/store.ts";
import type { ChatService, ServiceSession } from "./chat_service.ts";
import type { AuthService } from "./auth.ts";
import type { EventEncoder } from "./hub.ts";
import { SendQueue } from "./send_queue.ts";
import { type Clock, TokenBucket } from "./token_bucket.ts";

const log = getLogger(["chat", "session"]);

/** Read buffer of a connection: its size while idle, and the most it grows to under load. */
const READ_BUFFER_MIN = 1024;
const READ_BUFFER_MAX = 16384;

/** What a wire protocol plugs into a session. */
export interface ProtocolHandler {
  readonly name: string;
  readonly encoder: EventEncoder;
  /** Called once when the connection is ready (the seed protocol greets first). */
  start(): void;
  /** Handles one complete line. Errors thrown here are reported through `reportError`. */
  onLine(line: Uint8Array): Promise<void> | void;
  /** Writes a protocol-level error for `err` (fatal ones are followed by close). */
  reportError(err: ChatError): void;
  /** Keepalive probe after inbound silence. */
  ping(): void;
  /** Last words before the server closes the connection. */
  bye(code: string, message: string): void;
  /** Login succeeded and the session is in `rooms`; sent before any backlog or live message. */
  loggedIn(user: string, rooms: string[], latest: ResumePoint): void;
  /** End-of-resume marker (the native protocol only). */
  resumed(info: { room?: string; dm?: boolean; count: number; more: boolean }): void;
}

/** Everything a session needs from the server. */
export interface SessionDeps {
  service: ChatService;
  auth: AuthService;
  limits: ServerLimits;
  clock: Clock;
  /** Called once when the session ended (for registry bookkeeping). */
  onClosed: (s: Session) => void;
  /** True while the server is shutting down. */
  stopping: () => boolean;
}

/** The transport a session runs on (a Deno.TlsConn after its handshake). */
export interface SessionConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** What a session keeps of its user (not the whole record: no password hash per connection). */
export type SessionUser = Pick<UserRecord, "id" | "name" | "role">;

interface Held {
  bytes: Uint8Array;
  msgId: number;
  scope: number;
}

/**
 * One client connection.
 *
 * States: `open` (pre-auth) → `authed` → `closed`. Lines are handled in order; `send` frames may
 * run concurrently (up to `maxInflight`) because they wait on group commit, and are still stored
 * in arrival order since each enqueues its write before yielding to the next line.
 * Failure boundary: any exception in this connection's handling ends this connection only.
 */
export class Session implements ServiceSession {
  static #nextId = 1;
  readonly connId = Session.#nextId++;
  readonly remote: string;
  readonly acceptedAt: number;
  readonly rooms = new Set<number>();
  readonly queue: SendQueue;
  #conn: SessionConn;
  #deps: SessionDeps;
  #handler!: ProtocolHandler;
  #user: SessionUser | null = null;
  #closed = false;
  #held: Held[] | null = null;
  #bucket: TokenBucket;
  #inflight = 0;
  #inflightDone: (() => void) | null = null;
  /** Time of the last line or byte received. */
  lastRx: number;
  pingSent = false;
  preAuthFrames = 0;
  closeReason = "";

  constructor(conn: SessionConn, remote: string, deps: SessionDeps) {
    this.#conn = conn;
    this.remote = remote;
    this.#deps = deps;
    this.acceptedAt = this.lastRx = deps.clock();
    this.#bucket = new TokenBucket({
      capacity: deps.limits.messageBurst,
      refillMs: deps.limits.messagesPerSecond > 0 ? 1000 / deps.limits.messagesPerSecond : 0,
      clock: deps.clock,
    });
    this.queue = new SendQueue({
      sink: conn,
      maxBytes: deps.limits.sendQueueBytes,
      onOverflow: () => {
        log.warn("Closing {connId} from {remote}: send queue over {bytes} bytes", {
          connId: this.connId,
          remote,
          bytes: deps.limits.sendQueueBytes,
        });
        this.close("slow_consumer", "", false);
      },
      onError: () => this.close("write_failed", "", false),
      meter: deps.service.hub.admission,
    });
  }

  setHandler(h: ProtocolHandler): void {
    this.#handler = h;
  }

  get handler(): ProtocolHandler {
    return this.#handler;
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
    return this.#handler.encoder;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get stopping(): boolean {
    return this.#deps.stopping();
  }

  /**
   * Counts as inbound traffic now. For protocols whose clients never answer a ping (the seed
   * protocol): the keepalive sweep then pings again later instead of closing for silence.
   */
  markAlive(): void {
    this.lastRx = this.#deps.clock();
    this.pingSent = false;
  }

  /** Takes a message token; throws `rate_limited` when the bucket is empty. */
  chargeMessage(): void {
    if (this.#deps.limits.messagesPerSecond <= 0) return;
    const wait = this.#bucket.take();
    if (wait > 0) {
      throw new ChatError("rate_limited", "Cannot send: too many messages, slow down", {
        retryAfterMs: wait,
      });
    }
  }

  /** Queues raw bytes for this client (`lazy`: may wait a little to share a write; see SendQueue). */
  write(bytes: Uint8Array, lazy = false): void {
    if (!this.#closed) this.queue.enqueue(bytes, lazy ? { lazy } : undefined);
  }

  // HubMember / ServiceSession

  deliver(bytes: Uint8Array, msgId: number, scope = 0): void {
    if (this.#held) this.#held.push({ bytes, msgId, scope });
    else this.write(bytes, msgId === 0); // presence (no message id) is lazy
  }

  hold(): void {
    this.#held ??= [];
  }

  get holding(): boolean {
    return this.#held !== null;
  }

  release(afterIds: Map<number, number>): void {
    const held = this.#held;
    this.#held = null;
    if (!held) return;
    for (const h of held) {
      const last = afterIds.get(h.scope);
      if (last !== undefined && h.msgId <= last) continue; // already sent in the backlog
      this.write(h.bytes);
    }
  }

  backlog(msg: WireMessage): void {
    const bytes = this.#handler.encoder.encodeEvent({ kind: "msg", msg });
    if (bytes) this.write(bytes);
  }

  resumed(info: { room?: string; dm?: boolean; count: number; more: boolean }): void {
    this.#handler.resumed(info);
  }

  /** Marks the session authenticated and puts it online. */
  async authenticated(
    user: UserRecord,
    resume?: Parameters<ChatService["attach"]>[2],
  ): Promise<string[]> {
    this.#user = { id: user.id, name: user.name, role: user.role };
    log.info("Login of {user} on {connId} from {remote} ({protocol})", {
      user: user.name,
      connId: this.connId,
      remote: this.remote,
      protocol: this.#handler.name,
    });
    try {
      return await this.#deps.service.attach(
        this,
        user,
        resume,
        (rooms, latest) => this.#handler.loggedIn(user.name, rooms, latest),
      );
    } catch (err) {
      // Not online after all (the store refused a write, e.g. on a full disk): back to logged
      // out, so the client may retry the login on this connection.
      if (!this.#closed) {
        this.#deps.service.detach(this);
        this.#user = null;
      }
      throw err;
    }
  }

  /**
   * Runs a pipelined operation (a send of `bytes` request bytes), bounded by `maxInflight` per
   * session and by the server's admission gate. While it waits, this session reads nothing more
   * from its socket.
   */
  async pipelined(op: () => Promise<void>, bytes: number, maxInflight = 256): Promise<void> {
    while (this.#inflight >= maxInflight) {
      await new Promise<void>((r) => this.#inflightDone = r);
    }
    const gate = this.#deps.service.hub.admission;
    const wait = gate.admit(bytes);
    if (wait) await wait;
    if (this.#closed) {
      gate.done(bytes);
      return;
    }
    this.#inflight++;
    op().finally(() => {
      gate.done(bytes);
      this.#inflight--;
      const wake = this.#inflightDone;
      this.#inflightDone = null;
      wake?.();
    });
  }

  /** Reads until EOF, error or close. Never throws. */
  async run(): Promise<void> {
    const splitter = new LineSplitter(this.#deps.limits.maxLineBytes);
    // An idle connection keeps its read buffer pinned by the pending read: start small, grow
    // (up to 16 KiB) while reads fill it (a sender's burst), shrink after a quiet spell.
    let buf = new Uint8Array(READ_BUFFER_MIN);
    let smallReads = 0;
    try {
      this.#handler.start();
      while (!this.#closed) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        if (n === buf.length && buf.length < READ_BUFFER_MAX) {
          buf = new Uint8Array(buf.length * 4);
          smallReads = 0;
        } else if (buf.length > READ_BUFFER_MIN && n < READ_BUFFER_MIN && ++smallReads >= 64) {
          buf = new Uint8Array(READ_BUFFER_MIN);
          smallReads = 0;
        }
        this.lastRx = this.#deps.clock();
        this.pingSent = false;
        const lines = splitter.push(chunk);
        for (const line of lines) {
          if (this.#closed) break;
          try {
            await this.#handler.onLine(line);
          } catch (err) {
            this.fail(err);
          }
        }
      }
    } catch (err) {
      if (!this.#closed) {
        if (err instanceof ChatError) this.fail(err);
        else {log.debug("Read ended on {connId}: {error}", {
            connId: this.connId,
            error: String(err),
          });}
      }
    } finally {
      this.close(this.closeReason || "eof", "", false);
    }
  }

  /** Reports an error to the client; fatal errors close the connection. */
  fail(err: unknown): void {
    if (this.#closed) return;
    if (err instanceof ChatError) {
      this.#handler.reportError(err);
      if (err.fatal) this.close(err.code, err.message, false);
      return;
    }
    log.error("Unexpected failure on {connId} from {remote}: {error}", {
      connId: this.connId,
      remote: this.remote,
      error: err instanceof Error ? err.stack ?? err.message : String(err),
    });
    this.#handler.reportError(
      new ChatError("internal", "Cannot continue: internal server error", {
        fatal: true,
      }),
    );
    this.close("internal", "", false);
  }

  /**
   * Ends the session: optionally sends `bye`, takes it offline, and closes the socket once queued
   * bytes are written (bounded by `graceMs`). Idempotent.
   */
  close(reason: string, message: string, sayBye: boolean, graceMs = 200): void {
    if (this.#closed) return;
    // Room events of this turn that were owed to this session go out before its last words.
    this.#deps.service.hub.flush();
    if (sayBye) this.#handler.bye(reason, message);
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
    const finish = () => {
      this.queue.close();
      try {
        this.#conn.close();
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
