// Unit tests of the renderer: untrusted text can never drive the terminal; widths and wrapping.
import { assert, assertEquals } from "../harness/assert.ts";
import {
  charWidth,
  formatMessage,
  isSafe,
  nickColor,
  plainText,
  sanitize,
  textWidth,
  wrapLine,
} from "../../src/client/render.ts";

/** No byte of the output may start an escape or control sequence. */
function assertInert(s: string): void {
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    assert(
      !(c < 0x20 || (c >= 0x7f && c <= 0x9f)),
      `control U+${c.toString(16)} in ${JSON.stringify(s)}`,
    );
    assert(
      !(c >= 0x202a && c <= 0x202e) && !(c >= 0x2066 && c <= 0x2069),
      `bidi control in ${JSON.stringify(s)}`,
    );
  }
}

// deno-lint-ignore no-control-regex
const OWN_SGR = /\x1b\[[0-9;]*m/g;

const ATTACKS: [string, string][] = [
  ["clear screen and home", "\x1b[2J\x1b[Hgotcha"],
  ["set window title (OSC, BEL)", "\x1b]0;pwned\x07hi"],
  ["OSC 52 clipboard write", "\x1b]52;c;cm0gLXJmIH4=\x1b\\"],
  ["8-bit CSI (C1)", "\u009b31mred"],
  ["8-bit OSC and ST", "\u009d0;title\u009c"],
  ["carriage return overwrite", "harmless\rrm -rf ~"],
  ["backspaces", "admin\b\b\b\b\bguest"],
  ["cursor up and erase line", "\x1b[1A\x1b[2Kfake line"],
  ["newline injection", "hi\n12:00 <admin> trust me"],
  ["right-to-left override", "file\u202eexe.txt"],
  ["isolates", "\u2066abc\u2069"],
  ["NUL and DEL", "a\u0000b\u007fc"],
  ["lone surrogate", "x\ud800y"],
  ["line separator", "a\u2028b"],
];

for (const [name, attack] of ATTACKS) {
  Deno.test(`sanitize() neutralises ${name}`, () => {
    const out = sanitize(attack);
    assertInert(out);
    assert(isSafe(out), "sanitised text is not reported safe");
    assert(!isSafe(attack), "the attack was reported safe");
  });

  Deno.test(`wrapLine() emits only its own SGR sequences for ${name}`, () => {
    const rows = wrapLine([{ text: "<mallory> ", sgr: "31" }, { text: attack }], 20, {
      color: true,
      indent: 4,
    });
    for (const row of rows) {
      // Remove our own colour sequences; what is left must be inert.
      assertInert(row.replace(OWN_SGR, ""));
    }
  });
}

Deno.test("sanitize() keeps ordinary text, accents, CJK and emoji unchanged", () => {
  const text = "Grüße, 你好, שלום, 🙂 and tabs\tare spaces";
  assertEquals(sanitize(text), text.replace("\t", " "));
});

Deno.test("sanitize() shows C0 controls in caret notation so an attempt stays visible", () => {
  assertEquals(sanitize("a\x1b[31mb"), "a^[[31mb");
  assertEquals(sanitize("x\ry"), "x^My");
  assertEquals(sanitize("\u009b"), "\ufffd");
});

Deno.test("formatMessage() sanitises the sender, room and body", () => {
  const line = formatMessage(
    { id: 1, ts: 0, from: "ev\x1b[2Jil", room: "r\x07", body: "\x1b]0;t\x07x" },
    { me: "alice", currentRoom: "general" },
  );
  for (const row of wrapLine(line, 200, { color: false })) assertInert(row);
});

Deno.test("formatMessage() shows a notice as -nick- text, as IRC clients do", () => {
  const view = { me: "alice", currentRoom: "general", now: 0 };
  const line = plainText(
    formatMessage(
      { id: 1, ts: 0, from: "bob", room: "general", body: "deploy", notice: true },
      view,
    ),
  );
  assertEquals(line.slice(5), "   -bob- deploy");
});

Deno.test("formatMessage() marks own messages, actions and direct messages", () => {
  const view = { me: "alice", currentRoom: "general", now: 0 };
  const own = plainText(
    formatMessage({ id: 1, ts: 0, from: "Alice", room: "general", body: "hi" }, view),
  );
  const other = plainText(
    formatMessage({ id: 2, ts: 0, from: "bob", room: "general", body: "yo" }, view),
  );
  const elsewhere = plainText(
    formatMessage({ id: 3, ts: 0, from: "bob", room: "ops", body: "up" }, view),
  );
  const action = plainText(
    formatMessage({ id: 4, ts: 0, from: "bob", room: "general", body: "/me waves" }, view),
  );
  const dmIn = plainText(
    formatMessage({ id: 5, ts: 0, from: "bob", to: "alice", body: "psst" }, view),
  );
  const dmOut = plainText(
    formatMessage({ id: 6, ts: 0, from: "alice", to: "bob", body: "ok" }, view),
  );
  assert(own.endsWith(" > <Alice> hi"), own);
  assert(other.endsWith("   <bob> yo"), other);
  assert(elsewhere.endsWith("   #ops <bob> up"), elsewhere);
  assert(action.endsWith("   * bob waves"), action);
  assert(dmIn.endsWith("   *bob* psst"), dmIn);
  assert(dmOut.endsWith(" > -> *bob* ok"), dmOut);
});

Deno.test("nickColor() is stable and ignores case", () => {
  assertEquals(nickColor("Alice"), nickColor("alice"));
  assertEquals(nickColor("bob"), nickColor("bob"));
  const colours = new Set(["a1", "b2", "c3", "d4", "e5", "f6", "g7", "h8"].map(nickColor));
  assert(colours.size > 1, "every name got the same colour");
});

Deno.test("charWidth() and textWidth() count wide and zero-width characters", () => {
  assertEquals(charWidth("a"), 1);
  assertEquals(charWidth("你"), 2);
  assertEquals(charWidth("🙂"), 2);
  assertEquals(charWidth("\u0301"), 0);
  assertEquals(textWidth("e\u0301你a"), 4);
});

Deno.test("wrapLine() wraps by display width with a hanging indent", () => {
  const rows = wrapLine([{ text: "12345678你好世界abcdefghijklm" }], 15, {
    color: false,
    indent: 2,
  });
  assertEquals(rows, ["12345678你好世", "  界abcdefghijk", "  lm"]);
  for (const row of rows) assert(textWidth(row) <= 15);
});

Deno.test("wrapLine() without colour emits no escape sequence at all", () => {
  const rows = wrapLine([{ text: "bold", sgr: "1" }, { text: " plain" }], 80, { color: false });
  assertEquals(rows, ["bold plain"]);
});

Deno.test("wrapLine() breaks a long notice at a space, so a parenthesis stays with its word", () => {
  const text = "* Reconnecting in 1.0 s, attempt 2: connection refused (is the server running?)";
  const rows = wrapLine([{ text }], 60, { color: false, indent: 2 });
  assertEquals(rows, [
    "* Reconnecting in 1.0 s, attempt 2: connection refused (is",
    "  the server running?)",
  ]);
  // A word longer than a row is still split.
  assertEquals(wrapLine([{ text: "ab " + "x".repeat(12) }], 8, { color: false }), [
    "ab",
    "xxxxxxxx",
    "xxxx",
  ]);
});
