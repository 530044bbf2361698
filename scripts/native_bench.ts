// Owns running the compiled IRC load generator (tools/loadgen) against our server or another one.
//
//   deno run -A scripts/native_bench.ts --spawn [--runs K] [WORKLOAD FLAGS]
//   deno run -A scripts/native_bench.ts HOST:PORT --ca FILE [--server-pid PID] [--runs K] [FLAGS]
//
// --spawn starts `chat serve` as `chat bench --spawn --server-cpus 0 --seed-users cheap
// --protocol irc` does (a fresh server per run, benchmark limits, cheap accounts, the shipped V8
// flags, pinned with --server-cpus [0]) and gives the driver its IRC port, CA and pid. The driver
// runs pinned with --bench-cpus [1], so both servers are measured by the same tool.
// Other flags go to the driver unchanged (-n, -s, -m, --rate, --payload, --user-prefix,
// --password, --login-concurrency, --timeout-ms, …; tools/loadgen/loadgen --help).
// --driver PATH uses that binary (built there when missing); default tools/loadgen/loadgen, built
// when missing or older than loadgen.c. Prints one JSON line per run, then with --runs > 1 a
// summary line with the medians. Exit 0 when every run was ok, 1 otherwise, 2 on bad flags.
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { benchLimits, spawnServer } from "../src/bench/spawn.ts";

const root = fileURLToPath(new URL("../", import.meta.url));
const SOURCE = join(root, "tools/loadgen/loadgen.c");
const BUILD = join(root, "tools/loadgen/build.sh");

/** Driver flags that take a value (everything else the driver is given is a switch). */
const VALUE_FLAGS = new Set([
  "-n",
  "--clients",
  "-s",
  "--senders",
  "-m",
  "--messages",
  "--rate",
  "--payload",
  "--rooms",
  "--user-prefix",
  "--password",
  "--login-concurrency",
  "--timeout-ms",
  "--login-timeout-ms",
  "--settle-ms",
  "--probe-ms",
  "--max-seconds",
]);

function usage(message: string): never {
  console.error(`native_bench: ${message}`);
  Deno.exit(2);
}

interface Options {
  spawn: boolean;
  target?: { host: string; port: number };
  ca?: string;
  serverPid?: number;
  runs: number;
  driver?: string;
  serverCpus: string;
  benchCpus: string;
  /** With --spawn: `deno run` flags for the server (as chat bench's --server-deno-flags). */
  serverDenoFlags?: string[];
  forward: string[];
  clients: number;
  userPrefix: string;
  password: string;
}

function positiveInt(name: string, v: string | undefined, max: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < 1 || n > max) {
    usage(`${name} must be an integer from 1 to ${max}, got ${v ?? "nothing"}`);
  }
  return n;
}

function parse(args: string[]): Options {
  const o: Options = {
    spawn: false,
    runs: 1,
    serverCpus: "0",
    benchCpus: "1",
    forward: [],
    clients: 100,
    userPrefix: "u",
    password: "bench-password",
  };
  for (let i = 0; i < args.length; i++) {
    const raw = args[i];
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const name = eq > 0 ? raw.slice(0, eq) : raw;
    const inline = eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= args.length) usage(`${name} needs a value`);
      return args[++i];
    };
    switch (name) {
      case "--spawn":
        o.spawn = true;
        break;
      case "--ca":
        o.ca = value();
        break;
      case "--server-pid":
        o.serverPid = positiveInt("--server-pid", value(), 2 ** 31 - 1);
        break;
      case "--runs":
        o.runs = positiveInt("--runs", value(), 1000);
        break;
      case "--driver":
        o.driver = value();
        break;
      case "--server-cpus":
        o.serverCpus = value();
        break;
      case "--bench-cpus":
        o.benchCpus = value();
        break;
      case "--server-deno-flags":
        o.serverDenoFlags = value().split(" ").filter((x) => x);
        break;
      case "--host":
      case "--port":
        usage(`give the target as HOST:PORT, not ${name}`);
        break;
      case "-h":
      case "--help":
        console.log(
          "usage: native_bench.ts (--spawn | HOST:PORT --ca FILE [--server-pid PID]) " +
            "[--runs K] [--driver PATH] [--server-cpus 0] [--bench-cpus 1] " +
            '[--server-deno-flags "--v8-flags=…"] [driver flags]',
        );
        Deno.exit(0);
        break;
      default: {
        if (!raw.startsWith("-")) {
          if (o.target) usage(`one target only, got ${raw} after another`);
          const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(raw);
          if (!m) usage(`a target must be HOST:PORT, got ${raw}`);
          o.target = { host: m[1], port: positiveInt("the target's port", m[2], 65535) };
          break;
        }
        if (VALUE_FLAGS.has(name)) {
          const v = value();
          o.forward.push(name, v);
          if (name === "-n" || name === "--clients") o.clients = Number(v);
          if (name === "--user-prefix") o.userPrefix = v;
          if (name === "--password") o.password = v;
        } else {
          o.forward.push(raw); // a switch, or a flag the driver will refuse with a message
        }
      }
    }
  }
  if (o.spawn === !!o.target) usage("give one of --spawn or HOST:PORT");
  if (o.serverDenoFlags && !o.spawn) usage("--server-deno-flags is for a --spawn server only");
  if (o.spawn && (o.ca || o.serverPid)) {
    usage("--ca and --server-pid are for an external target (--spawn knows its own)");
  }
  if (o.target && !o.ca) usage("an external target needs --ca FILE (its certificate is verified)");
  return o;
}

