import { assertEquals, assertThrows } from "../harness/assert.ts";
import { LineDecoderStream, LineSplitter } from "../../src/protocol/line_decoder.ts";
import { ChatError } from "../../src/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function split(chunks: (string | Uint8Array)[], max = 16): string[] {
  const s = new LineSplitter(max);
  const out: string[] = [];
  for (const c of chunks) {
    for (const line of s.push(typeof c === "string" ? enc.encode(c) : c)) {
      out.push(dec.decode(line));
    }
  }
  return out;
}

const cases: { name: string; chunks: string[]; want: string[] }[] = [
  { name: "one line", chunks: ["abc\n"], want: ["abc"] },
  { name: "several lines in one chunk", chunks: ["a\nb\nc\n"], want: ["a", "b", "c"] },
  { name: "split byte by byte", chunks: [..."hello\nworld\n"], want: ["hello", "world"] },
  { name: "CRLF endings", chunks: ["a\r\nb\r", "\n"], want: ["a", "b"] },
  { name: "empty lines skipped", chunks: ["\n\n\r\nx\n"], want: ["x"] },
  { name: "lone CR kept inside a line", chunks: ["a\rb\n"], want: ["a\rb"] },
  { name: "unfinished line held", chunks: ["abc"], want: [] },
  { name: "line exactly at the cap", chunks: ["0123456789abcdef\n"], want: ["0123456789abcdef"] },
  {
    name: "line at the cap in pieces",
    chunks: ["01234567", "89abcdef", "\n"],
    want: ["0123456789abcdef"],
  },
];

for (const c of cases) {
  Deno.test(`LineSplitter: ${c.name}`, () => {
    assertEquals(split(c.chunks), c.want);
  });
}

Deno.test("LineSplitter rejects a line one byte over maxLineBytes", () => {
  assertThrows(() => split(["0123456789abcdefX\n"]), ChatError, "longer than 16");
});

Deno.test("LineSplitter rejects a flood with no newline without buffering it", () => {
  const s = new LineSplitter(16);
  s.push(enc.encode("0123456789"));
  assertThrows(() => s.push(enc.encode("0123456789")), ChatError);
  assertEquals(s.pendingBytes, 0);
});

Deno.test("LineSplitter keeps the CR of a line at the cap plus CR", () => {
  // 16 bytes + CR + LF: the CR is framing, not content.
  assertEquals(split(["0123456789abcdef\r\n"]), ["0123456789abcdef"]);
});

Deno.test("LineSplitter copies held bytes so a reused read buffer cannot corrupt them", () => {
  const s = new LineSplitter(64);
  const buf = enc.encode("abc");
  s.push(buf);
  buf.set(enc.encode("XYZ"));
  assertEquals(s.push(enc.encode("\n")).map((l) => dec.decode(l)), ["abc"]);
});

Deno.test("LineDecoderStream splits a stream and errors on an over-long line", async () => {
  const good = ReadableStream.from([enc.encode("a\nb"), enc.encode("c\n")])
    .pipeThrough(new LineDecoderStream(8));
  const lines: string[] = [];
  for await (const l of good) lines.push(dec.decode(l));
  assertEquals(lines, ["a", "bc"]);
  const bad = ReadableStream.from([enc.encode("0123456789\n")]).pipeThrough(
    new LineDecoderStream(8),
  );
  let failed = false;
  try {
    for await (const _ of bad) { /* drain */ }
  } catch (err) {
    failed = err instanceof ChatError && err.code === "line_too_long";
  }
  assertEquals(failed, true);
});
