// WsDecoder: whole messages out of masked frames split anywhere; caps and protocol errors.
import { assertEquals, assertThrows } from "../harness/assert.ts";
import { ChatError } from "../../src/errors.ts";
import {
  acceptKey,
  encodeWsFrame,
  WS_PING,
  WS_TEXT,
  WsDecoder,
} from "../../src/protocol/websocket_codec.ts";
import { clientFrame } from "../harness/ws_client.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("acceptKey() gives RFC 6455's example answer", async () => {
  assertEquals(await acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("WsDecoder returns whole messages however the bytes are split, fragments joined", () => {
  const bytes = new Uint8Array([
    ...clientFrame(enc.encode("one")),
    ...clientFrame(enc.encode("tw"), WS_TEXT, false),
    ...clientFrame(enc.encode("o"), 0, true),
    ...clientFrame(new Uint8Array([1, 2]), WS_PING),
    ...clientFrame(enc.encode("x".repeat(300))),
  ]);
  for (const step of [1, 2, 3, 7, 64, bytes.length]) {
    const d = new WsDecoder(1000);
    const got: string[] = [];
    for (let i = 0; i < bytes.length; i += step) {
      for (const m of d.push(bytes.slice(i, i + step))) {
        got.push(m.opcode === WS_PING ? "ping" : dec.decode(m.data));
      }
    }
    assertEquals(got, ["one", "two", "ping", "x".repeat(300)], `step ${step}`);
  }
});

Deno.test("WsDecoder rejects a message over the cap on its declared length (line_too_long)", () => {
  const d = new WsDecoder(100);
  const head = clientFrame(new Uint8Array(101)).subarray(0, 8);
  const e = assertThrows(() => d.push(head), ChatError);
  assertEquals(e.code, "line_too_long");
  // Fragments count together.
  const d2 = new WsDecoder(100);
  d2.push(clientFrame(new Uint8Array(60), WS_TEXT, false));
  assertEquals(
    assertThrows(() => d2.push(clientFrame(new Uint8Array(60), 0)), ChatError).code,
    "line_too_long",
  );
});

Deno.test("WsDecoder rejects unmasked frames, reserved bits, unknown opcodes and long control frames", () => {
  const cases: [string, Uint8Array][] = [
    ["unmasked", encodeWsFrame(WS_TEXT, enc.encode("hi"))],
    [
      "reserved bit",
      (() => {
        const f = clientFrame(enc.encode("hi"));
        f[0] |= 0x40;
        return f;
      })(),
    ],
    ["opcode 3", clientFrame(enc.encode("hi"), 3)],
    ["ping of 126 bytes", clientFrame(new Uint8Array(126), WS_PING)],
    ["fragmented ping", clientFrame(new Uint8Array(1), WS_PING, false)],
    ["continuation of nothing", clientFrame(enc.encode("hi"), 0)],
  ];
  for (const [name, bytes] of cases) {
    const e = assertThrows(() => new WsDecoder(1000).push(bytes), ChatError);
    assertEquals(e.code, "bad_frame", name);
  }
});
