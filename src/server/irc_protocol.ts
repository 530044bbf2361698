// Owns IRC on a session: registration (CAP, NICK/USER, PASS, SASL PLAIN), commands mapped onto
// the command table (JOIN → join, PRIVMSG → send, …), IRCv3 capabilities, and replies in IRC.
import { errorInfo } from "../error_catalogue.ts";
import { concatBytes } from "../protocol/concat_bytes.ts";
import type { ServerFrame, WireMessage } from "../protocol/frames.ts";
import {
  IRC_MAX_BODY_BYTES,
  type IrcMessage,
  IrcParseError,
  parseIrcLine,
  relayableTags,
  serializeIrc,
} from "../protocol/irc_codec.ts";
import { MAX_REASON_BYTES } from "../protocol/text_rules.ts";
import type { Request } from "./commands.ts";
import type { EventEncoder, Hub } from "./hub.ts";
import {
  channelOf,
  clean,
  hostmask,
  IRC_VERSION,
  ircEncoder,
  ircText,
  lineBytes,
  messageLines,
  safeText,
  TAG_ACCOUNT,
  TAG_MSGID,
  TAG_TIME,
  tagmsgLine,
  utf8Length,
  utf8Prefix,
} from "./irc_encoder.ts";
import { errorReply } from "./irc_replies.ts";
import type { ProtocolAdapter, Session } from "./session.ts";

/** Capabilities offered (CAP LS 302 adds the values). */
const CAPS: Record<string, string> = {
  "account-tag": "",
  "away-notify": "",
  "batch": "",
  "draft/chathistory": "",
  "echo-message": "",
  "labeled-response": "",
  "message-tags": "",
  "multi-prefix": "",
  "sasl": "PLAIN",
  "server-time": "",
  "standard-replies": "",
  "userhost-in-names": "",
};

/** WHO <mask>: at most this many replies (one reply stays far below the send-queue bound). */
const WHO_MAX = 500;
/** Longest AWAY message kept (AWAYLEN). */
const AWAY_LEN = 200;
/** SASL: an AUTHENTICATE payload over this many bytes (base64) is refused (ERR_SASLTOOLONG). */
const SASL_MAX = 1600;
/** IRC formatting (bold, colour, italics, …): stripped from what IRC users send. */
// deno-lint-ignore no-control-regex
const FORMATTING_RE = new RegExp(
  "\\x03(?:\\d{1,2}(?:,\\d{1,2})?)?|\\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?|[\\x02\\x0f\\x11\\x16\\x1d\\x1e\\x1f]",
  "g",
);
const NICK_RE = /^[A-Za-z][A-Za-z0-9_-]{1,31}$/;
const LABEL_RE = /^[\x21-\x7e]{1,64}$/;
/** Who is away, per hub (one server), for AWAY, WHO flags and RPL_AWAY: node-local, IRC-only. */
interface AwayRegistry {
  away: Map<string, string>;
  sessions: Set<IrcProtocol>;
}
const REGISTRIES = new WeakMap<Hub, AwayRegistry>();

function registry(hub: Hub): AwayRegistry {
  let r = REGISTRIES.get(hub);
  if (!r) REGISTRIES.set(hub, r = { away: new Map(), sessions: new Set() });
  return r;
}

/** USER's username and realname, cleaned (`user` "" until USER came). */
interface Ident {
  user: string;
  real: string;
}

/** Longest realname kept (characters). */
const REALNAME_MAX = 100;

/**
 * USER's username and realname as others may see them: the username keeps `A-Z a-z 0-9 . _ -`
 * (at most USERLEN, 32; nothing left: the account name is shown), the realname loses formatting
 * and controls (at most 100 characters). They are shown, never trusted: the nick is the account.
 */
export function identOf(user: string, real: string): Ident {
  const u = user.replace(/[^A-Za-z0-9._-]/g, "").slice(0, 32);
  const r = safeText(real.replace(FORMATTING_RE, "")).trim().slice(0, REALNAME_MAX);
  return { user: u, real: r };
}

/** A topic with who set it and when (milliseconds), when known. */
interface Topic {
  topic: string;
  setBy?: { by: string; ts: number };
}

/** What a dispatched request needs when its reply comes back. */
interface Pending {
  command: string;
  target: string;
  label?: string;
  /** A JOIN: the channel's topic, and who set it when known. */
  topic?: Topic;
  /** CHATHISTORY subcommand and target. */
  sub?: string;
  /** A send: the body as stored. */
  body?: string;
  /** A PART: the reason given, as cleaned. */
  reason?: string;
  /** A send: the client-only tags relayed with it (for the echo). */
  clientTags?: Record<string, string>;
  /** Part of a labeled command with several targets: its lines go in this batch, unlabeled. */
  batch?: string;
}

/**
 * Where a request carries its Pending: a symbol-keyed property of the request itself. It was a
 * WeakMap, one entry per PRIVMSG, and weak entries cost the garbage collector per message.
 */
const PENDING = Symbol("irc pending");
type PendingRequest = Request & { [PENDING]?: Pending };

/** Where the replies of one target of a labeled multi-target command (JOIN, PART) go. */
interface Group {
  label?: string;
  batch?: string;
}

/**
 * The IRC protocol on one session.
 *
 * 1. Registration ends with 001-005 and 422 once NICK and USER came, CAP negotiation ended, and
 *    the account logged in: SASL PLAIN (before CAP END), or PASS with NICK as the account name.
 *    With open registration a PASS for a name with no account creates it (see docs/IRC.md).
 *    The nick is the account name (001 says so). Messages that arrive between the login and the
 *    end of registration are held (`holdDeliveries`) and follow the registration burst.
 * 2. Every request goes through `session.dispatch` (login state, limits, reply order); the
 *    protocol's own replies (PONG, CAP, numerics) are written in the same order
 *    (`writeInOrder`), so a PING answers after everything sent before it.
 * 3. Messages over the rate are paced by the session (as on every protocol), never refused.
 * 4. Client text echoed in a reply is cleaned of control characters; nothing a client sends
 *    reaches another client except through the service's checked bodies and names.
 */
export class IrcProtocol implements ProtocolAdapter {
  readonly name = "irc";
  readonly s: Session;
  #caps = new Set<string>();
  #negotiating = false;
  #cap302 = false;
  #nick: string | null = null;
  #userGiven = false;
  #pass: string | null = null;
  #saslStarted = false;
  #saslBuf = "";
  #saslBusy = false;
  #registered = false;
  /** USER's username and realname as WHO, WHOIS and USERHOST show them (see identOf). */
  #ident: Ident = { user: "", real: "" };
  #authError: string | null = null;

