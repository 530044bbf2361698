// Owns the input line: editing, cursor movement, history and tab completion, as pure state
// driven by key events (no terminal needed to test it).
import type { Key } from "./keys.ts";
import { charWidth } from "./render.ts";

/** What the completer is asked: the word before the cursor and whether it starts the line. */
export interface CompletionRequest {
  word: string;
  /** True when the word is the first one on the line. */
  first: boolean;
  line: string;
}

/** Returns full replacements for the word (including any suffix such as ": " or " "). */
export type Completer = (req: CompletionRequest) => string[];

/** The outcome of one key. */
export type EditorAction =
  | { type: "none" }
  | { type: "changed" }
  | { type: "submit"; line: string }
  | { type: "interrupt" }
  | { type: "eof" }
  | { type: "redraw" }
  | { type: "page"; direction: -1 | 1 };

/** Options of {@linkcode LineEditor}. */
export interface LineEditorOptions {
  /** Lines kept for up/down recall. Default 200. */
  historySize?: number;
  /** Tab completion; none by default. */
  complete?: Completer;
  /** Longest line accepted, in UTF-16 units. Default 16384. */
  maxLength?: number;
}

// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\x00-\x1f\x7f]/g;

interface CompletionState {
  candidates: string[];
  index: number;
  start: number;
  /** End of the inserted candidate (the cursor after insertion). */
  end: number;
}

/**
 * An emacs-style line editor (C-a/C-e, C-b/C-f, C-w, C-u, C-k, M-b/M-f, arrows, Home/End,
 * Delete) with history (up/down, drafts kept) and cycling tab completion. Works on code points,
 * so a cursor never splits a surrogate pair.
 */
export class LineEditor {
  #chars: string[] = [];
  #cursor = 0;
  #history: string[] = [];
  #histIndex = -1;
  #draft = "";
  #completion: CompletionState | null = null;
  #opts: Required<Omit<LineEditorOptions, "complete">> & { complete?: Completer };
  /** Show `*` instead of the text (password prompts); such lines never enter history. */
  masked = false;

