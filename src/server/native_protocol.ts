// Owns chat/1 on a session: JSON frames to requests (the command table does the rest), replies
// and deliveries back to JSON lines, and the protocol's own frames (hello, ping, pong, quit).
import { wireLimits } from "../config/config.ts";
import { ChatError } from "../errors.ts";
import type { ClientFrame, ServerFrame } from "../protocol/frames.ts";
import { PROTOCOL_VERSION } from "../protocol/frames.ts";
import { decodeClientFrame, encodeServerFrame } from "../protocol/native_codec.ts";
import type { Request } from "./commands.ts";
import type { EventEncoder, HubEvent } from "./hub.ts";
import type { ProtocolAdapter, Session } from "./session.ts";

/** Server name and version announced in `hello`. */
export const SERVER_NAME = "chat/0.1.0";

/** Encodes hub events as chat/1 frames; one shared instance so fan-out encodes once. */
export const NATIVE_ENCODER: EventEncoder = {
  encodeEvent(ev: HubEvent): Uint8Array | null {
    if (ev.kind === "msg") return encodeServerFrame({ type: "msg", ...ev.msg });
    if (ev.kind === "topic") return null; // chat/1 reads topics with `rooms`
    if (ev.kind === "tagmsg") return null; // client-only tags are IRC's (docs/IRC.md)
    return encodeServerFrame({
      type: "presence",
      room: ev.room,
      user: ev.user,
      event: ev.event,
      ...(ev.reason !== undefined ? { reason: ev.reason } : {}),
    });
  },
};

/** The chat/1 protocol on one session. */
export class NativeProtocol implements ProtocolAdapter {
  readonly name = "chat/1";
  readonly encoder = NATIVE_ENCODER;
  readonly s: Session;
  #helloDone = false;

  constructor(s: Session) {
    this.s = s;
  }

  start(): void {}

  onMessage(line: Uint8Array): Promise<void> | void {
    const authed = this.s.user !== null;
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(line);
    } catch (err) {
      // Garbage before login ends the connection; after login it is reported and skipped.
      if (err instanceof ChatError && !authed && err.code !== "unknown_type") {
        throw withRef(new ChatError(err.code, err.message, { fatal: true }), err.ref);
      }
      throw err;
    }
    if (!this.#helloDone && frame.type !== "hello") {
      throw new ChatError("hello_required", "Cannot continue: send hello first", { fatal: true });
    }
    switch (frame.type) {
      case "hello":
        return this.#hello(frame);
      case "ping":
        this.s.notice(
          frame.ref !== undefined ? { type: "pong", ref: frame.ref } : { type: "pong" },
        );
        return;
      case "pong":
        return;
      case "quit":
        this.s.close("quit", "Goodbye", true);
        return;
      default: {
        // The decoded object becomes the request (`op` added, `type` left in place): a copy per
        // message was measurable garbage under many-to-many load, and handlers read named fields.
        const req = frame as unknown as { op: string };
        req.op = frame.type;
        return this.s.dispatch(req as Request, line.length);
      }
    }
  }

  #hello(f: Extract<ClientFrame, { type: "hello" }>): void {
    if (this.s.user !== null) {
      throw withRef(
        new ChatError("already_authenticated", "Cannot hello: already logged in"),
        f.ref,
      );
    }
    if (this.#helloDone) {
      throw withRef(new ChatError("bad_frame", "Cannot hello: already done"), f.ref);
    }
    if (f.version !== PROTOCOL_VERSION) {
      throw new ChatError(
        "unsupported_version",
        `Cannot speak version ${f.version}: this server speaks ${PROTOCOL_VERSION}`,
        { fatal: true },
      );
    }
    this.#helloDone = true;
    this.s.notice({
      type: "hello",
      version: PROTOCOL_VERSION,
      server: SERVER_NAME,
      registration: this.s.auth.registration,
      limits: wireLimits(this.s.limits),
      ...(f.ref !== undefined ? { ref: f.ref } : {}),
    });
  }

  encodeReply(frame: ServerFrame): Uint8Array {
    return encodeServerFrame(frame);
  }

  ping(): void {
    this.s.notice({ type: "ping" });
  }
}

function withRef(err: ChatError, ref: string | undefined): ChatError {
  if (ref !== undefined && err.ref === undefined) err.ref = ref;
  return err;
}
