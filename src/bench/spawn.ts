// Owns `chat bench --spawn`: a throwaway `chat serve` child on loopback with benchmark limits.
import { argon2id } from "hash-wasm";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ChatError } from "../errors.ts";
import type { ServerLimits } from "../config/config.ts";
import { ARGON2_PARAMS } from "../server/password_hasher.ts";
import { openStore, storeSpec } from "../store/open_store.ts";
import { AdminClient } from "../admin/admin_client.ts";
import type { LiveStats } from "../admin/admin_service.ts";

/** Accounts written into the database before the server starts. */
export interface SeedUsers {
  prefix: string;
  count: number;
  password: string;
  /**
   * `cheap`: argon2id m=64 KiB, t=1 (verifies in well under a millisecond: for runs about
   * messages, not logins); `real`: the server's own OWASP parameters (~50–70 ms per login).
   */
  cost: "cheap" | "real";
}

/** A spawned server. */
export interface SpawnedServer extends AsyncDisposable {
  host: string;
  port: number;
  /** The IRC listener's port (`irc: true`), else null. */
  ircPort: number | null;
  pid: number;
  dataDir: string;
  certPem: string;
  /** Resident memory of the server process in KiB (null when it cannot be read). */
  rssKb(): Promise<number | null>;
  /** CPU seconds the server process has used so far (null when it cannot be read). */
  cpuSeconds(): Promise<number | null>;
  /** The server's live numbers through its admin socket (null when unreachable). */
  stats(): Promise<LiveStats | null>;
  stop(): Promise<void>;
}

/** Reads live stats through the admin socket of the server running on `dataDir`. */
export async function adminStats(dataDir: string): Promise<LiveStats | null> {
  try {
    const client = await AdminClient.connect(dataDir);
    if (!client) return null;
    try {
      return await client.call("stats", "admin:bench", {});
    } finally {
      client.close();
    }
  } catch {
    return null;
  }
}

/** Limits for a benchmark: the message rate and per-address limits out of the way. */
export function benchLimits(clients: number): Partial<ServerLimits> {
  return {
    messagesPerSecond: 1_000_000,
    messageBurst: 1_000_000,
    maxConnections: clients + 1000,
    maxConnectionsPerAddress: clients + 1000,
    registrationsPerAddress: clients + 1000,
    registrationRefillMs: 1,
    loginFailuresPerAddress: 1_000_000,
    loginFailureRefillMsPerAddress: 1,
    pingIntervalMs: 600_000,
    idleTimeoutMs: 1_200_000,
    authTimeoutMs: 600_000,
  };
}

/** Reads VmRSS of a process from /proc (Linux); null elsewhere or when it is gone. */
export async function readRssKb(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system, all threads) a process has used, in seconds, from /proc/<pid>/stat
 * (Linux; clock ticks of 1/100 s); null when it cannot be read.
 */
export async function readCpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * The V8 flags `deno task chat` and `deno task compile` give the server (deno.json; a test keeps
 * them equal), so that a server spawned from source or the bundle runs as it ships.
 */
export const SERVER_V8_FLAGS = "--max-semi-space-size=2";

/** How to start `chat serve` from this very program: source tree, bundle, or compiled binary. */
export function serveCommand(entry: string | undefined): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  const base = exe.split("/").pop() ?? "";
  if (!/^deno(\.exe)?$/.test(base)) return { cmd: exe, args: [] }; // `deno compile` binary
  const main = entry ?? Deno.mainModule;
  const path = main.startsWith("file:") ? fileURLToPath(main) : main;
  const args = ["run", "-A"];
  if (path.endsWith(".ts")) {
    const config = join(dirname(path), "deno.json");
    try {
      Deno.statSync(config);
      args.push("--config", config);
    } catch { /* no config beside it */ }
  } else {
    args.push("--no-config", "--no-lock"); // the single-file bundle needs nothing else
  }
  args.push(path);
  return { cmd: exe, args };
}

/** Writes the accounts into the data dir's SQLite database, or into `store` (a postgres:// URL). */
export async function seedDatabase(
  dataDir: string,
  users: SeedUsers[],
  store?: string,
): Promise<void> {
  if (users.every((u) => u.count <= 0)) return;
  const db = await openStore(storeSpec({ dataDir, dbSynchronous: "NORMAL", store }));
  try {
    for (const u of users) {
      if (u.count <= 0) continue;
      const params = u.cost === "real"
        ? ARGON2_PARAMS
        : { memorySize: 64, iterations: 1, parallelism: 1 };
      // One salt for the whole batch: these are throwaway accounts in a temporary directory.
      const passwordHash = await argon2id({
        password: u.password,
        salt: crypto.getRandomValues(new Uint8Array(16)),
        ...params,
        hashLength: 32,
        outputType: "encoded",
      });
      const ts = Date.now();
      const BATCH = 5000;
      for (let i = 0; i < u.count; i += BATCH) {
        const jobs: Promise<unknown>[] = [];
        for (let k = i; k < Math.min(u.count, i + BATCH); k++) {
          jobs.push(db.createUser({ name: `${u.prefix}${k}`, passwordHash, ts }));
        }
        await Promise.all(jobs);
      }
    }
  } finally {
    await db.close();
  }
}

/**
 * Starts `chat serve` as a child process on 127.0.0.1, port 0, in a new temporary data directory
 * (removed by `stop`), with `limits` in a config file and users seeded into the database first.
 * `cpus` pins the child with `taskset -c` (Linux).
 */
