// Owns the full-screen layout: a scrolling message area, a status bar and an input line that
// stays put, drawn with ANSI sequences in single writes so output never tears the input line.
import { type StyledLine, textWidth, wrapLine } from "./render.ts";

/** Where the screen writes and how big it is (a Terminal, or a fake in tests). */
export interface ScreenOutput {
  write(text: string): void;
  readonly size: { cols: number; rows: number };
}

interface Entry {
  line: StyledLine;
  indent: number;
}

// deno-lint-ignore no-control-regex
const SGR_RE = /\x1b\[[0-9;]*m/g;

/** Lines kept for redraws and scrolling back. */
const KEEP_LINES = 2000;

/**
 * The chat screen:
 * - rows 1…R (R = rows − 2) scroll: a new message scrolls that region only (DECSTBM), so the
 *   status bar and the input line below it are never touched by incoming text;
 * - row R+1 is the status bar, row R+2 the input line with the cursor.
 * Every update is one `write` ending with the cursor back in the input line.
 * Page Up/Down scroll back through the last lines kept; new lines then wait below.
 */
export class Screen {
  #out: ScreenOutput;
  #color: boolean;
  #lines: Entry[] = [];
  #status: StyledLine = [];
  #prompt = "";
  #input = { text: "", cursorCol: 0 };
  #cols = 80;
  #rows = 24;
  /** Rows scrolled back from the bottom (0: following new lines). */
  #scrollBack = 0;
  #started = false;

  constructor(out: ScreenOutput, opts: { color: boolean }) {
    this.#out = out;
    this.#color = opts.color;
  }

  /** Columns available to the input text after the prompt. */
  get inputWidth(): number {
    return Math.max(2, this.#cols - textWidth(this.#prompt) - 1);
  }

  /** Switches to the alternate screen and draws everything. */
  start(): void {
    this.#started = true;
    // Alternate screen, bracketed paste on.
    this.#out.write("\x1b[?1049h\x1b[?2004h");
    this.redraw();
  }

  /** Restores the terminal: no scroll region, paste mode off, the normal screen back. */
  stop(): void {
    if (!this.#started) return;
    this.#started = false;
    this.#out.write("\x1b[r\x1b[?2004l\x1b[0m\x1b[?1049l");
  }

  get #regionRows(): number {
    return Math.max(1, this.#rows - 2);
  }

  /** Adds a line to the message area. */
  addLine(line: StyledLine, indent = 0): void {
    this.#lines.push({ line, indent });
    if (this.#lines.length > KEEP_LINES) this.#lines.splice(0, this.#lines.length - KEEP_LINES);
    if (!this.#started) return;
    if (this.#scrollBack > 0) {
      // The reader is looking back: keep the view still, say that more arrived.
      this.#scrollBack += this.#wrap(this.#lines.at(-1)!).length;
      this.#out.write(this.#statusSeq() + this.#cursorSeq());
      return;
    }
    const r = this.#regionRows;
    let seq = `\x1b[${r};1H`;
    for (const row of this.#wrap({ line, indent })) seq += `\n\r${row}`;
    this.#out.write(seq + this.#cursorSeq());
  }

  /** Replaces the status bar. */
  setStatus(status: StyledLine): void {
    this.#status = status;
    if (this.#started) this.#out.write(this.#statusSeq() + this.#cursorSeq());
  }

  /** Replaces the input line (prompt plus the editor's visible text and cursor). */
  setInput(prompt: string, view: { text: string; cursorCol: number }): void {
    this.#prompt = prompt;
    this.#input = view;
    if (this.#started) this.#out.write(this.#inputSeq() + this.#cursorSeq());
  }

  /** Scrolls back (-1) or forward (1) by most of a page. */
  page(direction: -1 | 1): void {
    const total = this.#allRows().length;
    const step = Math.max(1, this.#regionRows - 2);
    const max = Math.max(0, total - this.#regionRows);
    this.#scrollBack = Math.min(max, Math.max(0, this.#scrollBack - direction * step));
    this.redraw();
  }

  /** Re-reads the window size and draws everything again (after a resize or C-l). */
  redraw(): void {
    if (!this.#started) return;
    const { cols, rows } = this.#out.size;
    this.#cols = Math.max(10, cols);
    this.#rows = Math.max(3, rows);
    const r = this.#regionRows;
    const all = this.#allRows();
    const end = all.length - this.#scrollBack;
    const visible = all.slice(Math.max(0, end - r), end);
    let seq = `\x1b[0m\x1b[2J\x1b[1;${r}r`;
    const top = r - visible.length + 1;
    visible.forEach((row, i) => seq += `\x1b[${top + i};1H${row}`);
    this.#out.write(seq + this.#statusSeq() + this.#inputSeq() + this.#cursorSeq());
  }

  #allRows(): string[] {
    // Only as many recent lines as can fill the region plus the scroll-back.
    const need = this.#regionRows + this.#scrollBack;
    const rows: string[][] = [];
    let count = 0;
    for (let i = this.#lines.length - 1; i >= 0 && count < need + this.#regionRows; i--) {
      const w = this.#wrap(this.#lines[i]);
      rows.unshift(w);
      count += w.length;
    }
    return rows.flat();
  }

  #wrap(e: Entry): string[] {
    return wrapLine(e.line, this.#cols, { color: this.#color, indent: e.indent });
  }

  #statusSeq(): string {
    const status: StyledLine = [...this.#status];
    if (this.#scrollBack > 0) status.push({ text: ` [scrolled back: PgDn]` });
    const [row] = wrapLine(status, this.#cols, { color: this.#color });
    const pad = " ".repeat(Math.max(0, this.#cols - textWidth(row.replace(SGR_RE, ""))));
    const body = this.#color
      ? `\x1b[7m${row.replaceAll("\x1b[0m", "\x1b[0;7m")}${pad}\x1b[0m`
      : row + pad;
    return `\x1b[${this.#regionRows + 1};1H\x1b[2K${body}`;
  }

  #inputSeq(): string {
    return `\x1b[${this.#rows};1H\x1b[2K${this.#prompt}${this.#input.text}`;
  }

  #cursorSeq(): string {
    const col = textWidth(this.#prompt) + this.#input.cursorCol + 1;
    return `\x1b[${this.#rows};${col}H`;
  }
}
