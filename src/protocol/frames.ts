// Owns the frame types of the native protocol chat/1 (see docs/PROTOCOL.md).

/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** The ALPN identifier that selects chat/1. */
export const ALPN_CHAT1 = "chat/1";

/** Last ids the client saw, sent with login/register to resume. */
export interface ResumePoint {
  rooms?: Record<string, number>;
  dm?: number;
}

/** Frames a client sends. */
export type ClientFrame =
  | { type: "hello"; ref?: string; version: number; client?: string }
  | {
    type: "register";
    ref?: string;
    user: string;
    password: string;
    invite?: string;
    /** Ask for a session token for this device (§2.1). */
    device?: string;
    resume?: ResumePoint;
  }
  | {
    type: "login";
    ref?: string;
    user: string;
    /** Exactly one of `password` and `token` (§2.1). */
    password?: string;
    token?: string;
    device?: string;
    resume?: ResumePoint;
  }
  | { type: "join"; ref?: string; room: string; since?: number; private?: boolean }
  /** `reason`: shown to the room with the part (IRC's PART reason, chat/1's presence `reason`). */
  | { type: "part"; ref?: string; room: string; reason?: string }
  | { type: "rooms"; ref?: string; after?: string }
  | { type: "invite"; ref?: string; room: string; user: string }
  | { type: "kick"; ref?: string; room: string; user: string }
  | { type: "topic"; ref?: string; room: string; topic: string }
  | { type: "who"; ref?: string; room: string }
  | {
    type: "send";
    ref?: string;
    cid: string;
    body: string;
    room?: string;
    to?: string;
    /** A notice: shown as one, never answered automatically (IRC NOTICE). */
    notice?: boolean;
  }
  | { type: "history"; ref?: string; room?: string; with?: string; limit?: number; before?: number }
  | { type: "passwd"; ref?: string; old: string; new: string }
  | { type: "read"; ref?: string; room?: string; with?: string; id: number }
  | { type: "search"; ref?: string; text: string; room?: string; limit?: number }
  | { type: "logout"; ref?: string }
  | { type: "ping"; ref?: string }
  | { type: "pong"; ref?: string }
  | { type: "quit"; ref?: string };

export type ClientFrameType = ClientFrame["type"];

/** A message as it appears on the wire (in `msg` frames and history pages). */
export interface WireMessage {
  id: number;
  ts: number;
  from: string;
  body: string;
  room?: string;
  to?: string;
  /** Present (true) for a notice (IRC NOTICE, or a chat/1 `send` with `notice`). */
  notice?: true;
}

/** Limits announced in the server `hello`. */
export interface WireLimits {
  maxLineBytes: number;
  maxBodyBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  historyMax: number;
  resumeMaxMessages: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
}

export interface RoomInfo {
  name: string;
  topic: string;
  members: number;
  online: number;
  joined: boolean;
  /** Members only (listed only to its members and to administrators). */
  private: boolean;
}

/** A read marker and the unread count behind it (docs/PROTOCOL.md §7.1). */
export interface ReadState {
  read: number;
  count: number;
}

/** The login `ok`'s `unread`: per joined room, and per DM peer with unread messages. */
export interface UnreadMap {
  rooms: Record<string, ReadState>;
  dm: Record<string, ReadState>;
}

/** Frames the server sends. */
export type ServerFrame =
  | {
    type: "hello";
    ref?: string;
    version: number;
    server: string;
    registration: "open" | "invite" | "closed";
    limits: WireLimits;
  }
  | {
    type: "ok";
    ref?: string;
    op: string;
    user?: string;
    rooms?: string[];
    /** For login/register: newest message id per joined room and of the user's DMs (0: none). */
    latest?: ResumePoint;
    /** For login/register with `device`, and passwd of a session with a token: §2.1. */
    token?: string;
    tokenExpiresAt?: number;
    room?: string;
    users?: string[];
    /** For join: the room is private. */
    private?: boolean;
    topic?: string;
    /** For login/register: read markers and unread counts (§7.1). */
    markers?: UnreadMap;
    /** For read: the unread count through `through`. */
    unread?: number;
    /** For read: the DM peer; `id` the marker now stored, `unread` counted through `through`. */
    with?: string;
    id?: number;
    through?: number;
  }
  | {
    type: "ack";
    ref?: string;
    cid: string;
    id: number;
    ts: number;
    room?: string;
    to?: string;
    duplicate?: boolean;
  }
  | ({ type: "msg" } & WireMessage)
  | {
    type: "presence";
    room: string;
    user: string;
    event: "join" | "leave";
    /** For `leave`: the reason the user gave (a part's or an IRC QUIT's), when they gave one. */
    reason?: string;
  }
  | { type: "who"; ref?: string; room: string; users: string[] }
  | { type: "rooms"; ref?: string; rooms: RoomInfo[]; more: boolean }
  | { type: "membership"; room: string; event: "added" | "removed"; by: string }
  | {
    type: "history";
    ref?: string;
    room?: string;
    with?: string;
    messages: WireMessage[];
    more: boolean;
  }
  /** Another session of the user moved a read marker (§7.1). */
  | {
    type: "read";
    room?: string;
    with?: string;
    id: number;
    unread: number;
    through: number;
  }
  | { type: "search"; ref?: string; messages: WireMessage[]; more: boolean }
  | { type: "resumed"; room?: string; dm?: boolean; count: number; more: boolean }
  /** Conversations with their newest message's time (IRC's CHATHISTORY TARGETS only). */
  | {
    type: "conversations";
    ref?: string;
    conversations: { room?: string; with?: string; ts: number }[];
  }
  /** Client-only tags relayed (IRC TAGMSG; not a chat/1 frame): the relay's id and time. */
  | { type: "relayed"; ref?: string; msgid: string; ts: number; room?: string; to?: string }
  | { type: "error"; ref?: string; code: string; message: string; retryAfterMs?: number }
  | { type: "ping" }
  | { type: "pong"; ref?: string }
  | { type: "bye"; code: string; message: string };
