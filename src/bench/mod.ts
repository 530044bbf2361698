// Owns `chat bench` end to end: checked options → (spawned) server → run → report and exit code.
import { ChatError } from "../errors.ts";
import type { ServerLimits } from "../config/config.ts";
import { DEFAULT_LIMITS } from "../config/config.ts";
import type { AuthMode, ProtocolAdapter } from "./adapter.ts";
import { IRC_ADAPTER } from "./irc_adapter.ts";
import type { Endpoint } from "./line_client.ts";
import { NATIVE_ADAPTER } from "./native_adapter.ts";
import { type LocalEngine, LocalNats, startLocalPostgres } from "./local_engines.ts";
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
  /** Start this many `chat serve` nodes on PostgreSQL and a nats-server (a cluster). */
  spawnNodes?: string;
  /** With --spawn-nodes: a postgres:// URL to use instead of a throwaway PostgreSQL. */
  store?: string;
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

/**
 * The live stats of every node, with the figures the report reads combined: the worst loop lag,
 * stalls and commits summed; each node's own under `nodes`.
 */
async function clusterStats(servers: SpawnedServer[]): Promise<unknown> {
  const all = await Promise.all(servers.map((s) => s.stats()));
  const loops = all.map((s) => s?.loop).filter((l) => l !== undefined);
  type Writes = { batches: number; writes: number };
  const writes = all.map((s) => (s as { writes?: Writes | null } | null)?.writes)
    .filter((w): w is Writes => !!w);
  return {
    loop: loops.length === all.length && loops.length > 0
      ? {
        maxLagMs: Math.max(...loops.map((l) => l!.maxLagMs)),
        stalls: loops.reduce((n, l) => n + l!.stalls, 0),
      }
      : undefined,
    writes: writes.length
      ? {
        batches: writes.reduce((n, w) => n + w.batches, 0),
        writes: writes.reduce((n, w) => n + w.writes, 0),
      }
      : null,
    nodes: all,
  };
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
  const nodeCount = f.spawnNodes === undefined ? 0 : count("spawn-nodes", f.spawnNodes, 1, 16);
  const spawning = !!f.spawn || nodeCount > 0;
  if (spawning === !!f.target || (f.spawn && nodeCount > 0)) {
    throw new ChatError(
      "usage",
      "Cannot run bench: give one of --spawn, --spawn-nodes N or HOST:PORT[,HOST:PORT…]",
    );
  }
  if (f.store !== undefined && !/^postgres(ql)?:\/\//i.test(f.store)) {
    throw new ChatError("usage", "Cannot run bench: --store must be a postgres:// URL");
  }
  if (f.store !== undefined && nodeCount === 0) {
    throw new ChatError("usage", "Cannot run bench: --store goes with --spawn-nodes");
  }
  if (f.benchCpus) await pinSelf(f.benchCpus);

  const stormUsers = stormRate > 0 ? 200 : 0;
  const servers: SpawnedServer[] = [];
  const engines: LocalEngine[] = [];
  const cleanup = async () => {
    for (const s of servers) await s.stop();
    for (const e of engines.reverse()) await e.stop();
  };
  let endpoints: Endpoint[];
  let rssKb: (() => Promise<number | null>) | undefined;
  let serverStats: (() => Promise<unknown>) | undefined;
  let cpuSeconds: (() => Promise<number | null>) | undefined;
  const cpuParts: Record<string, () => Promise<number | null>> = {};
  try {
    if (spawning) {
      let cluster: { store: string; bus: string } | undefined;
      if (nodeCount > 0) {
        let store = f.store;
        if (store === undefined) {
          if (!f.json) io.stderr("chat bench: starting PostgreSQL…\n");
          const pg = await startLocalPostgres({ durable: true });
          engines.push(pg);
          cpuParts.postgres = () => pg.cpuSeconds();
          store = pg.url;
        }
        const nats = await LocalNats.start();
        engines.push(nats);
        cpuParts["nats-server"] = () => nats.cpuSeconds();
        cluster = { store, bus: nats.url };
      }
      const n = Math.max(1, nodeCount);
      if (!f.json) io.stderr(`chat bench: starting ${n === 1 ? "a server" : `${n} nodes`}…\n`);
      for (let i = 0; i < n; i++) {
        // Accounts are written once, into the first node's store (the cluster's shared one).
        servers.push(
          await spawnServer({
            limits: {
              ...benchLimits(workload.clients + stormUsers),
              ...parseLimits(f.serverLimit),
            },
            users: i > 0 ? [] : [
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
            cluster: cluster && { ...cluster, nodeName: `bench${i}` },
            irc: adapter === IRC_ADAPTER,
          }),
        );
      }
      // IRC clients go to each server's IRC listener (started because of --protocol irc).
      endpoints = servers.map((s) => ({
        host: s.host,
        port: s.ircPort ?? s.port,
        caCerts: [s.certPem],
      }));
      const sum = async (get: (s: SpawnedServer) => Promise<number | null>) => {
        const all = await Promise.all(servers.map(get));
        return all.some((v) => v === null) ? null : all.reduce((a, b) => a! + b!, 0);
      };
      rssKb = () => sum((s) => s.rssKb());
      cpuSeconds = () => sum((s) => s.cpuSeconds());
      serverStats = servers.length === 1 ? servers[0].stats : () => clusterStats(servers);
      if (servers.length > 1) {
        for (const [i, s] of servers.entries()) cpuParts[`node${i}`] = s.cpuSeconds;
      }
    } else {
      if (f.ca && f.fingerprint) {
        throw new ChatError("usage", "Cannot run bench: give --ca or --fingerprint, not both");
      }
      const ca = f.ca ? [await Deno.readTextFile(f.ca)] : undefined;
      endpoints = [];
      for (const t of f.target!.split(",").map((x) => x.trim()).filter((x) => x)) {
        const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(t);
        if (!m) {
          throw new ChatError("usage", "Cannot run bench: a target must be HOST:PORT");
        }
        const host = m[1];
        const port = count("port", m[2], 1, 65535);
        const caCerts = f.fingerprint
          ? [
            await fetchPinnedCert(
              host,
              port,
              f.fingerprint,
              adapter === NATIVE_ADAPTER ? ["chat/1"] : [],
            ),
          ]
          : ca;
        endpoints.push({ host, port, caCerts });
      }
      if (endpoints.length === 0) {
        throw new ChatError("usage", "Cannot run bench: a target must be HOST:PORT");
      }
      if (f.serverPid) {
        const pids = f.serverPid.split(",").map((p) => count("server-pid", p.trim(), 1));
        const sum = async (read: (pid: number) => Promise<number | null>) => {
          const all = await Promise.all(pids.map(read));
          return all.some((v) => v === null) ? null : all.reduce((a, b) => a! + b!, 0);
        };
        rssKb = () => sum(readRssKb);
        cpuSeconds = () => sum(readCpuSeconds);
      }
    }
  } catch (err) {
    await cleanup();
    throw err;
  }

  const bar = io.stderrIsTerminal && !f.json ? progressBar(io.stderr) : null;
  let result: BenchResult;
  try {
    result = await runBench({
      adapter,
      endpoint: endpoints[0],
      endpoints,
      workload,
      userPrefix: f.userPrefix,
      password: f.password,
      auth: (spawning ? "login" : f.auth) as AuthMode,
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
      cpuParts,
      progress: bar?.update,
    });
  } finally {
    bar?.done();
    await cleanup();
  }
  result.accounts = spawning ? f.seedUsers as "real" | "cheap" : null;
  if (f.json) io.stdout(JSON.stringify(result, null, 2) + "\n");
  else {
    io.stdout(formatReport(result));
  }
  return result.ok ? 0 : 1;
}
