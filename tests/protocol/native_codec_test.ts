import { assertEquals, assertThrows } from "../harness/assert.ts";
import { decodeClientFrame, encodeServerFrame } from "../../src/protocol/native_codec.ts";
import { checkBody, checkRoomName, checkUserName } from "../../src/protocol/text_rules.ts";
import { ChatError } from "../../src/errors.ts";

const enc = new TextEncoder();
const line = (s: string) => enc.encode(s);

const good: { line: string; want: Record<string, unknown> }[] = [
  { line: '{"type":"hello","version":1}', want: { type: "hello", version: 1 } },
  {
    line: '{"type":"login","user":"a1","password":"p","ref":"r1"}',
    want: { type: "login", user: "a1", password: "p", ref: "r1" },
  },
  {
    line: '{"type":"login","user":"a1","password":"p","resume":{"rooms":{"general":3},"dm":2}}',
    want: { type: "login", user: "a1", password: "p", resume: { rooms: { general: 3 }, dm: 2 } },
  },
  {
    // Unknown fields are ignored (§1): dropped, so the command table sees only checked ones.
    line: '{"type":"send","cid":"c1","room":"general","body":"hi","extra":true}',
    want: { type: "send", cid: "c1", room: "general", body: "hi" },
  },
  { line: '{"type":"history","room":"x","limit":null}', want: { type: "history", room: "x" } },
  { line: '{"type":"ping"}', want: { type: "ping" } },
];

// PROTOCOL.md §6: ids in `resume` that are not non-negative integers are ignored, not refused.
// PROTOCOL.md §6: `rooms` may name any number of rooms (only the line limit bounds it): a user in
// many rooms must not be locked out of resuming.
Deno.test("decodeClientFrame() takes a resume naming 300 rooms", () => {
  const rooms = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`r${i}`, i + 1]));
  const f = decodeClientFrame(
    enc.encode(JSON.stringify({ type: "login", user: "a1", password: "p", resume: { rooms } })),
  );
  assertEquals(f.type === "login" && Object.keys(f.resume?.rooms ?? {}).length, 300);
});

Deno.test("decodeClientFrame() drops resume ids that are not non-negative integers", () => {
  const f = decodeClientFrame(line(
    '{"type":"login","user":"a1","password":"p","resume":{"rooms":{"general":3,"a":"1","b":-2,"c":1.5,"d":null},"dm":"x"}}',
  ));
  assertEquals(f, { type: "login", user: "a1", password: "p", resume: { rooms: { general: 3 } } });
});

for (const c of good) {
  Deno.test(`decodeClientFrame() accepts ${c.line}`, () => {
    assertEquals(decodeClientFrame(line(c.line)), c.want);
  });
}

const bad: { name: string; bytes: Uint8Array; code: string }[] = [
  { name: "not JSON", bytes: line("hello"), code: "bad_frame" },
  { name: "an array", bytes: line("[1]"), code: "bad_frame" },
  { name: "no type", bytes: line('{"user":"x"}'), code: "bad_frame" },
  { name: "unknown type", bytes: line('{"type":"fly"}'), code: "unknown_type" },
  { name: "prototype key as type", bytes: line('{"type":"constructor"}'), code: "unknown_type" },
  // login's password is optional (a session token may stand in, §2.1): its user is not.
  { name: "missing field", bytes: line('{"type":"login","password":"x"}'), code: "bad_frame" },
  { name: "wrong field type", bytes: line('{"type":"hello","version":"1"}'), code: "bad_frame" },
  { name: "fractional int", bytes: line('{"type":"hello","version":1.5}'), code: "bad_frame" },
  {
    name: "resume rooms not an object",
    bytes: line('{"type":"login","user":"x","password":"y","resume":{"rooms":["a"]}}'),
    code: "bad_frame",
  },
  {
    name: "ref too long",
    bytes: line(`{"type":"ping","ref":"${"r".repeat(65)}"}`),
    code: "bad_frame",
  },
  {
    name: "overlong UTF-8 form",
    bytes: new Uint8Array([0x7b, 0xc0, 0xaf, 0x7d]),
    code: "invalid_utf8",
  },
  {
    name: "encoded surrogate",
    bytes: new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]),
    code: "invalid_utf8",
  },
  { name: "truncated sequence", bytes: new Uint8Array([0x22, 0xe2, 0x82]), code: "invalid_utf8" },
];

