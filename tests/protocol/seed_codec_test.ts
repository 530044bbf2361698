// Tables of good, bad and awkwardly split lines for the seed text codec (src/protocol/seed_codec.ts).
import { assertEquals, assertThrows } from "../harness/assert.ts";
import { ChatError } from "../../src/errors.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import {
  decodeSeedText,
  encodeSeedLines,
  formatSeedLine,
  parseAuthChoice,
  parseSeedLine,
  type SeedServerLine,
} from "../../src/protocol/seed_codec.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const lines: { line: SeedServerLine; text: string }[] = [
  { line: { kind: "prompt", prompt: "AUTH_REQUIRED" }, text: "AUTH_REQUIRED" },
  { line: { kind: "prompt", prompt: "ENTER_USERNAME" }, text: "ENTER_USERNAME" },
  { line: { kind: "prompt", prompt: "ENTER_PASSWORD" }, text: "ENTER_PASSWORD" },
  { line: { kind: "prompt", prompt: "AUTH_SUCCESS" }, text: "AUTH_SUCCESS" },
  { line: { kind: "prompt", prompt: "AUTH_FAILED" }, text: "AUTH_FAILED" },
  { line: { kind: "chat", from: "alice", body: "hi" }, text: "alice: hi" },
  {
    line: { kind: "chat", from: "alice", body: "a: b [USERS_LIST] x" },
    text: "alice: a: b [USERS_LIST] x",
  },
  {
    line: { kind: "chat", from: "bob", body: "tab\there ünïcödé 🎉" },
    text: "bob: tab\there ünïcödé 🎉",
  },
  { line: { kind: "room", room: "ops", from: "carol", body: "up" }, text: "[#ops] carol: up" },
  { line: { kind: "dm", from: "dave", to: "erin", body: "psst" }, text: "[DM] dave -> erin: psst" },
  {
    line: { kind: "users", users: ["alice", "bob", "carol"] },
    text: "[USERS_LIST] alice,bob,carol",
  },
  { line: { kind: "users", users: ["solo"] }, text: "[USERS_LIST] solo" },
  { line: { kind: "joined", user: "frank" }, text: "[JOINED] frank" },
  { line: { kind: "left", user: "frank" }, text: "[LEFT] frank" },
  {
    line: { kind: "error", code: "rate_limited", message: "Cannot send: too many messages" },
    text: "[ERROR] rate_limited: Cannot send: too many messages",
  },
  {
    line: { kind: "server", code: "shutdown", message: "The server is shutting down" },
    text: "[SERVER] shutdown: The server is shutting down",
  },
];

for (const c of lines) {
  Deno.test(`formatSeedLine() writes ${JSON.stringify(c.text)}`, () => {
    assertEquals(formatSeedLine(c.line), c.text);
  });
  Deno.test(`parseSeedLine() reads ${JSON.stringify(c.text)} back`, () => {
    assertEquals(parseSeedLine(c.text), c.line);
  });
}

Deno.test("encodeSeedLines() ends every line with one newline, in order", () => {
  const bytes = encodeSeedLines(
    { kind: "joined", user: "gus" },
    { kind: "users", users: ["amy", "gus"] },
  );
  assertEquals(dec.decode(bytes), "[JOINED] gus\n[USERS_LIST] amy,gus\n");
});

Deno.test("encodeSeedLines() never lets a field break the line", () => {
  const text = dec.decode(encodeSeedLines({ kind: "chat", from: "x1", body: "a\nAUTH_SUCCESS\r" }));
  assertEquals(text, "x1: a AUTH_SUCCESS \n");
});

const badServerLines = [
  "hello there",
  "alice:no-space",
  "two words: body",
  "[WHAT] is this",
  "[ERROR] no code separator",
  "[SERVER] ",
  "[DM] alice: no arrow",
  "[#] alice: no room",
  "[#ops] not a message",
  "",
];

for (const text of badServerLines) {
  Deno.test(`parseSeedLine() rejects ${JSON.stringify(text)} with bad_frame`, () => {
    const err = assertThrows(() => parseSeedLine(text), ChatError);
    assertEquals(err.code, "bad_frame");
  });
}

const choices: { text: string; want: "login" | "register" | null }[] = [
  { text: "LOGIN", want: "login" },
  { text: "login", want: "login" },
  { text: "  Login\t", want: "login" },
  { text: "REGISTER", want: "register" },
  { text: "register ", want: "register" },
  { text: "rEgIsTeR", want: "register" },
  { text: "LOG IN", want: null },
  { text: "LOGINX", want: null },
  { text: "", want: null },
  { text: "alice", want: null },
];

for (const c of choices) {
  Deno.test(`parseAuthChoice(${JSON.stringify(c.text)}) is ${c.want}`, () => {
    assertEquals(parseAuthChoice(c.text), c.want);
  });
}

const badUtf8: { name: string; bytes: number[] }[] = [
  { name: "an overlong form", bytes: [0x61, 0xc0, 0xaf] },
  { name: "an encoded surrogate", bytes: [0xed, 0xa0, 0x80] },
  { name: "a truncated sequence", bytes: [0x68, 0x69, 0xe2, 0x82] },
  { name: "a lone continuation byte", bytes: [0x80] },
];

for (const c of badUtf8) {
  Deno.test(`decodeSeedText() rejects ${c.name} with a non-fatal invalid_utf8`, () => {
    const err = assertThrows(() => decodeSeedText(new Uint8Array(c.bytes)), ChatError);
    assertEquals([err.code, err.fatal], ["invalid_utf8", false]);
  });
}

Deno.test("decodeSeedText() keeps the text as sent, white space included", () => {
  assertEquals(decodeSeedText(enc.encode("  héllo\tworld ")), "  héllo\tworld ");
});

/** Runs chunks through the session's splitter and the seed decoder, as a session does. */
function splitAndDecode(chunks: Uint8Array[], max = 64): string[] {
  const splitter = new LineSplitter(max);
  return chunks.flatMap((c) => splitter.push(c)).map(decodeSeedText);
}

const splits: { name: string; chunks: Uint8Array[]; want: string[] }[] = [
  {
    name: "a dialogue pasted in one chunk",
    chunks: [enc.encode("LOGIN\nalice\n5e884898da28\nhi all\n")],
    want: ["LOGIN", "alice", "5e884898da28", "hi all"],
  },
  {
    name: "CRLF split between CR and LF",
    chunks: [enc.encode("REGISTER\r"), enc.encode("\nbob\r\n")],
    want: ["REGISTER", "bob"],
  },
  {
    name: "a four-byte character split over three chunks",
    chunks: (() => {
      const b = enc.encode("ok 🎉!\n");
      return [b.subarray(0, 4), b.subarray(4, 6), b.subarray(6)];
    })(),
    want: ["ok 🎉!"],
  },
  {
    name: "one byte at a time, with an empty line skipped",
    chunks: [...enc.encode("a:\n\nb\n")].map((x) => new Uint8Array([x])),
    want: ["a:", "b"],
  },
];

for (const c of splits) {
  Deno.test(`seed lines survive ${c.name}`, () => {
    assertEquals(splitAndDecode(c.chunks), c.want);
  });
}

Deno.test("a seed line of exactly maxLineBytes passes, one byte more is fatal line_too_long", () => {
  assertEquals(splitAndDecode([enc.encode("x".repeat(64) + "\n")]), ["x".repeat(64)]);
  const err = assertThrows(() => splitAndDecode([enc.encode("x".repeat(65) + "\n")]), ChatError);
  assertEquals([err.code, err.fatal], ["line_too_long", true]);
});
