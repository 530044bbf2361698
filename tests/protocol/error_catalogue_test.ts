// The error catalogue against docs/PROTOCOL.md (§9 is generated from it; the other sections name
// codes by hand), its own rules, and ChatError's use of it.
import { assert, assertEquals } from "../harness/assert.ts";
import { BYE_CODES, ERRORS, retryAfterBye, retryAfterError } from "../../src/error_catalogue.ts";
import { ChatError } from "../../src/errors.ts";
import { BEGIN_MARK, END_MARK, renderErrorTables } from "../../tools/error_docs.ts";

const doc = await Deno.readTextFile(new URL("../../docs/PROTOCOL.md", import.meta.url));

const wireCodes = new Set(
  Object.entries(ERRORS).filter(([, e]) => e.scope === "wire").map(([c]) => c),
);
const byeCodes = new Set(Object.keys(BYE_CODES));

/** The text of section `n`: from "## n. " up to the next "## " heading. */
function section(n: string): string {
  const start = doc.indexOf(`\n## ${n}. `);
  assert(start >= 0, `PROTOCOL.md has no section ${n}`);
  const rest = doc.slice(start + 1);
  const next = rest.indexOf("\n## ", 1);
  return next < 0 ? rest : rest.slice(0, next);
}

/** The first group of every match, less the placeholder `code` (as in "[ERROR] code: message"). */
function matches(text: string, re: RegExp): string[] {
  return [...text.matchAll(re)].map((m) => m[1]).filter((c) => c !== "code");
}

Deno.test("PROTOCOL.md §9 holds the catalogue's tables (else run `deno task docs:errors`)", () => {
  const nine = section("9");
  const begin = nine.indexOf(BEGIN_MARK);
  const end = nine.indexOf(END_MARK);
  assert(begin >= 0 && end > begin, "§9 lacks the generated-table marks");
  assertEquals(nine.slice(begin, end + END_MARK.length), renderErrorTables());
});

Deno.test("§9 lists every wire code and bye code of the catalogue and nothing else", () => {
  const nine = section("9");
  const rows = (head: string) => {
    const at = nine.indexOf(`| ${head}`);
    const lines = nine.slice(at).split("\n");
    const body = lines.slice(2, lines.findIndex((l) => !l.startsWith("|")));
    return body.map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));
  };
  const errors = rows("code ");
  assertEquals(new Set(errors.map((r) => r[0].replaceAll("`", ""))), wireCodes);
  for (const [code, fatal, , meaning] of errors) {
    const e = ERRORS[code.replaceAll("`", "") as keyof typeof ERRORS];
    assertEquals([fatal, meaning], [e.fatal, e.meaning], code);
  }
  assertEquals(new Set(rows("`bye` code").map((r) => r[0].replaceAll("`", ""))), byeCodes);
});

Deno.test("every error code the rest of PROTOCOL.md names is a wire code of the catalogue", () => {
  const named = [
    ...matches(doc, /`error` `([a-z_]+)`/g),
    ...matches(doc, /\[ERROR\] ([a-z_]+):/g),
    ...matches(doc, /`([a-z_]+)` with `retryAfterMs`/g),
    ...matches(doc, /`error` `[a-z_]+` \/\s+`([a-z_]+)`/g),
  ];
  assert(named.length > 10, `too few codes found: ${named}`);
  for (const code of named) assert(wireCodes.has(code), `${code} is not a wire code`);
});

Deno.test("every bye code PROTOCOL.md names is in the catalogue, and §4 lists them all", () => {
  const named = [
    ...matches(doc, /`bye` `([a-z_]+)`/g),
    ...matches(doc, /\[SERVER\] ([a-z_]+):/g),
  ];
  for (const code of named) assert(byeCodes.has(code), `${code} is not a bye code`);
  const row = section("4").split("\n").find((l) => l.startsWith("| `bye`"));
  assert(row, "§4 has no bye row");
  assertEquals(new Set(matches(row, /`([a-z_]+)`(?=[,)])/g)), byeCodes);
});