  #cidPrefix = `irc-${crypto.randomUUID()}-`;
  #seq = 0;
  #batchSeq = 0;

  /** This server's name on IRC (config `ircServerName`). */
  readonly #serverName: string;

  constructor(s: Session) {
    this.s = s;
    this.#serverName = s.service.config.ircServerName;
    s.holdDeliveries(); // released after the registration burst (#welcome)
  }

  /**
   * Deliveries' encoder: by negotiated tags. (Messages held before the end of registration carry
   * the tags negotiated when they arrived.)
   */
  get encoder(): EventEncoder {
    return this.#encoder;
  }

  /**
   * The tag set of deliveries, kept with its shared encoder: fan-out asks every member for its
   * encoder per batch, so these are worked out when the capabilities change (CAP REQ), not then.
   */
  #mask = 0;
  #encoder: EventEncoder = ircEncoder(0);

  #capsChanged(): void {
    this.#mask = (this.#caps.has("server-time") ? TAG_TIME : 0) |
      (this.#caps.has("message-tags") ? TAG_MSGID : 0) |
      (this.#caps.has("account-tag") ? TAG_ACCOUNT : 0);
    this.#encoder = ircEncoder(this.#mask);
  }

  /** The nick numerics address: the account once registered, else what NICK said, else `*`. */
  get #me(): string {
    return this.s.user?.name ?? this.#nick ?? "*";
  }