  constructor(opts: LineEditorOptions = {}) {
    this.#opts = {
      historySize: opts.historySize ?? 200,
      maxLength: opts.maxLength ?? 16384,
      complete: opts.complete,
    };
  }

  /** The current text. */
  get text(): string {
    return this.#chars.join("");
  }

  /** Cursor position in code points. */
  get cursor(): number {
    return this.#cursor;
  }

  /** Replaces the text and puts the cursor at its end. */
  setText(text: string): void {
    this.#chars = Array.from(text);
    this.#cursor = this.#chars.length;
    this.#completion = null;
  }

  /** Lines entered so far, oldest first. */
  get history(): readonly string[] {
    return this.#history;
  }

  handle(key: Key): EditorAction {
    if (key.name !== "tab") this.#completion = null;
    switch (key.name) {
      case "text":
        return this.#insert(key.text);
      case "paste":
        // One line: pasted newlines become spaces (sending many messages by accident is worse).
        return this.#insert(key.text.replace(/\r\n|[\r\n]/g, " ").replace(CONTROL_RE, ""));
      case "enter":
        return this.#submit();
      case "tab":
        return this.#complete();
      case "backspace":
        if (this.#cursor === 0) return { type: "none" };
        this.#chars.splice(--this.#cursor, 1);
        return { type: "changed" };
      case "delete":
        if (this.#cursor >= this.#chars.length) return { type: "none" };
        this.#chars.splice(this.#cursor, 1);
        return { type: "changed" };
      case "eof":
        if (this.#chars.length === 0) return { type: "eof" };
        return this.handle({ name: "delete" });
      case "left":
        return this.#move(this.#cursor - 1);
      case "right":
        return this.#move(this.#cursor + 1);
      case "home":
        return this.#move(0);
      case "end":
        return this.#move(this.#chars.length);
      case "word-left":
        return this.#move(this.#wordStart(this.#cursor));
      case "word-right":
        return this.#move(this.#wordEnd(this.#cursor));
      case "delete-word-back": {
        const start = this.#wordStart(this.#cursor);
        if (start === this.#cursor) return { type: "none" };
        this.#chars.splice(start, this.#cursor - start);
        this.#cursor = start;
        return { type: "changed" };
      }
      case "delete-word-forward": {
        const end = this.#wordEnd(this.#cursor);
        if (end === this.#cursor) return { type: "none" };
        this.#chars.splice(this.#cursor, end - this.#cursor);
        return { type: "changed" };
      }
      case "kill-line-back":
        if (this.#cursor === 0) return { type: "none" };
        this.#chars.splice(0, this.#cursor);
        this.#cursor = 0;
        return { type: "changed" };
      case "kill-line-forward":
        if (this.#cursor === this.#chars.length) return { type: "none" };
        this.#chars.length = this.#cursor;
        return { type: "changed" };
      case "up":
        return this.#recall(-1);
      case "down":
        return this.#recall(1);
      case "pageup":
        return { type: "page", direction: -1 };
      case "pagedown":
        return { type: "page", direction: 1 };
      case "clear-screen":
        return { type: "redraw" };
      case "interrupt":
        return { type: "interrupt" };
      default:
        return { type: "none" };
    }
  }

  /**
   * The part of the line to show in `width` columns after a prompt, scrolled so the cursor is
   * visible, and the cursor's column within it.
   */
  view(width: number): { text: string; cursorCol: number } {
    const chars = this.masked ? this.#chars.map(() => "*") : this.#chars;
    const w = Math.max(2, width);
    const widths = chars.map(charWidth);
    // Scroll so that the cursor sits at most at column w-1.
    let start = 0;
    let colToCursor = 0;
    for (let i = 0; i < this.#cursor; i++) colToCursor += widths[i];
    while (colToCursor > w - 1 && start < this.#cursor) {
      colToCursor -= widths[start];
      start++;
    }
    let text = "";
    let col = 0;
    for (let i = start; i < chars.length; i++) {
      if (col + widths[i] > w) break;
      text += chars[i];
      col += widths[i];
    }
    return { text, cursorCol: colToCursor };
  }

  #insert(text: string): EditorAction {
    const add = Array.from(text);
    if (add.length === 0) return { type: "none" };
    const room = this.#opts.maxLength - this.#chars.length;
    if (room <= 0) return { type: "none" };
    const part = add.slice(0, room);
    this.#chars.splice(this.#cursor, 0, ...part);
    this.#cursor += part.length;
    return { type: "changed" };
  }

  #submit(): EditorAction {
    const line = this.text;
    if (!this.masked && line.trim() !== "" && this.#history.at(-1) !== line) {
      this.#history.push(line);
      if (this.#history.length > this.#opts.historySize) this.#history.shift();
    }
    this.#chars = [];
    this.#cursor = 0;
    this.#histIndex = -1;
    this.#draft = "";
    return { type: "submit", line };
  }

  #move(to: number): EditorAction {
    const c = Math.max(0, Math.min(this.#chars.length, to));
    if (c === this.#cursor) return { type: "none" };
    this.#cursor = c;
    return { type: "changed" };
  }

  #recall(dir: -1 | 1): EditorAction {
    if (this.masked || this.#history.length === 0) return { type: "none" };
    let idx = this.#histIndex;
    if (dir === -1) {
      if (idx === -1) {
        this.#draft = this.text;
        idx = this.#history.length - 1;
      } else if (idx > 0) idx--;
      else return { type: "none" };
    } else {
      if (idx === -1) return { type: "none" };
      idx = idx + 1 < this.#history.length ? idx + 1 : -1;
    }
    this.#histIndex = idx;
    const text = idx === -1 ? this.#draft : this.#history[idx];
    this.#chars = Array.from(text);
    this.#cursor = this.#chars.length;
    return { type: "changed" };
  }

  #wordStart(from: number): number {
    let i = from;
    while (i > 0 && this.#chars[i - 1] === " ") i--;
    while (i > 0 && this.#chars[i - 1] !== " ") i--;
    return i;
  }

  #wordEnd(from: number): number {
    let i = from;
    const n = this.#chars.length;
    while (i < n && this.#chars[i] === " ") i++;
    while (i < n && this.#chars[i] !== " ") i++;
    return i;
  }

  #complete(): EditorAction {
    if (this.masked || !this.#opts.complete) return { type: "none" };
    const st = this.#completion;
    if (st && st.end === this.#cursor && st.candidates.length > 1) {
      st.index = (st.index + 1) % st.candidates.length;
      this.#replace(st, st.candidates[st.index]);
      return { type: "changed" };
    }
    let start = this.#cursor;
    while (start > 0 && this.#chars[start - 1] !== " ") start--;
    const word = this.#chars.slice(start, this.#cursor).join("");
    const first = this.#chars.slice(0, start).every((c) => c === " ");
    const candidates = this.#opts.complete({ word, first, line: this.text });
    if (candidates.length === 0) return { type: "none" };
    const state: CompletionState = { candidates, index: 0, start, end: this.#cursor };
    this.#replace(state, candidates[0]);
    this.#completion = state;
    return { type: "changed" };
  }

  #replace(st: CompletionState, text: string): void {
    const add = Array.from(text);
    this.#chars.splice(st.start, st.end - st.start, ...add);
    st.end = st.start + add.length;
    this.#cursor = st.end;
  }
}
