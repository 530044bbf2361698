// Owns how a bench result reads: the text report for people and the progress bar on stderr.
import type { BenchResult, LatencySummary, Progress } from "./runner.ts";

function num(n: number): string {
  return n.toLocaleString("en-US");
}

function lat(l: LatencySummary): string {
  return `p50 ${l.p50} ms  p99 ${l.p99} ms  p99.9 ${l.p999} ms  max ${l.max} ms`;
}

function kb(v: number | null): string {
  return v === null ? "n/a" : `${num(Math.round(v / 1024))} MiB`;
}

/** The human-readable report: one fact per line, the verdict last. */
/** How a spawned server's accounts were seeded, as the report says it. */
const ACCOUNTS = {
  real:
    "accounts        seeded with real argon2id hashes (m=19456, t=2, p=1): every login verifies one",
  cheap: "accounts        CHEAP argon2id hashes (--seed-users cheap): logins cost far less than " +
    "real ones (~50-70 ms of server CPU each)",
};

export function formatReport(r: BenchResult): string {
  const w = r.workload;
  const lines = [
    `chat bench: ${r.protocol} at ${r.target}`,
    `workload        ${num(w.clients)} clients in ${w.rooms} room(s), ${w.senders} senders × ` +
    `${num(w.messages)} messages, ${w.rate > 0 ? `${w.rate}/s per sender` : "unpaced"}, ` +
    `${w.payload} B bodies`,
    ...(r.accounts ? [ACCOUNTS[r.accounts]] : []),
    `connect+login   ${num(r.login.clients)} in ${r.login.seconds} s (${
      num(r.login.perSecond)
    }/s)` +
    (r.login.failed ? `, ${num(r.login.failed)} FAILED` : ""),
    `send phase      ${r.send.seconds} s, ${num(r.send.sent)} sent` +
    (r.send.acked !== null ? `, ${num(r.send.acked)} acknowledged after commit` : ""),
    `deliveries      ${num(r.send.deliveries)} (${num(r.send.deliveriesPerSecond)}/s)`,
  ];
  if (r.send.acceptedPerSecond !== null) {
    lines.push(`accepted        ${num(r.send.acceptedPerSecond)} messages/s (ack after commit)`);
  }
  lines.push(`latency         ${lat(r.send.latencyMs)}`);
  if (r.send.ackLatencyMs) lines.push(`ack latency     ${lat(r.send.ackLatencyMs)}`);
  const i = r.integrity;
  lines.push(
    `integrity       expected ${num(i.expected)}, lost ${num(i.lost)}, duplicated ` +
      `${num(i.duplicated)}, reordered ${num(i.reordered)}, unexpected ${num(i.unexpected)}`,
  );
  const s = r.server;
  if (s.rssStartKb !== null) {
    lines.push(
      `server RSS      start ${kb(s.rssStartKb)}, logged in ${kb(s.rssLoggedInKb)}, end ` +
        `${kb(s.rssEndKb)}; ${s.kbPerConnection ?? "n/a"} KiB per connection`,
    );
  }
  if (s.sendCpuSeconds !== null) {
    lines.push(
      `server CPU      ${s.sendCpuSeconds} s during the send phase` +
        (s.deliveriesPerCpuSecond !== null
          ? ` (${num(s.deliveriesPerCpuSecond)} deliveries per CPU second)`
          : ""),
    );
  }
  if (r.send.benchCpuSeconds !== null) {
    lines.push(
      `bench CPU       ${r.send.benchCpuSeconds} s during the send phase (the load generator; ` +
        `${
          Math.round((100 * r.send.benchCpuSeconds) / Math.max(r.send.seconds, 1e-3))
        } % of one core)`,
    );
  }
  if (s.cpuMicrosPerDelivery !== null) {
    lines.push(`server CPU/del  ${s.cpuMicrosPerDelivery} µs per delivery (all nodes)`);
  }
  const parts = Object.entries(s.cpuParts ?? {});
  if (parts.length) {
    lines.push(
      `CPU by part     ${parts.map(([k, v]) => `${k} ${v ?? "n/a"} s`).join(", ")} (send phase)`,
    );
  }
  if (s.loop) {
    lines.push(
      `server loop     worst lag ${s.loop.maxLagMs} ms, ${num(s.loop.stalls)} stalls over 20 ms ` +
        "(send phase)",
    );
  }
  if (s.idleSteps.length) {
    const settled = s.memorySettleMs > 0 ? ` after ${s.memorySettleMs / 1000} s idle` : "";
    lines.push(
      `idle steps      ${s.idleSteps.map((x) => `${num(x.clients)}: ${kb(x.rssKb)}`).join(", ")}` +
        settled +
        (s.slopeKbPerConnection !== null ? `; slope ${s.slopeKbPerConnection} KiB/conn` : ""),
    );
    if (s.memorySettleMs > 0) {
      lines.push(
        `  at once       ${
          s.idleSteps.map((x) => `${num(x.clients)}: ${kb(x.rssBusyKb)}`).join(", ")
        } as traffic stopped` +
          (s.slopeBusyKbPerConnection !== null
            ? `; slope ${s.slopeBusyKbPerConnection} KiB/conn`
            : "") +
          `; peak ${kb(s.rssPeakKb)} while logging in`,
      );
    }
  }
  const st = r.serverStats as
    | { writes?: { batches: number; writes: number } | null; hasher?: { rejectedBusy: number } }
    | null;
  if (st?.writes) {
    lines.push(
      `server commits  ${num(st.writes.batches)} transactions for ${
        num(st.writes.writes)
      } writes ` +
        `(${(st.writes.writes / Math.max(1, st.writes.batches)).toFixed(1)} per commit)`,
    );
  }
  if (r.probe) lines.push(`probe RTT       ${lat(r.probe)} (${num(r.probe.count)} pings)`);
  if (r.storm) {
    const o = Object.entries(r.storm.outcomes).map(([k, v]) => `${k} ${num(v)}`).join(", ");
    lines.push(
      `login storm     ${r.storm.offeredPerSecond}/s offered, ${num(r.storm.attempts)} attempts ` +
        `(${o || "none"}); successful login ${lat(r.storm.latencyMs)}`,
    );
  }
  const errs = Object.entries(r.errors);
  if (errs.length) {
    lines.push(`errors          ${errs.map(([k, v]) => `${k} ${num(v)}`).join(", ")}`);
  }
  lines.push(`result          ${r.ok ? "OK" : "FAILED"}`);
  return lines.join("\n") + "\n";
}

/** A one-line progress bar redrawn in place; `done()` clears it. For a TTY only. */
export function progressBar(write: (s: string) => void): {
  update: (p: Progress) => void;
  done: () => void;
} {
  let last = 0;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < 200) return;
      last = now;
      const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
      const width = 30;
      const full = Math.round(frac * width);
      write(
        `\r\x1b[2K${p.phase.padEnd(6)} [${"#".repeat(full)}${".".repeat(width - full)}] ` +
          `${num(p.done)}/${num(p.total)}`,
      );
    },
    done() {
      write("\r\x1b[2K");
    },
  };
}
