// Owns the command table every protocol dispatches through: what each request needs (login
// state, role, rate token, pipelining) and what it does, checked in one place.
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import type { ClientFrame, ClientFrameType, ServerFrame } from "../protocol/frames.ts";
import type { AuthService } from "./auth.ts";
import type { ChatService } from "./chat_service.ts";

/** The chat/1 frames that are requests of the command table (the rest are the codec's own). */
type RequestFrameType = Exclude<ClientFrameType, "hello" | "ping" | "pong" | "quit">;

/**
 * A protocol-neutral request: what a codec makes of a client's frame or line. Its fields are
 * those of the chat/1 frame of the same name (docs/PROTOCOL.md §3), with `op` for `type`.
 */
export type Request =
  | {
    [O in RequestFrameType]: Omit<Extract<ClientFrame, { type: O }>, "type"> & { op: O };
  }[RequestFrameType]
  /** A range of a conversation by id or time (IRC CHATHISTORY); see ChatService.historyRange. */
  | {
    op: "history_range";
    ref?: string;
    room?: string;
    with?: string;
    after?: number;
    before?: number;
    afterTs?: number;
    beforeTs?: number;
    around?: number;
    aroundTs?: number;
    limit: number;
    newest: boolean;
  }
  /** Conversations active in a time range (IRC CHATHISTORY TARGETS). */
  | { op: "conversations"; ref?: string; fromTs: number; toTs: number; limit: number }
  /** Client-only tags to a room or a user, relayed live and not stored (IRC TAGMSG). */
  | { op: "tagmsg"; ref?: string; room?: string; to?: string; tags: Record<string, string> };

export type Op = Request["op"];
type Args<O extends Op> = Extract<Request, { op: O }>;

/**
 * Where a handler writes its answers. Frames go out in request order (a reply waits for the
 * replies to earlier requests of the connection); the dispatcher adds the request's `ref`.
 */
export interface ReplyBuffer {
  send(frame: ServerFrame): void;
  /** Resolves once this request's replies are no longer held behind earlier ones. */
  atHead(): Promise<void>;
}

/** What a handler may use: the session it runs for and the services. */
export interface CommandContext {
  readonly service: ChatService;
  readonly auth: AuthService;
  readonly session: import("./session.ts").Session;
}

/** One entry of the table. */
export interface CommandSpec<O extends Op> {
  /** Allowed before login / after login. */
  preAuth: boolean;
  postAuth: boolean;
  /** Runs concurrently with later requests (it waits for a commit); its reply still keeps order. */
  pipelined?: boolean;
  /** Takes a token from the connection's message bucket first (`rate_limited` when empty). */
  charge?: "message";
  /**
   * Only users with this role may run it (`forbidden` otherwise). A function reads the server's
   * policy (`roomTopic: "admin"` makes `topic` admin-only); undefined: every user may.
   */
  role?: "admin" | ((config: Readonly<ServerConfig>) => "admin" | undefined);
  run(ctx: CommandContext, req: Args<O>, reply: ReplyBuffer): Promise<void> | void;
}

