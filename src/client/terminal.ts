// Owns the real terminal: raw mode, key input shared by prompts and the screen, writing whole
// strings, the window size, and line prompts (with hidden input for passwords).
import { ChatError } from "../errors.ts";
import { type Key, KeyDecoder } from "./keys.ts";

const enc = new TextEncoder();

/** Writes all of `bytes` to a synchronous writer (a short write is continued, not dropped). */
function writeAllSync(w: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += w.writeSync(bytes.subarray(off));
}

/** The process's terminal: stdin for keys (raw mode), stdout for the screen, stderr for prompts. */
export class Terminal {
  #decoder = new KeyDecoder();
  #backlog: Key[] = [];
  #buf = new Uint8Array(4096);
  #raw = false;
  #eof = false;

  /** True when stdin is a terminal (keys can be read and a person can be asked). */
  static get stdinIsTerminal(): boolean {
    return Deno.stdin.isTerminal();
  }

  /** True when stdout is a terminal (a screen can be drawn). */
  static get stdoutIsTerminal(): boolean {
    return Deno.stdout.isTerminal();
  }

  /** Columns and rows of the window (80×24 when unknown). */
  get size(): { cols: number; rows: number } {
    try {
      const { columns, rows } = Deno.consoleSize();
      if (columns > 0 && rows > 0) return { cols: columns, rows };
    } catch { /* not a terminal */ }
    return { cols: 80, rows: 24 };
  }

  /** Switches raw mode (no echo, no line buffering, C-c as a key). */
  setRaw(on: boolean): void {
    if (this.#raw === on || !Deno.stdin.isTerminal()) return;
    Deno.stdin.setRaw(on);
    this.#raw = on;
  }

  /** Writes text to stdout in one go. */
  write(text: string): void {
    writeAllSync(Deno.stdout, enc.encode(text));
  }

  /** Writes text to stderr in one go. */
  writeErr(text: string): void {
    writeAllSync(Deno.stderr, enc.encode(text));
  }

  /** The next keys typed; null at end of input. Keys put back with `unread` come first. */
  async readKeys(): Promise<Key[] | null> {
    if (this.#backlog.length > 0) return this.#backlog.splice(0);
    while (!this.#eof) {
      const n = await Deno.stdin.read(this.#buf);
      if (n === null) {
        this.#eof = true;
        break;
      }
      const keys = this.#decoder.push(this.#buf.subarray(0, n));
      if (this.#decoder.holdsLoneEscape) keys.push(...this.#decoder.flush());
      if (keys.length > 0) return keys;
    }
    const rest = this.#decoder.flush();
    return rest.length > 0 ? rest : null;
  }

  /** Puts keys back to be read first (type-ahead after a prompt). */
  unread(keys: Key[]): void {
    this.#backlog.unshift(...keys);
  }

  /**
   * Asks for one line on stderr. With `hidden` nothing typed is echoed (passwords).
   * C-c or end of input cancels with ChatError `cancelled`.
   */
  async prompt(question: string, opts: { hidden?: boolean } = {}): Promise<string> {
    const wasRaw = this.#raw;
    this.setRaw(true);
    const lastLine = question.slice(question.lastIndexOf("\n") + 1);
    this.writeErr(question);
    let text: string[] = [];
    const redraw = () => {
      if (!opts.hidden) this.writeErr(`\r\x1b[2K${lastLine}${text.join("")}`);
    };
    try {
      while (true) {
        const keys = await this.readKeys();
        if (keys === null) throw cancelled();
        for (let i = 0; i < keys.length; i++) {
          const k = keys[i];
          if (k.name === "enter") {
            this.writeErr("\r\n");
            this.unread(keys.slice(i + 1));
            return text.join("");
          }
          if (k.name === "interrupt" || (k.name === "eof" && text.length === 0)) {
            this.writeErr("\r\n");
            throw cancelled();
          }
          if (k.name === "text" || k.name === "paste") {
            text.push(...Array.from(k.text.replace(/[\r\n]/g, "")));
          } else if (k.name === "backspace") {
            text.pop();
          } else if (k.name === "kill-line-back") {
            text = [];
          }
          redraw();
        }
      }
    } finally {
      this.setRaw(wasRaw);
    }
  }

  /** Asks a yes/no question; true only for "yes" or "y". */
  async confirm(question: string): Promise<boolean> {
    const answer = (await this.prompt(question)).trim().toLowerCase();
    return answer === "yes" || answer === "y";
  }
}

function cancelled(): ChatError {
  return new ChatError("cancelled", "Cannot continue: cancelled at the prompt");
}
