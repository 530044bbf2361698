// Owns one benchmark run: connect and log in N clients, send the workload, account for every delivery.
import type { AuthMode, BenchClient, LoginOutcome, ProtocolAdapter } from "./adapter.ts";
import { LatencyHistogram } from "./histogram.ts";
import type { ClientHooks, Endpoint } from "./line_client.ts";
import { nativeLoginOnce } from "./native_adapter.ts";
import { encodeBody, MIN_PAYLOAD_BYTES, parseBody, type ParsedBody } from "./payload.ts";
import { readCpuSeconds } from "./spawn.ts";
import { type DeliveryCounts, DeliveryTracker } from "./tracker.ts";

/** The workload, independent of the wire protocol. */
export interface Workload {
  /** Connections, each logged in as its own user `<userPrefix><i>`. */
  clients: number;
  /** Client i is in room i mod rooms (room 0 is the default room). */
  rooms: number;
  /** Clients 0 … senders-1 send. */
  senders: number;
  /** Messages per sender. */
  messages: number;
  /** Messages per second per sender; 0 sends everything at once. */
  rate: number;
  /** Body size in bytes (at least the header, about 24 bytes). */
  payload: number;
}

/** Everything a run needs besides the workload. */
export interface RunOptions {
  adapter: ProtocolAdapter;
  endpoint: Endpoint;
  /** The nodes of a cluster: client i connects to node i mod n (round-robin) [endpoint]. */
  endpoints?: Endpoint[];
  workload: Workload;
  userPrefix: string;
  password: string;
  auth: AuthMode;
  /** Logins in flight at once [32]. */
  loginConcurrency: number;
  /** Per-login deadline including retries of `busy` [120 s]. */
  loginTimeoutMs: number;
  /** Give up waiting for deliveries after this long without progress [10 s]. */
  drainTimeoutMs: number;
  /** Hard cap of the send phase in seconds [600]. */
  maxSeconds: number;
  /** After login, wait until no byte arrived for this long (presence traffic settles) [500 ms]. */
  settleMs: number;
  /** Loop-lag probe: one ping in flight, sent every this many ms on an extra connection; 0 off. */
  probeMs: number;
  /** Clients connected in stages, with server RSS read after each (memory per connection). */
  idleSteps?: number[];
  /**
   * At each idle step, after the traffic settled, the server stays idle this long before its RSS
   * is read again [30 s]: V8 frees heap pages grown by the login phase's garbage only when its
   * memory reducer runs (8 s or more after the last full GC, in waves), and RSS read at once
   * counts that garbage. Both readings are reported; 0 reads once, at once.
   */
  memorySettleMs?: number;
  /** Login attempts per second during the send phase (chat/1 only). */
  loginStorm?: { rate: number; prefix: string; count: number; password: string };
  /** Resident memory of the server in KiB, when the bench can see the process. */
  rssKb?: () => Promise<number | null>;
  /** CPU seconds the server process has used (every node's, summed), when the bench can see it. */
  cpuSeconds?: () => Promise<number | null>;
  /** CPU seconds of each part (a node, nats-server, PostgreSQL), reported one by one. */
  cpuParts?: Record<string, () => Promise<number | null>>;
  /** The server's own counters at the end of the run, when the bench can ask for them. */
  serverStats?: () => Promise<unknown>;
  /** Called about five times a second while it runs. */
  progress?: (p: Progress) => void;
}

/** What the progress bar shows. */
export interface Progress {
  phase: "login" | "settle" | "send" | "drain";
  done: number;
  total: number;
}

/** Event-loop lag as a chat server reports it. */
export interface ServerLoop {
  maxLagMs: number;
  stalls: number;
}

/** Percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** The outcome of a run (also the `--json` document). */
export interface BenchResult {
  protocol: string;
  target: string;
  /**
   * The argon2id cost of the accounts a spawned server was seeded with: `real` (OWASP, what real
   * users cost at login) or `cheap` (`--seed-users cheap`); null for a server not spawned here.
   */
  accounts?: "real" | "cheap" | null;
  workload: Workload;
  login: { clients: number; failed: number; seconds: number; perSecond: number };
  send: {
    seconds: number;
    sent: number;
    acked: number | null;
    deliveries: number;
    deliveriesPerSecond: number;
    acceptedPerSecond: number | null;
    latencyMs: LatencySummary;
    ackLatencyMs: LatencySummary | null;
    /**
     * CPU seconds this load generator used during the send phase (all its threads). Near the
     * send phase's length it is saturated, and latencies include its own queueing.
     */
    benchCpuSeconds: number | null;
  };
  integrity: DeliveryCounts;
  errors: Record<string, number>;
  server: {
    rssStartKb: number | null;
    rssLoggedInKb: number | null;
    rssEndKb: number | null;
    kbPerConnection: number | null;
    /**
     * RSS at each step: `rssKb` after `memorySettleMs` of idleness, `rssBusyKb` as soon as the
     * traffic settled (the login phase's garbage still counted).
     */
    idleSteps: { clients: number; rssKb: number | null; rssBusyKb: number | null }[];
    /** Slope of `rssKb` over the steps. */
    slopeKbPerConnection: number | null;
    /** Slope of `rssBusyKb` over the steps. */
    slopeBusyKbPerConnection: number | null;
    /** How long the server was left idle at each step before `rssKb` was read. */
    memorySettleMs: number;
    /** Highest RSS seen while clients logged in (read every 250 ms; null without idle steps). */
    rssPeakKb: number | null;
    /** The server's event loop during the send phase: worst lag, delays over 20 ms. */
    loop: ServerLoop | null;
    /** Server CPU seconds used during the send phase (user + system, all threads). */
    sendCpuSeconds: number | null;
    /**
     * Deliveries per second of server CPU: what one core could deliver if the load generator
     * were not the limit (it often is: one core decrypting TLS for thousands of clients).
     */
    deliveriesPerCpuSecond: number | null;
    /** Server CPU per delivery in µs (the inverse, summed over the nodes). */
    cpuMicrosPerDelivery: number | null;
    /** CPU seconds of each part during the send phase (`RunOptions.cpuParts`). */
    cpuParts: Record<string, number | null>;
  };
  /** The server's live stats after the send phase (a spawned chat server only). */
  serverStats: unknown;
  probe: LatencySummary | null;
  storm: {
    offeredPerSecond: number;
    attempts: number;
    outcomes: Record<string, number>;
    latencyMs: LatencySummary;
  } | null;
  /** True when nothing was lost, duplicated or reordered and no error came back. */
  ok: boolean;
}

