// Owns decoding terminal input bytes (raw mode) into key events: UTF-8 text, control keys,
// CSI/SS3 escape sequences and bracketed paste, with sequences split across reads.

/** A decoded key press (or a paste). */
export type Key =
  | { name: "text"; text: string }
  | { name: "paste"; text: string }
  | {
    name:
      | "enter"
      | "tab"
      | "backspace"
      | "delete"
      | "left"
      | "right"
      | "up"
      | "down"
      | "home"
      | "end"
      | "pageup"
      | "pagedown"
      | "word-left"
      | "word-right"
      | "delete-word-back"
      | "delete-word-forward"
      | "kill-line-back"
      | "kill-line-forward"
      | "clear-screen"
      | "interrupt"
      | "eof"
      | "escape"
      | "unknown";
  };

export type KeyName = Key["name"];
/** Names of keys that carry no text. */
export type ControlKeyName = Exclude<KeyName, "text" | "paste">;

const PASTE_END = "\x1b[201~";
/** A paste longer than this is cut (the rest is dropped) so memory stays bounded. */
const MAX_PASTE = 64 * 1024;

const CTRL: Record<number, ControlKeyName> = {
  0x01: "home", // C-a
  0x02: "left", // C-b
  0x03: "interrupt", // C-c
  0x04: "eof", // C-d
  0x05: "end", // C-e
  0x06: "right", // C-f
  0x08: "backspace", // C-h
  0x09: "tab",
  0x0a: "enter",
  0x0b: "kill-line-forward", // C-k
  0x0c: "clear-screen", // C-l
  0x0d: "enter",
  0x0e: "down", // C-n
  0x10: "up", // C-p
  0x15: "kill-line-back", // C-u
  0x17: "delete-word-back", // C-w
  0x7f: "backspace",
};

const CSI_FINAL: Record<string, ControlKeyName> = {
  A: "up",
  B: "down",
  C: "right",
  D: "left",
  H: "home",
  F: "end",
};

const CSI_TILDE: Record<string, ControlKeyName> = {
  "1": "home",
  "2": "unknown", // insert
  "3": "delete",
  "4": "end",
  "5": "pageup",
  "6": "pagedown",
  "7": "home",
  "8": "end",
};

/**
 * Incremental decoder: `push(bytes)` returns the keys completed by these bytes. An incomplete
 * escape sequence or UTF-8 character is held until the next push; `flush()` turns a lone held
 * ESC into an "escape" key (call it when no more bytes follow soon).
 */
export class KeyDecoder {
  #utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  #pending = "";
  #paste: string | null = null;

  push(bytes: Uint8Array): Key[] {
    this.#pending += this.#utf8.decode(bytes, { stream: true });
    return this.#drain(false);
  }

  /** True when the only thing held is a lone ESC (the Escape key, or a sequence cut short). */
  get holdsLoneEscape(): boolean {
    return this.#pending === "\x1b" && this.#paste === null;
  }

  /** Resolves a held lone ESC (or partial sequence) as keys. */
  flush(): Key[] {
    return this.#drain(true);
  }

  #drain(final: boolean): Key[] {
    const keys: Key[] = [];
    let s = this.#pending;
    let text = "";
    const flushText = () => {
      if (text) keys.push({ name: "text", text });
      text = "";
    };
    while (s.length > 0) {
      if (this.#paste !== null) {
        const end = s.indexOf(PASTE_END);
        if (end === -1) {
          // Keep a possible partial end marker for the next chunk.
          const keep = partialSuffix(s, PASTE_END);
          this.#addPaste(s.slice(0, s.length - keep));
          s = s.slice(s.length - keep);
          if (final) {
            this.#addPaste(s);
            s = "";
            keys.push({ name: "paste", text: this.#paste });
            this.#paste = null;
          }
          break;
        }
        this.#addPaste(s.slice(0, end));
        keys.push({ name: "paste", text: this.#paste });
        this.#paste = null;
        s = s.slice(end + PASTE_END.length);
        continue;
      }
      const c = s.charCodeAt(0);
      if (c === 0x1b) {
        const seq = parseEscape(s);
        if (seq === null) {
          // Incomplete: wait for more bytes unless this is the end.
          if (!final) break;
          flushText();
          keys.push({ name: s.length === 1 ? "escape" : "unknown" });
          s = "";
          break;
        }
        flushText();
        s = s.slice(seq.length);
        if (seq.key === "paste-start") {
          this.#paste = "";
          continue;
        }
        keys.push({ name: seq.key });
        continue;
      }
      if (c < 0x20 || c === 0x7f) {
        flushText();
        keys.push({ name: CTRL[c] ?? "unknown" });
        s = s.slice(1);
        continue;
      }
      // Printable run up to the next control character.
      let i = 0;
      while (i < s.length) {
        const d = s.charCodeAt(i);
        if (d < 0x20 || d === 0x7f) break;
        i++;
      }
      text += s.slice(0, i);
      s = s.slice(i);
    }
    flushText();
    this.#pending = s;
    return keys;
  }

  #addPaste(text: string): void {
    if (this.#paste === null) return;
    const room = MAX_PASTE - this.#paste.length;
    if (room > 0) this.#paste += text.slice(0, room);
  }
}

/** Length of the longest suffix of `s` that is a proper prefix of `marker`. */
function partialSuffix(s: string, marker: string): number {
  for (let n = Math.min(s.length, marker.length - 1); n > 0; n--) {
    if (marker.startsWith(s.slice(s.length - n))) return n;
  }
  return 0;
}

type EscapeKey = ControlKeyName | "paste-start";

/** Parses an escape sequence at the start of `s`; null when it is incomplete. */
function parseEscape(s: string): { key: EscapeKey; length: number } | null {
  if (s.length < 2) return null;
  const second = s[1];
  if (second === "[") {
    // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, final 0x40-0x7e.
    let i = 2;
    while (i < s.length && s.charCodeAt(i) >= 0x20 && s.charCodeAt(i) <= 0x3f) i++;
    if (i >= s.length) return i > 64 ? { key: "unknown", length: i } : null;
    const final = s[i];
    const params = s.slice(2, i);
    const length = i + 1;
    if (final === "~") {
      if (params === "200") return { key: "paste-start", length };
      if (params === "3;5") return { key: "delete-word-forward", length };
      return { key: CSI_TILDE[params.split(";")[0]] ?? "unknown", length };
    }
    const base = CSI_FINAL[final];
    if (!base) return { key: "unknown", length };
    // Ctrl/Alt + arrows: ESC [ 1 ; 5 C  (5 = ctrl, 3 = alt).
    const mod = params.split(";")[1];
    if ((mod === "5" || mod === "3") && (base === "left" || base === "right")) {
      return { key: base === "left" ? "word-left" : "word-right", length };
    }
    return { key: base, length };
  }
  if (second === "O") {
    if (s.length < 3) return null;
    return { key: CSI_FINAL[s[2]] ?? "unknown", length: 3 };
  }
  // Alt+key.
  switch (second) {
    case "b":
      return { key: "word-left", length: 2 };
    case "f":
      return { key: "word-right", length: 2 };
    case "d":
      return { key: "delete-word-forward", length: 2 };
    case "\x7f":
    case "\x08":
      return { key: "delete-word-back", length: 2 };
    case "\x1b":
      return { key: "escape", length: 1 };
    default:
      return { key: "unknown", length: 1 + (second.codePointAt(0)! > 0xffff ? 2 : 1) };
  }
}
