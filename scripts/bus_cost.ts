// The cost of one message across the bus (not in CI): a publishing node and a receiving node,
// each a NatsFanout in its own process, on a throwaway nats-server. The publisher sends N message
// events (the shape the Hub publishes after a commit: a 64-byte body, one stream link) as fast as
// it can in slices of 1,000 per turn; the receiver counts them. CPU is read from /proc for the
// publisher, the receiver and nats-server over the run. docs/PERFORMANCE.md, "Cluster".
//
//   deno run -A scripts/bus_cost.ts [--events 100000]
import { parseScriptArgs } from "./script_args.ts";
import { readCpuSeconds } from "../src/bench/spawn.ts";
import { LocalNats } from "../src/bench/local_engines.ts";
import type { FanoutEvent } from "../src/server/fanout.ts";
import { NatsFanout } from "../src/server/nats_fanout.ts";

const { values: flags } = parseScriptArgs("scripts/bus_cost.ts", {
  args: Deno.args,
  options: {
    events: { type: "string", default: "100000" },
    publish: { type: "string" },
  },
});
const N = Number(flags.events);

function event(i: number): FanoutEvent {
  return {
    kind: "msg",
    msg: {
      id: 1000 + i,
      ts: Date.now(),
      from: "u17",
      body: `~b17.${i}.${Date.now() * 1000}~`.padEnd(64, "."),
      room: "general",
    },
    roomId: 1,
    links: [{ stream: "r:1", prev: 999 + i }],
    origin: { node: "pub", conn: 17 },
  };
}

if (flags.publish) {
  // The publisher: connect, say ready, publish N on the first stdin line, say done, wait for EOF.
  const fanout = new NatsFanout({ servers: [flags.publish], node: "pub" });
  fanout.subscribe(() => {});
  await fanout.connected();
  console.log("ready");
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  await lines.read();
  for (let i = 0; i < N; i += 1000) {
    for (let k = i; k < Math.min(N, i + 1000); k++) fanout.publish(event(k));
    await new Promise((r) => setTimeout(r, 0));
  }
  console.log("done");
  while (!(await lines.read()).done) { /* until the parent closes stdin */ }
  await fanout.close();
  Deno.exit(0);
}

const nats = await LocalNats.start();
const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    "--events",
    String(N),
    "--publish",
    nats.url,
  ],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
const stdin = child.stdin.getWriter();
async function expectLine(word: string): Promise<void> {
  let text = "";
  while (!text.includes(word)) {
    const r = await out.read();
    if (r.done) throw new Error(`publisher ended before "${word}"`);
    text += r.value;
  }
}
let received = 0;
let allIn!: () => void;
const all = new Promise<void>((r) => allIn = r);
const receiver = new NatsFanout({ servers: [nats.url], node: "recv" });
receiver.subscribe((ev) => {
  if (ev.kind === "msg" && ++received === N) allIn();
});
try {
  await receiver.connected();
  await expectLine("ready");
  const cpu = async () => ({
    pub: await readCpuSeconds(child.pid),
    recv: await readCpuSeconds(Deno.pid),
    nats: await nats.cpuSeconds(),
  });
  const c0 = await cpu();
  const t0 = performance.now();
  await stdin.write(new TextEncoder().encode("go\n"));
  await expectLine("done");
  await all;
  const seconds = (performance.now() - t0) / 1000;
  const c1 = await cpu();
  const us = (a: number | null, b: number | null) =>
    a === null || b === null ? null : Math.round(((b - a) * 1e6) / N * 100) / 100;
  console.log(JSON.stringify(
    {
      events: N,
      seconds: Math.round(seconds * 1000) / 1000,
      eventsPerSecond: Math.round(N / seconds),
      microsPerEvent: {
        publisher: us(c0.pub, c1.pub),
        receiver: us(c0.recv, c1.recv),
        natsServer: us(c0.nats, c1.nats),
      },
      bytesPerEnvelope: JSON.stringify({ n: "pub", i: "x".repeat(8), s: 1, e: event(1) }).length,
    },
    null,
    2,
  ));
} finally {
  await stdin.close().catch(() => {});
  await child.status;
  await receiver.close();
  await nats.stop();
}