/** Percentiles of a histogram of microseconds, in milliseconds. */
export function summarize(h: LatencyHistogram): LatencySummary {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.count,
    p50: ms(h.percentile(50)),
    p99: ms(h.percentile(99)),
    p999: ms(h.percentile(99.9)),
    max: ms(h.max),
    mean: ms(h.mean),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Per-connection read buffer: 64 KiB for a few connections, down to 4 KiB for 16,000 and more. */
function bufBytesFor(clients: number): number {
  return Math.max(4096, Math.min(65536, 2 ** Math.floor(Math.log2((64 << 20) / clients))));
}

/**
 * Runs the workload against a server and accounts for every delivery: sender s's message k must
 * reach every other client in s's room exactly once and in order. Latency is measured from the
 * send time written into the body to the read that brought it (one process, one clock).
 */
export async function runBench(o: RunOptions): Promise<BenchResult> {
  const w = o.workload;
  if (w.rooms < 1 || w.clients < 1 || w.senders > w.clients) {
    throw new RangeError("Cannot run: need rooms ≥ 1, clients ≥ 1 and senders ≤ clients");
  }
  if (w.rooms > 1 && !o.adapter.rooms) {
    throw new RangeError(`Cannot run: the ${o.adapter.name} protocol has one room only`);
  }
  const N = w.clients;
  const S = w.senders;
  const roomOf = (i: number) => i % w.rooms;
  // With several rooms none is the default one, which every chat/1 user is in anyway.
  const wireRoom = (i: number) => w.rooms === 1 ? 0 : 1 + roomOf(i);
  const clients: (BenchClient | null)[] = new Array(N).fill(null);
  const live = new Uint8Array(N);
  const tracker = new DeliveryTracker({
    receivers: N,
    senders: S,
    messages: Math.max(1, w.messages),
    owed: (r, s) => r !== s && live[r] === 1 && roomOf(r) === roomOf(s),
  });
  const errors: Record<string, number> = {};
  const ackLatency = new LatencyHistogram();
  const probeLatency = new LatencyHistogram();
  const sentAt: Float64Array[] = [];
  for (let s = 0; s < S; s++) sentAt.push(new Float64Array(Math.max(1, w.messages)));
  let acked = 0;
  let lastAckAt = 0;
  let probeSentAt = 0;
  const parsed: ParsedBody = { sender: 0, seq: 0, sentMicros: 0 };
  const bodyTail = Math.max(w.payload, MIN_PAYLOAD_BYTES) + o.adapter.bodySuffix;
  const hooks: ClientHooks = {
    onDelivery(client, buf, start, end, now) {
      if (client >= N) return; // the probe connection
      if (!parseBody(buf, start, end, parsed, end - bodyTail)) return;
      tracker.arrived(client, parsed.sender, parsed.seq, now * 1000 - parsed.sentMicros, now);
    },
    onAck(client, seq, now) {
      acked++;
      lastAckAt = now;
      if (client < S && seq < w.messages) ackLatency.record((now - sentAt[client][seq]) * 1000);
    },
    onError(_client, code) {
      errors[code] = (errors[code] ?? 0) + 1;
    },
    onPong(_client, now) {
      if (probeSentAt > 0) probeLatency.record((now - probeSentAt) * 1000);
      probeSentAt = 0;
    },
  };
  const runId = crypto.randomUUID().slice(0, 8);
  const bufBytes = bufBytesFor(N);
  const endpoints = o.endpoints?.length ? o.endpoints : [o.endpoint];
  const open = (i: number, room: number, user: string) =>
    o.adapter.open({
      endpoint: endpoints[i % endpoints.length],
      index: i,
      credentials: { user, password: o.password, mode: o.auth },
      room,
      hooks,
      bufBytes,
      timeoutMs: o.loginTimeoutMs,
      runId,
    });
  const rss = async () => o.rssKb ? await o.rssKb() : null;
  const report = (phase: Progress["phase"], done: number, total: number) =>
    o.progress?.({ phase, done, total });

  // Phase 1: connect and log in, in stages when memory steps were asked for.
  const rssStartKb = await rss();
  let loggedIn = 0;
  let failed = 0;
  const loginStart = performance.now();
  const loginRange = async (from: number, to: number) => {
    let next = from;
    const worker = async () => {
      while (next < to) {
        const i = next++;
        try {
          clients[i] = await open(i, wireRoom(i), `${o.userPrefix}${i}`);
          live[i] = 1;
          loggedIn++;
        } catch (err) {
          failed++;
          const code = (err as { code?: string }).code ?? "connect_failed";
          errors[`login:${code}`] = (errors[`login:${code}`] ?? 0) + 1;
        }
        report("login", loggedIn + failed, N);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.loginConcurrency, to - from) }, worker));
  };
  const totalRx = () => clients.reduce((n, c) => n + (c?.rxBytes ?? 0), 0);
  const settle = async () => {
    let last = -1;
    const until = performance.now() + 120_000;
    while (performance.now() < until) {
      const rx = totalRx();
      if (rx === last) break;
      last = rx;
      report("settle", loggedIn, N);
      await sleep(o.settleMs);
    }
  };
  const steps = [...(o.idleSteps ?? []).filter((n) => n > 0 && n < N).sort((a, b) => a - b), N];
  const idleSteps: BenchResult["server"]["idleSteps"] = [];
  const memorySettleMs = o.idleSteps?.length ? o.memorySettleMs ?? 30_000 : 0;
  let rssPeakKb: number | null = null;
  let sampling = !!(o.idleSteps?.length && o.rssKb);
  const peakSampler = (async () => {
    while (sampling) {
      const v = await rss();
      if (v !== null && v > (rssPeakKb ?? 0)) rssPeakKb = v;
      await sleep(250);
    }
  })();
  let connected = 0;
  let loginSeconds = 0;
  for (const step of steps) {
    const t = performance.now();
    await loginRange(connected, step);
    loginSeconds += (performance.now() - t) / 1000;
    connected = step;
    await settle();
    if (!o.idleSteps?.length) continue;
    const rssBusyKb = await rss();
    if (memorySettleMs > 0) await sleep(memorySettleMs);
    idleSteps.push({
      clients: step,
      rssKb: memorySettleMs > 0 ? await rss() : rssBusyKb,
      rssBusyKb,
    });
  }
  sampling = false;
  await peakSampler;
  if (!o.idleSteps?.length) loginSeconds = (performance.now() - loginStart) / 1000;
  const rssLoggedInKb = idleSteps.length ? idleSteps[idleSteps.length - 1].rssKb : await rss();

  // The probe connection (not a receiver: its deliveries are ignored).
  let probe: BenchClient | null = null;
  if (o.probeMs > 0 && o.adapter.probes) {
    try {
      probe = await open(N, 0, `${o.userPrefix}${N}`);
    } catch (err) {
      const code = (err as { code?: string }).code ?? "connect_failed";
      errors[`probe:${code}`] = (errors[`probe:${code}`] ?? 0) + 1;
    }
  }

  // Phase 2: send.
  const perMessage = new Array(w.rooms).fill(0);
  for (let i = 0; i < N; i++) if (live[i]) perMessage[roomOf(i)]++;
  const payload = Math.max(w.payload, MIN_PAYLOAD_BYTES);
  let sent = 0;
  const cpu0 = o.cpuSeconds ? await o.cpuSeconds() : null;
  const readParts = async () => {
    const out: Record<string, number | null> = {};
    for (const [k, f] of Object.entries(o.cpuParts ?? {})) out[k] = await f();
    return out;
  };
  const parts0 = await readParts();
  const benchCpu0 = await readCpuSeconds(Deno.pid);
  // Reading the stats also restarts the server's worst-lag window (chat servers only).
  const stats0 = o.serverStats ? await o.serverStats() as { loop?: ServerLoop } | null : null;
  const t0 = performance.now();
  const sendOne = (s: number, k: number) => {
    const c = clients[s];
    if (!c || c.closed) return;
    const now = performance.now();
    sentAt[s][k] = now;
    c.sendBody(wireRoom(s), encodeBody(s, k, now * 1000, payload), k);
    tracker.sent(s, perMessage[roomOf(s)] - 1);
    sent++;
  };
  let sending = true;
  const sender = (async () => {
    if (w.rate <= 0) {
      for (let s = 0; s < S; s++) for (let k = 0; k < w.messages; k++) sendOne(s, k);
      return;
    }
    // Paced: sender s sends message k at t0 + (k + s/S) / rate seconds.
    const due = (s: number, k: number) => t0 + ((k + s / S) / w.rate) * 1000;
    const nextK = new Array(S).fill(0);
    let remaining = S * w.messages;
    while (remaining > 0 && sending) {
      const now = performance.now();
      let earliest = Infinity;
      for (let s = 0; s < S; s++) {
        while (nextK[s] < w.messages && due(s, nextK[s]) <= now) {
          sendOne(s, nextK[s]++);
          remaining--;
        }
        if (nextK[s] < w.messages) earliest = Math.min(earliest, due(s, nextK[s]));
      }
      if (remaining > 0) await sleep(Math.max(0, Math.min(50, earliest - performance.now())));
    }
  })();

  const prober = (async () => {
    if (!probe) return;
    while (sending) {
      if (probeSentAt === 0) {
        probeSentAt = performance.now();
        probe.probe();
      }
      await sleep(o.probeMs);
    }
  })();

  const stormHist = new LatencyHistogram();
  const outcomes: Record<string, number> = {};
  const storm = (async () => {
    const ls = o.loginStorm;
    if (!ls || ls.rate <= 0) return;
    const pending = new Set<Promise<void>>();
    let k = 0;
    const start = performance.now();
    while (sending) {
      const dueCount = Math.floor(((performance.now() - start) / 1000) * ls.rate);
      while (k < dueCount && pending.size < 2000) {
        const user = `${ls.prefix}${k % Math.max(1, ls.count)}`;
        const began = performance.now();
        const p = nativeLoginOnce({
          endpoint: o.endpoint,
          index: N + 1 + k,
          credentials: { user, password: ls.password, mode: "login" },
          room: 0,
          hooks,
          bufBytes: 4096,
          timeoutMs: 60_000,
          runId,
        }).then(
          (code) => classify(code),
          (err) => classify((err as { code?: string }).code ?? "error"),
        ).then((outcome) => {
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          if (outcome === "ok") stormHist.record((performance.now() - began) * 1000);
        }).finally(() => pending.delete(p));
        pending.add(p);
        k++;
      }
      await sleep(Math.max(1, 1000 / ls.rate));
    }
    await Promise.all(pending);
  })();

  // Phase 3: wait until everything owed arrived, or progress stops.
  const wantAcks = o.adapter.acks;
  let lastProgress = performance.now();
  let lastSeen = -1;
  const hardStop = t0 + o.maxSeconds * 1000;
  for (;;) {
    await sleep(20);
    const now = performance.now();
    const seen = tracker.delivered + tracker.duplicated + acked + sent;
    if (seen !== lastSeen) {
      lastSeen = seen;
      lastProgress = now;
    }
    const expectedNow = tracker.expected;
    report(sent < S * w.messages ? "send" : "drain", tracker.delivered, expectedNow || 1);
    const allSent = sent >= S * w.messages || clients.slice(0, S).every((c) => !c || c.closed);
    const complete = allSent && tracker.delivered >= expectedNow && (!wantAcks || acked >= sent);
    if (complete || now - lastProgress > o.drainTimeoutMs || now > hardStop) break;
  }
  sending = false;
  // The send phase ends here: server CPU and stats before waiting for slow storm logins.
  const cpu1 = o.cpuSeconds ? await o.cpuSeconds() : null;
  const benchCpu1 = await readCpuSeconds(Deno.pid);
  const parts1 = await readParts();
  const serverStats = o.serverStats ? await o.serverStats() : null;
  await sender;
  await prober;
  await storm;
  const end = Math.max(tracker.lastDeliveryAt, wantAcks ? lastAckAt : 0, t0 + 1);
  const seconds = (end - t0) / 1000;
  const sendCpuSeconds = cpu0 !== null && cpu1 !== null ? round(cpu1 - cpu0, 2) : null;
  const rssEndKb = await rss();
  const loop1 = (serverStats as { loop?: ServerLoop } | null)?.loop;
  const loop = loop1 && stats0?.loop
    ? { maxLagMs: loop1.maxLagMs, stalls: loop1.stalls - stats0.loop.stalls }
    : null;

  for (const c of clients) c?.quit();
  probe?.quit();
  await Promise.all([...clients.map((c) => c?.done), probe?.done]);

  const counts = tracker.counts();
  const slopeOf = (kb: (s: (typeof idleSteps)[number]) => number | null) => {
    if (idleSteps.length < 2) return null;
    const first = idleSteps[0];
    const last = idleSteps[idleSteps.length - 1];
    const a = kb(first);
    const b = kb(last);
    return a === null || b === null ? null : round((b - a) / (last.clients - first.clients), 2);
  };
  const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
  return {
    protocol: o.adapter.name,
    target: endpoints.map((e) => `${e.host}:${e.port}`).join(","),
    workload: w,
    login: {
      clients: loggedIn,
      failed,
      seconds: round(loginSeconds, 3),
      perSecond: round(loggedIn / Math.max(loginSeconds, 1e-6), 1),
    },
    send: {
      seconds: round(seconds, 3),
      sent,
      acked: wantAcks ? acked : null,
      deliveries: tracker.delivered,
      deliveriesPerSecond: Math.round(tracker.delivered / seconds),
      acceptedPerSecond: wantAcks
        ? Math.round(acked / Math.max((lastAckAt - t0) / 1000, 1e-6))
        : null,
      latencyMs: summarize(tracker.latency),
      ackLatencyMs: wantAcks ? summarize(ackLatency) : null,
      benchCpuSeconds: benchCpu0 !== null && benchCpu1 !== null
        ? round(benchCpu1 - benchCpu0, 2)
        : null,
    },
    integrity: counts,
    errors,
    server: {
      rssStartKb,
      rssLoggedInKb,
      rssEndKb,
      kbPerConnection: rssStartKb !== null && rssLoggedInKb !== null && loggedIn > 0
        ? round((rssLoggedInKb - rssStartKb) / loggedIn, 2)
        : null,
      idleSteps,
      slopeKbPerConnection: slopeOf((s) => s.rssKb),
      slopeBusyKbPerConnection: slopeOf((s) => s.rssBusyKb),
      memorySettleMs,
      rssPeakKb,
      loop,
      sendCpuSeconds,
      deliveriesPerCpuSecond: sendCpuSeconds
        ? Math.round(tracker.delivered / sendCpuSeconds)
        : null,
      cpuMicrosPerDelivery: sendCpuSeconds && tracker.delivered
        ? round((sendCpuSeconds * 1e6) / tracker.delivered, 3)
        : null,
      cpuParts: Object.fromEntries(
        Object.keys(parts1).map((k) => {
          const a = parts0[k];
          const b = parts1[k];
          return [k, a === null || b === null || a === undefined ? null : round(b - a, 2)];
        }),
      ),
    },
    serverStats,
    probe: probe ? summarize(probeLatency) : null,
    storm: o.loginStorm
      ? {
        offeredPerSecond: o.loginStorm.rate,
        attempts: Object.values(outcomes).reduce((a, b) => a + b, 0),
        outcomes,
        latencyMs: summarize(stormHist),
      }
      : null,
    ok: counts.lost === 0 && counts.duplicated === 0 && counts.reordered === 0 &&
      counts.unexpected === 0 && errorCount === 0 && failed === 0,
  };
}

function classify(code: string): LoginOutcome {
  if (code === "ok" || code === "busy" || code === "throttled") return code;
  if (code === "auth_failed") return "failed";
  return "error";
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