/** Every request of every protocol. */
export const COMMANDS: { [O in Op]: CommandSpec<O> } = {
  register: {
    preAuth: true,
    postAuth: false,
    run: (c, r, reply) => c.session.logIn(r, () => c.auth.register(r, c.session.remote), reply),
  },
  login: {
    preAuth: true,
    postAuth: false,
    run: (c, r, reply) => c.session.logIn(r, () => c.auth.login(r, c.session.remote), reply),
  },
  join: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      // The `ok` goes out before any backlog of `since` (which then ends with `resumed`).
      await c.service.join(c.session, r.room, r.since, r.private === true, (j) => {
        reply.send({
          type: "ok",
          op: "join",
          room: j.room,
          users: j.users,
          ...(j.private ? { private: true } : {}),
        });
        return reply.atHead();
      });
    },
  },
  part: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      const p = await c.service.part(c.session, r.room, r.reason);
      reply.send({ type: "ok", op: "part", room: p.room });
    },
  },
  rooms: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({ type: "rooms", ...await c.service.rooms(c.session, r.after) });
    },
  },
  invite: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      const i = await c.service.invite(c.session, r.room, r.user);
      reply.send({ type: "ok", op: "invite", room: i.room, user: i.user });
    },
  },
  kick: {
    preAuth: false,
    postAuth: true,
    role: "admin",
    run: async (c, r, reply) => {
      const k = await c.service.kick(c.session, r.room, r.user);
      reply.send({ type: "ok", op: "kick", room: k.room, user: k.user });
    },
  },
  topic: {
    preAuth: false,
    postAuth: true,
    role: (config) => config.roomTopic === "admin" ? "admin" : undefined,
    run: async (c, r, reply) => {
      const t = await c.service.setTopic(c.session, r.room, r.topic);
      reply.send({ type: "ok", op: "topic", room: t.room, topic: t.topic });
    },
  },
  who: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      const w = await c.service.who(c.session, r.room);
      reply.send({ type: "who", room: w.room, users: w.users });
    },
  },
  send: {
    preAuth: false,
    postAuth: true,
    pipelined: true,
    charge: "message",
    run: async (c, r, reply) => {
      const a = await c.service.send(c.session, r);
      // Built field by field (no spreads): one ack per message.
      const ack: Extract<ServerFrame, { type: "ack" }> = a.room !== undefined
        ? { type: "ack", cid: r.cid, id: a.id, ts: a.ts, room: a.room }
        : { type: "ack", cid: r.cid, id: a.id, ts: a.ts, to: a.to };
      if (a.duplicate) ack.duplicate = true;
      reply.send(ack);
    },
  },
  history: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({ type: "history", ...await c.service.history(c.session, r) });
    },
  },
  read: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({ type: "ok", op: "read", ...await c.service.markRead(c.session, r) });
    },
  },
  search: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({ type: "search", ...await c.service.search(c.session, r) });
    },
  },
  history_range: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({ type: "history", ...await c.service.historyRange(c.session, r), more: false });
    },
  },
  tagmsg: {
    preAuth: false,
    postAuth: true,
    // Typing notices come with every keystroke burst: they are paced like messages.
    charge: "message",
    run: async (c, r, reply) => {
      reply.send({ type: "relayed", ...await c.service.relayTags(c.session, r) });
    },
  },
  conversations: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      reply.send({
        type: "conversations",
        conversations: await c.service.conversations(c.session, r.fromTs, r.toTs, r.limit),
      });
    },
  },
  passwd: {
    preAuth: false,
    postAuth: true,
    run: async (c, r, reply) => {
      const s = c.session;
      const { issued } = await c.auth.changePassword(
        s.user!,
        r.old,
        r.new,
        s.remote,
        s.sessionToken?.device,
      );
      // Every token of the account is revoked; this session's device gets a new one.
      s.sessionToken = issued ? { id: issued.id, device: s.sessionToken!.device } : null;
      // The old password no longer opens sessions, so the ones it opened end (on every node),
      // all but this one.
      c.service.passwordChanged(s);
      reply.send({
        type: "ok",
        op: "passwd",
        ...(issued ? { token: issued.token, tokenExpiresAt: issued.expiresAt } : {}),
      });
    },
  },
  logout: {
    preAuth: false,
    postAuth: true,
    run: async (c, _r, reply) => {
      const s = c.session;
      if (s.sessionToken) await c.auth.revokeToken(s.user!, s.sessionToken.id, s.remote);
      s.sessionToken = null;
      reply.send({ type: "ok", op: "logout" });
      // After the ok (replies keep order), the connection ends as after `quit`.
      await reply.atHead();
      s.close("quit", "Logged out", true);
    },
  },
};

/**
 * The one check every request passes before its handler runs. Throws the refusal (with the
 * request's ref attached by the caller).
 */
export function admit<O extends Op>(
  spec: CommandSpec<O>,
  req: Args<O>,
  state: {
    authed: boolean;
    role: "admin" | "member" | null;
    stopping: boolean;
    config: Readonly<ServerConfig>;
  },
): void {
  if (state.authed && !spec.postAuth) {
    throw new ChatError("already_authenticated", `Cannot ${req.op}: already logged in`);
  }
  if (!state.authed && !spec.preAuth) {
    throw new ChatError("not_authenticated", `Cannot ${req.op}: log in first`);
  }
  const role = typeof spec.role === "function" ? spec.role(state.config) : spec.role;
  if (role === "admin" && state.role !== "admin") {
    throw new ChatError("forbidden", `Cannot ${req.op}: administrators only`);
  }
  if (state.stopping) {
    throw new ChatError("shutting_down", `Cannot ${req.op}: the server is stopping`);
  }
}
