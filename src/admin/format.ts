// Owns how admin output looks to people: aligned tables, times, sizes, and terminal-safe text.

/** `2026-11-27 18:45:46Z` (UTC, second precision); `-` for null. */
export function fmtTime(ms: number | null): string {
  if (ms === null) return "-";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`. */
export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** `3d 4h`, `5h 2m`, `42s`. */
export function fmtDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

// C0 (TAB included: it would break columns), DEL, C1, bidi controls, line and paragraph separators.
// deno-lint-ignore no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text that cannot drive a terminal: control and bidi characters become `\u{…}` escapes. Stored
 * text is validated on the way in; this is the second line of defence for everything printed.
 */
export function safeText(s: string): string {
  return s.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** `s` cut to `max` characters with an ellipsis. */
export function truncate(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : chars.slice(0, max - 1).join("") + "…";
}

/** An aligned text table; cells are made terminal-safe. Empty rows print `(none)`. */
export function table(headers: string[], rows: (string | number)[][]): string {
  if (rows.length === 0) return "(none)\n";
  const cells = rows.map((r) => r.map((c) => safeText(String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => width(r[i] ?? ""))));
  const line = (r: string[]) =>
    r.map((c, i) => i === r.length - 1 ? c : c + " ".repeat(widths[i] - width(c))).join("  ")
      .trimEnd();
  return [line(headers), ...cells.map(line)].join("\n") + "\n";
}

function width(s: string): number {
  return [...s].length;
}

/** Key/value lines: `name:   alice`. */
export function keyValues(pairs: [string, string | number][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${(k + ":").padEnd(w)} ${safeText(String(v))}`).join("\n") + "\n";
}
