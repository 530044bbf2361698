// Memory under real logins (not in CI): runs `chat serve` as a child process, registers N users
// over chat/1 at once (real argon2id, m=19 MiB, t=2, p=1), keeps every connection open and reads
// the server's VmRSS and VmHWM after 2 s idle; then restarts the server on the same data and logs
// the same N users in the same way. docs/PERFORMANCE.md, "Memory under real logins".
//
//   deno run -A scripts/login_memory.ts [--users 1000] [--hash-queue N] [--hash-workers 1]
//                                        [--idle-ms 2000] [--ops register,login] [--json]
//                                        [--v8-flags FLAG,FLAG]
//
// --hash-queue defaults to --users, so every login waits its turn in the queue (the case where
// `auth_timeout` used to cut clients); a smaller queue answers `busy` and the client retries after
// `retryAfterMs`. Every other limit is the server's default, except those per address (all the
// clients come from 127.0.0.1). The server process measured is the deno process itself.
// --ops: the phases, in order, each on a fresh start of the server on the same data (`hello`: the
// connections only say hello, what a connection costs before any login). --v8-flags: the server's
// V8 flags (DENO_V8_FLAGS); default those deno.json's `chat` and `compile` tasks ship, "" for none.
import { parseScriptArgs } from "./script_args.ts";
import { LineSplitter } from "../src/protocol/line_decoder.ts";
import { ChildServer } from "../tests/faults/helpers.ts";
import { SERVER_V8_FLAGS } from "../src/bench/spawn.ts";

const { values: flags } = parseScriptArgs("scripts/login_memory.ts", {
  args: Deno.args,
  options: {
    users: { type: "string", default: "1000" },
    "hash-queue": { type: "string" },
    "hash-workers": { type: "string", default: "1" },
    "idle-ms": { type: "string", default: "2000" },
    "v8-flags": { type: "string" },
    ops: { type: "string", default: "register,login" },
    json: { type: "boolean", default: false },
  },
});
const USERS = Number(flags.users);
/** The server's V8 flags: those `deno task chat` and `deno task compile` ship, unless given. */
const V8_FLAGS = flags["v8-flags"] ?? SERVER_V8_FLAGS;
const HASH_QUEUE = Number(flags["hash-queue"] ?? USERS);
const IDLE_MS = Number(flags["idle-ms"]);
/** A login's deadline, retries of `busy` included; the run is bounded by it. */
const LOGIN_DEADLINE_MS = 300_000;

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One connection: sends frames, hands each received frame to whoever waits for the next one. */
class Client {
  readonly conn: Deno.TlsConn;
  #waiter: ((f: Record<string, unknown> | null) => void) | null = null;
  #early: (Record<string, unknown> | null)[] = [];
  readonly done: Promise<void>;

  constructor(conn: Deno.TlsConn) {
    this.conn = conn;
    this.done = this.#read();
  }

