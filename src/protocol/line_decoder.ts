// Owns framing: splitting a byte stream into lines with a hard length cap.
import { concatBytes } from "./concat_bytes.ts";
import { ChatError } from "../errors.ts";

const LF = 0x0a;
/** Stands in for a dropped overlong line (skip mode). */
const OVERLONG = new Uint8Array(0);
const CR = 0x0d;

/**
 * Splits bytes into lines. Pure and incremental: `push` returns the complete lines in a chunk.
 * Never holds more than `maxLineBytes` of an unfinished line: past that `push` throws
 * `line_too_long` (the caller closes the connection; there is no way to resynchronise safely).
 * A trailing CR before LF is dropped; empty lines are skipped unless `keepEmpty` is set (a
 * dialogue where an empty answer means something: the seed protocol's login prompts).
 *
 * With `overlong: "skip"` (IRC, where ERR_INPUTTOOLONG answers and the connection goes on) an
 * overlong line is dropped instead, through its LF, and an empty line stands in its place (empty
 * lines are otherwise returned only with `keepEmpty`, which IRC does not set), so the caller can
 * say so.
 */
export class LineSplitter {
  #max: number;
  #skip: boolean;
  #discarding = false;
  /** Pass empty lines on (as zero-length lines) instead of skipping them. */
  keepEmpty = false;
  #parts: Uint8Array[] = [];
  #partBytes = 0;

  constructor(maxLineBytes: number, opts: { overlong?: "fatal" | "skip" } = {}) {
    this.#max = maxLineBytes;
    this.#skip = opts.overlong === "skip";
  }

  /** Bytes of the unfinished line currently held. */
  get pendingBytes(): number {
    return this.#partBytes;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const lines: Uint8Array[] = [];
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(LF, start);
      if (this.#discarding) {
        if (nl === -1) break;
        this.#discarding = false;
        lines.push(OVERLONG);
        start = nl + 1;
        continue;
      }
      if (nl === -1) {
        const rest = chunk.length - start;
        if (this.#partBytes + rest > this.#max + 1) {
          if (!this.#skip) this.#tooLong();
          this.#parts = [];
          this.#partBytes = 0;
          this.#discarding = true;
          break;
        }
        // Copy: the caller may reuse its read buffer.
        this.#parts.push(chunk.slice(start));
        this.#partBytes += rest;
        break;
      }
      let line: Uint8Array;
      if (this.#parts.length === 0) {
        line = chunk.subarray(start, nl);
      } else {
        this.#parts.push(chunk.subarray(start, nl));
        line = concatBytes(this.#parts, this.#partBytes + nl - start);
        this.#parts = [];
        this.#partBytes = 0;
      }
      start = nl + 1;
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      if (line.length > this.#max) {
        if (!this.#skip) this.#tooLong();
        lines.push(OVERLONG);
        continue;
      }
      if (line.length > 0 || this.keepEmpty) lines.push(line);
    }
    return lines;
  }

  #tooLong(): never {
    this.#parts = [];
    this.#partBytes = 0;
    throw new ChatError("line_too_long", `Cannot read line: longer than ${this.#max} bytes`, {
      fatal: true,
    });
  }
}

/** The same splitter as a TransformStream of byte chunks to lines (each line its own chunk). */
export class LineDecoderStream extends TransformStream<Uint8Array, Uint8Array> {
  constructor(maxLineBytes: number) {
    const splitter = new LineSplitter(maxLineBytes);
    super({
      transform(chunk, controller) {
        for (const line of splitter.push(chunk)) controller.enqueue(line);
      },
    });
  }
}
