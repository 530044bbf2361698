// Owns `chat admin history …`: export, full-text search and pruning of stored messages.
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { ChatError } from "../../errors.ts";
import { checkRoomName } from "../../protocol/text_rules.ts";
import type { MessageFilter, Store } from "../../store/store.ts";
import { fileExists } from "../cert_files.ts";
import { parseWhen } from "../dates.ts";
import { fmtBytes, fmtTime, table, truncate } from "../format.ts";
import { exportHistory, type ExportRow, NameResolver } from "../history_export.ts";
import { ProgressBar } from "../progress.ts";
import { AdminConnection, type AdminEnv, confirm, emit } from "./context.ts";

/** Exports of at least this many messages show a progress bar (on a terminal). */
const PROGRESS_MIN_MESSAGES = 1000;

async function roomFilter(store: Store, room: string | undefined, action: string) {
  if (room === undefined) return undefined;
  const name = checkRoomName(room);
  const r = await store.roomByName(name);
  if (!r || r.kind !== "room") {
    throw new ChatError("no_such_room", `Cannot ${action}: no room ${name}`);
  }
  return r.id;
}

function parseLimit(text: string | undefined, fallback: number, action: string): number {
  if (text === undefined) return fallback;
  const n = /^\d{1,6}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1)) {
    throw new ChatError("bad_request", `Cannot ${action}: --limit must be a positive integer`);
  }
  return n;
}

export async function historyExport(
  env: AdminEnv,
  opts: {
    room?: string;
    since?: string;
    until?: string;
    format: string;
    output?: string;
    force: boolean;
    /** gzip the output (`--gzip`); size and SHA-256 are then of the gzip bytes written. */
    gzip?: boolean;
  },
): Promise<void> {
  const action = "export history";
  if (opts.format !== "jsonl" && opts.format !== "csv") {
    throw new ChatError("bad_request", `Cannot ${action}: --format must be jsonl or csv`);
  }
  const format = opts.format;
  const now = env.clock();
  const filter: MessageFilter = {
    sinceTs: opts.since === undefined ? undefined : parseWhen(opts.since, now, "--since"),
    untilTs: opts.until === undefined ? undefined : parseWhen(opts.until, now, "--until"),
  };
  if (opts.output !== undefined && !opts.force && (await fileExists(opts.output))) {
    throw new ChatError(
      "file_exists",
      `Cannot ${action}: ${opts.output} exists; pass --force to replace it`,
    );
  }
  await using conn = await AdminConnection.open(env);
  const store = await conn.store();
  filter.roomId = await roomFilter(store, opts.room, action);

  const total = (await store.messageRange(filter)).count;
  const bar = env.io.stderrIsTerminal && total >= PROGRESS_MIN_MESSAGES
    ? new ProgressBar({ write: (s) => env.io.err(s), label: "Exporting", total })
    : null;

  let file: Deno.FsFile | null = null;
  let tmp: string | null = null;
  if (opts.output !== undefined) {
    // Written next to the target and renamed at the end: a reader never sees half an export,
    // and a failed export leaves nothing behind. Mode 0600: history is private.
    tmp = join(dirname(opts.output), `.${basename(opts.output)}.${crypto.randomUUID()}.tmp`);
    try {
      file = await Deno.open(tmp, { createNew: true, write: true, mode: 0o600 });
    } catch (err) {
      throw new ChatError(
        "file_unwritable",
        `Cannot ${action}: cannot write ${opts.output} (${(err as Error).message})`,
      );
    }
  }
  const out = file;
  const sink = out
    ? async (bytes: Uint8Array) => {
      let off = 0;
      while (off < bytes.length) off += await out.write(bytes.subarray(off));
    }
    : (bytes: Uint8Array) => env.io.writeOut(bytes);
  let result;
  let written: { bytes: number; sha256: string } | null = null;
  try {
    if (opts.gzip) {
      // The export streams into gzip; what leaves gzip is hashed and written as it comes.
      const gz = new CompressionStream("gzip");
      const writer = gz.writable.getWriter();
      const hash = createHash("sha256");
      let n = 0;
      const pump = (async () => {
        for await (const chunk of gz.readable) {
          hash.update(chunk);
          n += chunk.length;
          await sink(chunk);
        }
      })();
      try {
        result = await exportHistory({
          store,
          format,
          filter,
          write: (bytes) => writer.write(bytes as Uint8Array<ArrayBuffer>),
          progress: bar ? (done) => bar.update(done) : undefined,
        });
        await writer.close();
      } catch (err) {
        await writer.abort(err).catch(() => {});
        throw err;
      } finally {
        await pump.catch(() => {});
      }
      await pump;
      written = { bytes: n, sha256: hash.digest("hex") };
    } else {
      result = await exportHistory({
        store,
        format,
        filter,
        write: sink,
        progress: bar ? (done) => bar.update(done) : undefined,
      });
    }
    if (out) {
      await out.sync();
      out.close();
      file = null;
      await Deno.rename(tmp!, opts.output!);
      tmp = null;
    }
  } finally {
    bar?.done();
    file?.close();
    if (tmp) await Deno.remove(tmp).catch(() => {});
  }
  const summary = {
    output: opts.output ?? null,
    format,
    gzip: opts.gzip === true,
    messages: result.messages,
    bytes: written?.bytes ?? result.bytes,
    sha256: written?.sha256 ?? result.sha256,
    ...(written ? { uncompressedBytes: result.bytes } : {}),
  };
  await conn.call("audit.record", {
    action: "history.export",
    target: opts.room === undefined ? null : checkRoomName(opts.room),
    detail: {
      format,
      since: opts.since ?? null,
      until: opts.until ?? null,
      output: opts.output ?? "stdout",
      messages: result.messages,
      gzip: opts.gzip === true,
      sha256: summary.sha256,
    },
  });
  const human =
    `Exported ${result.messages} messages (${fmtBytes(summary.bytes)}${
      written ? `, gzip of ${fmtBytes(result.bytes)}` : ""
    }) to ` +
    `${opts.output ?? "stdout"}\nsha256 ${result.sha256}\n`;
  if (opts.output !== undefined) {
    emit(env, summary, () => human);
  } else {
    // stdout carries the export itself: the summary goes to stderr.
    env.io.err(env.json ? JSON.stringify(summary) + "\n" : human);
  }
}

