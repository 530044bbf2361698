// Measures a reconnect storm with session tokens (issue 13 item 2; docs/PERFORMANCE.md): N
// accounts with a token each are seeded into a fresh data dir, `chat serve` starts (a restart:
// a cold process), and N clients connect at once (`--parallel` in flight), each logging in with
// its token and a resume point. Prints the time until all are back and the server's peak RSS
// (VmHWM), and every 5 s how many are back and how busy each side was.
//
//   deno run -A scripts/token_reconnect.ts [--clients 2000] [--parallel 500] [--engine node|deno] [--idle 3]
//                                          [--server-cpus 0] [--load-cpus 1] [--cpu-prof DIR]
//                                          [--client node|deno]
//
// --client picks the load's TLS: `node` (node:tls, from 100 loopback addresses) or `deno`
// (Deno.connectTls, about twice as cheap per byte received, but only from 127.0.0.1: the
// server's per-address connection limit is raised to N and its per-address login bucket to
// `--parallel`, since every login in flight holds one of its address's tokens). A client parses
// lines only until its login is answered; after that it only counts the bytes.
//
// --server-cpus / --load-cpus pin the server (every thread, the hashing worker included) and this
// load process with `taskset -a -p` once the server listens. The server's descriptor limit is
// N + 1,000, or the hard limit of this shell when that is lower (20,000 here: 19,900 clients).
// At the end the server is stopped with SIGTERM while the clients are still connected, and the
// time to its exit is printed. --cpu-prof runs the server under `deno run --cpu-prof` (V8 writes
// the profile at that clean exit; a SIGKILL leaves none).
import tls from "node:tls";
import { parseScriptArgs } from "./script_args.ts";
import { readCpuSeconds } from "../src/bench/spawn.ts";
import { openStore, storeSpec } from "../src/store/open_store.ts";
import { ChildServer } from "../tests/faults/helpers.ts";

