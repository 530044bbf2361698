// Owns the chat/1 command table: which frames are allowed when, and what each one does.
import { wireLimits } from "../config/config.ts";
import { ChatError } from "../errors.ts";
import type { ClientFrame, ClientFrameType, ResumePoint, ServerFrame } from "../protocol/frames.ts";
import { PROTOCOL_VERSION } from "../protocol/frames.ts";
import { decodeClientFrame, encodeServerFrame } from "../protocol/native_codec.ts";
import type { EventEncoder, HubEvent } from "./hub.ts";
import type { ProtocolHandler, Session } from "./session.ts";

/** Server name and version announced in `hello`. */
export const SERVER_NAME = "chat/0.1.0";

/** Encodes hub events as chat/1 frames; one shared instance so fan-out encodes once. */
export const NATIVE_ENCODER: EventEncoder = {
  encodeEvent(ev: HubEvent): Uint8Array | null {
    if (ev.kind === "msg") return encodeServerFrame({ type: "msg", ...ev.msg });
    return encodeServerFrame({ type: "presence", room: ev.room, user: ev.user, event: ev.event });
  },
};

type Frame<T extends ClientFrameType> = Extract<ClientFrame, { type: T }>;
type Handler<T extends ClientFrameType> = (p: NativeProtocol, f: Frame<T>) => Promise<void> | void;

interface Command<T extends ClientFrameType> {
  /** Allowed before login. */
  preAuth: boolean;
  /** Allowed after login. */
  postAuth: boolean;
  /** Runs concurrently with later lines (waits for group commit). */
  pipelined?: boolean;
  run: Handler<T>;
}

/** Every chat/1 request, checked in one place (`NativeProtocol.onLine`). */
const COMMANDS: { [T in ClientFrameType]: Command<T> } = {
  hello: { preAuth: true, postAuth: false, run: (p, f) => p.hello(f) },
  register: { preAuth: true, postAuth: false, run: (p, f) => p.register(f) },
  login: { preAuth: true, postAuth: false, run: (p, f) => p.login(f) },
  join: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => {
      const r = await p.s.service.join(p.s, f.room, f.since);
      p.send({ type: "ok", ref: f.ref, op: "join", room: r.room, users: r.users });
    },
  },
  part: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => {
      const r = await p.s.service.part(p.s, f.room);
      p.send({ type: "ok", ref: f.ref, op: "part", room: r.room });
    },
  },
  rooms: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => p.send({ type: "rooms", ref: f.ref, rooms: await p.s.service.rooms(p.s) }),
  },
  who: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => {
      const r = await p.s.service.who(p.s, f.room);
      p.send({ type: "who", ref: f.ref, room: r.room, users: r.users });
    },
  },
  send: {
    preAuth: false,
    postAuth: true,
    pipelined: true,
    run: async (p, f) => {
      p.s.chargeMessage();
      const r = await p.s.service.send(p.s, f);
      p.send({
        type: "ack",
        ref: f.ref,
        cid: f.cid,
        id: r.id,
        ts: r.ts,
        ...(r.room !== undefined ? { room: r.room } : { to: r.to }),
        ...(r.duplicate ? { duplicate: true } : {}),
      });
    },
  },
  history: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => {
      const h = await p.s.service.history(p.s, f);
      p.send({ type: "history", ref: f.ref, ...h });
    },
  },
  passwd: {
    preAuth: false,
    postAuth: true,
    run: async (p, f) => {
      await p.s.auth.changePassword(p.s.user!, f.old, f.new, p.s.remote);
      p.send({ type: "ok", ref: f.ref, op: "passwd" });
    },
  },
  ping: { preAuth: true, postAuth: true, run: (p) => p.send({ type: "pong" }) },
  pong: { preAuth: true, postAuth: true, run: () => {} },
  quit: {
    preAuth: true,
    postAuth: true,
    run: (p) => p.s.close("quit", "Goodbye", true),
  },
};

/** The chat/1 protocol on one session. */
export class NativeProtocol implements ProtocolHandler {
  readonly name = "chat/1";
  readonly encoder = NATIVE_ENCODER;
  readonly s: Session;
  #helloDone = false;
  #authBusy = false;
  #pendingAuth: Frame<"login"> | Frame<"register"> | null = null;

