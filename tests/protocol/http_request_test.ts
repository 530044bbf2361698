// parseRequestHead: the request heads the web service accepts and the ones it refuses.
import { assertEquals, assertThrows } from "../harness/assert.ts";
import { headEnd, HttpError, parseRequestHead } from "../../src/protocol/http_request.ts";

const enc = new TextEncoder();

Deno.test("parseRequestHead() reads the request line, lowercases names, joins repeats", () => {
  const head = enc.encode(
    "GET /assets/a.js?v=1 HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\n\r\n",
  );
  assertEquals(headEnd(head), head.length);
  const r = parseRequestHead(head);
  assertEquals([r.method, r.target, r.path, r.version], [
    "GET",
    "/assets/a.js?v=1",
    "/assets/a.js",
    "HTTP/1.1",
  ]);
  assertEquals(r.headers.get("accept"), "a, b");
});

Deno.test("parseRequestHead() refuses bad lines, absolute targets, folding and other versions", () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1 extra\r\n\r\n", 400],
    ["GET http://evil/ HTTP/1.1\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\n\r\n", 505],
    ["GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\n" + "A: b\r\n".repeat(101) + "\r\n", 431],
  ];
  for (const [text, status] of cases) {
    const e = assertThrows(() => parseRequestHead(enc.encode(text)), HttpError);
    assertEquals(e.status, status, JSON.stringify(text));
  }
});

Deno.test("headEnd() is -1 until the blank line has arrived", () => {
  assertEquals(headEnd(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n")), -1);
  assertEquals(headEnd(enc.encode("GET / HTTP/1.1\r\n\r")), -1);
});