Deno.test("§4's codes with retryAfterMs are exactly the catalogue's after_hint codes", () => {
  const row = section("4").split("\n").find((l) => l.startsWith("| `error`"));
  const list = row?.match(/`retryAfterMs` \(for ([^)]*)\)/)?.[1];
  assert(list, "§4's error row does not say which codes carry retryAfterMs");
  const hinted = Object.entries(ERRORS).filter(([, e]) => e.retry.kind === "after_hint");
  assertEquals(new Set(matches(list, /`([a-z_]+)`/g)), new Set(hinted.map(([c]) => c)));
});

Deno.test("the seed protocol's fixed lines in §10 are the catalogue's texts", () => {
  const seed = section("10");
  assert(
    seed.includes(`\`[SERVER] flood: ${BYE_CODES.flood.message}\``),
    "§10.3 flood line",
  );
  assert(
    seed.includes(`\`[SERVER] shutdown: ${BYE_CODES.shutdown.message}\``),
    "§10.4 shutdown line",
  );
});

Deno.test("the catalogue's own rules hold for every code", () => {
  for (const [code, e] of Object.entries(ERRORS)) {
    assert(/^[a-z][a-z0-9_]*$/.test(code), `${code}: not snake_case`);
    assert(e.meaning.length > 0 && !e.meaning.endsWith("."), `${code}: meaning`);
    // A fatal error ends the connection, so repeating on it (after a hint, with backoff) is moot.
    if (e.fatal === "yes" && e.scope === "wire") {
      assert(["never", "reconnect"].includes(e.retry.kind), `${code}: fatal but ${e.retry.kind}`);
    }
    if (e.defaultMessage !== undefined) {
      assert(/^Cannot [^:]+: \S/.test(e.defaultMessage), `${code}: "${e.defaultMessage}"`);
    }
    assert(Object.isFrozen(e) && Object.isFrozen(e.retry), `${code}: not frozen`);
  }
  assert(Object.isFrozen(ERRORS) && Object.isFrozen(BYE_CODES), "tables not frozen");
});

Deno.test("ChatError takes fatal from the catalogue unless the caller says", () => {
  assertEquals(new ChatError("line_too_long", "Cannot read line: too long").fatal, true);
  assertEquals(new ChatError("unknown_type", "Cannot handle x: unknown type").fatal, false);
  // pre-login: the caller knows whether the session is logged in.
  assertEquals(new ChatError("bad_frame", "Cannot read frame: bad").fatal, false);
  assertEquals(new ChatError("bad_frame", "Cannot read frame: bad", { fatal: true }).fatal, true);
  assertEquals(new ChatError("internal", "Cannot hash password: x", { fatal: false }).fatal, false);
});

Deno.test("ChatError's message defaults to the catalogue's text", () => {
  assertEquals(new ChatError("rate_limited").message, ERRORS.rate_limited.defaultMessage);
  assertEquals(new ChatError("server_full").message, "Cannot connect: the server is full");
  assertEquals(new ChatError("rate_limited", "Cannot send: wait").message, "Cannot send: wait");
});

Deno.test("ChatError.fromPeer keeps a code this build does not know, not fatal", () => {
  const err = ChatError.fromPeer("from_the_future", "Cannot send: new reason");
  assertEquals([err.code, err.message, err.fatal], [
    "from_the_future",
    "Cannot send: new reason",
    false,
  ]);
  assert(err instanceof ChatError);
  const known = ChatError.fromPeer("too_many_frames", "Cannot continue: too many", {
    retryAfterMs: 5,
  });
  assertEquals([known.code, known.fatal, known.retryAfterMs], ["too_many_frames", true, 5]);
});

Deno.test("an unknown error code is never retried; after an unknown bye the client reconnects", () => {
  for (const code of ["from_the_future", "constructor", "toString", "__proto__", ""]) {
    assertEquals(retryAfterError(code).kind, "never", code);
    assertEquals(retryAfterBye(code).kind, "reconnect", code);
  }
  assertEquals(retryAfterError("rate_limited").kind, "after_hint");
  assertEquals(retryAfterError("storage_failed").kind, "backoff");
  assertEquals(retryAfterBye("kicked").kind, "never");
  assertEquals(retryAfterBye("shutdown").kind, "reconnect");
});
