// Owns the generated part of docs/PROTOCOL.md §9: the error and `bye` tables, rendered from
// src/error_catalogue.ts. `deno task docs:errors` rewrites it; tests/protocol checks it is current.
import { BYE_CODES, ERRORS, type Retry } from "../src/error_catalogue.ts";

/** The lines around the generated tables in docs/PROTOCOL.md. */
export const BEGIN_MARK =
  "<!-- error tables: generated from src/error_catalogue.ts by `deno task docs:errors` -->";
export const END_MARK = "<!-- end of error tables -->";

const RETRY_TEXT: Record<Retry["kind"], string> = {
  never: "never",
  after_hint: "after `retryAfterMs`",
  backoff: "back off and retry",
  reconnect: "reconnect",
};

/** A Markdown table padded the way `deno fmt` pads one, so the file stays fmt-clean. */
function table(head: string[], rows: string[][]): string {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(width[i])).join(" | ")} |`;
  return [line(head), line(width.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** The generated tables, between (and including) the two marks. */
export function renderErrorTables(): string {
  const errors = Object.entries(ERRORS)
    .filter(([, e]) => e.scope === "wire")
    .map(([code, e]) => [`\`${code}\``, e.fatal, RETRY_TEXT[e.retry.kind], e.meaning]);
  const byes = Object.entries(BYE_CODES)
    .map((
      [code, b],
    ) => [`\`${code}\``, b.meaning, b.retry.kind === "never" ? "stop" : "reconnect"]);
  return [
    BEGIN_MARK,
    "",
    table(["code", "fatal", "retry", "meaning"], errors),
    "",
    table(["`bye` code", "meaning", "then"], byes),
    "",
    END_MARK,
  ].join("\n");
}

/** `doc` with its generated tables replaced by the current ones. */
export function withCurrentTables(doc: string): string {
  const begin = doc.indexOf(BEGIN_MARK);
  const end = doc.indexOf(END_MARK);
  if (begin < 0 || end < begin) throw new Error("Cannot update: the error table marks are missing");
  return doc.slice(0, begin) + renderErrorTables() + doc.slice(end + END_MARK.length);
}

if (import.meta.main) {
  const path = new URL("../docs/PROTOCOL.md", import.meta.url);
  const doc = await Deno.readTextFile(path);
  const next = withCurrentTables(doc);
  if (next !== doc) await Deno.writeTextFile(path, next);
  console.log(next === doc ? "docs/PROTOCOL.md: up to date" : "docs/PROTOCOL.md: tables rewritten");
}
