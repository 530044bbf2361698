// Owns how chat messages and presence look on IRC: PRIVMSG/JOIN/PART/QUIT lines with the IRCv3
// tags a connection negotiated, one shared encoder per tag set so fan-out still encodes once each.
import type { WireMessage } from "../protocol/frames.ts";
import { type IrcMessage, IrcSerializeError, serializeIrc } from "../protocol/irc_codec.ts";
import type { EventEncoder, HubEvent, RelayedTags } from "./hub.ts";

/** Version in RPL_YOURHOST / RPL_MYINFO. */
export const IRC_VERSION = "chat-0.1.0";

/** Tag sets of deliveries: bits of the capabilities that change a delivered line. */
export const TAG_TIME = 1; // server-time
export const TAG_MSGID = 2; // message-tags (msgid)
export const TAG_ACCOUNT = 4; // account-tag

const enc = new TextEncoder();

/**
 * UTF-8 length of `text` (what `TextEncoder` would give, lone surrogates as U+FFFD) without
 * encoding it: each delivery measured two or three strings this way, an op call each.
 */
export function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a surrogate pair: two units, four bytes
      i++;
    } else n += 2;
  }
  return n;
}

/** `nick!nick@chat`: accounts are nicks; no address is ever shown. */
export function hostmask(nick: string): string {
  return `${nick}!${nick}@chat`;
}

/** A channel for a room name. */
export function channelOf(room: string): string {
  return "#" + room;
}

// C0 (TAB too), DEL, C1 and bidi controls: never shown to a terminal from text we did not check.
// deno-lint-ignore no-control-regex
const UNSAFE_RE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Text a client sent, safe to echo in a reply: controls replaced, at most `max` characters. */
export function clean(text: string, max = 64): string {
  const t = text.toWellFormed().replace(UNSAFE_RE, "?");
  return t.length > max ? t.slice(0, max) : t;
}

/** Stored text (a topic) as one safe trailing param. */
export function safeText(text: string): string {
  return text.toWellFormed().replace(UNSAFE_RE, " ");
}

/** A message body as IRC text: a stored `/me x` is a CTCP ACTION. */
export function ircText(body: string): string {
  return body.startsWith("/me ") ? `\x01ACTION ${body.slice(4)}\x01` : body;
}

/**
 * How many UTF-16 units of `text` fit in `maxBytes` UTF-8 bytes without cutting a character:
 * `text.slice(0, n)` is the longest whole-character prefix that fits.
 */
export function utf8Prefix(text: string, maxBytes: number): number {
  let bytes = 0;
  let cut = 0;
  for (const ch of text) {
    bytes += utf8Length(ch);
    if (bytes > maxBytes) break;
    cut += ch.length;
  }
  return cut;
}

/**
 * Cuts `text` into pieces of at most `maxBytes` UTF-8 bytes, at a space when one is near the end
 * and never inside a character. A CTCP ACTION is cut into several ACTIONs.
 */
