// Tables of good and bad lines for the IRC codec (src/protocol/irc_codec.ts); expectations from
// RFC 1459 §2.3, modern.ircdocs.horse "Message format" and IRCv3 message-tags (escaping).
import { assertEquals, assertThrows } from "../harness/assert.ts";
import {
  escapeTagValue,
  IRC_MAX_LINE_BYTES,
  type IrcMessage,
  IrcParseError,
  type IrcParseErrorCode,
  IrcSerializeError,
  parseIrcLine,
  relayableTags,
  serializeIrc,
  unescapeTagValue,
} from "../../src/protocol/irc_codec.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";

const enc = new TextEncoder();

const good: { line: string; msg: IrcMessage }[] = [
  { line: "PING", msg: { command: "PING", params: [] } },
  { line: "ping :x y", msg: { command: "PING", params: ["x y"] } },
  { line: "NICK alice", msg: { command: "NICK", params: ["alice"] } },
  { line: "USER a 0 * :Alice A", msg: { command: "USER", params: ["a", "0", "*", "Alice A"] } },
  {
    line: ":nick!ident@host.com PRIVMSG me :Hello",
    msg: { source: "nick!ident@host.com", command: "PRIVMSG", params: ["me", "Hello"] },
  },
  // Several spaces separate params; the trailing keeps its spaces.
  { line: "foo bar baz   asdf", msg: { command: "FOO", params: ["bar", "baz", "asdf"] } },
  {
    line: ":coolguy foo bar baz :  asdf quux ",
    msg: { source: "coolguy", command: "FOO", params: ["bar", "baz", "  asdf quux "] },
  },
  { line: "AWAY :", msg: { command: "AWAY", params: [""] } },
  // An unknown command with `_` parses (the server answers it 421).
  { line: "nonexistent_command x", msg: { command: "NONEXISTENT_COMMAND", params: ["x"] } },
  { line: "PRIVMSG #c ::-)", msg: { command: "PRIVMSG", params: ["#c", ":-)"] } },
  { line: "PRIVMSG #c :a:b::c", msg: { command: "PRIVMSG", params: ["#c", "a:b::c"] } },
  {
    line: ":srv 001 me :Welcome",
    msg: { source: "srv", command: "001", params: ["me", "Welcome"] },
  },
  // Trailing spaces after the last middle param are separators.
  { line: "JOIN #a,#b   ", msg: { command: "JOIN", params: ["#a,#b"] } },
  // The 15th param takes the rest of the line, colon or not.
  {
    line: "X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 and more",
    msg: {
      command: "X",
      params: [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "10",
        "11",
        "12",
        "13",
        "14",
        "15 and more",
      ],
    },
  },
  // IRCv3 message tags.
  {
    line: "@id=123AB;rose :nick!ident@host.com PRIVMSG me :Hello",
    msg: {
      tags: { id: "123AB", rose: "" },
      source: "nick!ident@host.com",
      command: "PRIVMSG",
      params: ["me", "Hello"],
    },
  },
  {
    line: "@a=b\\\\and\\nk;c=72\\s45;d=gh\\:764 foo",
    msg: { tags: { a: "b\\and\nk", c: "72 45", d: "gh;764" }, command: "FOO", params: [] },
  },
  {
    line: "@c;h=;a=b :quux ab cd",
    msg: { tags: { c: "", h: "", a: "b" }, source: "quux", command: "AB", params: ["cd"] },
  },
  { line: "@tag1=value\\1 CMD", msg: { tags: { tag1: "value1" }, command: "CMD", params: [] } },
  { line: "@tag1=value1\\ CMD", msg: { tags: { tag1: "value1" }, command: "CMD", params: [] } },
  { line: "@k=1;k=2 CMD", msg: { tags: { k: "2" }, command: "CMD", params: [] } },
  {
    line: "@+example.com/draft-x=v;+typing=active TAGMSG #c",
    msg: {
      tags: { "+example.com/draft-x": "v", "+typing": "active" },
      command: "TAGMSG",
      params: ["#c"],
    },
  },
  { line: "@label=abc;  PING x", msg: { tags: { label: "abc" }, command: "PING", params: ["x"] } },
  { line: "PRIVMSG #c :ünïcödé 🎉", msg: { command: "PRIVMSG", params: ["#c", "ünïcödé 🎉"] } },
];