export async function historySearch(
  env: AdminEnv,
  text: string,
  opts: { room?: string; since?: string; limit?: string },
): Promise<void> {
  const action = "search history";
  const limit = parseLimit(opts.limit, 50, action);
  const sinceTs = opts.since === undefined
    ? undefined
    : parseWhen(opts.since, env.clock(), "--since");
  if (text.trim() === "") {
    throw new ChatError("bad_request", `Cannot ${action}: give words to find`);
  }
  await using conn = await AdminConnection.open(env);
  const store = await conn.store();
  const roomId = await roomFilter(store, opts.room, action);
  const found = await store.searchMessages({ text, roomId, sinceTs, limit });
  const names = new NameResolver(store);
  const rows: ExportRow[] = [];
  for (const m of found) rows.push(await names.row(m));
  await conn.call("audit.record", {
    action: "history.search",
    target: opts.room === undefined ? null : checkRoomName(opts.room),
    detail: { query: text, found: rows.length },
  });
  emit(env, rows, () =>
    table(
      ["ID", "TIME", "WHERE", "FROM", "TEXT"],
      rows.map((r) => [
        r.id,
        fmtTime(r.ts),
        r.room ?? `dm ${r.to}`,
        r.from,
        truncate(r.body, 80),
      ]),
    ));
}

export async function historyPrune(
  env: AdminEnv,
  opts: { before: string; room?: string },
): Promise<void> {
  const action = "prune history";
  const beforeTs = parseWhen(opts.before, env.clock(), "--before");
  await using conn = await AdminConnection.open(env);
  const store = await conn.store();
  const roomId = await roomFilter(store, opts.room, action);
  const { count } = await store.messageRange({ roomId, untilTs: beforeTs });
  const where = opts.room === undefined ? "" : ` in ${checkRoomName(opts.room)}`;
  if (count > 0) {
    await confirm(
      env,
      action,
      `Delete ${count} messages${where} older than ${fmtTime(beforeTs)}? This cannot be undone.`,
    );
  }
  const r = count > 0
    ? await conn.call("history.prune", {
      beforeTs,
      room: opts.room === undefined ? null : checkRoomName(opts.room),
    })
    : { deleted: 0 };
  emit(
    env,
    { ...r, before: new Date(beforeTs).toISOString() },
    () => `Deleted ${r.deleted} messages${where} older than ${fmtTime(beforeTs)}.\n`,
  );
}
