// Owns the non-interactive client modes for scripts and bots: send one message, send stdin's
// lines, or listen and print each event (plain text or one JSON object a line).
import { ChatError } from "../errors.ts";
import type { WireMessage } from "../protocol/frames.ts";
import { LineSplitter } from "../protocol/line_decoder.ts";
import type { Ack, ChatConnection, ConnectionEvent, SendTarget } from "./connection.ts";
import { sanitize } from "./render.ts";

/** Where script output goes. */
export interface ScriptOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}

// Characters JSON.stringify leaves raw that could still act on a terminal showing the output.
const JSON_UNSAFE_RE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text of `value` on one line, with terminal-active characters as \u escapes. */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(
    JSON_UNSAFE_RE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  ) + "\n";
}

/** One event as a plain, sanitised line: `2025-01-02T10:00:00.000Z #general <bob> hi`. */
export function plainEvent(ev: ConnectionEvent): string | null {
  if (ev.type === "msg") return plainMessage(ev.msg);
  if (ev.type === "presence") {
    return sanitize(
      `${new Date().toISOString()} #${ev.room} -!- ${ev.user} ${
        ev.event === "join" ? "joined" : "left"
      }`,
    ) + "\n";
  }
  return null;
}

function plainMessage(m: WireMessage): string {
  const when = new Date(m.ts).toISOString();
  const where = m.room !== undefined ? `#${m.room}` : `dm`;
  const to = m.to !== undefined ? ` (to ${m.to})` : "";
  return sanitize(`${when} ${where} <${m.from}>${to} ${m.body}`) + "\n";
}

/** The JSON object printed for an event, or null for events scripts need not see. */
export function jsonEvent(ev: ConnectionEvent): unknown | null {
  if (ev.type === "msg") return { type: "msg", ...ev.msg, ...(ev.replay ? { replay: true } : {}) };
  if (ev.type === "presence") {
    return { type: "presence", room: ev.room, user: ev.user, event: ev.event };
  }
  return null;
}

/** A one-line account of connection trouble for stderr (scripts keep stdout for data). */
export function statusLine(ev: ConnectionEvent): string | null {
  switch (ev.type) {
    case "down":
      return `chat: disconnected: ${sanitize(ev.message)}\n`;
    case "retry":
      return `chat: reconnecting in ${(ev.delayMs / 1000).toFixed(1)} s (attempt ${ev.attempt})\n`;
    case "up":
      return ev.reconnect
        ? `chat: reconnected${ev.server ? ` to ${sanitize(ev.server)}` : ""}\n`
        : null;
    case "notice":
      return `chat: server: ${sanitize(ev.message)} (${sanitize(ev.code)})\n`;
    default:
      return null;
  }
}

/** Sends one message and waits for the ack; `--json` prints the ack. */
export async function sendOne(
  conn: ChatConnection,
  target: SendTarget,
  text: string,
  out: ScriptOutput,
  json: boolean,
): Promise<void> {
  const ack = await conn.send(target, text);
  if (json) out.stdout(jsonLine(ackObject(ack)));
}

function ackObject(a: Ack): unknown {
  return {
    type: "ack",
    id: a.id,
    ts: a.ts,
    ...(a.room !== undefined ? { room: a.room } : { to: a.to }),
    ...(a.duplicate ? { duplicate: true } : {}),
  };
}

/**
 * Sends each non-empty line of `lines` as a message, in order, keeping at most `window` in
 * flight. Returns the number that failed (each reported on stderr with its number and start).
 */
export async function sendLines(
  conn: ChatConnection,
  target: SendTarget,
  lines: AsyncIterable<string>,
  out: ScriptOutput,
  json: boolean,
  window = 256,
): Promise<number> {
  let failed = 0;
  let n = 0;
  const inflight = new Set<Promise<void>>();
  for await (const line of lines) {
    n++;
    if (line.trim() === "") continue;
    const lineNo = n;
    const p: Promise<void> = conn.send(target, line).then(
      (ack) => {
        if (json) out.stdout(jsonLine(ackObject(ack)));
      },
      (err) => {
        failed++;
        const excerpt = line.length > 24 ? `${line.slice(0, 24)}…` : line;
        out.stderr(
          `chat: message ${lineNo} (${sanitize(JSON.stringify(excerpt))}): ${errorMessage(err)}\n`,
        );
      },
    ).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= window) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return failed;
}

/** Lines of a byte stream (stdin), capped in length; a longer line is an error. */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
  maxLineBytes = 1024 * 1024,
): AsyncGenerator<string> {
  const splitter = new LineSplitter(maxLineBytes);
  const dec = new TextDecoder();
  const reader = stream.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const line of splitter.push(value)) yield dec.decode(line);
    }
    // A last line without a newline still counts.
    for (const line of splitter.push(new Uint8Array([0x0a]))) yield dec.decode(line);
  } finally {
    reader.releaseLock();
  }
}

/**
 * Prints events until the session ends or `stop` resolves. Rejects with the reason when the
 * session ended by itself (kicked, certificate changed, gave up reconnecting).
 */
export async function listen(
  conn: ChatConnection,
  events: { subscribe(fn: (ev: ConnectionEvent) => void): void },
  out: ScriptOutput,
  opts: { json: boolean; filter?: (ev: ConnectionEvent) => boolean; stop: Promise<void> },
): Promise<void> {
  events.subscribe((ev) => {
    const status = statusLine(ev);
    if (status) out.stderr(status);
    if (opts.filter && !opts.filter(ev)) return;
    if (opts.json) {
      const obj = jsonEvent(ev);
      if (obj) out.stdout(jsonLine(obj));
    } else {
      const line = plainEvent(ev);
      if (line) out.stdout(line);
    }
  });
  const ended = await Promise.race([conn.closed, opts.stop.then(() => "stopped" as const)]);
  if (ended !== "stopped" && ended !== null) throw ended;
}

function errorMessage(err: unknown): string {
  return err instanceof ChatError ? sanitize(err.message) : sanitize(String(err));
}