for (const { line, msg } of good) {
  Deno.test(`parseIrcLine() reads ${JSON.stringify(line)}`, () => {
    assertEquals(parseIrcLine(enc.encode(line)), msg);
  });
}

const bad: { what: string; line: Uint8Array | string; code: IrcParseErrorCode }[] = [
  { what: "an empty line", line: "", code: "no_command" },
  { what: "only spaces", line: "   ", code: "no_command" },
  { what: "only a prefix", line: ":nick!u@h", code: "no_command" },
  { what: "only tags", line: "@a=b", code: "no_command" },
  { what: "an empty tag section", line: "@ PING", code: "bad_tags" },
  { what: "a tag name with a space-like escape", line: "@a\\b=1 PING", code: "bad_tags" },
  { what: "an empty tag name", line: "@=1 PING", code: "bad_tags" },
  { what: "a command with punctuation", line: "PRIV;MSG #c :x", code: "no_command" },
  { what: "a two-digit numeric", line: "01 x", code: "no_command" },
  { what: "a command starting with a digit", line: "1ABC x", code: "no_command" },
  { what: "a NUL in a param", line: "NICK al\0ice", code: "bad_char" },
  { what: "a CR in the trailing param", line: "PRIVMSG #c :a\rQUIT", code: "bad_char" },
  { what: "a NUL in a tag", line: "@a=\0 PING", code: "bad_char" },
  {
    what: "bad UTF-8",
    line: new Uint8Array([0x50, 0x49, 0x4e, 0x47, 0x20, 0xff]),
    code: "invalid_utf8",
  },
  {
    what: "an overlong UTF-8 encoding",
    line: new Uint8Array([...enc.encode("PRIVMSG #c :"), 0xc0, 0xaf]),
    code: "invalid_utf8",
  },
  {
    what: "511 bytes without tags",
    line: "PRIVMSG #c :" + "x".repeat(499),
    code: "input_too_long",
  },
  {
    what: "a tag section of 4097 bytes",
    line: "@a=" + "x".repeat(4093) + " PING",
    code: "tags_too_long",
  },
];

for (const { what, line, code } of bad) {
  Deno.test(`parseIrcLine() refuses ${what} (${code})`, () => {
    const bytes = typeof line === "string" ? enc.encode(line) : line;
    const e = assertThrows(() => parseIrcLine(bytes), IrcParseError);
    assertEquals(e.code, code);
  });
}

Deno.test("parseIrcLine() takes 510 bytes after a 4096-byte tag section", () => {
  const tags = "@a=" + "x".repeat(4092) + " ";
  const rest = "PRIVMSG #c :" + "y".repeat(510 - 12);
  assertEquals(enc.encode(tags).length, 4096);
  const m = parseIrcLine(enc.encode(tags + rest));
  assertEquals(m.params[1].length, 498);
  assertEquals(IRC_MAX_LINE_BYTES, 4608);
});

Deno.test("escapeTagValue() and unescapeTagValue() round-trip every escaped character", () => {
  const table: [string, string][] = [
    ["a;b", "a\\:b"],
    ["a b", "a\\sb"],
    ["a\\b", "a\\\\b"],
    ["a\rb", "a\\rb"],
    ["a\nb", "a\\nb"],
    ["plain", "plain"],
    ["; \\\r\n", "\\:\\s\\\\\\r\\n"],
    ["tab\tstays", "tab\tstays"],
  ];
  for (const [raw, escaped] of table) {
    assertEquals(escapeTagValue(raw), escaped);
    assertEquals(unescapeTagValue(escaped), raw);
  }
});