for (const c of bad) {
  Deno.test(`decodeClientFrame() rejects ${c.name} with ${c.code}`, () => {
    const err = assertThrows(() => decodeClientFrame(c.bytes), ChatError);
    assertEquals((err as ChatError).code, c.code);
  });
}

Deno.test("decodeClientFrame() drops unknown fields, keeps the known ones, type and ref", () => {
  const f = decodeClientFrame(line(
    `{"type":"send","ref":"r1","cid":"c1","room":"general","body":"hi","notice":true,` +
      `"tags":{"+x":"1"},"op":"kick","__proto__":{"a":1}}`,
  ));
  assertEquals(f, {
    type: "send",
    ref: "r1",
    cid: "c1",
    room: "general",
    body: "hi",
    notice: true,
  } as unknown as ReturnType<typeof decodeClientFrame>);
  assertEquals(decodeClientFrame(line(`{"type":"part","room":"ops","reason":"bye","x":1}`)), {
    type: "part",
    room: "ops",
    reason: "bye",
  });
  assertThrows(() =>
    decodeClientFrame(line(`{"type":"send","cid":"c","room":"g","body":"x","notice":1}`))
  );
  assertThrows(() => decodeClientFrame(line(`{"type":"part","room":"ops","reason":5}`)));
});

Deno.test("decodeClientFrame() keeps the ref on a rejected frame", () => {
  const err = assertThrows(() => decodeClientFrame(line('{"type":"send","ref":"r9"}')), ChatError);
  assertEquals((err as ChatError).ref, "r9");
});

Deno.test("encodeServerFrame() writes one JSON line", () => {
  const bytes = encodeServerFrame({ type: "pong" });
  assertEquals(new TextDecoder().decode(bytes), '{"type":"pong"}\n');
});

const limits = { maxBodyBytes: 10 };
const bodies: { name: string; body: unknown; code: string | null }[] = [
  { name: "plain text", body: "hi there", code: null },
  { name: "a tab", body: "a\tb", code: null },
  { name: "emoji within limit", body: "😀😀", code: null },
  { name: "empty", body: "", code: "invalid_text" },
  { name: "white space only", body: " \t ", code: "invalid_text" },
  { name: "ESC", body: "a\u001b[2J", code: "invalid_text" },
  { name: "NUL", body: "a\u0000", code: "invalid_text" },
  { name: "newline", body: "a\nb", code: "invalid_text" },
  { name: "lone CR", body: "a\rb", code: "invalid_text" },
  { name: "DEL", body: "a\u007f", code: "invalid_text" },
  { name: "C1 CSI", body: "a\u009b2J", code: "invalid_text" },
  { name: "bidi override", body: "a\u202eb", code: "invalid_text" },
  { name: "bidi isolate", body: "a\u2067b", code: "invalid_text" },
  { name: "lone surrogate", body: "a\ud800", code: "invalid_text" },
  { name: "over the byte limit", body: "ééééééé", code: "too_large" },
  { name: "not a string", body: 5, code: "invalid_text" },
];

for (const c of bodies) {
  Deno.test(`checkBody() ${c.code ? "rejects" : "accepts"} ${c.name}`, () => {
    if (c.code === null) {
      assertEquals(checkBody(c.body, limits), c.body);
    } else {
      const err = assertThrows(() => checkBody(c.body, limits), ChatError);
      assertEquals((err as ChatError).code, c.code);
    }
  });
}

const names: { name: string; ok: boolean }[] = [
  { name: "alice", ok: true },
  { name: "Bob_2", ok: true },
  { name: "a", ok: false },
  { name: "1abc", ok: false },
  { name: "al ice", ok: false },
  { name: "al:ice", ok: false },
  { name: "al,ice", ok: false },
  { name: "аlice", ok: false }, // Cyrillic а
  { name: "x".repeat(33), ok: false },
];

for (const c of names) {
  Deno.test(`checkUserName() ${c.ok ? "accepts" : "rejects"} ${JSON.stringify(c.name)}`, () => {
    if (c.ok) assertEquals(checkUserName(c.name), c.name);
    else assertThrows(() => checkUserName(c.name), ChatError);
  });
}

Deno.test("checkRoomName() lowercases and validates", () => {
  assertEquals(checkRoomName("Ops-1"), "ops-1");
  assertThrows(() => checkRoomName("-x"), ChatError);
  assertThrows(() => checkRoomName("a b"), ChatError);
  assertThrows(() => checkRoomName("dm:1:2"), ChatError);
});
