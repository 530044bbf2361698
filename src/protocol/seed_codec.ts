// Owns the seed text protocol's lines (docs/PROTOCOL.md §10): auth words, chat lines and notices.
import { ChatError } from "../errors.ts";

/** The words of the seed's login dialogue, each a whole line. */
export const SEED_PROMPTS = [
  "AUTH_REQUIRED",
  "ENTER_USERNAME",
  "ENTER_PASSWORD",
  "AUTH_SUCCESS",
  "AUTH_FAILED",
] as const;

export type SeedPrompt = typeof SEED_PROMPTS[number];

/** One line the server sends to a seed client. */
export type SeedServerLine =
  | { kind: "prompt"; prompt: SeedPrompt }
  /** A message in the seed room: `alice: hi`. */
  | { kind: "chat"; from: string; body: string }
  /** A message in another room the account belongs to: `[#ops] alice: hi`. */
  | { kind: "room"; room: string; from: string; body: string }
  /** A direct message: `[DM] alice -> bob: hi`. */
  | { kind: "dm"; from: string; to: string; body: string }
  /** Who is online in the seed room: `[USERS_LIST] alice,bob`. */
  | { kind: "users"; users: string[] }
  | { kind: "joined"; user: string }
  | { kind: "left"; user: string }
  /** A request failed: `[ERROR] rate_limited: Cannot send: …`. */
  | { kind: "error"; code: string; message: string }
  /** The server is about to close: `[SERVER] shutdown: The server is shutting down`. */
  | { kind: "server"; code: string; message: string };

/** How a seed client starts its login: `LOGIN` or `REGISTER`. */
export type SeedAuthMode = "login" | "register";

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();
const PROMPT_SET: ReadonlySet<string> = new Set(SEED_PROMPTS);

/** Decodes one client line (without its newline); throws non-fatal `invalid_utf8`. */
export function decodeSeedText(line: Uint8Array): string {
  try {
    return utf8Decoder.decode(line);
  } catch {
    throw new ChatError("invalid_utf8", "Cannot read line: it is not valid UTF-8");
  }
}

/** `LOGIN` / `REGISTER` in any case, surrounding white space ignored; null for anything else. */
export function parseAuthChoice(text: string): SeedAuthMode | null {
  const word = text.trim().toUpperCase();
  return word === "LOGIN" ? "login" : word === "REGISTER" ? "register" : null;
}

/** A line break inside a field would forge a second line; the text rules already forbid them. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]/g, " ");
}

/** The text of one server line, without its newline. */
export function formatSeedLine(l: SeedServerLine): string {
  switch (l.kind) {
    case "prompt":
      return l.prompt;
    case "chat":
      return `${oneLine(l.from)}: ${oneLine(l.body)}`;
    case "room":
      return `[#${oneLine(l.room)}] ${oneLine(l.from)}: ${oneLine(l.body)}`;
    case "dm":
      return `[DM] ${oneLine(l.from)} -> ${oneLine(l.to)}: ${oneLine(l.body)}`;
    case "users":
      return `[USERS_LIST] ${oneLine(l.users.join(","))}`;
    case "joined":
      return `[JOINED] ${oneLine(l.user)}`;
    case "left":
      return `[LEFT] ${oneLine(l.user)}`;
    case "error":
      return `[ERROR] ${oneLine(l.code)}: ${oneLine(l.message)}`;
    case "server":
      return `[SERVER] ${oneLine(l.code)}: ${oneLine(l.message)}`;
  }
}

/** Encodes server lines as UTF-8 bytes, each ending with `\n`. */
export function encodeSeedLines(...lines: SeedServerLine[]): Uint8Array {
  return utf8Encoder.encode(lines.map((l) => formatSeedLine(l) + "\n").join(""));
}

function badLine(text: string): ChatError {
  return new ChatError(
    "bad_frame",
    `Cannot read server line: ${JSON.stringify(text.slice(0, 40))} is not a seed line`,
  );
}

/** Splits `code: message`; the code has no spaces. */
function codeAndMessage(rest: string, text: string): { code: string; message: string } {
  const m = /^([^\s:]+): (.*)$/s.exec(rest);
  if (!m) throw badLine(text);
  return { code: m[1], message: m[2] };
}

/** Splits `from: body`; names never contain `:` or spaces (PROTOCOL.md §8). */
function fromAndBody(rest: string, text: string): { from: string; body: string } {
  const m = /^([^\s:,\[\]]+): (.*)$/s.exec(rest);
  if (!m) throw badLine(text);
  return { from: m[1], body: m[2] };
}

/**
 * Client side: parses one server line (without its newline). The inverse of `formatSeedLine`;
 * throws `bad_frame` for a line that has none of its shapes.
 */
export function parseSeedLine(text: string): SeedServerLine {
  if (PROMPT_SET.has(text)) return { kind: "prompt", prompt: text as SeedPrompt };
  const tag = /^\[([^\]\s]+)\] (.*)$/s.exec(text);
  if (!tag) return { kind: "chat", ...fromAndBody(text, text) };
  const [, name, rest] = tag;
  switch (name) {
    case "USERS_LIST":
      return { kind: "users", users: rest === "" ? [] : rest.split(",") };
    case "JOINED":
      return { kind: "joined", user: rest };
    case "LEFT":
      return { kind: "left", user: rest };
    case "ERROR":
      return { kind: "error", ...codeAndMessage(rest, text) };
    case "SERVER":
      return { kind: "server", ...codeAndMessage(rest, text) };
    case "DM": {
      const m = /^([^\s:]+) -> ([^\s:]+): (.*)$/s.exec(rest);
      if (!m) throw badLine(text);
      return { kind: "dm", from: m[1], to: m[2], body: m[3] };
    }
  }
  if (name.startsWith("#") && name.length > 1) {
    return { kind: "room", room: name.slice(1), ...fromAndBody(rest, text) };
  }
  throw badLine(text);
}