const { values } = parseScriptArgs("scripts/token_reconnect.ts", {
  args: Deno.args,
  options: {
    clients: { type: "string", default: "2000" },
    parallel: { type: "string", default: "500" },
    engine: { type: "string", default: "node" },
    idle: { type: "string", default: "3" },
    "server-cpus": { type: "string" },
    "load-cpus": { type: "string" },
    "cpu-prof": { type: "string" },
    client: { type: "string", default: "node" },
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
      // Deno.connectTls cannot pick a local address: every client then comes from 127.0.0.1.
      CHAT_LIMIT_MAX_CONNECTIONS_PER_ADDRESS: values.client === "deno" ? String(N + 100) : "1000",
      ...(values.client === "deno"
        ? { CHAT_LIMIT_LOGIN_FAILURES_PER_ADDRESS: String(PARALLEL) }
        : {}),
      CHAT_TLS_ENGINE: values.engine!,
    },
    maxFiles: Math.min(N + 1000, await hardFileLimit()),
    ...(values["cpu-prof"]
      ? { denoFlags: ["--cpu-prof", `--cpu-prof-dir=${values["cpu-prof"]}`] }
      : {}),
  });
  if (values["server-cpus"]) await pin(srv.pid, values["server-cpus"]);
  if (values["load-cpus"]) await pin(Deno.pid, values["load-cpus"]);
  const idleRss = vm(srv.pid, "VmRSS");
  const sockets: { destroy(): void }[] = [];
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
      const decoder = new TextDecoder();
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
      let secured = false;
      s.on("secureConnect", () => {
        secured = true;
        s.write(JSON.stringify({ type: "hello", version: 1 }) + "\n");
        s.write(
          JSON.stringify({ type: "login", user, token, resume: { rooms: { general: 0 } } }) +
            "\n",
        );
      });
      // Lines are parsed only until the login's answer. After it the bytes (presence of everyone
      // arriving later: N²/2 frames in all, 13 GB at 19,900) are only counted: 19,900 real clients
      // would parse them on 19,900 CPUs, and parsing them here on one core was what limited the
      // run (docs/PERFORMANCE.md, "Token reconnects at 19,900").
      s.on("data", (chunk: Uint8Array) => {
        if (done) {
          bytesAfterOk += chunk.length;
          return;
        }
        buf += decoder.decode(chunk, { stream: true });
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const f = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (f.type === "ok" && f.op === "login") {
            back++;
            bytesAfterOk += new TextEncoder().encode(buf).length;
            return resolve();
          }
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
        if (done) {
          // Cut by the server after its `ok` (a slow consumer, say): an error too.
          if (!ending) {
            errors++;
            reasons["closed after ok"] = (reasons["closed after ok"] ?? 0) + 1;
          }
          return;
        }
        errors++;
        const where = `closed before ok (${secured ? "after" : "in"} the TLS handshake)`;
        reasons[where] = (reasons[where] ?? 0) + 1;
        resolve();
      });
    });
  /** The same client on Deno.connectTls (rustls, read into one buffer), from 127.0.0.1. */
  const connectOneDeno = async (i: number): Promise<void> => {
    const { user, token } = tokens[i];
    let conn: Deno.TlsConn;
    try {
      conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: srv.port,
        caCerts: [srv.certPem],
        alpnProtocols: ["chat/1"],
      });
      await conn.handshake();
    } catch (err) {
      errors++;
      const where = `closed before ok (in the TLS handshake): ${(err as Error).name}`;
      reasons[where] = (reasons[where] ?? 0) + 1;
      return;
    }
    sockets.push({
      destroy: () => {
        try {
          conn.close();
        } catch { /* closed already */ }
      },
    });
    try {
      await conn.write(new TextEncoder().encode(
        JSON.stringify({ type: "hello", version: 1 }) + "\n" +
          JSON.stringify({ type: "login", user, token, resume: { rooms: { general: 0 } } }) +
          "\n",
      ));
    } catch {
      errors++;
      const where = "closed before ok (after the TLS handshake)";
      reasons[where] = (reasons[where] ?? 0) + 1;
      return;
    }
    const decoder = new TextDecoder();
    const chunk = new Uint8Array(64 * 1024);
    let buf = "";
    let answered: () => void;
    const answer = new Promise<void>((r) => answered = r);
    let done = false;
    const finish = (reason?: string) => {
      if (done) return;
      done = true;
      if (reason) {
        errors++;
        reasons[reason] = (reasons[reason] ?? 0) + 1;
      } else back++;
      answered();
    };
    // Reads until the connection ends; the caller goes on at the answer.
    void (async () => {
      try {
        for (;;) {
          const n = await conn.read(chunk);
          if (n === null) break;
          if (done) {
            bytesAfterOk += n;
            continue;
          }
          buf += decoder.decode(chunk.subarray(0, n), { stream: true });
          for (let nl = buf.indexOf("\n"); nl >= 0 && !done; nl = buf.indexOf("\n")) {
            const f = JSON.parse(buf.slice(0, nl));
            buf = buf.slice(nl + 1);
            if (f.type === "ok" && f.op === "login") finish();
            else if (f.type === "error") finish(f.code);
          }
          if (done) bytesAfterOk += new TextEncoder().encode(buf).length;
        }
      } catch { /* reset, or closed by us */ }
      if (!done) finish("closed before ok (after the TLS handshake)");
      else if (!ending) {
        errors++;
        reasons["closed after ok"] = (reasons["closed after ok"] ?? 0) + 1;
      }
    })();
    await answer;
  };
  let back = 0;
  let bytesAfterOk = 0;
  let ending = false;
  const t0 = performance.now();
  const cpu0 = {
    server: await readCpuSeconds(srv.pid) ?? 0,
    load: await readCpuSeconds(Deno.pid) ?? 0,
  };
  // Every 5 s: how many are back, and how busy each side was meanwhile (which side waits).
  let last = { t: t0, back: 0, ...cpu0 };
  const progress = setInterval(async () => {
    const now = {
      t: performance.now(),
      back,
      server: await readCpuSeconds(srv.pid) ?? 0,
      load: await readCpuSeconds(Deno.pid) ?? 0,
    };
    const dt = (now.t - last.t) / 1000;
    console.log(
      `${((now.t - t0) / 1000).toFixed(0)} s: ${now.back} back (${
        Math.round((now.back - last.back) / dt)
      }/s), ` +
        `${errors} errors; CPU server ${Math.round(100 * (now.server - last.server) / dt)} %, ` +
        `load ${Math.round(100 * (now.load - last.load) / dt)} %`,
    );
    last = now;
  }, 5000);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL, N) }, async () => {
      while (next < N) {
        await (values.client === "deno" ? connectOneDeno(next++) : connectOne(next++));
      }
    }),
  );
  const elapsed = performance.now() - t0;
  clearInterval(progress);
  const cpu = {
    server: (await readCpuSeconds(srv.pid) ?? 0) - cpu0.server,
    load: (await readCpuSeconds(Deno.pid) ?? 0) - cpu0.load,
  };
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
      `MiB (${
        Math.round((idle - idleRss) / N / 1024)
      } KiB per connection); tls ${values.engine}; ` +
      `CPU while connecting: server ${cpu.server.toFixed(1)} s, load ${cpu.load.toFixed(1)} s; ` +
      `${(bytesAfterOk / 2 ** 20).toFixed(0)} MiB received after the oks` +
      (errors ? `; errors by reason: ${JSON.stringify(reasons)}` : ""),
  );
  // The first half of the next restart: SIGTERM with every client still online (each is told
  // `bye`), timed to the exit.
  ending = true;
  const stopAt = performance.now();
  srv.kill("SIGTERM");
  const status = await srv.wait();
  console.log(
    `server stopped (SIGTERM, ${N} online) in ${
      ((performance.now() - stopAt) / 1000).toFixed(2)
    } s, ` +
      `exit code ${status.code}` + (values["cpu-prof"] ? `; profile in ${values["cpu-prof"]}` : ""),
  );
  for (const s of sockets) s.destroy();
} finally {
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}
