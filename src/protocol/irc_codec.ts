// Owns the IRC message format: RFC 1459 lines (prefix, command, params with a trailing one) with
// IRCv3 message tags, parsed from a client's bytes and serialised for the server's lines. Pure.

/** Bytes a client's tag section may take, `@` and the space after it included (IRCv3: 4094 + 2). */
export const IRC_MAX_CLIENT_TAG_BYTES = 4096;
/** Bytes of the rest of a line, CR LF included (RFC 1459 §2.3). */
export const IRC_MAX_BODY_BYTES = 512;
/** The longest line a client may send, CR LF included: the transport's cap. */
export const IRC_MAX_LINE_BYTES = IRC_MAX_CLIENT_TAG_BYTES + IRC_MAX_BODY_BYTES;
/** At most this many params after the command (RFC 2812 §2.3: 15). */
export const IRC_MAX_PARAMS = 15;

/** One IRC message. `tags` values are unescaped; a tag without a value has "". */
export interface IrcMessage {
  tags?: Record<string, string>;
  /** The prefix without its `:` (`nick!user@host` or a server name). */
  source?: string;
  /** Upper-cased for words; numerics are three digits. */
  command: string;
  params: string[];
}

/** Why a line is not a message. */
export type IrcParseErrorCode =
  | "input_too_long" // over 512 bytes without tags (ERR_INPUTTOOLONG)
  | "tags_too_long" // tag section over 4096 bytes
  | "invalid_utf8" // not UTF-8 (the server is UTF8ONLY)
  | "bad_char" // NUL or CR inside the line
  | "no_command" // empty, only tags or a prefix, or a malformed command
  | "bad_tags"; // a malformed tag section (empty key, bad characters in a key)

export class IrcParseError extends Error {
  readonly code: IrcParseErrorCode;
  constructor(code: IrcParseErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = "IrcParseError";
  }
}

const SPACE = 0x20;
const AT = 0x40;
const decoder = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();
const TAG_KEY_RE = /^\+?(?:[A-Za-z0-9.-]+\/)?[A-Za-z0-9-]+$/;
const COMMAND_RE = /^(?:[A-Za-z]+|[0-9]{3})$/;
/**
 * A command a client may send: a word (letters, then letters, digits or `_`: unknown commands
 * such as `NONEXISTENT_COMMAND` must parse, to be answered 421 as modern.ircdocs.horse says) or
 * a numeric. The server writes only COMMAND_RE.
 */
const INPUT_COMMAND_RE = /^(?:[A-Za-z][A-Za-z0-9_]{0,63}|[0-9]{3})$/;

/**
 * Parses one line (without its CR LF) as a client sent it. Lengths are checked on the bytes:
 * the tag section (from `@` through the space after it) at most 4096 bytes, the rest at most
 * 510 (512 with the CR LF). Throws IrcParseError.
 */
export function parseIrcLine(line: Uint8Array): IrcMessage {
  let bodyStart = 0;
  if (line[0] === AT) {
    const sp = line.indexOf(SPACE);
    const tagBytes = sp === -1 ? line.length : sp + 1;
    if (tagBytes > IRC_MAX_CLIENT_TAG_BYTES) {
      throw new IrcParseError("tags_too_long", "Input line has too many tag bytes");
    }
    bodyStart = tagBytes;
  }
  // Spaces between the tags and the rest count as separators, not as the body's.
  while (line[bodyStart] === SPACE) bodyStart++;
  if (line.length - bodyStart > IRC_MAX_BODY_BYTES - 2) {
    throw new IrcParseError("input_too_long", "Input line was too long");
  }
  let text: string;
  try {
    text = decoder.decode(line);
  } catch {
    throw new IrcParseError("invalid_utf8", "Input line is not valid UTF-8");
  }
  return parseIrcText(text);
}

/** Parses one line of text (no length limits: those are on bytes, see parseIrcLine). */
export function parseIrcText(text: string): IrcMessage {
  if (text.includes("\0") || text.includes("\r") || text.includes("\n")) {
    throw new IrcParseError("bad_char", "Input line has a NUL, CR or LF inside it");
  }
  let i = 0;
  const n = text.length;
  let tags: Record<string, string> | undefined;
  if (text[0] === "@") {
    const sp = text.indexOf(" ");
    const raw = text.slice(1, sp === -1 ? n : sp);
    tags = parseTags(raw);
    i = sp === -1 ? n : sp;
  }
  while (text[i] === " ") i++;
  let source: string | undefined;
  if (text[i] === ":") {
    const sp = text.indexOf(" ", i);
    source = text.slice(i + 1, sp === -1 ? n : sp);
    i = sp === -1 ? n : sp;
    while (text[i] === " ") i++;
  }
  let sp = text.indexOf(" ", i);
  if (sp === -1) sp = n;
  const command = text.slice(i, sp);
  if (!INPUT_COMMAND_RE.test(command)) {
    throw new IrcParseError("no_command", "Input line has no command");
  }
  i = sp;
  const params: string[] = [];
  while (i < n) {
    while (text[i] === " ") i++;
    if (i >= n) break;
    if (text[i] === ":" || params.length === IRC_MAX_PARAMS - 1) {
      // The trailing param: the rest of the line, spaces and all (the 15th param is trailing
      // whether or not it has a colon, RFC 1459 §2.3.1).
      params.push(text.slice(text[i] === ":" ? i + 1 : i));
      break;
    }
    let end = text.indexOf(" ", i);
    if (end === -1) end = n;
    params.push(text.slice(i, end));
    i = end;
  }
  const msg: IrcMessage = { command: command.toUpperCase(), params };
  if (tags) msg.tags = tags;
  if (source !== undefined) msg.source = source;
  return msg;
}

