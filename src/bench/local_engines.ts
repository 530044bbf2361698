// Owns throwaway local engines: a PostgreSQL (initdb in a temp dir) and a nats-server, on free
// loopback ports, stopped and removed afterwards. `chat bench --spawn-nodes` and the tests'
// harness (tests/harness/postgres.ts, nats.ts) both start theirs here.
import { ChatError } from "../errors.ts";
import { readCpuSeconds } from "./spawn.ts";

/** A local engine started for one run. */
export interface LocalEngine {
  readonly url: string;
  /** CPU seconds of the engine's processes so far (PostgreSQL: postmaster and its backends). */
  cpuSeconds(): Promise<number | null>;
  stop(): Promise<void>;
}

/** A TCP port nobody listens on now (the kernel's pick for port 0). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Where Debian puts each major version's binaries; `PG_BIN` (a bin dir) overrides the search. */
export const PG_ROOT = "/usr/lib/postgresql";

/** The bin dir of the newest PostgreSQL installed (or `PG_BIN`'s, if it holds initdb), or null. */
export function findPgBin(): string | null {
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) return isFile(`${fromEnv}/initdb`) ? fromEnv : null;
  let best: { v: number; dir: string } | null = null;
  try {
    for (const e of Deno.readDirSync(PG_ROOT)) {
      const v = Number(e.name);
      const dir = `${PG_ROOT}/${e.name}/bin`;
      if (Number.isFinite(v) && isFile(`${dir}/initdb`) && (!best || v > best.v)) {
        best = { v, dir };
      }
    }
  } catch { /* no PostgreSQL at all */ }
  return best?.dir ?? null;
}

/** Where nats-server is looked for (Debian's package installs /usr/sbin/nats-server). */
const NATS_CANDIDATES = [
  "/usr/sbin/nats-server",
  "/usr/bin/nats-server",
  "/usr/local/bin/nats-server",
];

/** The nats-server binary, or null when it is not installed. */
export function findNatsServer(): string | null {
  return NATS_CANDIDATES.find(isFile) ?? null;
}

/** The command running `bin` as the `postgres` OS user when we are root (initdb refuses root). */
function pgCommand(bin: string, args: string[], quiet = false): Deno.Command {
  const io = quiet ? { stdout: "null", stderr: "null" } as const : {};
  return Deno.uid() === 0
    // cwd "/": the postgres user may not enter the caller's directory (a 0700 clone dir), and
    // psql says so on stderr, which would become part of every query's output.
    ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", bin, ...args], cwd: "/", ...io })
    : new Deno.Command(bin, { args, ...io });
}

/** Runs a PostgreSQL tool; fails with its output. */
async function pgRun(bin: string, args: string[], what: string): Promise<string> {
  const out = await pgCommand(bin, args).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new ChatError("bench_failed", `Cannot ${what}: ${bin} exited ${out.code}: ${text}`);
  }
  return text;
}