  get #registry(): AwayRegistry {
    return registry(this.s.service.hub);
  }

  start(): void {}

  /** The logged-in account, read afresh (a method: never narrowed across an await). */
  #account(): { id: number; name: string } | null {
    return this.s.user;
  }

  // --- output ------------------------------------------------------------------------------

  #numeric(code: string, ...params: string[]): IrcMessage {
    return { source: this.#serverName, command: code, params: [this.#me, ...params] };
  }

  /** A server line to this client. */
  #server(command: string, ...params: string[]): IrcMessage {
    return { source: this.#serverName, command, params };
  }

  /**
   * The lines answering one command, labeled (labeled-response): one line takes the label, none
   * becomes ACK, several go in a `labeled-response` batch (or `single` batch: label on its start).
   */
  #labeled(label: string | undefined, msgs: IrcMessage[], single = false): IrcMessage[] {
    if (!label || !this.#caps.has("labeled-response")) return msgs;
    if (msgs.length === 0) return [{ tags: { label }, ...this.#server("ACK") }];
    if (msgs.length === 1 || single || !this.#caps.has("batch")) {
      msgs[0] = { ...msgs[0], tags: { ...msgs[0].tags, label } };
      return msgs;
    }
    const id = this.#batchId();
    return [
      { tags: { label }, ...this.#server("BATCH", "+" + id, "labeled-response") },
      ...msgs.map((m) => ({ ...m, tags: { ...m.tags, batch: id } })),
      this.#server("BATCH", "-" + id),
    ];
  }

  #batchId(): string {
    return (++this.#batchSeq).toString(36);
  }

  #bytes(msgs: IrcMessage[]): Uint8Array {
    return lineBytes(msgs);
  }

  /** Writes this client's own reply lines in reply order. */
  #send(msgs: IrcMessage[], label?: string): void {
    const out = this.#labeled(label, msgs);
    if (out.length) this.s.writeInOrder(this.#bytes(out));
  }

  /** The reply for an error: its numeric, a FAIL (standard-replies) or a NOTICE. */
  #errorLines(code: string, message: string, p: Pending): IrcMessage[] {
    if (p.command === "NOTICE") return []; // never an automatic reply to a NOTICE (RFC 1459)
    const r = errorReply(code, p.command);
    const ctx = { command: p.command, target: p.target, message, sub: p.sub };
    if ("numeric" in r) return [this.#numeric(r.numeric, ...r.params(ctx), r.text ?? message)];
    // CHATHISTORY's failures are FAIL by its own spec; others need standard-replies.
    if (this.#caps.has("standard-replies") || p.command === "CHATHISTORY") {
      return [this.#server("FAIL", p.command, r.fail, ...(r.context?.(ctx) ?? []), message)];
    }
    return [this.#server("NOTICE", this.#me, message)];
  }

  // --- input -------------------------------------------------------------------------------

  onMessage(line: Uint8Array): Promise<void> | void {
    if (line.length === 0) {
      this.#send([this.#numeric("417", "Input line was too long")]); // ERR_INPUTTOOLONG
      return;
    }
    let m: IrcMessage;
    try {
      m = parseIrcLine(line);
    } catch (err) {
      if (!(err instanceof IrcParseError)) throw err;
      return this.#badLine(err);
    }
    const bytes = line.length;
    const rawLabel = m.tags?.label;
    const label = rawLabel !== undefined && LABEL_RE.test(rawLabel) ? rawLabel : undefined;
    if (!this.#registered) return this.#preRegistration(m, label, bytes);
    return this.#command(m, label, bytes);
  }

  #badLine(err: IrcParseError): void {
    switch (err.code) {
      case "input_too_long":
      case "tags_too_long":
        this.#send([this.#numeric("417", "Input line was too long")]);
        return;
      case "invalid_utf8":
        this.#send([this.#server("FAIL", "*", "INVALID_UTF8", "Input line is not valid UTF-8")]);
        return;
      default:
        // A line with NUL or CR inside, or no command: not a message; nothing to answer to.
        return;
    }
  }

  #preRegistration(m: IrcMessage, label: string | undefined, bytes: number): Promise<void> | void {
    const p = m.params;
    switch (m.command) {
      case "CAP":
        return this.#cap(m, label);
      case "NICK":
        if (!p[0]) return this.#send([this.#numeric("431", "No nickname given")]);
        if (!NICK_RE.test(p[0])) {
          return this.#send([this.#numeric("432", clean(p[0]), "Erroneous nickname")]);
        }
        this.#nick = p[0];
        return this.#tryRegister(bytes);
      case "USER":
        if (p.length < 4 || p[3] === "") { // an empty realname is not a parameter
          return this.#send([this.#numeric("461", "USER", "Not enough parameters")]);
        }
        this.#userGiven = true;
        this.#ident = identOf(p[0], p[3]);
        return this.#tryRegister(bytes);
      case "PASS":
        if (!p[0]) return this.#send([this.#numeric("461", "PASS", "Not enough parameters")]);
        this.#pass = p[0];
        return;
      case "AUTHENTICATE":
        return this.#authenticate(p[0] ?? "", bytes);
      case "PING":
        return this.#pong(p, label);
      case "PONG":
        return;
      case "QUIT":
        this.s.close("quit", "Goodbye", true);
        return;
      default:
        return this.#send([this.#numeric("451", "You have not registered")]);
    }
  }

  /** PONG <server> <token>; a PING without a token is ERR_NEEDMOREPARAMS (modern.ircdocs.horse). */
  #pong(p: string[], label: string | undefined): void {
    if (p.length === 0) {
      return this.#send([this.#numeric("461", "PING", "Not enough parameters")], label);
    }
    this.#send([this.#server("PONG", this.#serverName, p[0])], label);
  }

  #cap(m: IrcMessage, label: string | undefined): Promise<void> | void {
    const sub = (m.params[0] ?? "").toUpperCase();
    const me = this.#me;
    switch (sub) {
      case "LS": {
        if (!this.#registered) this.#negotiating = true;
        if (Number(m.params[1]) >= 302) this.#cap302 = true;
        const list = Object.entries(CAPS).map(([k, v]) => this.#cap302 && v ? `${k}=${v}` : k);
        return this.#send([this.#server("CAP", me, "LS", list.join(" "))], label);
      }
      case "LIST":
        return this.#send([this.#server("CAP", me, "LIST", [...this.#caps].join(" "))], label);
      case "REQ": {
        if (!this.#registered) this.#negotiating = true;
        const asked = (m.params[1] ?? "").trim().split(/ +/).filter((c) => c !== "");
        const ok = asked.length > 0 &&
          asked.every((c) => Object.hasOwn(CAPS, c.startsWith("-") ? c.slice(1) : c));
        if (!ok) {
          return this.#send([this.#server("CAP", me, "NAK", clean(m.params[1] ?? "", 400))], label);
        }
        for (const c of asked) {
          if (c.startsWith("-")) this.#caps.delete(c.slice(1));
          else this.#caps.add(c);
        }
        this.#capsChanged();
        return this.#send([this.#server("CAP", me, "ACK", asked.join(" "))], label);
      }
      case "END":
        if (this.#registered) return;
        this.#negotiating = false;
        return this.#tryRegister(0);
      default:
        return this.#send([this.#numeric("410", clean(sub), "Invalid CAP command")], label);
    }
  }

  async #authenticate(arg: string, bytes: number): Promise<void> {
    if (this.s.user !== null) {
      return this.#send([this.#numeric("907", "You have already authenticated using SASL")]);
    }
    if (this.#saslBusy) return;
    if (!this.#saslStarted) {
      if (arg.toUpperCase() !== "PLAIN") {
        this.#send([
          this.#numeric("908", "PLAIN", "are available SASL mechanisms"),
          this.#numeric("904", "SASL authentication failed"),
        ]);
        return;
      }
      this.#saslStarted = true;
      this.#saslBuf = "";
      return this.#send([this.#server("AUTHENTICATE", "+")]);
    }
    if (arg === "*") {
      this.#saslStarted = false;
      return this.#send([this.#numeric("906", "SASL authentication aborted")]);
    }
    if (arg !== "+") this.#saslBuf += arg;
    if (this.#saslBuf.length > SASL_MAX) {
      this.#saslStarted = false;
      return this.#send([this.#numeric("905", "SASL message too long")]);
    }
    if (arg.length === 400) return; // more follows (IRCv3 SASL: 400-byte chunks)
    this.#saslStarted = false;
    const creds = decodePlain(this.#saslBuf);
    if (!creds) return this.#send([this.#numeric("904", "SASL authentication failed")]);
    this.#saslBusy = true;
    try {
      this.#authError = null;
      await this.s.dispatch({ op: "login", user: creds.user, password: creds.password }, bytes);
    } finally {
      this.#saslBusy = false;
    }
    if (this.s.closed) return;
    const u = this.#account();
    if (!u) return this.#send([this.#numeric("904", "SASL authentication failed")]);
    this.#send([
      this.#numeric("900", hostmask(u.name), u.name, `You are now logged in as ${u.name}`),
      this.#numeric("903", "SASL authentication successful"),
    ]);
    return this.#tryRegister(0);
  }

  /** Ends registration when everything it needs has come. */
  async #tryRegister(bytes: number): Promise<void> {
    if (this.#registered || this.#negotiating || this.#saslBusy || this.#saslStarted) return;
    if (this.#nick === null || !this.#userGiven) return;
    if (this.s.user === null) {
      if (this.#pass === null) {
        this.#send([this.#numeric("464", "Password required: log in with SASL PLAIN or PASS")]);
        this.s.close("auth_failed", "Authentication required", true);
        return;
      }
      const pass = this.#pass;
      this.#pass = null;
      this.#authError = null;
      await this.s.dispatch({ op: "login", user: this.#nick, password: pass }, bytes);
      if (this.s.closed) return;
      if (
        this.#account() === null && this.#authError === "auth_failed" &&
        this.s.auth.registration === "open"
      ) {
        // A PASS for a name with no account creates it when registration is open.
        this.#authError = null;
        await this.s.dispatch({ op: "register", user: this.#nick, password: pass }, bytes);
        if (this.s.closed) return;
        const created = this.#account();
        if (created !== null) {
          this.#send([
            this.#server("NOTICE", this.#nick, `Account ${created.name} registered`),
          ]);
        } else if (this.#authError !== "user_exists") {
          this.#send(this.#errorLines(this.#authError ?? "auth_failed", this.#registerMessage, {
            command: "PASS",
            target: "",
          }));
        }
      }
      if (this.#account() === null) {
        this.#send([this.#numeric("464", "Password incorrect")]);
        this.s.close("auth_failed", "Password incorrect", true);
        return;
      }
    }
    await this.#welcome();
  }

  #registerMessage = "Cannot register";

  async #welcome(): Promise<void> {
    const u = this.s.user!;
    const l = this.s.limits;
    const topics = new Map<string, Topic>();
    for (const r of this.s.service.roomsOnline(this.s)) {
      try {
        topics.set(r.room, await this.s.service.topic(r.room));
      } catch { /* archived meanwhile */ }
    }
    if (this.s.closed) return;
    const tokens = [
      "AWAYLEN=" + AWAY_LEN,
      "CASEMAPPING=ascii",
      "CHANLIMIT=#:",
      "CHANMODES=,,,nt",
      "CHANNELLEN=33",
      "CHANTYPES=#",
      "CHATHISTORY=" + l.historyMax,
      "MSGREFTYPES=msgid,timestamp",
      "NETWORK=chat",
      "NICKLEN=32",
      "PREFIX=", // no user has a channel prefix: rooms have no operators on IRC
      "TARGMAX=PRIVMSG:1,NOTICE:1,JOIN:,PART:,NAMES:1,WHO:1",
      "USERLEN=32",
      "UTF8ONLY",
    ];
    const out: IrcMessage[] = [
      this.#numeric("001", `Welcome to the chat IRC gateway, ${u.name}`),
      this.#numeric("002", `Your host is ${this.#serverName}, running version ${IRC_VERSION}`),
      this.#numeric("003", "This server speaks IRC beside chat/1"),
      this.#numeric("004", this.#serverName, IRC_VERSION, "i", "nt"),
      this.#numeric("005", ...tokens.slice(0, 12), "are supported by this server"),
      this.#numeric("005", ...tokens.slice(12), "are supported by this server"),
      this.#numeric("422", "MOTD File is missing"),
    ];
    // The burst and the switch to live deliveries in one turn: nothing slips between them.
    for (const r of this.s.service.roomsOnline(this.s)) {
      out.push(...this.#joinLines(r.room, r.users, topics.get(r.room) ?? { topic: "" }));
    }
    this.#registered = true;
    this.#registry.sessions.add(this);
    this.s.write(this.#bytes(out));
    this.s.releaseDeliveries(); // what arrived since the login, after the channels' JOINs
  }

  #joinLines(room: string, users: string[], t: Topic): IrcMessage[] {
    const chan = channelOf(room);
    const me = this.#me;
    const out: IrcMessage[] = [{ source: hostmask(me), command: "JOIN", params: [chan] }];
    out.push(...this.#topicLines(chan, t, false));
    out.push(...this.#namesLines(chan, users));
    return out;
  }

  /** RPL_TOPIC and RPL_TOPICWHOTIME (when known), or RPL_NOTOPIC when `noTopic`. */
  #topicLines(chan: string, t: Topic, noTopic: boolean): IrcMessage[] {
    if (!t.topic) return noTopic ? [this.#numeric("331", chan, "No topic is set")] : [];
    const out = [this.#numeric("332", chan, safeText(t.topic))];
    if (t.setBy) {
      const secs = String(Math.floor(t.setBy.ts / 1000));
      out.push(this.#numeric("333", chan, t.setBy.by, secs));
    }
    return out;
  }

  /**
   * Another session of this account joined a room, or someone added the account: JOIN, topic and
   * NAMES, as for a JOIN of this client's own (written at once: the room's messages follow).
   */
  roomEntered(room: string, users: string[], topic: string): void {
    if (!this.#registered) return; // the registration burst will list it
    this.s.write(this.#bytes(this.#joinLines(room, users, { topic })));
  }

  /** Another session of this account parted (PART), or someone removed the account (KICK). */
  roomLeft(room: string, by?: string): void {
    if (!this.#registered) return;
    const me = this.#me;
    const chan = channelOf(room);
    this.s.write(this.#bytes([
      by === undefined
        ? { source: hostmask(me), command: "PART", params: [chan] }
        : { source: hostmask(by), command: "KICK", params: [chan, me, `Removed by ${by}`] },
    ]));
  }

  #namesLines(chan: string, users: string[]): IrcMessage[] {
    const out: IrcMessage[] = [];
    let line: string[] = [];
    let size = 0;
    // userhost-in-names: each name as nick!user@host.
    const full = this.#caps.has("userhost-in-names");
    for (const name of users) {
      const u = full ? hostmask(name) : name;
      if (size + u.length + 1 > 400 && line.length) {
        out.push(this.#numeric("353", "=", chan, line.join(" ")));
        line = [];
        size = 0;
      }
      line.push(u);
      size += u.length + 1;
    }
    if (line.length) out.push(this.#numeric("353", "=", chan, line.join(" ")));
    out.push(this.#numeric("366", chan, "End of /NAMES list"));
    return out;
  }

  // --- after registration ----------------------------------------------------------------

  #command(m: IrcMessage, label: string | undefined, bytes: number): Promise<void> | void {
    const p = m.params;
    switch (m.command) {
      case "PING":
        return this.#pong(p, label);
      case "PONG":
        return this.#send([], label);
      case "CAP":
        return this.#cap(m, label);
      case "NICK":
        if (p[0] && p[0].toLowerCase() === this.#me.toLowerCase()) return;
        return this.#send(
          [this.#numeric("432", clean(p[0] ?? ""), "Cannot change nick: it is your account name")],
          label,
        );
      case "USER":
      case "PASS":
        return this.#send([this.#numeric("462", "You may not reregister")], label);
      case "AUTHENTICATE":
        return this.#send([this.#numeric("907", "You have already authenticated using SASL")]);
      case "QUIT":
        this.s.quitReason = reasonOf(p[0]);
        this.s.close("quit", "Goodbye", true);
        return;
      case "JOIN":
        return this.#join(p, label, bytes);
      case "PART":
        return this.#part(p, label, bytes);
      case "NAMES":
        return this.#names(p, label, bytes, "NAMES");
      case "WHO":
        return this.#names(p, label, bytes, "WHO");
      case "TOPIC":
        return this.#topic(p, label, bytes);
      case "PRIVMSG":
      case "NOTICE":
        return this.#privmsg(m.command, p, label, bytes, relayableTags(m.tags));
      case "TAGMSG":
        return this.#tagmsg(p, label, bytes, relayableTags(m.tags));
      case "AWAY":
        return this.#away(p[0] ?? "", label);
      case "MODE":
        return this.#mode(p, label);
      case "USERHOST":
        return this.#userhost(p, label);
      case "WHOIS":
        return this.#whois(p, label);
      case "LIST":
        return this.#dispatch({ op: "rooms" }, { command: "LIST", target: "", label }, bytes);
      case "MOTD":
        return this.#send([this.#numeric("422", "MOTD File is missing")], label);
      case "CHATHISTORY":
        return this.#chathistory(p, label, bytes);
      default:
        return this.#send([this.#numeric("421", clean(m.command), "Unknown command")], label);
    }
  }

  #dispatch(req: Request, pending: Pending, bytes: number): Promise<void> | undefined {
    if (pending.label !== undefined) req.ref = pending.label;
    (req as PendingRequest)[PENDING] = pending;
    return this.s.dispatch(req, bytes);
  }

  /** `#name` → `name`, or null (ERR_NOSUCHCHANNEL answered). */
  #room(chan: string, label: string | undefined, batch?: string): string | null {
    if (chan.length > 1 && chan[0] === "#") return chan.slice(1);
    const reply = this.#numeric("403", clean(chan) || "*", "No such channel");
    if (batch) this.s.writeInOrder(this.#bytes([{ ...reply, tags: { batch } }]));
    else this.#send([reply], label);
    return null;
  }

  /**
   * A labeled command with several targets answers in one labeled-response batch (ircv3.net
   * labeled-response: a response of more than one message is a batch); `run` handles each
   * target. With one target, or without batch, each reply carries the label as before.
   */
  async #grouped(
    targets: string[],
    label: string | undefined,
    run: (target: string, g: Group) => Promise<void>,
  ): Promise<void> {
    const batched = label !== undefined && targets.length > 1 &&
      this.#caps.has("labeled-response") && this.#caps.has("batch");
    if (!batched) {
      for (const t of targets) await run(t, { label });
      return;
    }
    const id = this.#batchId();
    const start = this.#server("BATCH", "+" + id, "labeled-response");
    this.s.writeInOrder(this.#bytes([{ tags: { label }, ...start }]));
    for (const t of targets) await run(t, { batch: id });
    this.s.writeInOrder(this.#bytes([this.#server("BATCH", "-" + id)]));
  }

  async #join(p: string[], label: string | undefined, bytes: number): Promise<void> {
    if (!p[0]) return this.#send([this.#numeric("461", "JOIN", "Not enough parameters")], label);
    if (p[0] === "0") return this.#send([], label); // leaving every channel: not here
    const joined = new Set(this.s.service.roomsOnline(this.s).map((r) => r.room));
    await this.#grouped(p[0].split(","), label, async (chan, g) => {
      const room = this.#room(chan, g.label, g.batch);
      if (room === null) return;
      // Already in it: nothing to do (a labeled JOIN still gets its ACK).
      if (joined.has(room.toLowerCase())) return this.#send([], g.label);
      let topic: Topic = { topic: "" };
      try {
        topic = await this.s.service.topic(room);
      } catch { /* a new room, or a bad name the join reports */ }
      await this.#dispatch({ op: "join", room }, {
        command: "JOIN",
        target: clean(chan),
        ...g,
        topic,
      }, bytes);
    });
  }

  async #part(p: string[], label: string | undefined, bytes: number): Promise<void> {
    if (!p[0]) return this.#send([this.#numeric("461", "PART", "Not enough parameters")], label);
    const reason = reasonOf(p[1]);
    await this.#grouped(p[0].split(","), label, async (chan, g) => {
      const room = this.#room(chan, g.label, g.batch);
      if (room === null) return;
      await this.#dispatch(
        { op: "part", room, ...(reason !== undefined ? { reason } : {}) },
        { command: "PART", target: clean(chan), ...g, reason },
        bytes,
      );
    });
  }

  async #names(
    p: string[],
    label: string | undefined,
    bytes: number,
    command: "NAMES" | "WHO",
  ): Promise<void> {
    const chan = p[0] ?? "";
    if (command === "WHO" && chan !== "" && chan[0] !== "#") return this.#whoMask(chan, label);
    if (chan.length < 2 || chan[0] !== "#") {
      // Not a channel (NAMES with no channel, WHO with no mask): the end numeric only.
      return this.#send(
        [
          command === "WHO"
            ? this.#numeric("315", clean(chan) || "*", "End of WHO list")
            : this.#numeric("366", clean(chan) || "*", "End of /NAMES list"),
        ],
        label,
      );
    }
    await this.#dispatch({ op: "who", room: chan.slice(1) }, {
      command,
      target: clean(chan),
      label,
    }, bytes);
  }

  /**
   * WHO <mask> for nicks (modern.ircdocs.horse WHO: `*` and `?` wildcards, case-insensitive):
   * users who share a room with this client, as WHOIS sees them; channel `*` in each reply.
   */
  #whoMask(mask: string, label: string | undefined): void {
    const seen = new Set<string>();
    for (const r of this.s.service.roomsOnline(this.s)) for (const u of r.users) seen.add(u);
    const m = mask.toLowerCase();
    const found = [...seen].filter((u) => globMatch(m, u.toLowerCase())).sort()
      .slice(0, WHO_MAX);
    this.#send([
      ...found.map((u) => this.#whoReply("*", u)),
      this.#numeric("315", clean(mask), "End of WHO list"),
    ], label);
  }

  /** RPL_WHOREPLY <client> <channel> <user> <host> <server> <nick> <flags> :<hopcount> <realname>. */
  #whoReply(chan: string, u: string): IrcMessage {
    const flags = this.#awayOf(u) !== undefined ? "G" : "H";
    const id = this.#identOfUser(u);
    return this.#numeric("352", chan, id.user, "chat", this.#serverName, u, flags, `0 ${id.real}`);
  }

  /**
   * The username and realname of an online user: what USER said on one of its IRC connections
   * to this server, else (chat/1 only, or another node) the account name for both.
   */
  #identOfUser(name: string): Ident {
    const key = name.toLowerCase();
    for (const o of this.#registry.sessions) {
      if (o.s.closed) this.#registry.sessions.delete(o);
      else if (o.s.user?.name.toLowerCase() === key && o.#registered) {
        return { user: o.#ident.user || name, real: o.#ident.real || name };
      }
    }
    return { user: name, real: name };
  }

  /**
   * USERHOST <nick>{ <nick>}: up to 5 nicks, each online in a room shared with this client, as
   * `nick=+user@host` (`-` when away); RPL_USERHOST (302) with the others left out.
   */
  #userhost(p: string[], label: string | undefined): void {
    if (p.length === 0) {
      return this.#send([this.#numeric("461", "USERHOST", "Not enough parameters")], label);
    }
    const seen = new Set<string>();
    for (const r of this.s.service.roomsOnline(this.s)) for (const u of r.users) seen.add(u);
    const byKey = new Map([...seen].map((u) => [u.toLowerCase(), u]));
    const out: string[] = [];
    for (const nick of p.slice(0, 5)) {
      const u = byKey.get(nick.toLowerCase());
      if (u === undefined) continue;
      const away = this.#awayOf(u) !== undefined ? "-" : "+";
      out.push(`${u}=${away}${this.#identOfUser(u).user}@chat`);
    }
    this.#send([this.#numeric("302", out.join(" "))], label);
  }

  async #topic(p: string[], label: string | undefined, bytes: number): Promise<void> {
    const chan = p[0];
    if (!chan) return this.#send([this.#numeric("461", "TOPIC", "Not enough parameters")], label);
    const room = this.#room(chan, label);
    if (room === null) return;
    if (p.length > 1) {
      // Set (an empty text clears it) under the server's roomTopic policy; refusals are 482.
      return this.#dispatch({ op: "topic", room, topic: p[1] }, {
        command: "TOPIC",
        target: clean(chan),
        label,
      }, bytes);
    }
    try {
      const t = await this.s.service.topic(room);
      this.#send(this.#topicLines(channelOf(t.room), t, true), label);
    } catch {
      this.#send([this.#numeric("403", clean(chan), "No such channel")], label);
    }
  }

  #privmsg(
    command: "PRIVMSG" | "NOTICE",
    p: string[],
    label: string | undefined,
    bytes: number,
    clientTags: Record<string, string> | undefined,
  ): Promise<void> | void {
    const quiet = command === "NOTICE";
    if (!p[0]) {
      return quiet
        ? undefined
        : this.#send([this.#numeric("411", "No recipient given (PRIVMSG)")], label);
    }
    if (p.length < 2 || p[1] === "") {
      return quiet ? undefined : this.#send([this.#numeric("412", "No text to send")], label);
    }
    if (p[0].includes(",")) {
      return quiet ? undefined : this.#send(
        [this.#numeric("407", clean(p[0]), "Too many targets: one per message")],
        label,
      );
    }
    let text = p[1];
    if (text.startsWith("\x01")) {
      // CTCP: ACTION (/me) is a message; every other request (VERSION, PING, DCC, …) is dropped.
      // deno-lint-ignore no-control-regex
      const m = /^\x01ACTION (.*?)\x01?$/s.exec(text);
      if (!m) return quiet ? undefined : this.#send([], label);
      text = "/me " + m[1];
    }
    const body = text.replace(FORMATTING_RE, "");
    if (body.trim() === "" || body === "/me ") {
      return quiet ? undefined : this.#send([this.#numeric("412", "No text to send")], label);
    }
    const target = p[0];
    if (!quiet && relayedBytes(this.#me, command, target, body) > IRC_MAX_BODY_BYTES) {
      // It would reach others as more than one 512-byte line (our longer prefix): refused, as
      // ERR_INPUTTOOLONG says, rather than cut or split; the client resends it shorter. A NOTICE
      // is never answered, so one is split into lines as a chat/1 user's long message is.
      return this.#send([this.#numeric("417", "Input line was too long")], label);
    }
    const cid = this.#cidPrefix + ++this.#seq;
    // A NOTICE is stored as one, so every IRC client (live and in CHATHISTORY) sees a NOTICE and
    // no bot answers it (RFC 2812 §3.3.2); chat/1 gets `notice: true`.
    const req: Request = {
      op: "send",
      cid,
      body,
      ...(target[0] === "#" ? { room: target.slice(1) } : { to: target }),
      ...(quiet ? { notice: true } : {}),
      ...(clientTags ? { tags: clientTags } : {}),
    };
    if (!quiet && req.to !== undefined) {
      const away = this.#awayOf(req.to);
      if (away !== undefined) this.#send([this.#numeric("301", clean(req.to), away)]);
    }
    return this.#dispatch(req, { command, target: clean(target), label, body, clientTags }, bytes);
  }

  /**
   * TAGMSG <target>: the client-only tags go live to the channel's members or the nick (and
   * the sender's other connections) that have message-tags, nothing is stored (IRCv3
   * message-tags). Without a tag to relay there is nothing to do.
   */
  #tagmsg(
    p: string[],
    label: string | undefined,
    bytes: number,
    tags: Record<string, string> | undefined,
  ): Promise<void> | void {
    const target = p[0];
    if (!target) {
      return this.#send([this.#numeric("461", "TAGMSG", "Not enough parameters")], label);
    }
    if (target.includes(",")) {
      return this.#send(
        [this.#numeric("407", clean(target), "Too many targets: one per message")],
        label,
      );
    }
    if (!tags) return this.#send([], label);
    const req: Request = target[0] === "#"
      ? { op: "tagmsg", room: target.slice(1), tags }
      : { op: "tagmsg", to: target, tags };
    return this.#dispatch(
      req,
      { command: "TAGMSG", target: clean(target), label, clientTags: tags },
      bytes,
    );
  }

  #away(text: string, label: string | undefined): void {
    const me = this.#me;
    const reg = this.#registry;
    const msg = safeText(text).slice(0, AWAY_LEN);
    if (msg.trim() === "") reg.away.delete(me.toLowerCase());
    else reg.away.set(me.toLowerCase(), msg);
    this.#send(
      [
        msg.trim() === ""
          ? this.#numeric("305", "You are no longer marked as being away")
          : this.#numeric("306", "You have been marked as being away"),
      ],
      label,
    );
    // away-notify: to every other IRC connection here that shares a room and asked for it.
    const line = this.#bytes([{
      source: hostmask(me),
      command: "AWAY",
      params: msg.trim() === "" ? [] : [msg],
    }]);
    for (const other of reg.sessions) {
      if (other.s.closed) {
        reg.sessions.delete(other);
        continue;
      }
      if (other === this || !other.#caps.has("away-notify")) continue;
      if ([...other.s.rooms].some((id) => this.s.rooms.has(id))) other.s.write(line);
    }
  }

  #mode(p: string[], label: string | undefined): void {
    const target = p[0];
    if (!target) return this.#send([this.#numeric("461", "MODE", "Not enough parameters")], label);
    if (target[0] === "#") {
      const modes = p[1];
      if (!modes) return this.#send([this.#numeric("324", clean(target), "+nt")], label);
      const flags = modes.replace(/^[+-]/, "");
      if (/^[bB]$/.test(flags) && p.length === 2) {
        return this.#send([this.#numeric("368", clean(target), "End of channel ban list")], label);
      }
      const unknown = [...flags].find((c) => !"ntbeIklimopsv+-".includes(c));
      if (unknown) {
        return this.#send(
          [this.#numeric("472", clean(unknown), "is unknown mode char to me")],
          label,
        );
      }
      return this.#send(
        [this.#numeric("482", clean(target), "You're not channel operator")],
        label,
      );
    }
    if (target.toLowerCase() !== this.#me.toLowerCase()) {
      return this.#send([this.#numeric("502", "Can't change mode for other users")], label);
    }
    if (!p[1]) return this.#send([this.#numeric("221", "+")], label);
    if (/^[+-]?[iw]+$/.test(p[1])) return this.#send([], label); // accepted, means nothing here
    return this.#send([this.#numeric("501", "Unknown MODE flag")], label);
  }

  #whois(p: string[], label: string | undefined): void {
    const nick = p[p.length - 1];
    if (!nick) return this.#send([this.#numeric("431", "No nickname given")], label);
    const shared = this.s.service.roomsOnline(this.s);
    const found = shared.flatMap((r) => r.users).find((u) =>
      u.toLowerCase() === nick.toLowerCase()
    );
    if (!found) {
      return this.#send([
        this.#numeric("401", clean(nick), "No such nick/channel"),
        this.#numeric("318", clean(nick), "End of /WHOIS list"),
      ], label);
    }
    const chans = shared.filter((r) => r.users.includes(found)).map((r) => channelOf(r.room));
    const away = this.#awayOf(found);
    this.#send([
      this.#numeric(
        "311",
        found,
        this.#identOfUser(found).user,
        "chat",
        "*",
        this.#identOfUser(found).real,
      ),
      this.#numeric("319", found, chans.join(" ")),
      this.#numeric("312", found, this.#serverName, "chat"),
      this.#numeric("330", found, found, "is logged in as"),
      ...(away !== undefined ? [this.#numeric("301", found, away)] : []),
      this.#numeric("318", found, "End of /WHOIS list"),
    ], label);
  }

  #chathistory(p: string[], label: string | undefined, bytes: number): Promise<void> | void {
    const sub = (p[0] ?? "").toUpperCase();
    const fail = (code: string, ...ctx: string[]) =>
      this.#send([this.#server("FAIL", "CHATHISTORY", code, ...ctx, "Cannot read history")], label);
    const max = this.s.limits.historyMax;
    const limitOf = (v: string | undefined) => {
      const n = Number(v);
      return Number.isInteger(n) && n > 0 ? Math.min(n, max) : null;
    };
    if (sub === "TARGETS") {
      const a = parseRef(p[1] ?? "");
      const b = parseRef(p[2] ?? "");
      const limit = limitOf(p[3]);
      if (a?.kind !== "ts" || b?.kind !== "ts" || limit === null) {
        return fail("INVALID_PARAMS", "TARGETS");
      }
      return this.#dispatch(
        { op: "conversations", fromTs: a.value, toTs: b.value, limit },
        { command: "CHATHISTORY", target: "", label, sub },
        bytes,
      );
    }
    if (!["LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN"].includes(sub)) {
      return fail("INVALID_PARAMS", clean(sub) || "*");
    }
    const target = p[1] ?? "";
    if (!target) return fail("INVALID_PARAMS", sub);
    const where = target[0] === "#" ? { room: target.slice(1) } : { with: target };
    const pending: Pending = { command: "CHATHISTORY", target: clean(target), label, sub };
    const range = (q: Omit<Extract<Request, { op: "history_range" }>, "op">) =>
      this.#dispatch({ op: "history_range", ...where, ...q }, pending, bytes);
    const bound = (r: Ref, side: "after" | "before") =>
      r.kind === "id"
        ? { [side]: r.value }
        : { [side === "after" ? "afterTs" : "beforeTs"]: r.value };
    if (sub === "BETWEEN") {
      const a = parseRef(p[2] ?? "");
      const b = parseRef(p[3] ?? "");
      const limit = limitOf(p[4]);
      if (!a || !b || limit === null) return fail("INVALID_PARAMS", sub);
      const forward = a.kind !== b.kind || a.value <= b.value;
      const [lo, hi] = forward ? [a, b] : [b, a];
      return range({ ...bound(lo, "after"), ...bound(hi, "before"), limit, newest: !forward });
    }
    const limit = limitOf(p[3]);
    if (limit === null) return fail("INVALID_PARAMS", sub);
    if (sub === "LATEST" && p[2] === "*") return range({ limit, newest: true });
    const ref = parseRef(p[2] ?? "");
    if (!ref) return fail("INVALID_PARAMS", sub);
    switch (sub) {
      case "LATEST":
        return range({ ...bound(ref, "after"), limit, newest: true });
      case "BEFORE":
        return range({ ...bound(ref, "before"), limit, newest: true });
      case "AFTER":
        return range({ ...bound(ref, "after"), limit, newest: false });
      default:
        // AROUND: the older half before the reference, the rest from it on.
        return range({
          ...(ref.kind === "id" ? { around: ref.value } : { aroundTs: ref.value }),
          limit,
          newest: false,
        });
    }
  }

  // --- replies to dispatched requests ------------------------------------------------------

  encodeReply(frame: ServerFrame, req: Request | null): Uint8Array | null {
    const p = req ? (req as PendingRequest)[PENDING] : undefined;
    switch (frame.type) {
      case "bye":
        if (frame.code === "slow_consumer") return null;
        return this.#bytes([this.#server("ERROR", `Closing link: ${frame.message || frame.code}`)]);
      case "ping":
        return this.#bytes([this.#server("PING", this.#serverName)]);
      case "error": {
        if (req?.op === "login" || req?.op === "register") {
          this.#authError = frame.code;
          if (req.op === "register") this.#registerMessage = frame.message;
          return null; // the registration dialogue answers (904, 464)
        }
        // A fatal error ends the connection: ERROR is the last line, whatever caused it.
        if (errorInfo(frame.code)?.fatal === "yes") {
          return this.#bytes([this.#server("ERROR", frame.message)]);
        }
        if (!p) {
          return this.#bytes(
            this.#errorLines(frame.code, frame.message, { command: "*", target: "" }),
          );
        }
        return this.#out(this.#errorLines(frame.code, frame.message, p), p);
      }
      default: {
        if (!p) return null;
        const out = this.#out(
          this.#success(frame, p),
          p,
          frame.type === "history" || frame.type === "conversations",
        );
        if (frame.type !== "relayed" && frame.type !== "ack") return out;
        if (frame.to?.toLowerCase() !== this.#me.toLowerCase()) return out;
        if (frame.type === "relayed") {
          // TAGMSG to oneself: the delivery after the echo, as for a message (below).
          if (!this.#caps.has("message-tags")) return out;
          const own = this.#bytes([
            tagmsgLine({ ...frame, from: this.#me, tags: p.clientTags ?? {} }, this.#mask),
          ]);
          return out ? concatBytes([out, own]) : own;
        }
        if (frame.duplicate || p.body === undefined) return out;
        // A message to oneself is also delivered to the connection that sent it, after its echo
        // (as IRC servers do: the echo is the acknowledgement, the delivery the message). The
        // hub leaves the sending connection out (chat/1's rule, docs/PROTOCOL.md §5).
        const msg: WireMessage = {
          id: frame.id,
          ts: frame.ts,
          from: this.#me,
          to: frame.to,
          body: p.body,
          ...(p.command === "NOTICE" ? { notice: true } : {}),
        };
        const own = this.#bytes(messageLines(msg, this.#mask, undefined, p.clientTags));
        return out ? concatBytes([out, own]) : own;
      }
    }
  }

  #out(msgs: IrcMessage[], p: Pending, single = false): Uint8Array | null {
    if (p.batch) {
      const batch = p.batch;
      return msgs.length
        ? this.#bytes(msgs.map((m) => ({ ...m, tags: { ...m.tags, batch } })))
        : null;
    }
    const out = this.#labeled(p.label, msgs, single && this.#caps.has("batch"));
    return out.length ? this.#bytes(out) : null;
  }

  #success(frame: ServerFrame, p: Pending): IrcMessage[] {
    const me = this.#me;
    switch (frame.type) {
      case "ok":
        if (frame.op === "join") {
          return this.#joinLines(frame.room!, frame.users ?? [], p.topic ?? { topic: "" });
        }
        if (frame.op === "topic") {
          // The change as every member sees it (the others through the hub's topic event).
          const params = [channelOf(frame.room!), safeText(frame.topic ?? "")];
          const tags: Record<string, string> = {};
          if (this.#caps.has("account-tag")) tags.account = me;
          return [{ tags, source: hostmask(me), command: "TOPIC", params }];
        }
        if (frame.op === "part") {
          const params = [channelOf(frame.room!)];
          if (p.reason !== undefined) params.push(p.reason);
          return [{ source: hostmask(me), command: "PART", params }];
        }
        return [];
      case "ack": {
        if (!this.#caps.has("echo-message") || p.body === undefined) return [];
        const msg: WireMessage = {
          id: frame.id,
          ts: frame.ts,
          from: me,
          body: p.body,
          ...(frame.room !== undefined ? { room: frame.room } : { to: frame.to }),
        };
        if (p.command === "NOTICE") msg.notice = true;
        return messageLines(msg, this.#mask, undefined, p.clientTags);
      }
      case "relayed":
        // echo-message covers TAGMSG too; a message-tags client is the only one that sends it.
        if (!this.#caps.has("echo-message") || !this.#caps.has("message-tags")) return [];
        return [tagmsgLine({ ...frame, from: me, tags: p.clientTags ?? {} }, this.#mask)];
      case "who": {
        const chan = channelOf(frame.room);
        if (p.command === "NAMES") return this.#namesLines(chan, frame.users);
        return [
          ...frame.users.map((u) => this.#whoReply(chan, u)),
          this.#numeric("315", chan, "End of WHO list"),
        ];
      }
      case "rooms":
        return [
          this.#numeric("321", "Channel", "Users  Name"),
          ...frame.rooms.map((r) =>
            this.#numeric("322", channelOf(r.name), String(r.online), safeText(r.topic))
          ),
          this.#numeric("323", "End of /LIST"),
        ];
      case "history":
        return this.#historyBatch(p.target, frame.messages);
      case "conversations": {
        const lines = frame.conversations.map((c) =>
          this.#server(
            "CHATHISTORY",
            "TARGETS",
            c.room !== undefined ? channelOf(c.room) : c.with!,
            new Date(c.ts).toISOString(),
          )
        );
        return this.#batch("draft/chathistory-targets", [], lines);
      }
      default:
        return [];
    }
  }

  #historyBatch(target: string, messages: WireMessage[]): IrcMessage[] {
    const lines = messages.flatMap((m) => messageLines(m, this.#mask));
    return this.#batch("chathistory", [target], lines);
  }

  /** Lines in a batch of `type` when the client has `batch`; as they are otherwise. */
  #batch(type: string, params: string[], lines: IrcMessage[]): IrcMessage[] {
    if (!this.#caps.has("batch")) return lines;
    const id = this.#batchId();
    return [
      this.#server("BATCH", "+" + id, type, ...params),
      ...lines.map((l) => ({ ...l, tags: { ...l.tags, batch: id } })),
      this.#server("BATCH", "-" + id),
    ];
  }

  ping(): void {
    this.s.notice({ type: "ping" });
  }

  /** The away message of a user online here, or undefined (forgets users gone offline). */
  #awayOf(name: string): string | undefined {
    const reg = this.#registry;
    const key = name.toLowerCase();
    const msg = reg.away.get(key);
    if (msg === undefined) return undefined;
    for (const o of reg.sessions) {
      if (o.s.closed) reg.sessions.delete(o);
      else if (o.s.user?.name.toLowerCase() === key) return msg;
    }
    reg.away.delete(key);
    return undefined;
  }
}

/**
 * `*` (any run) and `?` (one character) wildcards; the greedy scan with one backtrack point runs
 * in O(mask × text) at worst, whatever the mask (a regular expression could backtrack badly).
 */
export function globMatch(mask: string, text: string): boolean {
  let m = 0, t = 0, star = -1, mark = 0;
  while (t < text.length) {
    if (m < mask.length && (mask[m] === "?" || mask[m] === text[t])) {
      m++;
      t++;
    } else if (m < mask.length && mask[m] === "*") {
      star = m++;
      mark = t;
    } else if (star >= 0) {
      m = star + 1;
      t = ++mark;
    } else return false;
  }
  while (m < mask.length && mask[m] === "*") m++;
  return m === mask.length;
}

/** A CHATHISTORY reference: `msgid=<id>` or `timestamp=<ISO 8601>`. */
type Ref = { kind: "id"; value: number } | { kind: "ts"; value: number };

function parseRef(s: string): Ref | null {
  if (s.startsWith("msgid=")) {
    const n = Number(s.slice(6));
    return Number.isSafeInteger(n) && n >= 0 ? { kind: "id", value: n } : null;
  }
  if (s.startsWith("timestamp=")) {
    const t = Date.parse(s.slice(10));
    return Number.isFinite(t) ? { kind: "ts", value: t } : null;
  }
  return null;
}

const utf8 = new TextEncoder();

/** Bytes of the line others get for a message (without tags), CR LF included, as serialised. */
function relayedBytes(nick: string, command: string, target: string, body: string): number {
  const line = { source: hostmask(nick), command, params: [target, ircText(body)] };
  try {
    return utf8.encode(serializeIrc(line)).length;
  } catch {
    return 0; // a target no line could carry (a space in it): the service refuses it (401, 403)
  }
}

/**
 * A PART or QUIT reason as others may see it: formatting stripped, controls made spaces, at most
 * MAX_REASON_BYTES (cut at a character), trimmed; undefined when nothing is left. Cleaned here,
 * not refused: a reason must never make a PART or QUIT fail.
 */
export function reasonOf(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  let t = safeText(text.replace(FORMATTING_RE, "")).trim();
  if (utf8Length(t) > MAX_REASON_BYTES) t = t.slice(0, utf8Prefix(t, MAX_REASON_BYTES)).trim();
  return t === "" ? undefined : t;
}

/** SASL PLAIN: base64 of `authzid NUL authcid NUL password`; null when malformed. */
function decodePlain(b64: string): { user: string; password: string } | null {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  const parts = text.split("\0");
  if (parts.length !== 3) return null;
  const [authz, authc, password] = parts;
  if (!authc || (authz !== "" && authz !== authc)) return null;
  return { user: authc, password };
}
