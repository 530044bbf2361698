import { assertEquals } from "../harness/assert.ts";
import { messageLines, splitText, utf8Length } from "../../src/server/irc_encoder.ts";

const enc = new TextEncoder();

Deno.test("utf8Length() is TextEncoder's length, lone surrogates counted as U+FFFD", () => {
  const cases = [
    "",
    "plain ascii",
    "caf\u00e9 na\u00efve",
    "\u20ac and \u4e2d\u6587",
    "emoji \u{1f600}\u{1f680}",
    "lone high \ud800 end",
    "lone low \udc00",
    "high at the end \ud83d",
    "\u007f\u0080\u07ff\u0800\uffff",
  ];
  for (const s of cases) assertEquals(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
});

Deno.test("messageLines() gives no tags object without capabilities, and tags with them", () => {
  const m = { id: 7, ts: 0, room: "lobby", from: "ann", body: "hi" };
  const [plain] = messageLines(m, 0);
  assertEquals(plain.tags, undefined);
  assertEquals(plain.params, ["#lobby", "hi"]);
  const [tagged] = messageLines(m, 2 | 4);
  assertEquals(tagged.tags, { msgid: "7", account: "ann" });
});

Deno.test("splitText() keeps a text that fits and cuts one that does not at a character", () => {
  assertEquals(splitText("\u{1f600}\u{1f600}", 8), ["\u{1f600}\u{1f600}"]);
  assertEquals(splitText("\u{1f600}\u{1f600}", 7), ["\u{1f600}", "\u{1f600}"]);
});
