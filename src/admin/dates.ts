// Owns reading the times and durations admins type: dates, ISO times, and ages like 30d.
import { ChatError } from "../errors.ts";

const UNIT_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** `90s`, `15m`, `12h`, `7d`, `2w` in milliseconds; null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,6})([smhdw])$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : null;
}

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;
const DATETIME_RE = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * A point in time typed by an admin, in milliseconds since the epoch:
 * - `2026-01-31` (midnight UTC), or an ISO 8601 time with a zone: `2026-01-31T08:00Z`,
 *   `2026-01-31 08:00:00+01:00`;
 * - an age, meaning that long before `now`: `30d`, `12h`, `2w`;
 * - `now`.
 * @throws {ChatError} `invalid_date`, naming the option.
 */
export function parseWhen(text: string, now: number, option: string): number {
  const t = text.trim();
  if (t.toLowerCase() === "now") return now;
  const age = parseDuration(t);
  if (age !== null) return now - age;
  let ms = NaN;
  if (DATE_RE.test(t)) ms = Date.parse(`${t}T00:00:00Z`);
  else if (DATETIME_RE.test(t)) ms = Date.parse(t.replace(" ", "T"));
  // Date.parse rolls 2026-02-31 over to March: the round trip catches it.
  if (Number.isFinite(ms) && DATE_RE.test(t) && new Date(ms).toISOString().slice(0, 10) !== t) {
    ms = NaN;
  }
  if (!Number.isFinite(ms)) {
    throw new ChatError(
      "invalid_date",
      `Cannot read ${option} ${JSON.stringify(text)}: use YYYY-MM-DD, an ISO 8601 time with a ` +
        "zone (2026-01-31T08:00Z), or an age such as 30d or 12h",
    );
  }
  return ms;
}
