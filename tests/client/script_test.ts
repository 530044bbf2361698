// Unit tests of the script output formats: JSON lines stay valid and inert; plain lines are safe.
import { assert, assertEquals } from "../harness/assert.ts";
import { jsonEvent, jsonLine, plainEvent, readLines } from "../../src/client/script.ts";

Deno.test("jsonLine() escapes characters a terminal could act on, and stays the same JSON", () => {
  const value = { body: "a\u2028b\u0085c\u202ed\x1b[2J", n: 1 };
  const line = jsonLine(value);
  assert(line.endsWith("\n") && !line.slice(0, -1).includes("\n"));
  // deno-lint-ignore no-control-regex
  assert(!/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]/.test(line.slice(0, -1)), line);
  assertEquals(JSON.parse(line), value);
});

Deno.test("jsonEvent() and plainEvent() show messages and presence, nothing else", () => {
  const msg = {
    id: 3,
    ts: Date.UTC(2025, 0, 2, 10),
    from: "bob",
    body: "hi\x1b[31m",
    room: "general",
  };
  assertEquals(jsonEvent({ type: "msg", msg, replay: true }), {
    type: "msg",
    ...msg,
    replay: true,
  });
  assertEquals(
    plainEvent({ type: "msg", msg, replay: false }),
    "2025-01-02T10:00:00.000Z #general <bob> hi^[[31m\n",
  );
  assertEquals(
    plainEvent({
      type: "msg",
      msg: { id: 4, ts: 0, from: "bob", to: "al", body: "x" },
      replay: false,
    }),
    "1970-01-01T00:00:00.000Z dm <bob> (to al) x\n",
  );
  assertEquals(jsonEvent({ type: "down", code: "x", message: "y" }), null);
  assertEquals(plainEvent({ type: "up", reconnect: true }), null);
});

Deno.test("readLines() splits stdin bytes into lines, across chunks and without a final newline", async () => {
  const enc = new TextEncoder();
  const chunks = ["one\ntw", "o\r\n\nthr", "ee"].map((s) => enc.encode(s));
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
  const lines: string[] = [];
  for await (const l of readLines(stream)) lines.push(l);
  assertEquals(lines, ["one", "two", "three"]);
});
