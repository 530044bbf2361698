// Smoke tests of `chat bench`: its accounting pieces, and tiny real runs over TLS (no timing asserts).
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { LatencyHistogram } from "../../src/bench/histogram.ts";
import { encodeBody, parseBody, type ParsedBody } from "../../src/bench/payload.ts";
import { DeliveryTracker } from "../../src/bench/tracker.ts";
import { runBench, type RunOptions } from "../../src/bench/runner.ts";
import { NATIVE_ADAPTER } from "../../src/bench/native_adapter.ts";
import { SEED_ADAPTER } from "../../src/bench/seed_adapter.ts";
import { normalizePin } from "../../src/bench/pin.ts";

const root = new URL("../../", import.meta.url).pathname;
const enc = new TextEncoder();

Deno.test("LatencyHistogram percentiles stay within 1% of the exact values", () => {
  const h = new LatencyHistogram();
  for (let v = 1; v <= 100_000; v++) h.record(v);
  assertEquals(h.count, 100_000);
  assertEquals(h.max, 100_000);
  for (const [p, exact] of [[50, 50_000], [99, 99_000], [99.9, 99_900], [100, 100_000]]) {
    const got = h.percentile(p);
    assert(Math.abs(got - exact) / exact < 0.01, `p${p}: ${got} vs ${exact}`);
  }
  const small = new LatencyHistogram();
  for (const v of [0, 1, 2, 3]) small.record(v);
  assertEquals(small.percentile(50), 1);
  assertEquals(new LatencyHistogram().percentile(99), 0);
  const merged = new LatencyHistogram();
  merged.merge(h);
  merged.merge(small);
  assertEquals(merged.count, 100_004);
  assertEquals(merged.min, 0);
});

Deno.test("encodeBody() output is found by parseBody() inside any protocol's line", () => {
  const body = encodeBody(12, 345, 6_789_012, 64);
  assertEquals(body.length, 64);
  const out: ParsedBody = { sender: 0, seq: 0, sentMicros: 0 };
  for (
    const line of [
      `{"type":"msg","id":9,"ts":1,"room":"general","from":"u1","body":"${body}"}`,
      `:u1!u1@localhost PRIVMSG #general :${body}`,
      `u1: ${body}`,
    ]
  ) {
    const bytes = enc.encode(line);
    assert(parseBody(bytes, 0, bytes.length, out), line);
    assertEquals(out, { sender: 12, seq: 345, sentMicros: 6_789_012 });
  }
  for (const line of ['{"type":"presence"}', "u1: ~bad~", "x: ~b1.2~", "[USERS_LIST] a,b"]) {
    const bytes = enc.encode(line);
    assert(!parseBody(bytes, 0, bytes.length, out), line);
  }
});

Deno.test("DeliveryTracker counts lost, duplicated, reordered and unexpected deliveries", () => {
  const t = new DeliveryTracker({ receivers: 3, senders: 2, messages: 4, owed: (r, s) => r !== s });
  for (let k = 0; k < 4; k++) t.sent(0, 2);
  t.arrived(1, 0, 0, 10, 1);
  t.arrived(1, 0, 2, 10, 1);
  t.arrived(1, 0, 1, 10, 1); // older than 2: reordered
  t.arrived(1, 0, 1, 10, 1); // again: duplicated
  t.arrived(2, 0, 0, 10, 1);
  t.arrived(0, 0, 3, 10, 1); // a sender never gets its own message
  t.arrived(2, 1, 9, 10, 1); // beyond the messages a sender sends
  assertEquals(t.counts(), {
    expected: 8,
    delivered: 4,
    lost: 4,
    duplicated: 1,
    reordered: 1,
    unexpected: 2,
  });
});

Deno.test("normalizePin() accepts the usual spellings of a SHA-256 fingerprint", () => {
  const hex = "ab".repeat(32);
  assertEquals(normalizePin(`sha256:${"AB:".repeat(31)}AB`), hex);
  assertEquals(normalizePin(hex.toUpperCase()), hex);
  assertEquals(normalizePin("sha256:abcd"), null);
});

