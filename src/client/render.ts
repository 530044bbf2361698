// Owns turning untrusted text into safe terminal output: neutralising controls, measuring,
// wrapping, styling, and the one-line formats of messages and events.
import type { WireMessage } from "../protocol/frames.ts";

/** A run of text with one style (an SGR parameter string such as "1;36", or none). */
export interface Segment {
  text: string;
  sgr?: string;
}

/** One logical screen line: segments that wrap together. */
export type StyledLine = Segment[];

// C0 controls (TAB handled separately), DEL, C1, bidirectional embedding/override/isolate
// controls, line/paragraph separators.
// deno-lint-ignore no-control-regex
const UNSAFE_RE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g;

/**
 * Makes text from the network safe to print: nothing in the result can move the cursor, change
 * colours, set the window title, ring the bell, or reorder text (the server rejects such text,
 * but the client does not trust the server).
 *
 * - TAB becomes a space; other C0 controls and DEL become caret notation (`ESC` → `^[`,
 *   CR → `^M`), so an attempt is visible rather than silently dropped.
 * - C1 controls (including the 8-bit CSI U+009B) and bidirectional overrides/isolates become
 *   U+FFFD; line and paragraph separators become a space; lone surrogates become U+FFFD.
 */
export function sanitize(text: string): string {
  return text.toWellFormed().replace(UNSAFE_RE, (c) => {
    const code = c.charCodeAt(0);
    if (code === 0x09 || code === 0x2028 || code === 0x2029) return " ";
    if (code < 0x20) return "^" + String.fromCharCode(code + 0x40);
    if (code === 0x7f) return "^?";
    return "\ufffd";
  });
}

/** True when `text` has nothing `sanitize` would change. */
export function isSafe(text: string): boolean {
  UNSAFE_RE.lastIndex = 0;
  return text.isWellFormed() && !UNSAFE_RE.test(text);
}

const WIDE_RANGES: [number, number][] = [
  [0x1100, 0x115f],
  [0x231a, 0x231b],
  [0x2329, 0x232a],
  [0x23e9, 0x23ec],
  [0x25fd, 0x25fe],
  [0x2614, 0x2615],
  [0x2648, 0x2653],
  [0x26a1, 0x26a1],
  [0x26bd, 0x26be],
  [0x26c4, 0x26c5],
  [0x26f2, 0x26f5],
  [0x2705, 0x2705],
  [0x270a, 0x270b],
  [0x2728, 0x2728],
  [0x274c, 0x274c],
  [0x2753, 0x2755],
  [0x2795, 0x2797],
  [0x2b1b, 0x2b1c],
  [0x2b50, 0x2b50],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x1f004, 0x1f004],
  [0x1f0cf, 0x1f0cf],
  [0x1f18e, 0x1f18e],
  [0x1f191, 0x1f19a],
  [0x1f200, 0x1f251],
  [0x1f300, 0x1f64f],
  [0x1f680, 0x1f6ff],
  [0x1f7e0, 0x1f7eb],
  [0x1f90c, 0x1f9ff],
  [0x1fa70, 0x1faff],
  [0x20000, 0x2fffd],
  [0x30000, 0x3fffd],
];

const ZERO_WIDTH_RE = /^[\p{Mn}\p{Me}\u200b-\u200d\u2060\ufe00-\ufe0f\ufeff]$/u;

/**
 * Columns a code point takes in a terminal: 0 for combining marks and zero-width characters, 2
 * for East Asian wide and most emoji, else 1. An approximation of wcwidth good enough to keep
 * wrapped lines and the input cursor aligned.
 */
export function charWidth(ch: string): number {
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x300) return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ? 0 : 1;
  if (ZERO_WIDTH_RE.test(ch)) return 0;
  let lo = 0;
  let hi = WIDE_RANGES.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = WIDE_RANGES[mid];
    if (cp < a) hi = mid - 1;
    else if (cp > b) lo = mid + 1;
    else return 2;
  }
  return 1;
}

/** Display width of a (sanitised) string in terminal columns. */
export function textWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += charWidth(ch);
  return w;
}

/** Plain text of a styled line (for tests and non-colour output). */
export function plainText(line: StyledLine): string {
  return line.map((s) => s.text).join("");
}

/**
 * Splits a styled line into screen rows of at most `width` columns, as ANSI strings. Rows after
 * the first start with `indent` spaces (a hanging indent under the message text). A row breaks
 * at the last space of the segment being written when there is one (a word is split only when
 * it is longer than a row), so "(is the server running?)" never ends up as "…running?" and ")". With
 * `color: false` no escape sequence is emitted at all. Segment text is sanitised here too, so a
 * caller cannot forget it.
 */
