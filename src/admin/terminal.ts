// Owns the admin CLI's terminal: stdin and stderr as the process has them, prompts, hidden input.
import { concatBytes } from "../protocol/concat_bytes.ts";
import { ChatError } from "../errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Most that `--password-stdin` reads. */
const MAX_STDIN_BYTES = 1 << 20;

/** What admin commands need of the terminal; tests and main.ts provide it. */
export interface AdminIo {
  out(text: string): void;
  err(text: string): void;
  /** Raw bytes to stdout (exports), written completely before resolving. */
  writeOut(bytes: Uint8Array): Promise<void>;
  readonly stdinIsTerminal: boolean;
  readonly stderrIsTerminal: boolean;
  /** All of stdin up to EOF (for `--password-stdin`). */
  readStdin(): Promise<string>;
  /** Prints `question` on stderr and reads one line; null at end of input. */
  readLine(question: string): Promise<string | null>;
  /** Like readLine without echo (terminal in raw mode); null at end of input. */
  readSecret(question: string): Promise<string | null>;
}

/** The process's own terminal, with output through `out`/`err` (main.ts's context). */
export function processIo(out: (s: string) => void, err: (s: string) => void): AdminIo {
  return {
    out,
    err,
    async writeOut(bytes) {
      let off = 0;
      while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
    },
    stdinIsTerminal: Deno.stdin.isTerminal(),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    readStdin,
    async readLine(question) {
      err(question);
      return await readLineFromStdin();
    },
    async readSecret(question) {
      if (!Deno.stdin.isTerminal()) {
        err(question);
        return await readLineFromStdin();
      }
      // Echo off before the prompt shows, so keys typed right after it are never echoed.
      Deno.stdin.setRaw(true);
      err(question);
      try {
        return await readHidden();
      } finally {
        Deno.stdin.setRaw(false);
        err("\n");
      }
    },
  };
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(16384);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null) break;
    total += n;
    if (total > MAX_STDIN_BYTES) {
      throw new ChatError("stdin_too_large", "Cannot read stdin: more than 1 MiB");
    }
    chunks.push(buf.slice(0, n));
  }
  return decoder.decode(concatBytes(chunks, total));
}

async function readLineFromStdin(): Promise<string | null> {
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  for (;;) {
    // One byte at a time: nothing past the newline is consumed, so a later prompt still works.
    const n = await Deno.stdin.read(buf);
    if (n === null) return bytes.length ? decoder.decode(new Uint8Array(bytes)) : null;
    if (buf[0] === 0x0a) break;
    bytes.push(buf[0]);
    if (bytes.length > 4096) break;
  }
  return decoder.decode(new Uint8Array(bytes)).replace(/\r$/, "");
}

/** Reads keys in raw mode until Enter: backspace edits, Ctrl-C cancels, escape sequences drop. */
async function readHidden(): Promise<string | null> {
  const bytes: number[] = [];
  const buf = new Uint8Array(64);
  let escape = false;
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return bytes.length ? decoder.decode(new Uint8Array(bytes)) : null;
    for (const b of buf.subarray(0, n)) {
      if (escape) {
        if (b >= 0x40 && b <= 0x7e && b !== 0x5b) escape = false;
        continue;
      }
      if (b === 0x0d || b === 0x0a) return decoder.decode(new Uint8Array(bytes));
      if (b === 0x03) throw new ChatError("cancelled", "Cannot continue: cancelled");
      if (b === 0x04) {
        if (bytes.length === 0) return null;
        continue;
      }
      if (b === 0x1b) {
        escape = true;
      } else if (b === 0x7f || b === 0x08) {
        // Drop one whole UTF-8 character: continuation bytes, then the lead byte.
        while (bytes.length && (bytes[bytes.length - 1] & 0xc0) === 0x80) bytes.pop();
        bytes.pop();
      } else if (b >= 0x20 || b === 0x09) {
        bytes.push(b);
      }
      if (bytes.length > 4096) return decoder.decode(new Uint8Array(bytes));
    }
  }
}

/** Encodes text for writeOut. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}