export async function spawnServer(opts: {
  limits: Partial<ServerLimits>;
  users: SeedUsers[];
  cpus?: string;
  entry?: string;
  synchronous?: "FULL" | "NORMAL";
  /** Extra flags for `deno run` (e.g. `--cpu-prof --cpu-prof-dir=DIR` to profile the server). */
  denoFlags?: string[];
  /** A node of a cluster: its store (postgres://, seeded there), bus (nats://) and name. */
  cluster?: { store: string; bus: string; nodeName: string };
  /** Also listen for IRC (TLS, a free port): `chat bench --spawn --protocol irc`. */
  irc?: boolean;
}): Promise<SpawnedServer> {
  const dataDir = await Deno.makeTempDir({ prefix: "chat-bench-" });
  const cleanup = () => Deno.remove(dataDir, { recursive: true }).catch(() => {});
  let child: Deno.ChildProcess | null = null;
  try {
    await seedDatabase(dataDir, opts.users, opts.cluster?.store);
    const configPath = join(dataDir, "bench-config.json");
    await Deno.writeTextFile(
      configPath,
      JSON.stringify({
        host: "127.0.0.1",
        port: 0,
        logLevel: "warning",
        dbSynchronous: opts.synchronous ?? "FULL",
        limits: opts.limits,
        ...(opts.irc ? { ircPort: 0 } : {}),
        ...(opts.cluster ?? {}),
      }),
    );
    const serve = serveCommand(opts.entry);
    const serveArgs = [...serve.args, "serve", "--data", dataDir, "--config", configPath];
    if (serve.args[0] === "run") {
      // The server as shipped (a compiled binary embeds these), unless the caller sets its own.
      const own = opts.denoFlags ?? [];
      const v8 = own.some((f) => f.startsWith("--v8-flags"))
        ? []
        : [`--v8-flags=${SERVER_V8_FLAGS}`];
      serveArgs.splice(1, 0, ...v8, ...own);
    }
    const [cmd, args] = opts.cpus
      ? ["taskset", ["-c", opts.cpus, serve.cmd, ...serveArgs]]
      : [serve.cmd, serveArgs];
    child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stderrText = collect(child.stderr);
    const { port, ircPort, drained } = await waitForPort(child.stdout, 60_000);
    if (port === null || (opts.irc && ircPort === null)) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
      await drained;
      throw new ChatError(
        "bench_failed",
        `Cannot start the server: it did not report its port. ${(await stderrText()).slice(-2000)}`,
      );
    }
    const certPem = await Deno.readTextFile(join(dataDir, "cert.pem"));
    const proc = child;
    // Interrupted (Ctrl-C, SIGTERM): take the server and its temporary data dir along, then let
    // the signal do what it would have done (re-raised with no listener left).
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const onSignal = (sig: Deno.Signal) => () => {
      for (const s of signals) Deno.removeSignalListener(s, listeners[s]);
      try {
        proc.kill("SIGKILL");
      } catch { /* gone */ }
      try {
        Deno.removeSync(dataDir, { recursive: true });
      } catch { /* the server may still hold it; it is a temp dir */ }
      Deno.kill(Deno.pid, sig);
    };
    const listeners = Object.fromEntries(signals.map((s) => [s, onSignal(s)])) as Record<
      Deno.Signal,
      () => void
    >;
    for (const s of signals) Deno.addSignalListener(s, listeners[s]);
    let stopped: Promise<void> | null = null;
    const stop = () =>
      stopped ??= (async () => {
        for (const s of signals) Deno.removeSignalListener(s, listeners[s]);
        try {
          proc.kill("SIGTERM");
        } catch { /* gone */ }
        const timer = setTimeout(() => {
          try {
            proc.kill("SIGKILL");
          } catch { /* gone */ }
        }, 15_000);
        await proc.status;
        clearTimeout(timer);
        await drained;
        await stderrText();
        await cleanup();
      })();
    return {
      host: "127.0.0.1",
      port,
      ircPort: opts.irc ? ircPort : null,
      pid: proc.pid,
      dataDir,
      certPem,
      rssKb: () => readRssKb(proc.pid),
      cpuSeconds: () => readCpuSeconds(proc.pid),
      stats: () => adminStats(dataDir),
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Drains a stream in the background, keeping its last 64 KB; the result waits for its end. */
function collect(stream: ReadableStream<Uint8Array>): () => Promise<string> {
  let text = "";
  const done = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      text = (text + dec.decode(chunk, { stream: true })).slice(-65536);
    }
  })().catch(() => {});
  return async () => {
    await done;
    return text;
  };
}

/**
 * Reads stdout until `listening on port N` (the IRC port, `IRC on port N`, is said before it),
 * then keeps draining it so the child never blocks.
 */
async function waitForPort(
  stdout: ReadableStream<Uint8Array>,
  timeoutMs: number,
): Promise<{ port: number | null; ircPort: number | null; drained: Promise<void> }> {
  const reader = stdout.getReader();
  const dec = new TextDecoder();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), timeoutMs));
  try {
    for (;;) {
      const r = await Promise.race([reader.read(), timeout]);
      if (r === null || r.done) {
        return { port: null, ircPort: null, drained: reader.cancel().catch(() => {}) };
      }
      text += dec.decode(r.value, { stream: true });
      const m = /listening on port (\d+)/.exec(text);
      if (m) {
        const drained = (async () => {
          try {
            while (!(await reader.read()).done) { /* discard */ }
          } catch { /* closed */ }
        })();
        const irc = /IRC on port (\d+)/.exec(text);
        return { port: Number(m[1]), ircPort: irc ? Number(irc[1]) : null, drained };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}