function options(port: number, certPem: string, over: Partial<RunOptions>): RunOptions {
  return {
    adapter: NATIVE_ADAPTER,
    endpoint: { host: "127.0.0.1", port, caCerts: [certPem] },
    workload: { clients: 4, rooms: 1, senders: 2, messages: 10, rate: 0, payload: 48 },
    userPrefix: "u",
    password: "bench-password",
    auth: "auto",
    loginConcurrency: 4,
    loginTimeoutMs: 30_000,
    drainTimeoutMs: 5_000,
    maxSeconds: 30,
    settleMs: 50,
    probeMs: 10,
    ...over,
  };
}

Deno.test("runBench() over chat/1 and the seed protocol: every delivery exactly once, in order", async () => {
  await using ts = await startTestServer();
  const chat = await runBench(
    options(ts.port, ts.certPem, {
      workload: { clients: 4, rooms: 2, senders: 3, messages: 10, rate: 0, payload: 48 },
    }),
  );
  assertEquals(chat.integrity.lost, 0, JSON.stringify(chat));
  assertEquals(chat.integrity.duplicated, 0);
  assertEquals(chat.integrity.reordered, 0);
  // Rooms 0 and 1 hold two clients each: every message reaches the one other client there.
  assertEquals(chat.integrity.expected, 30);
  assertEquals(chat.send.acked, 30);
  assert(chat.ok, JSON.stringify(chat));
  // The same accounts again, logging in this time, paced, over the seed protocol.
  const seed = await runBench(
    options(ts.port, ts.certPem, {
      adapter: SEED_ADAPTER,
      workload: { clients: 4, rooms: 1, senders: 2, messages: 5, rate: 200, payload: 30 },
      probeMs: 0,
    }),
  );
  assertEquals(seed.integrity.expected, 30);
  assertEquals(seed.integrity.lost, 0, JSON.stringify(seed));
  assert(seed.ok, JSON.stringify(seed.errors));
});

/** Runs `chat bench --spawn` from the source tree with `args`; fails unless it exits 0. */
async function spawnedBench(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "bench", "--spawn", "--server-entry", `${root}main.ts`, ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, text + new TextDecoder().decode(out.stderr));
  return text;
}

Deno.test("`chat bench --spawn --json` starts its own server and reports a clean run", async () => {
  const text = await spawnedBench(["-n", "6", "-s", "2", "-m", "5", "--json"]);
  const r = JSON.parse(text);
  assertEquals(r.protocol, "chat/1");
  assertEquals(r.integrity, {
    expected: 50,
    delivered: 50,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    unexpected: 0,
  });
  assert(r.server.rssLoggedInKb > 0, "the RSS of a spawned server is visible");
  assertEquals(r.accounts, "real", "logins verify real argon2id hashes unless asked otherwise");
  assert(r.ok);
});

Deno.test("`chat bench --spawn --protocol irc` measures the spawned server's IRC listener the same way", async () => {
  const text = await spawnedBench(["--protocol", "irc", "-n", "6", "-s", "2", "-m", "5", "--json"]);
  const r = JSON.parse(text);
  assertEquals(r.protocol, "irc");
  assertEquals(r.integrity, {
    expected: 50,
    delivered: 50,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    unexpected: 0,
  });
  assert(r.server.sendCpuSeconds !== null, "the spawned server's CPU is read");
  assert(r.send.benchCpuSeconds !== null, "the load generator's own CPU is read");
  assert(r.ok, JSON.stringify(r.errors));
});

Deno.test("`chat bench --spawn --seed-users cheap` says so in its report", async () => {
  const text = await spawnedBench(["--seed-users", "cheap", "-n", "4", "-s", "1", "-m", "2"]);
  assertMatch(text, /^accounts +CHEAP argon2id hashes \(--seed-users cheap\)/m);
});
