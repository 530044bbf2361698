// Owns what counts as acceptable text: user names, room names, message bodies, passwords.
import { ChatError } from "../errors.ts";

const USER_RE = /^[A-Za-z][A-Za-z0-9_-]{1,31}$/;
const ROOM_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
// C0 except TAB, DEL, C1, and bidirectional embedding/override/isolate controls.
// deno-lint-ignore no-control-regex
const FORBIDDEN_RE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const utf8 = new TextEncoder();

/**
 * True when text could drive a terminal or spoof its direction: invalid Unicode, C0 controls
 * except TAB, DEL, C1, or bidirectional embedding/override/isolate controls.
 */
export function hasUnsafeText(text: string): boolean {
  return !text.isWellFormed() || FORBIDDEN_RE.test(text);
}

/** Limits that text validation needs. */
export interface TextLimits {
  maxBodyBytes: number;
}

/** Returns the name if valid; throws `invalid_username`. */
export function checkUserName(name: unknown): string {
  if (typeof name !== "string" || !USER_RE.test(name)) {
    throw new ChatError(
      "invalid_username",
      "Cannot use that name: 2-32 ASCII letters, digits, _ or -, starting with a letter",
    );
  }
  return name;
}

/** Returns the lowercase room name if valid; throws `invalid_room`. */
export function checkRoomName(name: unknown): string {
  const lower = typeof name === "string" ? name.toLowerCase() : "";
  if (!ROOM_RE.test(lower)) {
    throw new ChatError(
      "invalid_room",
      "Cannot use that room name: 1-32 of a-z, 0-9, _ or -, starting with a letter or digit",
    );
  }
  return lower;
}

/**
 * Throws `weak_password` unless a well-formed Unicode string of 8-1024 UTF-8 bytes. A lone
 * surrogate (JSON can carry one as a `\ud800` escape) would reach the hasher as U+FFFD, making
 * different passwords one.
 */
export function checkPassword(pw: unknown): string {
  if (typeof pw !== "string") {
    throw new ChatError("weak_password", "Cannot use that password: it must be a string");
  }
  if (!pw.isWellFormed()) {
    throw new ChatError(
      "weak_password",
      "Cannot use that password: it is not well-formed Unicode (a lone surrogate)",
    );
  }
  const n = utf8.encode(pw).length;
  if (n < 8 || n > 1024) {
    throw new ChatError("weak_password", "Cannot use that password: it must be 8-1024 bytes");
  }
  return pw;
}

/** Validates a message body; throws `invalid_text` or `too_large`. */
export function checkBody(body: unknown, limits: TextLimits): string {
  if (typeof body !== "string") {
    throw new ChatError("invalid_text", "Cannot send: body must be a string");
  }
  if (body.length > limits.maxBodyBytes || utf8.encode(body).length > limits.maxBodyBytes) {
    throw new ChatError(
      "too_large",
      `Cannot send: the message is longer than ${limits.maxBodyBytes} bytes`,
    );
  }
  if (!body.isWellFormed()) {
    throw new ChatError("invalid_text", "Cannot send: the message has invalid Unicode");
  }
  if (FORBIDDEN_RE.test(body)) {
    throw new ChatError(
      "invalid_text",
      "Cannot send: control characters and bidirectional overrides are not allowed",
    );
  }
  if (body.trim().length === 0) {
    throw new ChatError("invalid_text", "Cannot send: the message is empty");
  }
  return body;
}

/** Validates a client message id: 1-64 printable ASCII characters. */
export function checkCid(cid: unknown): string {
  if (typeof cid !== "string" || !/^[\x21-\x7e]{1,64}$/.test(cid)) {
    throw new ChatError("invalid_text", "Cannot send: cid must be 1-64 printable ASCII characters");
  }
  return cid;
}

/** Longest part or quit reason shown to others, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 300;

/**
 * A part or quit reason: trimmed, undefined when empty or not given. Throws `invalid_text` when
 * longer than MAX_REASON_BYTES or unsafe by the rules of bodies (it is shown to other users).
 */
export function checkReason(reason: unknown): string | undefined {
  if (reason === undefined || reason === null) return undefined;
  if (typeof reason !== "string") {
    throw new ChatError("invalid_text", "Cannot part: the reason must be a string");
  }
  if (utf8.encode(reason).length > MAX_REASON_BYTES) {
    throw new ChatError(
      "invalid_text",
      `Cannot part: the reason is longer than ${MAX_REASON_BYTES} bytes`,
    );
  }
  if (hasUnsafeText(reason)) {
    throw new ChatError(
      "invalid_text",
      "Cannot part: control characters and bidirectional overrides are not allowed",
    );
  }
  const t = reason.trim();
  return t === "" ? undefined : t;
}
