// Table tests of the admin's pure helpers, and the retention job with a fake clock.
import { assert, assertEquals, assertThrows } from "../harness/assert.ts";
import { ChatError } from "../../src/errors.ts";
import { parseDuration, parseWhen } from "../../src/admin/dates.ts";
import { safeText, table } from "../../src/admin/format.ts";
import { csvLine } from "../../src/admin/history_export.ts";
import { ProgressBar } from "../../src/admin/progress.ts";
import { RetentionJob } from "../../src/admin/retention.ts";
import { ftsQuery } from "../../src/store/sqlite_store.ts";
import { parseExpiry, parseUses } from "../../src/admin/commands/invites.ts";
import { openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

const NOW = Date.parse("2026-03-10T12:00:00Z");
const DAY = 86_400_000;

Deno.test("parseWhen() reads dates, zoned ISO times, ages and now", () => {
  const good: [string, number][] = [
    ["2026-01-31", Date.parse("2026-01-31T00:00:00Z")],
    ["2026-01-31T08:30Z", Date.parse("2026-01-31T08:30:00Z")],
    ["2026-01-31 08:30:15+01:00", Date.parse("2026-01-31T07:30:15Z")],
    ["2026-01-31T08:30:15.250z", Date.parse("2026-01-31T08:30:15.250Z")],
    ["30d", NOW - 30 * DAY],
    ["12h", NOW - 12 * 3_600_000],
    ["2w", NOW - 14 * DAY],
    ["90s", NOW - 90_000],
    ["now", NOW],
  ];
  for (const [text, want] of good) assertEquals(parseWhen(text, NOW, "--since"), want, text);
});

Deno.test("parseWhen() refuses what it cannot read exactly, naming the option", () => {
  const bad = [
    "",
    "yesterday",
    "2026-02-31",
    "2026-13-01",
    "2026-01-31T08:30",
    "31/01/2026",
    "-5d",
    "5y",
    "1e3",
  ];
  for (const text of bad) {
    const err = assertThrows(() => parseWhen(text, NOW, "--before"), ChatError, "--before");
    assertEquals(err.code, "invalid_date", text);
  }
});

Deno.test("parseDuration(), parseUses() and parseExpiry() for invites", () => {
  assertEquals(parseDuration("7d"), 7 * DAY);
  assertEquals(parseDuration("7"), null);
  assertEquals(parseUses("3"), 3);
  assertEquals(parseUses("unlimited"), null);
  for (const bad of ["0", "-1", "x", "1.5", ""]) {
    assertThrows(() => parseUses(bad), ChatError, "--uses");
  }
  assertEquals(parseExpiry("never", NOW), null);
  assertEquals(parseExpiry("12h", NOW), NOW + 12 * 3_600_000);
  for (const bad of ["0d", "soon", "7"]) {
    assertThrows(() => parseExpiry(bad, NOW), ChatError, "--expires");
  }
});

Deno.test("safeText() escapes everything that could drive a terminal and keeps the rest", () => {
  assertEquals(safeText("plain é 日本 🙂"), "plain é 日本 🙂");
  assertEquals(safeText("a\x1b[31mred"), "a\\u{1b}[31mred");
  assertEquals(safeText("tab\there\nnew\r"), "tab\\u{9}here\\u{a}new\\u{d}");
  assertEquals(safeText("\u202egnp.exe \u2066x\u009b"), "\\u{202e}gnp.exe \\u{2066}x\\u{9b}");
  const t = table(["NAME", "TOPIC"], [["ops", "evil\x1b]0;title\x07"]]);
  // deno-lint-ignore no-control-regex
  assert(!/[\x00-\x08\x0a-\x1f]/.test(t.replaceAll("\n", "")), t);
});

Deno.test("csvLine() quotes only what needs quoting, RFC 4180 style", () => {
  const cases: [(string | number | null)[], string][] = [
    [[1, "a", null], "1,a,\r\n"],
    [["x,y"], '"x,y"\r\n'],
    [['say "hi"'], '"say ""hi"""\r\n'],
    [["two\nlines"], '"two\nlines"\r\n'],
    [[" padded "], '" padded "\r\n'],
    [["tab\there", "a=b", "x-1"], "tab\there,a=b,x-1\r\n"],
    [[-5, 0], "-5,0\r\n"],
  ];
  for (const [fields, want] of cases) assertEquals(csvLine(fields), want);
});

Deno.test("csvLine() neutralises cells a spreadsheet would run as a formula (OWASP CSV injection)", () => {
  const cases: [string, string][] = [
    [
      '=HYPERLINK("http://evil.example","click")',
      `"'=HYPERLINK(""http://evil.example"",""click"")"`,
    ],
    ["=SUM(A1)", `"'=SUM(A1)"`],
    ["+1+2", `"'+1+2"`],
    ["-2+3", `"'-2+3"`],
    ["@SUM(A1)", `"'@SUM(A1)"`],
    ["\t=1", `"'\t=1"`],
    ["\r=1", `"'\r=1"`],
    ["'quoted", "'quoted"],
  ];
  for (const [cell, want] of cases) assertEquals(csvLine([cell]), want + "\r\n", cell);
});

Deno.test("ftsQuery() turns any text into quoted words, never FTS5 syntax", () => {
  const cases: [string, string | null][] = [
    ["hello", '"hello"'],
    ["  deploy   failed ", '"deploy" "failed"'],
    ["fail*", '"fail"*'],
    ['OR NEAR( "x" -y a:b', '"OR" "NEAR(" """x""" "-y" "a:b"'],
    ["***", null],
    ["", null],
  ];
  for (const [text, want] of cases) assertEquals(ftsQuery(text), want, text);
});

Deno.test("ProgressBar redraws only when the percentage changes and clears at the end", () => {
  const writes: string[] = [];
  const bar = new ProgressBar({
    write: (s) => writes.push(s),
    label: "Exporting",
    total: 2000,
    width: 10,
  });
  for (let i = 0; i <= 2000; i += 10) bar.update(i);
  bar.done();
  assertEquals(writes.length, 101 + 1);
  assertEquals(writes[0], "\rExporting [----------]   0% 0/2000");
  assertEquals(writes[100], "\rExporting [##########] 100% 2000/2000");
  assertEquals(writes[101], "\r\x1b[2K");
  assertEquals(bar.render(1000), "Exporting [#####-----]  50% 1000/2000");
});

Deno.test("RetentionJob deletes what is older than retentionDays and audits it", async () => {
  await using dir = await tempDir();
  await using store = await openStore(dir.path);
  const u = await store.createUser({ name: "zed", passwordHash: "x", ts: 0 });
  const room = await store.ensureRoom("general", "room", 0);
  let now = NOW;
  for (let day = 0; day < 10; day++) {
    await store.appendMessage({
      roomId: room.id,
      senderId: u.id,
      body: `d${day}`,
      cid: `c${day}`,
      ts: NOW - day * DAY - 1,
    });
  }
  const job = new RetentionJob({ store, days: 3, clock: () => now });
  assertEquals(await job.runOnce(), 7);
  assertEquals((await store.history(room.id, 50)).messages.map((m) => m.body), ["d0", "d1", "d2"]);
  assertEquals(await job.runOnce(), 0);
  now += DAY;
  assertEquals(await job.runOnce(), 1);
  const audit = await store.auditTrail({ limit: 10 });
  assertEquals(audit.map((e) => [e.actor, e.action, e.detail?.deleted]), [
    ["server", "retention.prune", 7],
    ["server", "retention.prune", 1],
  ]);
  await job.close();
});
