// `chat admin history` as a real process: export round trips (jsonl, csv), the SHA-256 it prints,
// filters, full-text search and prune.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import type { ExportRow } from "../../src/admin/history_export.ts";
import { admin, adminJson, adminOk, openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

const T0 = Date.parse("2026-01-10T00:00:00Z");
const HOUR = 3_600_000;

/** Bodies that stress both formats: separators, quotes, unicode, tabs, leading spaces. */
const BODIES = [
  "hello, world",
  'she said "ship it"',
  "tab\tseparated",
  " leading and trailing ",
  "=SUM(A1:A9)",
  "naïve café 日本語 🙂",
  "deploy failed on node-7",
  "plain",
];

/** Seeds users, two rooms and a DM; returns what an export must contain, oldest first. */
async function seed(dataDir: string, count: number): Promise<ExportRow[]> {
  await using store = await openStore(dataDir);
  const alice = await store.createUser({ name: "Alice", passwordHash: "x", ts: 0 });
  const bob = await store.createUser({ name: "bob", passwordHash: "x", ts: 0 });
  const general = await store.ensureRoom("general", "room", 0);
  const ops = await store.ensureRoom("ops", "room", 0);
  const dm = await store.ensureRoom(`dm:${alice.id}:${bob.id}`, "dm", 0);
  const rows: ExportRow[] = [];
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const sender = i % 3 === 0 ? bob : alice;
    const kind = i % 5;
    const room = kind === 4 ? dm : kind === 3 ? ops : general;
    const ts = T0 + i * HOUR;
    const body = `${BODIES[i % BODIES.length]} #${i}`;
    pending.push(
      store.appendMessage({ roomId: room.id, senderId: sender.id, body, cid: `c${i}`, ts }),
    );
    rows.push({
      id: i + 1,
      ts,
      time: new Date(ts).toISOString(),
      room: room === dm ? null : room.name,
      from: sender.name,
      to: room === dm ? (sender === alice ? "bob" : "Alice") : null,
      body,
    });
  }
  await Promise.all(pending);
  return rows;
}