const out: { msg: IrcMessage; line: string; trailing?: boolean }[] = [
  { msg: { command: "PING", params: [] }, line: "PING\r\n" },
  {
    msg: { source: "srv", command: "001", params: ["me", "Welcome home"] },
    line: ":srv 001 me :Welcome home\r\n",
  },
  { msg: { command: "AWAY", params: [""] }, line: "AWAY :\r\n" },
  { msg: { command: "PRIVMSG", params: ["#c", ":-)"] }, line: "PRIVMSG #c ::-)\r\n" },
  { msg: { command: "PRIVMSG", params: ["#c", "x"] }, line: "PRIVMSG #c :x\r\n", trailing: true },
  { msg: { command: "JOIN", params: ["#c"] }, line: "JOIN #c\r\n" },
  {
    msg: {
      tags: { time: "2024-01-01T00:00:00.000Z", msgid: "42", "draft/x": "a b;c" },
      source: "a!a@h",
      command: "PRIVMSG",
      params: ["#c", "hi"],
    },
    line: "@time=2024-01-01T00:00:00.000Z;msgid=42;draft/x=a\\sb\\:c :a!a@h PRIVMSG #c hi\r\n",
  },
  { msg: { tags: { flag: "" }, command: "TAGMSG", params: ["#c"] }, line: "@flag TAGMSG #c\r\n" },
];

for (const { msg, line, trailing } of out) {
  Deno.test(`serializeIrc() writes ${JSON.stringify(line)}`, () => {
    assertEquals(serializeIrc(msg, { trailing }), line);
    // What we write, we read back the same.
    assertEquals(parseIrcLine(enc.encode(line.slice(0, -2))), msg);
  });
}

Deno.test("serializeIrc() refuses CR, LF and NUL in params and malformed middle params", () => {
  for (
    const params of [["#c", "a\r\nQUIT"], ["#c", "a\0"], ["a b", "x"], [":a", "x"], ["", "x"]]
  ) {
    assertThrows(() => serializeIrc({ command: "PRIVMSG", params }), IrcSerializeError);
  }
  assertThrows(() => serializeIrc({ source: "a b", command: "X", params: [] }), IrcSerializeError);
  assertThrows(() => serializeIrc({ command: "X Y", params: [] }), IrcSerializeError);
});

Deno.test("lines split at any byte parse the same (CR LF, LF alone, chunk borders)", () => {
  const stream = "@a=1 PING x\r\nPRIVMSG #c :hé\nNICK b\r\n";
  const want = [
    { tags: { a: "1" }, command: "PING", params: ["x"] },
    { command: "PRIVMSG", params: ["#c", "hé"] },
    { command: "NICK", params: ["b"] },
  ];
  const bytes = enc.encode(stream);
  for (let cut = 1; cut < bytes.length; cut++) {
    const s = new LineSplitter(IRC_MAX_LINE_BYTES);
    const lines = [...s.push(bytes.subarray(0, cut)), ...s.push(bytes.subarray(cut))];
    assertEquals(lines.map(parseIrcLine), want);
  }
});

Deno.test("relayableTags() keeps client-only tags with safe values, within 4094 bytes", () => {
  assertEquals(relayableTags({ "+a": "1", b: "2", "+c": "x\ny", "+d": "", "bad key": "3" }), {
    "+a": "1",
    "+d": "",
  });
  assertEquals(relayableTags("nope"), undefined);
  assertEquals(relayableTags(["+a"]), undefined);
  assertEquals(relayableTags({ "+a": 5 }), undefined);
  const big = relayableTags({ "+a": "x".repeat(4000), "+b": "y".repeat(200), "+c": "z" })!;
  assertEquals(Object.keys(big), ["+a", "+c"]);
});
