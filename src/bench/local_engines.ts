// Owns the throwaway engines of `chat bench --spawn-nodes`: a PostgreSQL (initdb in a temp dir)
// and a nats-server, on free loopback ports, stopped and removed afterwards.
import { ChatError } from "../errors.ts";
import { readCpuSeconds } from "./spawn.ts";

/** A local engine started for one run. */
export interface LocalEngine {
  url: string;
  /** CPU seconds of the engine's processes so far (PostgreSQL: postmaster and its backends). */
  cpuSeconds(): Promise<number | null>;
  stop(): Promise<void>;
}

/** A TCP port nobody listens on now (the kernel's pick for port 0). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function firstExisting(paths: string[]): string | null {
  for (const p of paths) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

/** Debian's newest `/usr/lib/postgresql/<v>/bin`, or `PG_BIN`. */
function pgBin(): string {
  const env = Deno.env.get("PG_BIN");
  if (env) return env;
  let best = -1;
  try {
    for (const e of Deno.readDirSync("/usr/lib/postgresql")) {
      const v = Number(e.name);
      if (Number.isFinite(v) && v > best) best = v;
    }
  } catch { /* none */ }
  if (best < 0) {
    throw new ChatError(
      "usage",
      "Cannot start PostgreSQL for the bench: none installed (/usr/lib/postgresql/*/bin, or " +
        "PG_BIN); give --store postgres://… instead",
    );
  }
  return `/usr/lib/postgresql/${best}/bin`;
}

/** Runs a PostgreSQL tool, as the `postgres` OS user when we are root (initdb refuses root). */
async function pgRun(bin: string, args: string[]): Promise<void> {
  const cmd = Deno.uid() === 0
    ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", bin, ...args], cwd: "/" })
    : new Deno.Command(bin, { args });
  const out = await cmd.output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new ChatError("bench_failed", `Cannot run ${bin}: ${text.slice(-1000)}`);
  }
}

/** CPU seconds of `pid` and of every process whose parent it is. */
async function treeCpuSeconds(pid: number): Promise<number | null> {
  const own = await readCpuSeconds(pid);
  if (own === null) return null;
  let sum = own;
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === pid) sum += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch { /* gone */ }
  }
  return Math.round(sum * 100) / 100;
}

/**
 * A fresh PostgreSQL in a temp dir: 127.0.0.1 on a free port, password auth, database `chat`.
 * `fsync` stays on (the bench measures a durable cluster); `max_connections` 200.
 */
export async function startLocalPostgres(): Promise<LocalEngine> {
  const bin = pgBin();
  const dir = await Deno.makeTempDir({ prefix: "chat-bench-pg-" });
  const data = `${dir}/data`;
  const password = crypto.randomUUID();
  await Deno.mkdir(`${dir}/sock`);
  await Deno.writeTextFile(`${dir}/pw`, `${password}\n`);
  const chown = async () => {
    if (Deno.uid() !== 0) return;
    await new Deno.Command("chown", { args: ["-R", "postgres:postgres", dir] }).output();
  };
  await chown();
  const port = freePort();
  let started = false;
  const stop = async () => {
    if (started) {
      await pgRun(`${bin}/pg_ctl`, ["stop", "-D", data, "-m", "fast", "-w"]).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await pgRun(`${bin}/initdb`, [
      "-D",
      data,
      "-U",
      "postgres",
      `--pwfile=${dir}/pw`,
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
    ]);
    await Deno.writeTextFile(
      `${data}/postgresql.auto.conf`,
      `listen_addresses = '127.0.0.1'\nport = ${port}\nunix_socket_directories = '${dir}/sock'\n` +
        "max_connections = 200\n",
    );
    await chown();
    await pgRun(`${bin}/pg_ctl`, ["start", "-D", data, "-l", `${dir}/log`, "-w", "-t", "60"]);
    started = true;
    await pgRun(`${bin}/psql`, [
      "-X",
      "-q",
      "-h",
      `${dir}/sock`,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-c",
      "CREATE DATABASE chat",
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  const pid = Number((await Deno.readTextFile(`${data}/postmaster.pid`)).split("\n")[0]);
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/chat`,
    cpuSeconds: () => treeCpuSeconds(pid),
    stop,
  };
}

/** A nats-server on 127.0.0.1 on a free port, no auth; `stop` kills it. */
export async function startLocalNats(): Promise<LocalEngine> {
  const bin = firstExisting([
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
  ]);
  if (!bin) {
    throw new ChatError(
      "usage",
      "Cannot start nats-server for the bench: not installed (apt-get install nats-server)",
    );
  }
  const port = freePort();
  const child = new Deno.Command(bin, {
    args: ["-a", "127.0.0.1", "-p", String(port)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "";
  while (!log.includes("Server is ready")) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new ChatError("bench_failed", `Cannot start nats-server: ${log.slice(-1000)}`);
    }
    log += value;
  }
  const drained = (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* gone */ }
  })();
  return {
    url: `nats://127.0.0.1:${port}`,
    cpuSeconds: () => readCpuSeconds(child.pid),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await drained;
    },
  };
}
