// Unit tests of the key decoder and the line editor: editing, history, completion, awkward input.
import { assert, assertEquals } from "../harness/assert.ts";
import { type Key, KeyDecoder } from "../../src/client/keys.ts";
import { type Completer, LineEditor } from "../../src/client/line_editor.ts";

const enc = new TextEncoder();

function decodeAll(chunks: (string | Uint8Array)[]): Key[] {
  const d = new KeyDecoder();
  const keys: Key[] = [];
  for (const c of chunks) keys.push(...d.push(typeof c === "string" ? enc.encode(c) : c));
  keys.push(...d.flush());
  return keys;
}

const names = (keys: Key[]) =>
  keys.map((k) => (k.name === "text" || k.name === "paste") ? `${k.name}:${k.text}` : k.name);

Deno.test("KeyDecoder decodes text, control keys and escape sequences", () => {
  assertEquals(
    names(
      decodeAll([
        "hi\r",
        "\x7f",
        "\x1b[A\x1b[B\x1b[C\x1b[D",
        "\x1b[H\x1b[F\x1b[3~",
        "\x01\x05\x17\x15\x0b",
      ]),
    ),
    [
      "text:hi",
      "enter",
      "backspace",
      "up",
      "down",
      "right",
      "left",
      "home",
      "end",
      "delete",
      "home",
      "end",
      "delete-word-back",
      "kill-line-back",
      "kill-line-forward",
    ],
  );
});

Deno.test("KeyDecoder joins escape sequences and UTF-8 split across reads", () => {
  const bytes = enc.encode("é你\x1b[1;5C");
  const chunks = Array.from(bytes, (b) => new Uint8Array([b]));
  assertEquals(names(decodeAll(chunks)), ["text:é", "text:你", "word-right"]);
});

Deno.test("KeyDecoder keeps a bracketed paste as one key, even split at the end marker", () => {
  assertEquals(names(decodeAll(["\x1b[200~line 1\nline 2\x1b[20", "1~x"])), [
    "paste:line 1\nline 2",
    "text:x",
  ]);
});

Deno.test("KeyDecoder turns a lone ESC into escape only when flushed", () => {
  const d = new KeyDecoder();
  assertEquals(d.push(enc.encode("\x1b")), []);
  assert(d.holdsLoneEscape);
  assertEquals(names(d.flush()), ["escape"]);
});

function type(ed: LineEditor, ...keys: (string | Key)[]): void {
  for (const k of keys) ed.handle(typeof k === "string" ? { name: "text", text: k } : k);
}
const K = (name: Exclude<Key["name"], "text" | "paste">): Key => ({ name } as Key);

Deno.test("LineEditor edits in the middle of the line", () => {
  const ed = new LineEditor();
  type(ed, "helo world", K("home"), K("right"), K("right"), K("right"), "l");
  assertEquals([ed.text, ed.cursor], ["hello world", 4]);
  type(ed, K("end"), K("delete-word-back"));
  assertEquals(ed.text, "hello ");
  type(ed, K("backspace"), K("home"), K("delete"));
  assertEquals(ed.text, "ello");
  type(ed, K("end"), K("left"), K("kill-line-forward"));
  assertEquals(ed.text, "ell");
  type(ed, K("kill-line-back"));
  assertEquals([ed.text, ed.cursor], ["", 0]);
});

Deno.test("LineEditor moves by words and never splits a surrogate pair", () => {
  const ed = new LineEditor();
  type(ed, "one 🙂two three", K("word-left"));
  assertEquals(ed.cursor, 9);
  type(ed, K("word-left"), K("backspace"));
  assertEquals([ed.text, ed.cursor], ["one🙂two three", 3]);
  type(ed, K("right"), K("backspace"));
  assertEquals(ed.text, "onetwo three");
  type(ed, K("word-right"));
  assertEquals(ed.cursor, 6);
});

Deno.test("LineEditor submits, keeps history and restores the draft", () => {
  const ed = new LineEditor();
  type(ed, "first");
  assertEquals(ed.handle(K("enter")), { type: "submit", line: "first" });
  type(ed, "second");
  ed.handle(K("enter"));
  type(ed, "draft", K("up"));
  assertEquals(ed.text, "second");
  type(ed, K("up"), K("up"));
  assertEquals(ed.text, "first");
  type(ed, K("down"), K("down"));
  assertEquals(ed.text, "draft");
  assertEquals(ed.history, ["first", "second"]);
});

Deno.test("LineEditor in masked mode shows stars and keeps secrets out of history", () => {
  const ed = new LineEditor();
  ed.masked = true;
  type(ed, "s3cret");
  assertEquals(ed.view(40), { text: "******", cursorCol: 6 });
  ed.handle(K("enter"));
  assertEquals(ed.history, []);
});

Deno.test("LineEditor pastes multi-line text as one line without controls", () => {
  const ed = new LineEditor();
  ed.handle({ name: "paste", text: "a\r\nb\nc\x1b[31m" });
  assertEquals(ed.text, "a b c[31m");
});

Deno.test("LineEditor completes and cycles through candidates", () => {
  const seen: { word: string; first: boolean }[] = [];
  const complete: Completer = ({ word, first }) => {
    seen.push({ word, first });
    return ["bob", "bobby"].filter((n) => n.startsWith(word)).map((n) =>
      first ? `${n}: ` : `${n} `
    );
  };
  const ed = new LineEditor({ complete });
  type(ed, "bo", K("tab"));
  assertEquals(ed.text, "bob: ");
  type(ed, K("tab"));
  assertEquals(ed.text, "bobby: ");
  type(ed, K("tab"));
  assertEquals(ed.text, "bob: ");
  type(ed, "hi b", K("tab"));
  assertEquals(ed.text, "bob: hi bob ");
  assertEquals(seen, [{ word: "bo", first: true }, { word: "b", first: false }]);
});

Deno.test("LineEditor.view scrolls a long line so the cursor stays visible", () => {
  const ed = new LineEditor();
  type(ed, "x".repeat(50));
  const v = ed.view(20);
  assertEquals(v.cursorCol, 19);
  assertEquals(v.text, "x".repeat(19));
  type(ed, K("home"));
  assertEquals(ed.view(20), { text: "x".repeat(20), cursorCol: 0 });
});

Deno.test("LineEditor reports C-c, C-d on an empty line, C-l and paging", () => {
  const ed = new LineEditor();
  assertEquals(ed.handle(K("interrupt")), { type: "interrupt" });
  assertEquals(ed.handle(K("eof")), { type: "eof" });
  assertEquals(ed.handle(K("clear-screen")), { type: "redraw" });
  assertEquals(ed.handle(K("pageup")), { type: "page", direction: -1 });
  type(ed, "ab", K("home"));
  assertEquals(ed.handle(K("eof")), { type: "changed" });
  assertEquals(ed.text, "b");
});
