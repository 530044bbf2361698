// Owns `chat bench` end to end: checked options → (spawned) server → run → report and exit code.
import { ChatError } from "../errors.ts";
import type { ServerLimits } from "../config/config.ts";
import { DEFAULT_LIMITS } from "../config/config.ts";
import type { AuthMode, ProtocolAdapter } from "./adapter.ts";
import { IRC_ADAPTER } from "./irc_adapter.ts";
import type { Endpoint } from "./line_client.ts";
import { NATIVE_ADAPTER } from "./native_adapter.ts";
import { fetchPinnedCert } from "./pin.ts";
import { formatReport, progressBar } from "./report.ts";
import { type BenchResult, runBench, type Workload } from "./runner.ts";
import { SEED_ADAPTER } from "./seed_adapter.ts";
import {
  benchLimits,
  readCpuSeconds,
  readRssKb,
  type SpawnedServer,
  spawnServer,
} from "./spawn.ts";

export { type BenchResult, runBench } from "./runner.ts";
export { spawnServer } from "./spawn.ts";

/** Protocol adapters by `--protocol` name. */
export const ADAPTERS: Readonly<Record<string, ProtocolAdapter>> = {
  chat: NATIVE_ADAPTER,
  seed: SEED_ADAPTER,
  irc: IRC_ADAPTER,
};

/** `chat bench` options after parsing (strings from the command line, checked here). */
export interface BenchFlags {
  target?: string;
  spawn?: boolean;
  protocol: string;
  clients: string;
  rooms: string;
  senders: string;
  messages: string;
  rate: string;
  payload: string;
  ca?: string;
  fingerprint?: string;
  userPrefix: string;
  password: string;
  auth: string;
  loginConcurrency: string;
  seedUsers: string;
  serverCpus?: string;
  benchCpus?: string;
  serverPid?: string;
  idleSteps?: string;
  memorySettle: string;
  loginStorm?: string;
  probeMs: string;
  drainTimeout: string;
  maxSeconds: string;
  loginTimeout: string;
  settleMs: string;
  sync: string;
  serverLimit: string[];
  serverEntry?: string;
  serverDenoFlags?: string;
  json?: boolean;
}

/** Where `chat bench` writes. */
export interface BenchIo {
  stdout(s: string): void;
  stderr(s: string): void;
  stderrIsTerminal: boolean;
}

function count(name: string, v: string, min: number, max = 10_000_000): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ChatError(
      "usage",
      `Cannot run bench: --${name} must be an integer from ${min} to ${max}`,
    );
  }
  return n;
}

function real(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    throw new ChatError("usage", `Cannot run bench: --${name} must be a number ≥ 0`);
  }
  return n;
}

function parseLimits(pairs: string[]): Partial<ServerLimits> {
  const out: Record<string, number> = {};
  for (const p of pairs) {
    const m = /^(\w+)=(\d+)$/.exec(p);
    if (!m || !(m[1] in DEFAULT_LIMITS)) {
      throw new ChatError(
        "usage",
        `Cannot run bench: --server-limit wants NAME=INTEGER with a known limit, got ${p}`,
      );
    }
    out[m[1]] = Number(m[2]);
  }
  return out as Partial<ServerLimits>;
}

/** Pins this process (all its threads) to `cpus` with taskset (Linux). */
async function pinSelf(cpus: string): Promise<void> {
  const r = await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", cpus, String(Deno.pid)],
    stdout: "null",
    stderr: "piped",
  }).output().catch((err) => {
    throw new ChatError("usage", `Cannot pin the bench to CPUs ${cpus}: ${(err as Error).message}`);
  });
  if (r.code !== 0) {
    throw new ChatError(
      "usage",
      `Cannot pin the bench to CPUs ${cpus}: ${new TextDecoder().decode(r.stderr)}`,
    );
  }
}

