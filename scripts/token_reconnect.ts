// Measures a reconnect storm with session tokens (issue 13 item 2; docs/PERFORMANCE.md): N
// accounts with a token each are seeded into a fresh data dir, `chat serve` starts (a restart:
// a cold process), and N clients connect at once from 100 loopback addresses, each logging in
// with its token and a resume point. Prints the time until all are back and the server's peak
// RSS (VmHWM).
//
//   deno run -A scripts/token_reconnect.ts [--clients 2000] [--parallel 500] [--engine node|deno] [--idle 3]
//                                          [--server-cpus 0] [--load-cpus 1]
//
// --server-cpus / --load-cpus pin the server (every thread, the hashing worker included) and this
// load process with `taskset -a -p` once the server listens. The server's descriptor limit is
// N + 1,000, or the hard limit of this shell when that is lower (20,000 here: 19,900 clients).
import tls from "node:tls";
import { parseArgs } from "node:util";
import { openStore, storeSpec } from "../src/store/open_store.ts";
import { ChildServer } from "../tests/faults/helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string", default: "2000" },
    parallel: { type: "string", default: "500" },
    engine: { type: "string", default: "node" },
    idle: { type: "string", default: "3" },
    "server-cpus": { type: "string" },
    "load-cpus": { type: "string" },
  },
});
const N = Number(values.clients);
const PARALLEL = Number(values.parallel);

async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Pins every thread of `pid` to `cpus` (Linux taskset). */
async function pin(pid: number, cpus: string): Promise<void> {
  const out = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", cpus, String(pid)],
    stdout: "null",
  }).output();
  if (!out.success) throw new Error(`taskset -c ${cpus} ${pid} failed`);
}

/** The hard limit on open files of a process started from here. */
async function hardFileLimit(): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -Hn"] }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  return Number.isFinite(n) && n > 0 ? n : Infinity;
}

function vm(pid: number, key: string): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) * 1024 : 0;
}

const dataDir = await Deno.makeTempDir({ prefix: "chat-token-reconnect-" });
try {
  // Seed: accounts (their password hashes never checked) and one session token each.
  const store = await openStore(storeSpec({ dataDir }));
  const tokens: { user: string; token: string }[] = [];
  const now = Date.now();
  const seedOne = async (i: number) => {
    const user = `u${i}`;
    const u = await store.createUser({ name: user, passwordHash: "unused", ts: now });
    const secret = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    const t = await store.createSessionToken({
      userId: u.id,
      tokenHash: await sha256Hex(secret),
      device: "bench",
      createdAt: now,
      lastUsedAt: now,
      expiresAt: now + 86_400_000,
    }, 20);
    tokens[i] = { user, token: `${t.id}.${secret}` };
  };
  // A thousand at a time: group commit puts them in a few transactions (one by one, every write
  // waited for its own commit and sync: minutes at 19,900).
  for (let i = 0; i < N; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, N - i) }, (_, k) => seedOne(i + k)));
  }
  await store.close();
  await Deno.chmod(dataDir, 0o700);

  await using srv = await ChildServer.start({
    dataDir,
    env: {
      CHAT_LIMIT_MAX_CONNECTIONS: String(N + 100),
      CHAT_LIMIT_MAX_CONNECTIONS_PER_ADDRESS: "1000",
      CHAT_TLS_ENGINE: values.engine!,
    },
    maxFiles: Math.min(N + 1000, await hardFileLimit()),
  });
  if (values["server-cpus"]) await pin(srv.pid, values["server-cpus"]);
  if (values["load-cpus"]) await pin(Deno.pid, values["load-cpus"]);
  const idleRss = vm(srv.pid, "VmRSS");
  const sockets: tls.TLSSocket[] = [];
  let errors = 0;
  const reasons: Record<string, number> = {};
  const connectOne = (i: number) =>
    new Promise<void>((resolveOnce) => {
      let done = false;
      const resolve = () => {
        if (done) return;
        done = true;
        resolveOnce();
      };
      const { user, token } = tokens[i];
      const s = tls.connect({
        host: "127.0.0.1",
        port: srv.port,
        localAddress: `127.0.${1 + (i % 100)}.1`,
        ca: srv.certPem,
        servername: "localhost",
        ALPNProtocols: ["chat/1"],
        // localAddress is a net.connect option that tls.connect passes on (not in its types).
      } as tls.ConnectionOptions);
      sockets.push(s);
      let buf = "";
      s.setEncoding("utf8");
      s.on("secureConnect", () => {
        s.write(JSON.stringify({ type: "hello", version: 1 }) + "\n");
        s.write(
          JSON.stringify({ type: "login", user, token, resume: { rooms: { general: 0 } } }) +
            "\n",
        );
      });
      s.on("data", (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const f = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (f.type === "ok" && f.op === "login") return resolve();
          if (f.type === "error") {
            errors++;
            reasons[f.code] = (reasons[f.code] ?? 0) + 1;
            return resolve();
          }
        }
      });
      s.on("error", (err: Error) => {
        errors++;
        reasons[err.message] = (reasons[err.message] ?? 0) + 1;
        resolve();
      });
      // A close without an answer (the server cut the connection) ends the wait too: without
      // this a cut client waited for ever and the run never finished.
      s.on("close", () => {
        if (done) return;
        errors++;
        reasons["closed before ok"] = (reasons["closed before ok"] ?? 0) + 1;
        resolve();
      });
    });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, N) }, async () => {
      while (next < N) await connectOne(next++);
    }),
  );
  const elapsed = performance.now() - t0;
  const peak = vm(srv.pid, "VmHWM");
  const rss = vm(srv.pid, "VmRSS");
  await new Promise((r) => setTimeout(r, Number(values.idle) * 1000));
  const idle = vm(srv.pid, "VmRSS");
  console.log(
    `${N} clients back with session tokens in ${(elapsed / 1000).toFixed(2)} s ` +
      `(${Math.round(N / (elapsed / 1000))}/s), ${errors} errors; server RSS idle ` +
      `${(idleRss / 2 ** 20).toFixed(1)} MiB, after ${(rss / 2 ** 20).toFixed(1)} MiB, ` +
      `peak (VmHWM) ${(peak / 2 ** 20).toFixed(1)} MiB, ${values.idle} s later ${
        (idle / 2 ** 20).toFixed(1)
      } ` +
      `MiB (${Math.round((idle - idleRss) / N / 1024)} KiB per connection); tls ${values.engine}` +
      (errors ? `; errors by reason: ${JSON.stringify(reasons)}` : ""),
  );
  for (const s of sockets) s.destroy();
} finally {
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}