async function mtime(path: string): Promise<number | null> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch {
    return null;
  }
}

/** The driver binary, built with tools/loadgen/build.sh when missing or older than its source. */
async function ensureDriver(path: string): Promise<void> {
  const built = await mtime(path);
  const source = await mtime(SOURCE);
  if (built !== null && (source === null || built >= source)) return;
  console.error(`native_bench: building ${path}…`);
  const r = await new Deno.Command("sh", { args: [BUILD, path], stdout: "inherit" }).output();
  if (r.code !== 0) {
    console.error(new TextDecoder().decode(r.stderr));
    console.error("native_bench: cannot build the driver (needs gcc and libssl-dev)");
    Deno.exit(1);
  }
}

interface DriverResult {
  send?: { deliveriesPerSecond?: number; latencyMs?: { p99?: number } };
  server?: { deliveriesPerCpuSecond?: number | null };
  ok?: boolean;
  [k: string]: unknown;
}

/** Runs the driver pinned to `cpus`; its stderr (progress, errors) passes through. */
async function runDriver(
  driver: string,
  cpus: string,
  args: string[],
): Promise<{ code: number; result: DriverResult | null }> {
  const r = await new Deno.Command("taskset", {
    args: ["-c", cpus, driver, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(r.stdout).trim();
  let result: DriverResult | null = null;
  if (text) {
    try {
      result = JSON.parse(text);
    } catch {
      console.error(`native_bench: the driver printed something other than JSON: ${text}`);
    }
  }
  return { code: r.code, result };
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<number> {
  const o = parse(Deno.args);
  const driver = o.driver ?? join(root, "tools/loadgen/loadgen");
  await ensureDriver(driver);
  // The driver checks the workload flags first, before a server is started for nothing.
  const check = await new Deno.Command(driver, {
    args: ["--dry-run", ...o.forward],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (check.code !== 0) return 2;

  const results: DriverResult[] = [];
  let allOk = true;
  for (let run = 0; run < o.runs; run++) {
    let result: DriverResult | null;
    let code: number;
    if (o.spawn) {
      // As `chat bench --spawn --seed-users cheap --protocol irc`: one more account for the probe.
      await using server = await spawnServer({
        limits: benchLimits(o.clients),
        users: [{
          prefix: o.userPrefix,
          count: o.clients + 1,
          password: o.password,
          cost: "cheap",
        }],
        cpus: o.serverCpus,
        entry: join(root, "main.ts"),
        irc: true,
        ...(o.serverDenoFlags ? { denoFlags: o.serverDenoFlags } : {}),
      });
      if (server.ircPort === null) throw new Error("the spawned server has no IRC listener");
      ({ code, result } = await runDriver(driver, o.benchCpus, [
        "--host",
        server.host,
        "--port",
        String(server.ircPort),
        "--ca",
        join(server.dataDir, "cert.pem"),
        "--server-pid",
        String(server.pid),
        ...o.forward,
      ]));
      if (result) {
        result.accounts = "cheap";
        result.serverStats = await server.stats();
      }
    } else {
      ({ code, result } = await runDriver(driver, o.benchCpus, [
        "--host",
        o.target!.host,
        "--port",
        String(o.target!.port),
        "--ca",
        o.ca!,
        ...(o.serverPid ? ["--server-pid", String(o.serverPid)] : []),
        ...o.forward,
      ]));
      if (result) result.accounts = null;
    }
    if (code === 2) return 2;
    if (!result) {
      console.error(`native_bench: run ${run + 1} gave no result (driver exit ${code})`);
      allOk = false;
      continue;
    }
    console.log(JSON.stringify(result));
    results.push(result);
    if (code !== 0 || !result.ok) allOk = false;
  }
  if (o.runs > 1) {
    const num = (xs: (number | null | undefined)[]) =>
      xs.filter((x): x is number => typeof x === "number");
    const dps = num(results.map((r) => r.send?.deliveriesPerSecond));
    const p99 = num(results.map((r) => r.send?.latencyMs?.p99));
    const perCpu = num(results.map((r) => r.server?.deliveriesPerCpuSecond));
    console.log(JSON.stringify({
      summary: {
        runs: o.runs,
        ok: results.filter((r) => r.ok).length,
        deliveriesPerSecond: { median: median(dps), all: dps },
        p99Ms: { median: median(p99), all: p99 },
        deliveriesPerCpuSecond: { median: median(perCpu), all: perCpu },
      },
    }));
  }
  return allOk && results.length === o.runs ? 0 : 1;
}

Deno.exit(await main());
