// Soak test (not in CI): runs `chat serve` as a child process, keeps N clients chatting for M
// minutes with some reconnecting all the time, and reports the server's RSS, open fds and the
// delivery latency percentiles per interval, then whether RSS or fds grew.
//
//   deno run -A scripts/soak.ts [--clients 50] [--minutes 2] [--interval 10] [--rate 1]
//                               [--churn 0.1] [--json]
//
// --rate is messages per client per second; --churn the share of clients that disconnect and
// reconnect (with resume) every interval.
import { parseScriptArgs } from "./script_args.ts";
import { LineSplitter } from "../src/protocol/line_decoder.ts";
import { ChildServer, fdCount, percentile, rssBytes } from "../tests/faults/helpers.ts";

const { values: flags } = parseScriptArgs("scripts/soak.ts", {
  args: Deno.args,
  options: {
    clients: { type: "string", default: "50" },
    minutes: { type: "string", default: "2" },
    interval: { type: "string", default: "10" },
    rate: { type: "string", default: "1" },
    churn: { type: "string", default: "0.1" },
    json: { type: "boolean", default: false },
  },
});
const CLIENTS = Number(flags.clients);
const MINUTES = Number(flags.minutes);
const INTERVAL_S = Number(flags.interval);
const RATE = Number(flags.rate);
const CHURN = Number(flags.churn);
const ROOMS = ["general", "soak-a", "soak-b", "soak-c"];

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Latencies (ms) of the current interval, and counters. */
const window = { delivery: [] as number[], ack: [] as number[], sent: 0, errors: 0, received: 0 };

/** A minimal chat/1 client: no frame history kept, so the soak process itself stays flat. */
class SoakClient {
  readonly user: string;
  conn: Deno.TlsConn | null = null;
  lastId = new Map<string, number>();
  #pendingAck = new Map<string, number>();
  #seq = 0;
  #reading: Promise<void> = Promise.resolve();
  #ready!: () => void;

  constructor(user: string) {
    this.user = user;
  }

  async connect(port: number, certPem: string, register: boolean): Promise<void> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [certPem],
      alpnProtocols: ["chat/1"],
    });
    this.conn = conn;
    const ready = new Promise<void>((r) => this.#ready = r);
    this.#reading = this.#read(conn);
    const resume = this.lastId.size ? { rooms: Object.fromEntries(this.lastId) } : undefined;
    this.#write({ type: "hello", version: 1 });
    this.#write({
      type: register ? "register" : "login",
      user: this.user,
      password: `soak-password-${this.user}`,
      ref: "login",
      ...(resume ? { resume } : {}),
    });
    const room = ROOMS[1 + (this.user.length + Number(this.user.slice(4))) % (ROOMS.length - 1)];
    this.#write({ type: "join", room, ref: "join" });
    await ready;
  }

  #write(f: Record<string, unknown>): void {
    this.conn?.write(enc.encode(JSON.stringify(f) + "\n")).catch(() => {});
  }

  async #read(conn: Deno.TlsConn): Promise<void> {
    const splitter = new LineSplitter(1 << 20);
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          this.#onFrame(JSON.parse(dec.decode(line)));
        }
      }
    } catch { /* closed */ }
  }

  // deno-lint-ignore no-explicit-any
  #onFrame(f: any): void {
    const now = performance.now();
    if (f.type === "ok" && f.ref === "join") this.#ready();
    else if (f.type === "ping") this.#write({ type: "pong" });
    else if (f.type === "msg" && f.room) {
      window.received++;
      this.lastId.set(f.room, Math.max(this.lastId.get(f.room) ?? 0, f.id));
      const sentAt = Number(String(f.body).split(" ")[1]);
      if (Number.isFinite(sentAt)) window.delivery.push(now - sentAt);
    } else if (f.type === "ack") {
      const t = this.#pendingAck.get(f.cid);
      this.#pendingAck.delete(f.cid);
      if (t !== undefined) window.ack.push(now - t);
    } else if (f.type === "error") {
      window.errors++;
      if (f.ref === "login") console.error(`${this.user}: login refused: ${f.code}`);
    }
  }

  send(): void {
    const cid = `${this.user}-${Date.now()}-${this.#seq++}`;
    const room = Math.random() < 0.5
      ? "general"
      : [...this.lastId.keys()].find((r) => r !== "general") ?? "general";
    this.#pendingAck.set(cid, performance.now());
    this.#write({
      type: "send",
      cid,
      room,
      body: `t ${performance.now()} from ${this.user}`,
      ref: cid,
    });
    window.sent++;
    if (this.#pendingAck.size > 1000) this.#pendingAck.clear();
  }

  async close(): Promise<void> {
    try {
      this.conn?.close();
    } catch { /* gone */ }
    this.conn = null;
    await this.#reading;
  }
}

