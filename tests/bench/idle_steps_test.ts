// `runBench` idle steps: RSS read as traffic stops and again after the memory-settle wait.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { runBench } from "../../src/bench/runner.ts";
import { NATIVE_ADAPTER } from "../../src/bench/native_adapter.ts";

Deno.test("idle steps report the RSS at once and after the settle wait, with a slope for each", async () => {
  await using ts = await startTestServer();
  // A fake RSS that falls with every reading: each step's settled reading comes later than its
  // reading at once, so it must be lower.
  let rss = 1_000_000;
  const result = await runBench({
    adapter: NATIVE_ADAPTER,
    endpoint: { host: "127.0.0.1", port: ts.port, caCerts: [ts.certPem] },
    workload: { clients: 4, rooms: 1, senders: 0, messages: 0, rate: 0, payload: 48 },
    userPrefix: "idle",
    password: "bench-password",
    auth: "auto",
    loginConcurrency: 2,
    loginTimeoutMs: 30_000,
    drainTimeoutMs: 2_000,
    maxSeconds: 10,
    settleMs: 20,
    probeMs: 0,
    idleSteps: [2],
    memorySettleMs: 50,
    rssKb: () => Promise.resolve(rss--),
  });
  const s = result.server;
  assertEquals(s.memorySettleMs, 50);
  assertEquals(s.idleSteps.map((x) => x.clients), [2, 4]);
  for (const x of s.idleSteps) assert(x.rssKb! < x.rssBusyKb!, JSON.stringify(s.idleSteps));
  assert(s.slopeKbPerConnection !== null && s.slopeBusyKbPerConnection !== null);
  assert(s.rssPeakKb !== null && s.rssPeakKb < s.rssStartKb!); // sampled after the start
  assert(result.ok, JSON.stringify(result.errors));
});