export function wrapLine(
  line: StyledLine,
  width: number,
  opts: { color: boolean; indent?: number },
): string[] {
  const w = Math.max(1, width);
  const indent = Math.min(opts.indent ?? 0, Math.max(0, w - 10));
  const rows: string[] = [];
  let row = "";
  let col = 0;
  let openSgr: string | undefined;
  const newRow = () => {
    if (openSgr && opts.color) row += "\x1b[0m";
    rows.push(row);
    row = " ".repeat(indent);
    col = indent;
    if (openSgr && opts.color) row += `\x1b[${openSgr}m`;
  };
  for (const seg of line) {
    const text = sanitize(seg.text);
    if (text === "") continue;
    if (seg.sgr && opts.color) row += `\x1b[${seg.sgr}m`;
    openSgr = seg.sgr;
    // Where the last space of this segment is in `row` (and the column after it), if any.
    let space = -1;
    let spaceCol = 0;
    for (const ch of text) {
      const cw = charWidth(ch);
      if (col + cw > w) {
        if (space >= 0 && ch !== " ") {
          // Carry the word begun after the space over to the next row.
          const carry = row.slice(space + 1);
          const carryCol = col - spaceCol;
          row = row.slice(0, space);
          newRow();
          row += carry;
          col += carryCol;
        } else newRow();
        space = -1;
        if (ch === " " && col === indent) continue; // no space at the start of a row
      }
      if (ch === " ") {
        space = row.length;
        spaceCol = col + cw;
      }
      row += ch;
      col += cw;
    }
    if (seg.sgr && opts.color) row += "\x1b[0m";
    openSgr = undefined;
  }
  rows.push(row);
  return rows;
}

// ---- formats ----

const NICK_COLORS = ["31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96"];

/** A stable colour per user name (case-insensitive FNV-1a hash over a 12-colour palette). */
export function nickColor(name: string): string {
  let h = 0x811c9dc5;
  for (const ch of name.toLowerCase()) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return NICK_COLORS[h % NICK_COLORS.length];
}

/** Style of own nick, system events and errors. */
export const STYLE = {
  own: "1",
  time: "2",
  system: "33",
  error: "1;31",
  room: "36",
  status: "7",
  notice: "32",
} as const;

/** `HH:MM`, or `YYYY-MM-DD HH:MM` when `ts` is not on the same local day as `now`. */
export function formatTime(ts: number, now: number = Date.now()): string {
  const d = new Date(ts);
  const n = new Date(now);
  const p = (x: number) => String(x).padStart(2, "0");
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
  const sameDay = d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() &&
    d.getDate() === n.getDate();
  return sameDay ? hm : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}`;
}

/** The prefix convention for actions: body "/me waves" from alice reads "* alice waves". */
export const ACTION_PREFIX = "/me ";

/** What the formatter needs to know about the viewer. */
export interface ViewContext {
  /** The logged-in user (own messages are marked). */
  me: string;
  /** The room whose messages need no room tag. */
  currentRoom?: string;
  now?: number;
}

/**
 * One message as a line:
 * `12:34   <bob> hi` (others), `12:34 > <alice> hi` (own, marked with `>`),
 * `12:34   #ops <bob> hi` (a room other than the current one),
 * `12:34   *bob* psst` (direct message to me), `12:34 > -> *bob* psst` (my direct message),
 * `12:34   * bob waves` (an action), `12:34   -bob- deploy at 5` (a notice, as IRC clients show one).
 */
export function formatMessage(m: WireMessage, view: ViewContext): StyledLine {
  const own = m.from.toLowerCase() === view.me.toLowerCase();
  const line: StyledLine = [
    { text: formatTime(m.ts, view.now), sgr: STYLE.time },
    { text: own ? " > " : "   ", sgr: own ? STYLE.own : undefined },
  ];
  const nickSgr = own ? STYLE.own : nickColor(m.from);
  if (m.room !== undefined && m.room !== view.currentRoom) {
    line.push({ text: `#${m.room} `, sgr: STYLE.room });
  }
  const action = m.body.startsWith(ACTION_PREFIX);
  const body = action ? m.body.slice(ACTION_PREFIX.length) : m.body;
  if (m.to !== undefined) {
    const peer = own ? m.to : m.from;
    if (own) line.push({ text: "-> " });
    if (action) {
      line.push({ text: "* " }, { text: m.from, sgr: nickSgr }, { text: ` (to ${peer}) ` });
    } else {
      line.push({ text: "*" }, { text: peer, sgr: own ? nickColor(peer) : nickSgr }, {
        text: "* ",
      });
    }
  } else if (action) {
    line.push({ text: "* " }, { text: m.from, sgr: nickSgr }, { text: " " });
  } else if (m.notice) {
    line.push({ text: "-" }, { text: m.from, sgr: nickSgr }, { text: "- " });
  } else {
    line.push({ text: "<" }, { text: m.from, sgr: nickSgr }, { text: "> " });
  }
  line.push({ text: body });
  return line;
}

/** A system event line: `12:34 -!- text`. */
export function formatSystem(
  text: string,
  now: number = Date.now(),
  sgr: string = STYLE.system,
): StyledLine {
  return [
    { text: formatTime(now, now), sgr: STYLE.time },
    { text: " -!- ", sgr },
    { text, sgr },
  ];
}

/** Columns before the message text starts (for the hanging indent of wrapped rows). */
export const MESSAGE_INDENT = 8;