interface Sample {
  t: number;
  rssMiB: number;
  fds: number;
  sent: number;
  received: number;
  errors: number;
  ackP50: number;
  ackP99: number;
  deliveryP50: number;
  deliveryP99: number;
}

const dataDir = await Deno.makeTempDir({ prefix: "chat-soak-" });
const samples: Sample[] = [];
try {
  await using srv = await ChildServer.start({
    dataDir,
    env: {
      CHAT_LIMIT_REGISTRATIONS_PER_ADDRESS: "100000",
      CHAT_LIMIT_MAX_CONNECTIONS_PER_ADDRESS: "100000",
      CHAT_LIMIT_HASH_QUEUE: "100000",
    },
  });
  const clients = Array.from({ length: CLIENTS }, (_, i) => new SoakClient(`soak${i}`));
  for (const c of clients) await c.connect(srv.port, srv.certPem, true);
  console.error(`soak: ${CLIENTS} clients online; ${MINUTES} min at ${RATE} msg/s each`);
  const started = performance.now();
  const sender = setInterval(() => {
    for (const c of clients) if (c.conn && Math.random() < RATE / 10) c.send();
  }, 100);
  let reconnects = 0;
  try {
    while (performance.now() - started < MINUTES * 60_000) {
      await new Promise((r) => setTimeout(r, INTERVAL_S * 1000));
      const s: Sample = {
        t: Math.round((performance.now() - started) / 1000),
        rssMiB: Math.round(rssBytes(srv.pid) / 1048576 * 10) / 10,
        fds: fdCount(srv.pid),
        sent: window.sent,
        received: window.received,
        errors: window.errors,
        ackP50: percentile(window.ack, 50),
        ackP99: percentile(window.ack, 99),
        deliveryP50: percentile(window.delivery, 50),
        deliveryP99: percentile(window.delivery, 99),
      };
      samples.push(s);
      console.log(
        flags.json
          ? JSON.stringify(s)
          : `t=${String(s.t).padStart(4)}s rss ${s.rssMiB} MiB fds ${s.fds} ` +
            `sent ${s.sent} recv ${s.received} err ${s.errors} ack p50/p99 ${
              s.ackP50.toFixed(1)
            }/` +
            `${s.ackP99.toFixed(1)} ms delivery p50/p99 ${s.deliveryP50.toFixed(1)}/${
              s.deliveryP99.toFixed(1)
            } ms`,
      );
      window.delivery = [];
      window.ack = [];
      window.sent = window.received = window.errors = 0;
      // Churn: some clients drop and come back with resume.
      const n = Math.round(CLIENTS * CHURN);
      for (let i = 0; i < n; i++) {
        const c = clients[(reconnects++) % CLIENTS];
        await c.close();
        await c.connect(srv.port, srv.certPem, false);
      }
    }
  } finally {
    clearInterval(sender);
    for (const c of clients) await c.close();
  }
  console.error(`soak: ${reconnects} reconnects`);
} finally {
  await Deno.remove(dataDir, { recursive: true });
}

// Growth: the last quarter of samples against the second quarter (the first is warm-up).
if (samples.length >= 4) {
  const q = Math.floor(samples.length / 4);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const early = samples.slice(q, 2 * q);
  const late = samples.slice(samples.length - q);
  const rss = [mean(early.map((s) => s.rssMiB)), mean(late.map((s) => s.rssMiB))];
  const fds = [mean(early.map((s) => s.fds)), mean(late.map((s) => s.fds))];
  const p99 = [mean(early.map((s) => s.deliveryP99)), mean(late.map((s) => s.deliveryP99))];
  console.log(
    `soak summary: RSS ${rss[0].toFixed(1)} -> ${rss[1].toFixed(1)} MiB, fds ${
      fds[0].toFixed(0)
    } -> ` +
      `${fds[1].toFixed(0)}, delivery p99 ${p99[0].toFixed(1)} -> ${p99[1].toFixed(1)} ms ` +
      `(second quarter -> last quarter)`,
  );
}
