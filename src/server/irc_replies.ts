// Owns how our errors look on IRC: one table from error-catalogue codes to a numeric or a
// standard reply (FAIL), by the IRC command that caused them.
import type { ErrorCode } from "../error_catalogue.ts";
import { errorInfo } from "../error_catalogue.ts";

/** What a reply to an error needs to know. */
export interface ErrorContext {
  /** The IRC command that failed (`PRIVMSG`, `JOIN`, …), or `*`. */
  command: string;
  /** The channel or nick it was about, as the client wrote it (cleaned), or "". */
  target: string;
  /** Our message ("Cannot …: …"). */
  message: string;
  /** The subcommand (CHATHISTORY's LATEST, BEFORE, …), when there is one. */
  sub?: string;
}

/** A reply: a numeric with its params after the client's nick, or a FAIL code with context. */
export type ErrorReply =
  | { numeric: string; params: (c: ErrorContext) => string[]; text?: string }
  | { fail: string; context?: (c: ErrorContext) => string[] };

const target = (c: ErrorContext) => [c.target || "*"];
/**
 * NAMES and WHO of a channel one cannot see, or that does not exist, list nobody: only the end
 * numeric (modern.ircdocs.horse, NAMES and WHO).
 */
const END_OF_NAMES: ErrorReply = { numeric: "366", params: target, text: "End of /NAMES list" };
const END_OF_WHO: ErrorReply = { numeric: "315", params: target, text: "End of WHO list" };

/**
 * Every catalogue code an IRC client can meet, by command where it differs. Codes not listed
 * are a FAIL with the code upper-cased (standard-replies), or a NOTICE for clients without it.
 * Numerics are those of modern.ircdocs.horse; their last param is our message.
 */
const TABLE: Partial<Record<ErrorCode, ErrorReply | Record<string, ErrorReply>>> = {
  not_member: {
    PRIVMSG: { numeric: "404", params: target }, // ERR_CANNOTSENDTOCHAN
    TAGMSG: { numeric: "404", params: target },
    NAMES: END_OF_NAMES,
    WHO: END_OF_WHO,
    "*": { numeric: "442", params: target }, // ERR_NOTONCHANNEL
  },
  no_such_room: {
    NAMES: END_OF_NAMES,
    WHO: END_OF_WHO,
    "*": { numeric: "403", params: target }, // ERR_NOSUCHCHANNEL
  },
  invalid_room: {
    NAMES: END_OF_NAMES,
    WHO: END_OF_WHO,
    "*": { numeric: "403", params: target },
  },
  no_such_user: { numeric: "401", params: target }, // ERR_NOSUCHNICK
  invalid_username: {
    NICK: { numeric: "432", params: target }, // ERR_ERRONEUSNICKNAME
    "*": { numeric: "401", params: target },
  },
  not_authenticated: { numeric: "451", params: () => [] }, // ERR_NOTREGISTERED
  already_authenticated: { numeric: "462", params: () => [] }, // ERR_ALREADYREGISTERED
  forbidden: {
    TOPIC: { numeric: "482", params: target }, // ERR_CHANOPRIVSNEEDED: the policy refused
    "*": { numeric: "481", params: () => [] }, // ERR_NOPRIVILEGES
  },
  auth_failed: {
    AUTHENTICATE: { numeric: "904", params: () => [] }, // ERR_SASLFAIL
    "*": { numeric: "464", params: () => [] }, // ERR_PASSWDMISMATCH
  },
  throttled: {
    AUTHENTICATE: { numeric: "904", params: () => [] },
    "*": { fail: "TEMPORARILY_UNAVAILABLE" },
  },
  busy: {
    AUTHENTICATE: { numeric: "904", params: () => [] },
    "*": { fail: "TEMPORARILY_UNAVAILABLE" },
  },
  cannot_part: { fail: "CANNOT_PART", context: target },
  invalid_text: { fail: "INVALID_TEXT", context: target },
  too_large: { fail: "MESSAGE_TOO_LONG", context: target },
  rate_limited: { fail: "RATE_LIMITED", context: target },
  storage_failed: { fail: "TEMPORARILY_UNAVAILABLE", context: target },
  shutting_down: { fail: "SHUTTING_DOWN" },
  bad_frame: {
    CHATHISTORY: { fail: "INVALID_PARAMS", context: (c) => [c.sub ?? "*"] },
    "*": { numeric: "461", params: (c) => [c.command] }, // ERR_NEEDMOREPARAMS
  },
};

/** CHATHISTORY reports a target it cannot read as INVALID_TARGET <subcommand> <target>. */
const HISTORY_TARGET_CODES = new Set([
  "not_member",
  "no_such_room",
  "invalid_room",
  "no_such_user",
]);

/**
 * The reply for error `code` to `command`. Unknown codes (a newer peer's) and codes without an
 * entry become `FAIL <command> <CODE>`.
 */
export function errorReply(code: string, command: string): ErrorReply {
  if (command === "CHATHISTORY" && HISTORY_TARGET_CODES.has(code)) {
    return { fail: "INVALID_TARGET", context: (c) => [c.sub ?? "*", c.target || "*"] };
  }
  const entry = errorInfo(code) ? TABLE[code as ErrorCode] : undefined;
  if (!entry) return { fail: code.toUpperCase() };
  if ("numeric" in entry || "fail" in entry) return entry as ErrorReply;
  const byCommand = entry as Record<string, ErrorReply>;
  return byCommand[command] ?? byCommand["*"] ?? { fail: code.toUpperCase() };
}