function parseTags(raw: string): Record<string, string> {
  const tags: Record<string, string> = {}; // keys match TAG_KEY_RE: never `__proto__`
  if (raw === "") throw new IrcParseError("bad_tags", "Input line has an empty tag section");
  for (const item of raw.split(";")) {
    if (item === "") continue; // `a=1;;b` and a trailing `;` are tolerated
    const eq = item.indexOf("=");
    const key = eq === -1 ? item : item.slice(0, eq);
    if (!TAG_KEY_RE.test(key)) {
      throw new IrcParseError("bad_tags", "Input line has a malformed tag name");
    }
    // The last value of a repeated key wins (IRCv3 message-tags).
    tags[key] = eq === -1 ? "" : unescapeTagValue(item.slice(eq + 1));
  }
  return tags;
}

const UNESCAPES: Record<string, string> = { ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" };

/** IRCv3 tag value unescaping: `\:` `\s` `\\` `\r` `\n`; `\x` is `x`; a lone trailing `\` drops. */
export function unescapeTagValue(v: string): string {
  if (!v.includes("\\")) return v;
  let out = "";
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    i++;
    if (i >= v.length) break;
    out += UNESCAPES[v[i]] ?? v[i];
  }
  return out;
}

/** IRCv3 tag value escaping (the inverse of unescapeTagValue). */
export function escapeTagValue(v: string): string {
  return v.replace(
    /[; \\\r\n]/g,
    (c) => c === ";" ? "\\:" : c === " " ? "\\s" : c === "\\" ? "\\\\" : c === "\r" ? "\\r" : "\\n",
  );
}

// C0 (CR, LF and TAB too), DEL, C1 and bidi controls: a tag value with one is not relayed.
// deno-lint-ignore no-control-regex
const UNSAFE_TAG_VALUE_RE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** Bytes of tag data a client may send (IRCv3 message-tags), and so the most we relay. */
export const IRC_MAX_CLIENT_TAG_DATA = IRC_MAX_CLIENT_TAG_BYTES - 2;

/**
 * The client-only tags (`+name`, IRCv3 message-tags) of a client's message that may be relayed
 * to others; undefined when none. Other tags are the server's to set (a client's `msgid` or
 * `time` is dropped, as the spec says). A value with a control character (an escaped CR or LF,
 * a terminal escape) or invalid Unicode is dropped too: clients show some tags (`+draft/react`)
 * and no standard client-only tag needs one. Takes `unknown` because it is also the check of
 * what reaches the service from elsewhere (a chat/1 frame's unknown fields are passed on): a
 * non-object, a malformed name, a value that is not a string are dropped, and tags past 4094
 * bytes of tag data in all are left out, so the relayed section stays within the spec's bound.
 */
export function relayableTags(tags: unknown): Record<string, string> | undefined {
  if (typeof tags !== "object" || tags === null || Array.isArray(tags)) return undefined;
  let out: Record<string, string> | undefined;
  let bytes = 0;
  for (const [k, v] of Object.entries(tags)) {
    if (k[0] !== "+" || !TAG_KEY_RE.test(k) || typeof v !== "string") continue;
    if (!v.isWellFormed() || UNSAFE_TAG_VALUE_RE.test(v)) continue;
    const size = utf8.encode(v === "" ? k : `${k}=${escapeTagValue(v)}`).length + 1;
    if (bytes + size > IRC_MAX_CLIENT_TAG_DATA + 1) continue;
    bytes += size;
    (out ??= {})[k] = v;
  }
  return out;
}

/** Thrown when the server would write something a client could misread (a bug, not input). */
export class IrcSerializeError extends Error {
  override name = "IrcSerializeError";
}

const UNSAFE_PARAM_RE = /[\0\r\n]/;

/**
 * One line with its CR LF. The last param is written as trailing (`:`) when it must be (empty,
 * a space, or a leading `:`) or when `trailing` is set; a middle param that could not be one
 * (empty, a space, a leading `:`) and any NUL, CR or LF throw IrcSerializeError.
 */
export function serializeIrc(msg: IrcMessage, opts: { trailing?: boolean } = {}): string {
  let out = "";
  if (msg.tags) {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(msg.tags)) {
      if (!TAG_KEY_RE.test(k)) throw new IrcSerializeError(`bad tag name ${JSON.stringify(k)}`);
      parts.push(v === "" ? k : `${k}=${escapeTagValue(v)}`);
    }
    if (parts.length) out += "@" + parts.join(";") + " ";
  }
  if (msg.source !== undefined) {
    if (msg.source === "" || /[\s\0]/.test(msg.source)) {
      throw new IrcSerializeError(`bad source ${JSON.stringify(msg.source)}`);
    }
    out += ":" + msg.source + " ";
  }
  if (!COMMAND_RE.test(msg.command)) {
    throw new IrcSerializeError(`bad command ${JSON.stringify(msg.command)}`);
  }
  out += msg.command;
  const last = msg.params.length - 1;
  for (let i = 0; i <= last; i++) {
    const p = msg.params[i];
    if (UNSAFE_PARAM_RE.test(p)) throw new IrcSerializeError("a param has NUL, CR or LF");
    if (i === last && (opts.trailing || p === "" || p.includes(" ") || p[0] === ":")) {
      out += " :" + p;
    } else {
      if (p === "" || p.includes(" ") || p[0] === ":") {
        throw new IrcSerializeError(`bad middle param ${JSON.stringify(p)}`);
      }
      out += " " + p;
    }
  }
  return out + "\r\n";
}