export function splitText(text: string, maxBytes: number): string[] {
  if (utf8Length(text) <= maxBytes) return [text];
  const action = text.startsWith("\x01ACTION ") && text.endsWith("\x01");
  const inner = action ? text.slice(8, -1) : text;
  const room = action ? maxBytes - 9 : maxBytes;
  const out: string[] = [];
  let rest = inner;
  while (rest.length > 0) {
    let cut = utf8Prefix(rest, room);
    if (cut < rest.length) {
      const sp = rest.lastIndexOf(" ", cut);
      if (sp > cut / 2) cut = sp + 1;
    }
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  return action ? out.map((p) => `\x01ACTION ${p}\x01`) : out;
}

/** Where a message shows on IRC: its channel, or for a DM the recipient's nick. */
export function targetOf(m: { room?: string; to?: string }): string {
  return m.room !== undefined ? channelOf(m.room) : m.to ?? "*";
}

/**
 * The PRIVMSG lines of one message (NOTICE for a notice): one line each of at most 512 bytes
 * without tags, with the tags of `mask`; `extra` tags (batch, label) go on every line. A long
 * body from a chat/1 user (up to maxBodyBytes) becomes several lines; msgid, and the sender's
 * client-only tags (`clientTags`, for message-tags clients), are on the first only, so a client
 * that deduplicates by msgid keeps every piece.
 */
export function messageLines(
  m: WireMessage,
  mask: number,
  extra?: Record<string, string>,
  clientTags?: Record<string, string>,
): IrcMessage[] {
  const source = hostmask(m.from);
  const target = targetOf(m);
  const command = m.notice ? "NOTICE" : "PRIVMSG";
  // ":" source " " command " " target " :" text CR LF <= 512 (the ":" only when the text needs
  // it, as serializeIrc writes it: a line of exactly 512 bytes is one line)
  const text = ircText(m.body);
  const colon = text === "" || text.includes(" ") || text[0] === ":" ? 1 : 0;
  const room = 512 - (1 + utf8Length(source) + command.length + 2 + utf8Length(target) + 1 + 2);
  const parts = utf8Length(text) <= room - colon ? [text] : splitText(text, room - 1);
  return parts.map((text, i) => {
    // No tags object when there is no tag (a client without capabilities): nothing to copy
    // away in `lineBytes`.
    let tags: Record<string, string> | undefined = extra ? { ...extra } : undefined;
    if (mask & TAG_MSGID && i === 0 && clientTags) Object.assign(tags ??= {}, clientTags);
    if (mask & TAG_TIME) (tags ??= {}).time = new Date(m.ts).toISOString();
    if (mask & TAG_MSGID && i === 0) (tags ??= {}).msgid = String(m.id);
    if (mask & TAG_ACCOUNT) (tags ??= {}).account = m.from;
    return { tags, source, command, params: [target, text] };
  });
}

/**
 * The TAGMSG line of relayed client-only tags, for a message-tags client (others get none):
 * the tags, then msgid (the relay's), time and account as `mask` says.
 */
export function tagmsgLine(
  t: RelayedTags,
  mask: number,
  extra?: Record<string, string>,
): IrcMessage {
  const tags: Record<string, string> = { ...extra, ...t.tags, msgid: t.msgid };
  if (mask & TAG_TIME) tags.time = new Date(t.ts).toISOString();
  if (mask & TAG_ACCOUNT) tags.account = t.from;
  return { tags, source: hostmask(t.from), command: "TAGMSG", params: [targetOf(t)] };
}

/** QUIT's text as others see it: `Quit: <reason>` when one was given (as IRC servers write it). */
export function quitText(reason: string | undefined): string {
  return reason === undefined ? "Quit" : `Quit: ${safeText(reason)}`;
}

/** Serialises several messages into one buffer. */
export function lineBytes(msgs: IrcMessage[]): Uint8Array {
  let s = "";
  for (const m of msgs) {
    s += serializeIrc(m.tags && Object.keys(m.tags).length === 0 ? { ...m, tags: undefined } : m);
  }
  return enc.encode(s);
}

function encodeFor(mask: number, ev: HubEvent): Uint8Array | null {
  if (ev.kind === "msg") return lineBytes(messageLines(ev.msg, mask, undefined, ev.tags));
  if (ev.kind === "tagmsg") return mask & TAG_MSGID ? lineBytes([tagmsgLine(ev, mask)]) : null;
  const source = hostmask(ev.user);
  const tags: Record<string, string> = {};
  if (mask & TAG_ACCOUNT) tags.account = ev.user;
  if (ev.kind === "topic") {
    if (mask & TAG_TIME) tags.time = new Date(ev.ts).toISOString();
    const params = [channelOf(ev.room), safeText(ev.topic)];
    return lineBytes([{ tags, source, command: "TOPIC", params }]);
  }
  if (ev.event === "join") {
    return lineBytes([{ tags, source, command: "JOIN", params: [channelOf(ev.room)] }]);
  }
  if (ev.quit) {
    return lineBytes([{ tags, source, command: "QUIT", params: [quitText(ev.reason)] }]);
  }
  const params = [channelOf(ev.room)];
  if (ev.reason !== undefined) params.push(safeText(ev.reason));
  return lineBytes([{ tags, source, command: "PART", params }]);
}

const ENCODERS: EventEncoder[] = [];

/**
 * The shared encoder for a tag set (a mask of TAG_*): every IRC connection with the same tags
 * shares it, so the hub encodes a delivery once per tag set in use, not once per connection.
 */
export function ircEncoder(mask: number): EventEncoder {
  return ENCODERS[mask] ??= { encodeEvent: (ev) => encodeSafely(mask, ev) };
}

/**
 * An event no IRC line can carry (a bug, or an event from a node that checks less) is not shown
 * to IRC users: it must not throw in the middle of a fan-out to everyone else.
 */
function encodeSafely(mask: number, ev: HubEvent): Uint8Array | null {
  try {
    return encodeFor(mask, ev);
  } catch (err) {
    if (err instanceof IrcSerializeError) return null;
    throw err;
  }
}