  constructor(s: Session) {
    this.s = s;
  }

  send(frame: ServerFrame): void {
    this.s.write(encodeServerFrame(frame));
  }

  start(): void {}

  async onLine(line: Uint8Array): Promise<void> {
    const authed = this.s.user !== null;
    if (!authed && ++this.s.preAuthFrames > this.s.limits.preAuthMaxFrames) {
      throw new ChatError("too_many_frames", "Cannot continue: too many frames before login", {
        fatal: true,
      });
    }
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(line);
    } catch (err) {
      // Garbage before login ends the connection; after login it is reported and skipped.
      if (err instanceof ChatError && !authed && err.code !== "unknown_type") {
        throw new ChatError(err.code, err.message, { fatal: true });
      }
      throw err;
    }
    const cmd = COMMANDS[frame.type] as Command<ClientFrameType>;
    if (!this.#helloDone && frame.type !== "hello") {
      throw new ChatError("hello_required", "Cannot continue: send hello first", { fatal: true });
    }
    if (authed && !cmd.postAuth) {
      throw withRef(
        new ChatError("already_authenticated", `Cannot ${frame.type}: already logged in`),
        frame.ref,
      );
    }
    if (!authed && !cmd.preAuth) {
      throw withRef(
        new ChatError("not_authenticated", `Cannot ${frame.type}: log in first`),
        frame.ref,
      );
    }
    if (cmd.pipelined) {
      await this.s.pipelined(async () => {
        try {
          await cmd.run(this, frame);
        } catch (err) {
          this.s.fail(withRef(err, frame.ref));
        }
      }, line.length);
      return;
    }
    try {
      await cmd.run(this, frame);
    } catch (err) {
      throw withRef(err, frame.ref);
    }
  }

  hello(f: Frame<"hello">): void {
    if (this.#helloDone) throw new ChatError("bad_frame", "Cannot hello: already done");
    if (f.version !== PROTOCOL_VERSION) {
      throw new ChatError(
        "unsupported_version",
        `Cannot speak version ${f.version}: this server speaks ${PROTOCOL_VERSION}`,
        { fatal: true },
      );
    }
    this.#helloDone = true;
    this.send({
      type: "hello",
      version: PROTOCOL_VERSION,
      server: SERVER_NAME,
      registration: this.s.auth.registration,
      limits: wireLimits(this.s.limits),
    });
  }

  async #authenticate(
    f: Frame<"login"> | Frame<"register">,
    check: () => ReturnType<Session["auth"]["login"]>,
  ): Promise<void> {
    if (this.#authBusy) {
      throw new ChatError("bad_frame", `Cannot ${f.type}: a login is already in progress`);
    }
    if (this.s.stopping) throw new ChatError("shutting_down", "Cannot log in: server is stopping");
    this.#authBusy = true;
    try {
      const user = await check();
      if (this.s.closed) return;
      this.#pendingAuth = f;
      await this.s.authenticated(user, f.resume);
    } finally {
      this.#authBusy = false;
      this.#pendingAuth = null;
    }
  }

  register(f: Frame<"register">): Promise<void> {
    return this.#authenticate(f, () => this.s.auth.register(f, this.s.remote));
  }

  login(f: Frame<"login">): Promise<void> {
    return this.#authenticate(f, () => this.s.auth.login(f, this.s.remote));
  }

  loggedIn(user: string, rooms: string[], latest: ResumePoint): void {
    const f = this.#pendingAuth;
    this.send({ type: "ok", ref: f?.ref, op: f?.type ?? "login", user, rooms, latest });
  }

  reportError(err: ChatError): void {
    this.send({
      type: "error",
      ...(err.ref !== undefined ? { ref: err.ref } : {}),
      code: err.code,
      message: err.message,
      ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
    });
  }

  ping(): void {
    this.send({ type: "ping" });
  }

  bye(code: string, message: string): void {
    this.send({ type: "bye", code, message });
  }

  resumed(info: { room?: string; dm?: boolean; count: number; more: boolean }): void {
    this.send({ type: "resumed", ...info });
  }
}

function withRef(err: unknown, ref: string | undefined): unknown {
  if (err instanceof ChatError && ref !== undefined && err.ref === undefined) err.ref = ref;
  return err;
}
