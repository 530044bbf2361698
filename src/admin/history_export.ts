// Owns history export: stored messages as JSON lines or CSV, streamed page by page with a SHA-256.
import { createHash } from "node:crypto";
import type { MessageFilter, MessageRecord, RoomRecord, Store } from "../store/store.ts";

/** One exported message. `room` is null for a direct message, `to` null for a room message. */
export interface ExportRow {
  id: number;
  ts: number;
  /** `ts` as ISO 8601 UTC. */
  time: string;
  room: string | null;
  from: string;
  to: string | null;
  body: string;
}

/** Column order of both formats. */
export const EXPORT_COLUMNS = ["id", "ts", "time", "room", "from", "to", "body"] as const;

/** Messages read per query: large enough to be fast, small enough to keep memory flat. */
const PAGE = 1000;

/** A text cell starting with one of these is a formula to a spreadsheet (OWASP CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * Writes a record as one RFC 4180 line (CRLF); fields quoted when they need it. A text cell that
 * starts with `=`, `+`, `-`, `@`, TAB or CR gets a `'` in front and is quoted, so a spreadsheet
 * shows it as text instead of running it (OWASP's CSV injection rule); numbers are left alone.
 */
export function csvLine(fields: (string | number | null)[]): string {
  return fields.map((f) => {
    if (f === null) return "";
    if (typeof f === "string" && FORMULA_START.test(f)) return `"'${f.replaceAll('"', '""')}"`;
    const s = String(f);
    return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replaceAll('"', '""')}"` : s;
  }).join(",") + "\r\n";
}

/** Resolves sender and room names for export and search output, caching lookups. */
export class NameResolver {
  #store: Store;
  #users = new Map<number, string>();
  #rooms = new Map<number, RoomRecord | null>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Loads every user name once (cheaper than one lookup per sender). */
  async preload(): Promise<void> {
    for (const u of await this.#store.listUsers()) this.#users.set(u.id, u.name);
  }

  /** A user's name; `#<id>` for a removed user (names never start with `#`). */
  async user(id: number): Promise<string> {
    let name = this.#users.get(id);
    if (name === undefined) {
      const u = await this.#store.userById(id);
      name = u && !u.removed ? u.name : `#${id}`;
      this.#users.set(id, name);
    }
    return name;
  }

  async room(id: number): Promise<RoomRecord | null> {
    if (!this.#rooms.has(id)) this.#rooms.set(id, await this.#store.roomById(id));
    return this.#rooms.get(id)!;
  }

  /** The export row of a stored message. */
  async row(m: MessageRecord): Promise<ExportRow> {
    const room = await this.room(m.roomId);
    const from = await this.user(m.senderId);
    let roomName: string | null = room?.name ?? `#${m.roomId}`;
    let to: string | null = null;
    if (room?.kind === "dm") {
      // dm:<low id>:<high id>; the recipient is the other one (or the sender, for notes to self).
      const [, a, b] = room.name.split(":").map(Number);
      to = await this.user(m.senderId === a ? b : a);
      roomName = null;
    }
    return {
      id: m.id,
      ts: m.ts,
      time: new Date(m.ts).toISOString(),
      room: roomName,
      from,
      to,
      body: m.body,
    };
  }
}

/** What an export wrote. */
export interface ExportResult {
  messages: number;
  bytes: number;
  /** Lowercase hex SHA-256 of exactly the bytes written. */
  sha256: string;
}

/**
 * Streams the messages matching `filter`, oldest first, to `write`.
 *
 * - The set is fixed when the export starts (ids up to the highest matching one then), so
 *   messages stored meanwhile do not make it run on or change the count.
 * - Pages of PAGE messages keep memory flat; `progress(done, total)` is called after each page.
 * - jsonl: one JSON object per line with the fields of ExportRow, unaltered. csv: a header line
 *   and one RFC 4180 record per message, same columns, formula cells neutralised (csvLine).
 */
export async function exportHistory(opts: {
  store: Store;
  format: "jsonl" | "csv";
  filter: MessageFilter;
  write: (bytes: Uint8Array) => Promise<void>;
  progress?: (done: number, total: number) => void;
}): Promise<ExportResult> {
  const { store, format, filter } = opts;
  const encoder = new TextEncoder();
  const hash = createHash("sha256");
  let bytes = 0;
  const emit = async (text: string) => {
    const chunk = encoder.encode(text);
    hash.update(chunk);
    bytes += chunk.length;
    await opts.write(chunk);
  };
  const names = new NameResolver(store);
  await names.preload();
  const { count, maxId } = await store.messageRange(filter);
  if (format === "csv") await emit(csvLine([...EXPORT_COLUMNS]));
  let afterId = 0;
  let done = 0;
  opts.progress?.(0, count);
  while (done < count) {
    const page = await store.messagesPage({ ...filter, afterId, maxId, limit: PAGE });
    if (page.length === 0) break; // pruned while exporting
    let text = "";
    for (const m of page) {
      const r = await names.row(m);
      text += format === "jsonl"
        ? JSON.stringify(r) + "\n"
        : csvLine([r.id, r.ts, r.time, r.room, r.from, r.to, r.body]);
    }
    await emit(text);
    done += page.length;
    afterId = page[page.length - 1].id;
    opts.progress?.(done, count);
  }
  return { messages: done, bytes, sha256: hash.digest("hex") };
}
