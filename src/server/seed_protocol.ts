// Owns the seed text protocol on a session: the AUTH_REQUIRED dialogue, then lines to `general`.
import {
  decodeSeedText,
  encodeSeedLines,
  parseAuthChoice,
  type SeedAuthMode,
  type SeedServerLine,
} from "../protocol/seed_codec.ts";
import { errorInfo } from "../error_catalogue.ts";
import { DEFAULT_ROOM } from "./chat_service.ts";
import type { EventEncoder, HubEvent } from "./hub.ts";
import type { ServerFrame } from "../protocol/frames.ts";
import type { Request } from "./commands.ts";
import type { FallbackProtocol } from "./server.ts";
import type { ProtocolAdapter, Session } from "./session.ts";

/** Failed logins or registrations allowed on one connection before it is closed. */
export const SEED_MAX_AUTH_ATTEMPTS = 3;

/**
 * Encodes hub events as seed lines; one shared instance so fan-out encodes once. A seed client
 * lives in `general`: its messages are plain `from: body`, other rooms' are tagged, and presence
 * is shown for `general` only.
 */
export const SEED_ENCODER: EventEncoder = {
  encodeEvent(ev: HubEvent): Uint8Array | null {
    if (ev.kind === "msg") {
      const m = ev.msg;
      if (m.to !== undefined) {
        return encodeSeedLines({ kind: "dm", from: m.from, to: m.to, body: m.body });
      }
      if (m.room === DEFAULT_ROOM) {
        return encodeSeedLines({ kind: "chat", from: m.from, body: m.body });
      }
      return encodeSeedLines({ kind: "room", room: m.room ?? "?", from: m.from, body: m.body });
    }
    if (ev.kind === "topic" || ev.kind === "tagmsg" || ev.room !== DEFAULT_ROOM) return null;
    return encodeSeedLines(
      { kind: ev.event === "join" ? "joined" : "left", user: ev.user },
      { kind: "users", users: ev.online() },
    );
  },
};

type AuthStep =
  | { step: "choice" }
  | { step: "user"; mode: SeedAuthMode }
  | { step: "password"; mode: SeedAuthMode; user: string | null };

/**
 * The seed protocol on one session. Before login it walks the seed's dialogue (AUTH_REQUIRED →
 * LOGIN|REGISTER → ENTER_USERNAME → name → ENTER_PASSWORD → secret → AUTH_SUCCESS|AUTH_FAILED)
 * and dispatches the login; after it every line is a `send` to `general`. Requests, limits and
 * rate charging are the command table's (the session's dispatcher), as for every protocol.
 */
export class SeedProtocol implements ProtocolAdapter {
  readonly name = "seed";
  readonly encoder = SEED_ENCODER;
  /** A blank answer to ENTER_USERNAME or ENTER_PASSWORD is an answer (a failed attempt). */
  readonly keepEmptyLines = true;
  readonly s: Session;
  #auth: AuthStep = { step: "choice" };
  #failures = 0;
  /** Seed clients have no message ids: each send gets `<random prefix><counter>` as its cid. */
  #cidPrefix = `seed-${crypto.randomUUID()}-`;
  #seq = 0;

  constructor(s: Session) {
    this.s = s;
  }