  static async open(port: number, certPem: string): Promise<Client> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [certPem],
      alpnProtocols: ["chat/1"],
    });
    return new Client(conn);
  }

  async #read(): Promise<void> {
    const splitter = new LineSplitter(1 << 20);
    const buf = new Uint8Array(16384);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          this.#deliver(JSON.parse(dec.decode(line)));
        }
      }
    } catch { /* reset, or closed here */ }
    this.#deliver(null);
  }

  #deliver(f: Record<string, unknown> | null): void {
    // Presence and other unprompted frames are not what a login waits for.
    if (f && !["hello", "ok", "error", "bye"].includes(String(f.type))) return;
    const w = this.#waiter;
    this.#waiter = null;
    if (w) w(f);
    else this.#early.push(f);
  }

  /** The next hello/ok/error/bye frame; null when the connection closed. */
  next(): Promise<Record<string, unknown> | null> {
    if (this.#early.length) return Promise.resolve(this.#early.shift()!);
    return new Promise((r) => this.#waiter = r);
  }

  send(frame: Record<string, unknown>): Promise<number> {
    return this.conn.write(enc.encode(JSON.stringify(frame) + "\n"));
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

type Op = "register" | "login" | "hello";
type Outcome = "ok" | "auth_timeout" | "closed" | string;

/** hello, then register or login; `busy` waits `retryAfterMs` and tries again. */
async function logIn(c: Client, op: Op, i: number): Promise<Outcome> {
  await c.send({ type: "hello", version: 1 });
  const hello = await c.next();
  if (!hello || hello.type !== "hello") return hello ? String(hello.code ?? hello.type) : "closed";
  if (op === "hello") return "ok";
  const deadline = performance.now() + LOGIN_DEADLINE_MS;
  while (true) {
    await c.send({ type: op, user: `mem${i}`, password: `memory-password-${i}` });
    const r = await c.next();
    if (!r) return "closed";
    if (r.type === "ok") return "ok";
    if (r.code === "busy" && performance.now() < deadline) {
      await sleep(Number(r.retryAfterMs ?? 100));
      continue;
    }
    return String(r.code ?? r.type);
  }
}

function memory(pid: number): { rssKb: number; hwmKb: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
}

interface Phase {
  op: Op;
  users: number;
  seconds: number;
  outcomes: Record<Outcome, number>;
  /** Before any connection, `IDLE_MS` after the server listened. */
  idleRssKb: number;
  /** `IDLE_MS` after the last answer, every connection still open. */
  rssKb: number;
  hwmKb: number;
  perConnectionKb: number;
}

async function phase(dataDir: string, op: Op): Promise<Phase> {
  const env: Record<string, string> = {
    ...(V8_FLAGS ? { DENO_V8_FLAGS: V8_FLAGS } : {}),
    CHAT_LIMIT_HASH_WORKERS: String(flags["hash-workers"]),
    CHAT_LIMIT_HASH_QUEUE: String(HASH_QUEUE),
    CHAT_LIMIT_MAX_CONNECTIONS_PER_ADDRESS: String(USERS + 10),
    CHAT_LIMIT_REGISTRATIONS_PER_ADDRESS: String(USERS + 10),
    CHAT_LIMIT_LOGIN_FAILURES_PER_ADDRESS: String(USERS + 10),
  };
  await using server = await ChildServer.start({ dataDir, env });
  await sleep(IDLE_MS);
  const idleRssKb = memory(server.pid).rssKb;
  const clients = await Promise.all(
    Array.from({ length: USERS }, () => Client.open(server.port, server.certPem)),
  );
  const start = performance.now();
  const results = await Promise.all(clients.map((c, i) => logIn(c, op, i)));
  const seconds = (performance.now() - start) / 1000;
  await sleep(IDLE_MS);
  const m = memory(server.pid);
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.done));
  server.kill("SIGTERM");
  await server.wait();
  const outcomes: Record<string, number> = {};
  for (const r of results) outcomes[r] = (outcomes[r] ?? 0) + 1;
  return {
    op,
    users: USERS,
    seconds: Math.round(seconds * 10) / 10,
    outcomes,
    idleRssKb,
    ...m,
    perConnectionKb: Math.round((m.rssKb - idleRssKb) / USERS * 10) / 10,
  };
}

const dataDir = await Deno.makeTempDir({ prefix: "chat-login-memory-" });
try {
  const phases: Phase[] = [];
  for (const op of flags.ops.split(",") as Op[]) phases.push(await phase(dataDir, op));
  if (flags.json) console.log(JSON.stringify({ hashQueue: HASH_QUEUE, v8Flags: V8_FLAGS, phases }));
  else {
    console.log(`server V8 flags: ${V8_FLAGS || "(none)"}`);
    for (const p of phases) {
      const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;
      console.log(
        `${p.users} ${p.op}s in ${p.seconds} s ${JSON.stringify(p.outcomes)}: idle RSS ` +
          `${mb(p.idleRssKb)} → RSS ${mb(p.rssKb)} after ${IDLE_MS / 1000} s idle ` +
          `(${p.perConnectionKb} KB per connection), VmHWM ${mb(p.hwmKb)} ` +
          `(idle + ${mb(p.hwmKb - p.idleRssKb)})`,
      );
    }
  }
} finally {
  await Deno.remove(dataDir, { recursive: true });
}
