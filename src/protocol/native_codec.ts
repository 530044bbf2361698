// Owns the chat/1 codec: JSON-lines bytes <-> frames, with every field checked against one table.
import { ChatError } from "../errors.ts";
import type { ClientFrame, ClientFrameType, ServerFrame } from "./frames.ts";

type FieldKind = "string" | "int" | "bool" | "resume";
interface FieldSpec {
  kind: FieldKind;
  required: boolean;
}

const S = (required = true): FieldSpec => ({ kind: "string", required });
const I = (required = true): FieldSpec => ({ kind: "int", required });
const R: FieldSpec = { kind: "resume", required: false };
const B = (required = true): FieldSpec => ({ kind: "bool", required });

/** The shape of every client frame: one table, checked in one place. */
export const CLIENT_FRAME_FIELDS: Readonly<Record<ClientFrameType, Record<string, FieldSpec>>> = {
  hello: { version: I(), client: S(false) },
  register: { user: S(), password: S(), invite: S(false), device: S(false), resume: R },
  login: { user: S(), password: S(false), token: S(false), device: S(false), resume: R },
  join: { room: S(), since: I(false), private: B(false) },
  part: { room: S(), reason: S(false) },
  rooms: { after: S(false) },
  invite: { room: S(), user: S() },
  kick: { room: S(), user: S() },
  topic: { room: S(), topic: S() },
  who: { room: S() },
  send: { cid: S(), body: S(), room: S(false), to: S(false), notice: B(false) },
  history: { room: S(false), with: S(false), limit: I(false), before: I(false) },
  passwd: { old: S(), new: S() },
  read: { room: S(false), with: S(false), id: I() },
  search: { text: S(), room: S(false), limit: I(false) },
  logout: {},
  ping: {},
  pong: {},
  quit: {},
};

/** The table as arrays, so a decode walks its fields without building `Object.entries` each time. */
const FIELD_LISTS: Readonly<Record<string, readonly (readonly [string, FieldSpec])[]>> = Object
  .fromEntries(
    Object.entries(CLIENT_FRAME_FIELDS).map(([type, spec]) => [type, Object.entries(spec)]),
  );

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

function badFrame(detail: string, ref?: string): ChatError {
  const err = new ChatError("bad_frame", `Cannot read frame: ${detail}`);
  err.ref = ref;
  return err;
}

function checkResume(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  // An id that is not a non-negative integer is ignored, not refused (PROTOCOL.md §6).
  const isId = (id: unknown) => Number.isSafeInteger(id) && (id as number) >= 0;
  if (r.dm !== undefined && !isId(r.dm)) delete r.dm;
  if (r.rooms !== undefined && r.rooms !== null) {
    if (typeof r.rooms !== "object" || Array.isArray(r.rooms)) return false;
    // No count limit: a user may be in many rooms, and refusing the login would lock their
    // client out of resuming; the line limit (`maxLineBytes`) bounds the entries, and the server
    // only looks up the rooms the user is in.
    const rooms = r.rooms as Record<string, unknown>;
    for (const [name, id] of Object.entries(rooms)) if (!isId(id)) delete rooms[name];
  } else delete r.rooms;
  return true;
}

/** Decodes bytes of one line (no newline) to text; throws `invalid_utf8`. */
export function decodeUtf8Line(line: Uint8Array): string {
  try {
    return utf8Decoder.decode(line);
  } catch {
    throw new ChatError("invalid_utf8", "Cannot read frame: the line is not valid UTF-8");
  }
}

/**
 * Decodes one line into a client frame. Throws ChatError `invalid_utf8`, `bad_frame` or
 * `unknown_type` (with `ref` attached when the frame had one).
 */
export function decodeClientFrame(line: Uint8Array): ClientFrame {
  const text = decodeUtf8Line(line);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badFrame("not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badFrame("not a JSON object");
  }
  const obj = value as Record<string, unknown>;
  let ref: string | undefined;
  if (obj.ref !== undefined) {
    if (typeof obj.ref !== "string" || obj.ref.length < 1 || obj.ref.length > 64) {
      throw badFrame("ref must be a string of 1-64 characters");
    }
    ref = obj.ref;
  }
  if (typeof obj.type !== "string") throw badFrame("missing type", ref);
  const spec = Object.hasOwn(FIELD_LISTS, obj.type) ? FIELD_LISTS[obj.type] : undefined;
  if (!spec) {
    const err = new ChatError(
      "unknown_type",
      `Cannot handle frame: unknown type ${JSON.stringify(obj.type.slice(0, 32))}`,
    );
    err.ref = ref;
    throw err;
  }
  for (const [field, f] of spec) {
    const v = obj[field];
    if (v === undefined || v === null) {
      if (f.required) throw badFrame(`${obj.type} needs ${field}`, ref);
      if (v === null) delete obj[field];
      continue;
    }
    const ok = f.kind === "string"
      ? typeof v === "string"
      : f.kind === "int"
      ? Number.isSafeInteger(v)
      : f.kind === "bool"
      ? typeof v === "boolean"
      : checkResume(v);
    if (!ok) throw badFrame(`${obj.type}.${field} has the wrong type`, ref);
  }
  // Unknown fields are ignored (§1), and removed: what reaches the command table is only what
  // the table above checked (a request's other fields are other protocols' to set, e.g. IRC's
  // client-only tags on a send).
  const known = CLIENT_FRAME_FIELDS[obj.type as ClientFrameType];
  for (const key in obj) {
    if (key !== "type" && key !== "ref" && !Object.hasOwn(known, key)) delete obj[key];
  }
  return obj as unknown as ClientFrame;
}

/** Encodes a server frame as one line of bytes (with the newline). */
export function encodeServerFrame(frame: ServerFrame): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(frame) + "\n");
}

/** Client side: encodes a client frame as one line of bytes. */
export function encodeClientFrame(frame: ClientFrame): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(frame) + "\n");
}

/** Client side: decodes one server line. Throws `bad_frame` on anything that is not a frame. */
export function decodeServerFrame(line: Uint8Array | string): ServerFrame {
  const text = typeof line === "string" ? line : decodeUtf8Line(line);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badFrame("server sent something that is not JSON");
  }
  if (
    typeof value !== "object" || value === null ||
    typeof (value as { type?: unknown }).type !== "string"
  ) {
    throw badFrame("server sent a frame without type");
  }
  return value as ServerFrame;
}