  #send(...lines: SeedServerLine[]): void {
    this.s.write(encodeSeedLines(...lines));
  }

  start(): void {
    this.#send({ kind: "prompt", prompt: "AUTH_REQUIRED" });
  }

  onMessage(line: Uint8Array): Promise<void> | void {
    // Empty lines mean nothing after login, nor before the dialogue's first answer.
    if (line.length === 0 && (this.s.user !== null || this.#auth.step === "choice")) return;
    if (this.s.user === null) return this.#authLine(line);
    const body = decodeSeedText(line);
    const cid = this.#cidPrefix + ++this.#seq;
    return this.s.dispatch({ op: "send", cid, body, room: DEFAULT_ROOM }, line.length);
  }

  #authLine(line: Uint8Array): Promise<void> | void {
    let text: string | null;
    try {
      text = decodeSeedText(line);
    } catch {
      text = null; // carried to the end of the dialogue, which then fails
    }
    const a = this.#auth;
    switch (a.step) {
      case "choice": {
        const mode = text === null ? null : parseAuthChoice(text);
        if (mode === null) return this.#failed();
        this.#auth = { step: "user", mode };
        this.#send({ kind: "prompt", prompt: "ENTER_USERNAME" });
        return;
      }
      case "user": {
        const name = text === null ? null : text.trim();
        if (name === "") {
          // A blank name can name no account: a failed attempt at once, no password asked.
          this.#auth = { step: "choice" };
          return this.#failed();
        }
        this.#auth = { step: "password", mode: a.mode, user: name };
        this.#send({ kind: "prompt", prompt: "ENTER_PASSWORD" });
        return;
      }
      case "password":
        this.#auth = { step: "choice" };
        // An empty secret is no password (8 bytes at least): failed without hashing anything.
        if (text === "") return this.#failed();
        return this.#check(a.mode, a.user, text, line.length);
    }
  }

  async #check(
    mode: SeedAuthMode,
    name: string | null,
    password: string | null,
    bytes: number,
  ): Promise<void> {
    if (name === null || password === null || this.s.draining) return this.#failed();
    // The secret is whatever the client sent (seed clients send a SHA-256 hex digest): it is a
    // password like any other, argon2id-hashed by AuthService.
    await this.s.dispatch({ op: mode, user: name, password }, bytes);
    if (this.s.closed) return;
    if (this.s.user === null) return this.#failed();
    // The newcomer's own list; the others got theirs with the `join` presence event.
    await this.#sendUsers();
  }

  #failed(): void {
    this.#send({ kind: "prompt", prompt: "AUTH_FAILED" });
    if (++this.#failures >= SEED_MAX_AUTH_ATTEMPTS) {
      this.s.close("auth_failed", "Too many failed logins", false);
      return;
    }
    this.#send({ kind: "prompt", prompt: "AUTH_REQUIRED" });
  }

  async #sendUsers(): Promise<void> {
    const r = await this.s.service.who(this.s, DEFAULT_ROOM);
    if (!this.s.closed) this.#send({ kind: "users", users: r.users });
  }

  /**
   * Replies in seed lines: a login's `ok` is AUTH_SUCCESS and its refusal is left to the
   * dialogue (one AUTH_FAILED for every reason); sends have no ack; errors are `[ERROR]`,
   * last words `[SERVER]`.
   */
  encodeReply(frame: ServerFrame, req: Request | null): Uint8Array | null {
    switch (frame.type) {
      case "ok":
        return frame.op === "login" || frame.op === "register"
          ? encodeSeedLines({ kind: "prompt", prompt: "AUTH_SUCCESS" })
          : null;
      case "error":
        if ((req?.op === "login" || req?.op === "register") && !isFatal(frame.code)) return null;
        return encodeSeedLines({ kind: "error", code: frame.code, message: frame.message });
      case "bye":
        return frame.code === "slow_consumer"
          ? null
          : encodeSeedLines({ kind: "server", code: frame.code, message: frame.message });
      default:
        return null; // acks, pongs, resume markers: the seed protocol has none
    }
  }

  /**
   * Seed clients never answer a ping, so silence is not a reason to close them: the keepalive
   * is a fresh `[USERS_LIST]` (a line every seed client already handles), and a dead peer shows
   * up as a failed write or a full send queue instead of as silence.
   */
  ping(): void {
    this.s.markAlive(); // before login the auth deadline bounds the connection instead
    if (this.s.user === null) return;
    this.#sendUsers().catch(() => {/* closed meanwhile */});
  }
}

/** Codes that end a connection (they are shown even during the login dialogue). */
function isFatal(code: string): boolean {
  return errorInfo(code)?.fatal === "yes";
}

/** The fallback protocol for TLS clients that do not negotiate ALPN `chat/1`. */
export const seedProtocol: FallbackProtocol = (s: Session) => new SeedProtocol(s);