/** Runs `chat bench`; returns the exit code (1 when anything was lost, duplicated or refused). */
export async function benchCommand(f: BenchFlags, io: BenchIo): Promise<number> {
  const adapter = ADAPTERS[f.protocol];
  if (!adapter) {
    throw new ChatError(
      "usage",
      `Cannot run bench: --protocol must be one of ${Object.keys(ADAPTERS).join(", ")}`,
    );
  }
  const workload: Workload = {
    clients: count("clients", f.clients, 1),
    rooms: count("rooms", f.rooms, 1),
    senders: count("senders", f.senders, 0),
    messages: count("messages", f.messages, 0),
    rate: real("rate", f.rate),
    payload: count("payload", f.payload, 1, 3500),
  };
  if (workload.senders > workload.clients) {
    throw new ChatError("usage", "Cannot run bench: --senders must not exceed --clients");
  }
  if (!["auto", "login", "register"].includes(f.auth)) {
    throw new ChatError("usage", "Cannot run bench: --auth must be auto, login or register");
  }
  if (!["cheap", "real"].includes(f.seedUsers)) {
    throw new ChatError("usage", "Cannot run bench: --seed-users must be cheap or real");
  }
  if (!["FULL", "NORMAL"].includes(f.sync)) {
    throw new ChatError("usage", "Cannot run bench: --sync must be FULL or NORMAL");
  }
  const stormRate = f.loginStorm ? real("login-storm", f.loginStorm) : 0;
  if (stormRate > 0 && adapter !== NATIVE_ADAPTER) {
    throw new ChatError("usage", "Cannot run bench: --login-storm needs --protocol chat");
  }
  const idleSteps = f.idleSteps
    ? f.idleSteps.split(",").map((s) => count("idle-steps", s.trim(), 1))
    : undefined;
  if (f.spawn === !!f.target) {
    throw new ChatError("usage", "Cannot run bench: give either --spawn or HOST:PORT");
  }
  if (f.benchCpus) await pinSelf(f.benchCpus);

  const stormUsers = stormRate > 0 ? 200 : 0;
  let server: SpawnedServer | null = null;
  let endpoint: Endpoint;
  let rssKb: (() => Promise<number | null>) | undefined;
  let serverStats: (() => Promise<unknown>) | undefined;
  let cpuSeconds: (() => Promise<number | null>) | undefined;
  if (f.spawn) {
    if (adapter === IRC_ADAPTER) {
      throw new ChatError(
        "usage",
        "Cannot run bench: --spawn starts a chat server; IRC needs HOST:PORT",
      );
    }
    if (!f.json) io.stderr("chat bench: starting a server…\n");
    server = await spawnServer({
      limits: { ...benchLimits(workload.clients + stormUsers), ...parseLimits(f.serverLimit) },
      users: [
        {
          prefix: f.userPrefix,
          count: workload.clients + 1,
          password: f.password,
          cost: f.seedUsers as "cheap" | "real",
        },
        { prefix: "storm", count: stormUsers, password: f.password, cost: "real" },
      ],
      cpus: f.serverCpus,
      entry: f.serverEntry,
      denoFlags: f.serverDenoFlags?.split(" ").filter((x) => x),
      synchronous: f.sync as "FULL" | "NORMAL",
    });
    endpoint = { host: server.host, port: server.port, caCerts: [server.certPem] };
    rssKb = server.rssKb;
    serverStats = server.stats;
    cpuSeconds = server.cpuSeconds;
  } else {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(f.target!);
    if (!m) throw new ChatError("usage", "Cannot run bench: the target must be HOST:PORT");
    const host = m[1];
    const port = count("port", m[2], 1, 65535);
    let caCerts: string[] | undefined;
    if (f.ca && f.fingerprint) {
      throw new ChatError("usage", "Cannot run bench: give --ca or --fingerprint, not both");
    }
    if (f.ca) caCerts = [await Deno.readTextFile(f.ca)];
    if (f.fingerprint) {
      caCerts = [
        await fetchPinnedCert(
          host,
          port,
          f.fingerprint,
          adapter === NATIVE_ADAPTER ? ["chat/1"] : [],
        ),
      ];
    }
    endpoint = { host, port, caCerts };
    if (f.serverPid) {
      const pid = count("server-pid", f.serverPid, 1);
      rssKb = () => readRssKb(pid);
      cpuSeconds = () => readCpuSeconds(pid);
    }
  }

  const bar = io.stderrIsTerminal && !f.json ? progressBar(io.stderr) : null;
  let result: BenchResult;
  try {
    result = await runBench({
      adapter,
      endpoint,
      workload,
      userPrefix: f.userPrefix,
      password: f.password,
      auth: (f.spawn ? "login" : f.auth) as AuthMode,
      loginConcurrency: count("login-concurrency", f.loginConcurrency, 1),
      loginTimeoutMs: count("login-timeout", f.loginTimeout, 1),
      drainTimeoutMs: count("drain-timeout", f.drainTimeout, 1),
      maxSeconds: count("max-seconds", f.maxSeconds, 1),
      settleMs: count("settle-ms", f.settleMs, 1),
      probeMs: count("probe-ms", f.probeMs, 0),
      idleSteps,
      memorySettleMs: count("memory-settle", f.memorySettle, 0),
      loginStorm: stormRate > 0
        ? { rate: stormRate, prefix: "storm", count: stormUsers, password: f.password }
        : undefined,
      rssKb,
      serverStats,
      cpuSeconds,
      progress: bar?.update,
    });
  } finally {
    bar?.done();
    await server?.stop();
  }
  if (f.json) io.stdout(JSON.stringify(result, null, 2) + "\n");
  else {
    io.stdout(formatReport(result));
    if (f.spawn && f.seedUsers === "cheap") {
      io.stdout(
        "note            accounts were seeded with a cheap argon2id hash; real logins cost " +
          "~50-70 ms of server CPU each (--seed-users real)\n",
      );
    }
  }
  return result.ok ? 0 : 1;
}