async function chownToPostgres(path: string): Promise<void> {
  if (Deno.uid() !== 0) return;
  const out = await new Deno.Command("chown", { args: ["-R", "postgres:postgres", path] }).output();
  if (!out.success) throw new ChatError("bench_failed", `Cannot chown ${path} to postgres`);
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

/** A running throwaway PostgreSQL. `await using` stops it and removes its dir. */
export interface LocalPostgres extends LocalEngine, AsyncDisposable {
  /** `postgres://postgres:…@127.0.0.1:<port>/chat`: the database made at start. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** The temp dir holding the cluster (`data/`), its socket dir and its log. */
  readonly dir: string;
  /**
   * Makes a new empty database (or a copy of `template`, which must have no open connection) and
   * returns its URL. Names are generated when not given. Cheap (tens of ms).
   */
  createDatabase(opts?: { name?: string; template?: string }): Promise<string>;
  /** Runs SQL as the superuser through psql on the unix socket (database `chat` unless given). */
  psql(sql: string, database?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections are cut) and keeps its data; see `startServer`. */
  stopServer(): Promise<void>;
  /** Starts it again on the same port after `stopServer`. */
  startServer(): Promise<void>;
  /** Stops the server and removes its dir. Idempotent. */
  stop(): Promise<void>;
  /** The same, synchronously and immediate-mode: for a process's exit hook. */
  stopSync(): void;
}

/**
 * A fresh PostgreSQL: initdb into a new temp dir (as the `postgres` OS user when we are root),
 * 127.0.0.1 on a free port, unix socket in the temp dir, password auth over TCP, database `chat`.
 * `durable: true` keeps `fsync` on (the bench measures a durable cluster); `false` turns fsync and
 * full-page writes off (a test cluster is thrown away). `settings` go into postgresql.auto.conf.
 */
export async function startLocalPostgres(opts: {
  durable: boolean;
  password?: string;
  settings?: Record<string, string>;
}): Promise<LocalPostgres> {
  const bin = findPgBin();
  if (bin === null) {
    throw new ChatError(
      "usage",
      `Cannot start PostgreSQL: none installed (${PG_ROOT}/*/bin, or PG_BIN); ` +
        "apt-get install postgresql, or give a postgres:// URL instead",
    );
  }
  const password = opts.password ?? crypto.randomUUID();
  const dir = await Deno.makeTempDir({ prefix: "chat-pg-" });
  const data = `${dir}/data`;
  const socketDir = `${dir}/sock`;
  await Deno.mkdir(socketDir);
  await Deno.writeTextFile(`${dir}/pwfile`, `${password}\n`);
  await chownToPostgres(dir);
  const ctl = `${bin}/pg_ctl`;
  try {
    await pgRun(`${bin}/initdb`, [
      "-D",
      data,
      "-U",
      "postgres",
      `--pwfile=${dir}/pwfile`,
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      ...(opts.durable ? [] : ["--no-sync"]),
    ], "initialise a PostgreSQL cluster");
  } catch (err) {
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
  const port = freePort();
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: socketDir,
    ...(opts.durable ? {} : { fsync: "off", full_page_writes: "off" }),
    max_connections: "200",
    ...opts.settings,
  };
  await Deno.writeTextFile(
    `${data}/postgresql.auto.conf`,
    Object.entries(settings).map(([k, v]) => `${k} = '${v}'`).join("\n") + "\n",
  );
  await chownToPostgres(data);
  let up = false;
  const startServer = async () => {
    if (up) return;
    await pgRun(
      ctl,
      ["start", "-D", data, "-l", `${dir}/postgres.log`, "-w", "-t", "60"],
      "start PostgreSQL",
    );
    up = true;
  };
  const stopServer = async () => {
    if (!up) return;
    await pgRun(ctl, ["stop", "-D", data, "-m", "fast", "-w", "-t", "60"], "stop PostgreSQL");
    up = false;
  };
  const psql = (sql: string, database = "chat") =>
    pgRun(`${bin}/psql`, [
      "-X",
      "-q",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      socketDir,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      database,
      "-At",
      "-c",
      sql,
    ], "run SQL on the local PostgreSQL");
  const urlOf = (db: string) =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await stopServer();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
  const stopSync = () => {
    if (stopped) return;
    stopped = true;
    if (up) pgCommand(ctl, ["stop", "-D", data, "-m", "immediate", "-w"], true).outputSync();
    Deno.removeSync(dir, { recursive: true });
  };
  try {
    await startServer();
    await psql("CREATE DATABASE chat", "postgres");
  } catch (err) {
    await stop();
    throw err;
  }
  const postmaster = () => Number(Deno.readTextFileSync(`${data}/postmaster.pid`).split("\n")[0]);
  let n = 0;
  return {
    url: urlOf("chat"),
    host: "127.0.0.1",
    port,
    user: "postgres",
    password,
    dir,
    async createDatabase(o = {}) {
      const name = o.name ?? `t${Deno.pid}_${++n}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) {
        throw new ChatError("usage", `Cannot create database ${name}: bad name`);
      }
      const template = o.template ? ` TEMPLATE ${o.template} STRATEGY FILE_COPY` : "";
      await psql(`CREATE DATABASE ${name}${template}`, "postgres");
      return urlOf(name);
    },
    psql,
    stopServer,
    startServer,
    stop,
    stopSync,
    cpuSeconds: () => up ? treeCpuSeconds(postmaster()) : Promise.resolve(null),
    [Symbol.asyncDispose]: stop,
  };
}

/** A nats-server on 127.0.0.1, no auth; `await using` stops it. */
export class LocalNats implements LocalEngine, AsyncDisposable {
  readonly port: number;
  readonly #binary: string;
  #child: Deno.ChildProcess | null = null;
  #log = "";
  #draining: Promise<void> = Promise.resolve();

  private constructor(binary: string, port: number) {
    this.#binary = binary;
    this.port = port;
  }

  /** `nats://127.0.0.1:<port>` */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== null;
  }

  /** Starts a server on a free port and waits until it says it is ready. */
  static async start(): Promise<LocalNats> {
    const binary = findNatsServer();
    if (!binary) {
      throw new ChatError(
        "usage",
        "Cannot start nats-server: not installed (apt-get install nats-server)",
      );
    }
    const s = new LocalNats(binary, freePort());
    await s.#spawn();
    return s;
  }

  async #spawn(): Promise<void> {
    const child = new Deno.Command(this.#binary, {
      args: ["-a", "127.0.0.1", "-p", String(this.port)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    // nats-server logs to stderr; "Server is ready" comes once it accepts clients.
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let ready = false;
    while (!ready) {
      const { value, done } = await reader.read();
      if (done) break;
      this.#log += value;
      ready = this.#log.includes("Server is ready");
    }
    if (!ready) {
      await child.status;
      this.#child = null;
      throw new ChatError(
        "bench_failed",
        `Cannot start nats-server on port ${this.port}: ${this.#log.slice(-1000)}`,
      );
    }
    // Keep draining its log so the pipe never fills (the tail is kept for errors).
    this.#draining = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          this.#log = (this.#log + value).slice(-4096);
        }
      } catch { /* gone */ }
    })();
  }

  cpuSeconds(): Promise<number | null> {
    return this.#child ? readCpuSeconds(this.#child.pid) : Promise.resolve(null);
  }

  /** Stops the server (`SIGKILL` by default: an outage, not a goodbye) and waits for its exit. */
  async stop(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = null;
    try {
      child.kill(signal);
    } catch { /* exited */ }
    await child.status;
    await this.#draining;
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
