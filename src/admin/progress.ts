// Owns the export progress bar: one line on a terminal, redrawn only when it changes.

/**
 * A text progress bar for a known total. `update` redraws (with `\r`) only when the whole percent
 * changes, so a million rows cost a hundred writes; `done` clears the line.
 */
export class ProgressBar {
  #write: (s: string) => void;
  #label: string;
  #total: number;
  #width: number;
  #lastPercent = -1;

  constructor(opts: { write: (s: string) => void; label: string; total: number; width?: number }) {
    this.#write = opts.write;
    this.#label = opts.label;
    this.#total = Math.max(1, opts.total);
    this.#width = opts.width ?? 30;
  }

  /** The line for `done` items (no control characters). */
  render(done: number): string {
    const frac = Math.min(1, done / this.#total);
    const filled = Math.round(frac * this.#width);
    const bar = "#".repeat(filled) + "-".repeat(this.#width - filled);
    const pct = String(Math.floor(frac * 100)).padStart(3);
    return `${this.#label} [${bar}] ${pct}% ${done}/${this.#total}`;
  }

  update(done: number): void {
    const percent = Math.floor(Math.min(1, done / this.#total) * 100);
    if (percent === this.#lastPercent) return;
    this.#lastPercent = percent;
    this.#write(`\r${this.render(done)}`);
  }

  /** Erases the bar. */
  done(): void {
    if (this.#lastPercent >= 0) this.#write("\r\x1b[2K");
  }
}