async function sha256File(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Parses CSV with Python's csv module: an independent reader, not ours. */
async function parseCsvWithPython(path: string): Promise<string[][]> {
  const out = await new Deno.Command("python3", {
    args: [
      "-c",
      "import csv,sys,json;print(json.dumps(list(csv.reader(open(sys.argv[1],newline='',encoding='utf-8')))))",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("history export: jsonl and csv parse back to the stored messages; sha256 matches the file", async () => {
  await using dir = await tempDir();
  const expected = await seed(dir.path, 2500);
  const d = ["--data", dir.path];

  const jsonlPath = `${dir.path}/out.jsonl`;
  const summary = await adminJson<
    { messages: number; bytes: number; sha256: string; output: string }
  >([
    "history",
    "export",
    "--format",
    "jsonl",
    "--output",
    jsonlPath,
    ...d,
  ]);
  assertEquals(summary.messages, 2500);
  assertEquals(summary.sha256, await sha256File(jsonlPath));
  assertEquals(summary.bytes, (await Deno.stat(jsonlPath)).size);
  assertEquals((await Deno.stat(jsonlPath)).mode! & 0o777, 0o600);
  const lines = (await Deno.readTextFile(jsonlPath)).split("\n");
  assertEquals(lines.pop(), "");
  assertEquals(lines.map((l) => JSON.parse(l)), expected);

  const csvPath = `${dir.path}/out.csv`;
  const human = await adminOk(["history", "export", "--format", "csv", "--output", csvPath, ...d]);
  const printed = /sha256 ([0-9a-f]{64})/.exec(human)?.[1];
  assertEquals(printed, await sha256File(csvPath));
  assertMatch(human, /^Exported 2500 messages \([\d.]+ KiB\) to .*out\.csv\n/);
  const table = await parseCsvWithPython(csvPath);
  assertEquals(table[0], ["id", "ts", "time", "room", "from", "to", "body"]);
  // A body a spreadsheet would run as a formula comes back with a ' in front (OWASP).
  const cell = (body: string) => /^[=+\-@\t\r]/.test(body) ? `'${body}` : body;
  assert(expected.some((r) => r.body !== cell(r.body)), "no formula-like body in the sample");
  assertEquals(
    table.slice(1),
    expected.map((
      r,
    ) => [String(r.id), String(r.ts), r.time, r.room ?? "", r.from, r.to ?? "", cell(r.body)]),
  );

  // To stdout: the same bytes as the file, the summary on stderr.
  const r = await admin(["history", "export", "--format", "jsonl", ...d]);
  assertEquals(r.code, 0);
  assertEquals(r.stdout, await Deno.readTextFile(jsonlPath));
  assertMatch(r.stderr, new RegExp(`sha256 ${summary.sha256}`));

  const audit = await adminJson<{ action: string; detail: { sha256: string } }[]>(["audit", ...d]);
  assertEquals(audit.map((e) => e.action), ["history.export", "history.export", "history.export"]);
  assertEquals(audit[0].detail.sha256, summary.sha256);
});

Deno.test("history export filters by room and time, and will not overwrite without --force", async () => {
  await using dir = await tempDir();
  const expected = await seed(dir.path, 200);
  const d = ["--data", dir.path];
  const out = `${dir.path}/ops.jsonl`;
  const since = T0 + 50 * HOUR;
  const until = T0 + 150 * HOUR;
  await adminOk([
    "history",
    "export",
    "--format",
    "jsonl",
    "--room",
    "OPS",
    "--output",
    out,
    "--since",
    new Date(since).toISOString(),
    "--until",
    new Date(until).toISOString(),
    ...d,
  ]);
  const got = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
  const want = expected.filter((r) => r.room === "ops" && r.ts >= since && r.ts < until);
  assertEquals(want.length, 20);
  assertEquals(got, want);

  const again = await admin(["history", "export", "--format", "csv", "--output", out, ...d]);
  assertEquals(again.code, 1);
  assertMatch(again.stderr, /ops\.jsonl exists; pass --force to replace it \[file_exists\]/);
  assertEquals((await Deno.readTextFile(out)).trim().split("\n").length, 20);
  await adminOk(["history", "export", "--format", "csv", "--output", out, "--force", ...d]);
  assertEquals((await Deno.readTextFile(out)).split("\r\n").length, 202);
  const leftovers = [...Deno.readDirSync(dir.path)].filter((e) => e.name.endsWith(".tmp"));
  assertEquals(leftovers, []);
});

Deno.test("history search finds words (accents and case ignored, prefixes with *), newest first", async () => {
  await using dir = await tempDir();
  await seed(dir.path, 80);
  const d = ["--data", dir.path];
  const cafe = await adminJson<ExportRow[]>(["history", "search", "CAFE", ...d]);
  assertEquals(cafe.map((r) => r.id), [78, 70, 62, 54, 46, 38, 30, 22, 14, 6]);
  assert(cafe.every((r) => r.body.includes("café")));
  const pre = await adminJson<ExportRow[]>([
    "history",
    "search",
    "deplo*",
    "failed",
    "--limit",
    "3",
    ...d,
  ]);
  assertEquals(pre.map((r) => r.id), [79, 71, 63]);
  const inOps = await adminJson<ExportRow[]>(["history", "search", "ship", "--room", "ops", ...d]);
  assert(inOps.length > 0 && inOps.every((r) => r.room === "ops"), JSON.stringify(inOps));
  const syntax = await adminJson<ExportRow[]>(["history", "search", 'NEAR("ship" OR', ...d]);
  assertEquals(syntax, []);
  const human = await adminOk(["history", "search", "tab", ...d]);
  assertMatch(human, /^ID\s+TIME\s+WHERE\s+FROM\s+TEXT\n/);
  assert(!human.includes("\t"), "tabs in bodies are escaped in tables");
  assertMatch(human, /tab\\u\{9\}separated/);
});

Deno.test("history prune asks, deletes what is older, and reports how many", async () => {
  await using dir = await tempDir();
  const expected = await seed(dir.path, 100);
  const d = ["--data", dir.path];
  const before = new Date(T0 + 40 * HOUR).toISOString();
  const refused = await admin(["history", "prune", "--before", before, ...d]);
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /\[confirmation_required\]/);
  const r = await adminJson<{ deleted: number }>([
    "history",
    "prune",
    "--before",
    before,
    "--yes",
    ...d,
  ]);
  assertEquals(r.deleted, 40);
  const left = await admin(["history", "export", "--format", "jsonl", ...d]);
  assertEquals(
    left.stdout.trim().split("\n").map((l) => JSON.parse(l).id),
    expected.slice(40).map((e) => e.id),
  );
  assertEquals(
    (await adminJson<ExportRow[]>(["history", "search", "hello", ...d])).every((x) => x.id > 40),
    true,
  );
  const none = await adminJson<{ deleted: number }>(["history", "prune", "--before", before, ...d]);
  assertEquals(none.deleted, 0);
});

Deno.test("history export --gzip writes gzip that gunzip reads back to the plain export; size and sha256 are of the file", async () => {
  await using dir = await tempDir();
  const expected = await seed(dir.path, 1200);
  const d = ["--data", dir.path];
  const path = `${dir.path}/out.jsonl.gz`;
  const summary = await adminJson<
    { messages: number; bytes: number; sha256: string; gzip: boolean; uncompressedBytes: number }
  >(["history", "export", "--format", "jsonl", "--gzip", "--output", path, ...d]);
  assertEquals([summary.messages, summary.gzip], [1200, true]);
  assertEquals(summary.sha256, await sha256File(path));
  assertEquals(summary.bytes, (await Deno.stat(path)).size);
  assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
  const gz = await Deno.readFile(path);
  assertEquals([gz[0], gz[1]], [0x1f, 0x8b], "gzip magic");
  assert(summary.bytes < summary.uncompressedBytes, "not smaller");
  // The system's gunzip reads it, and it is the plain export.
  const out = await new Deno.Command("gzip", { args: ["-dc", path], stdout: "piped" }).output();
  assertEquals(out.code, 0);
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.stdout.length, summary.uncompressedBytes);
  const lines = text.split("\n");
  assertEquals(lines.pop(), "");
  assertEquals(lines.map((l) => JSON.parse(l)), expected);
});
