// Owns throwaway PostgreSQL servers for tests: initdb in a temp dir, loopback only, stopped after.

/** Where Debian puts each major version's binaries; `PG_BIN` (a bin dir) overrides the search. */
const PG_ROOT = "/usr/lib/postgresql";

/** The password of the `postgres` role in every test server (loopback only, thrown away after). */
const PASSWORD = "chat-test-pw";

/** A running test PostgreSQL. `await using pg = await startPostgres()` stops it at scope end. */
export interface TestPostgres extends AsyncDisposable {
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
   * returns its URL. Names are generated when not given. Cheap (tens of ms): one per test.
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
}

/** The bin dir of the newest PostgreSQL installed, or null. */
export function findPgBin(): string | null {
  const fromEnv = Deno.env.get("PG_BIN");
  if (fromEnv) return exists(`${fromEnv}/initdb`) ? fromEnv : null;
  let best: { v: number; dir: string } | null = null;
  try {
    for (const e of Deno.readDirSync(PG_ROOT)) {
      const v = Number(e.name);
      const dir = `${PG_ROOT}/${e.name}/bin`;
      if (Number.isFinite(v) && exists(`${dir}/initdb`) && (!best || v > best.v)) {
        best = { v, dir };
      }
    }
  } catch { /* no PostgreSQL at all */ }
  return best?.dir ?? null;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

let warned = false;

/**
 * True when PostgreSQL binaries are installed. Otherwise a test file skips its PostgreSQL tests
 * (`ignore: !pgAvailable()`) after one loud line; but with `CI=true` in the environment a missing
 * PostgreSQL is an error, so CI can never pass by skipping them.
 */
export function pgAvailable(): boolean {
  if (findPgBin() !== null) return true;
  if (Deno.env.get("CI") === "true") {
    throw new Error(
      `PostgreSQL is not installed (no ${PG_ROOT}/*/bin/initdb, PG_BIN unset) and CI=true: ` +
        "the PostgreSQL tests must run in CI (.ci/run installs postgresql)",
    );
  }
  if (!warned) {
    warned = true;
    console.warn(
      `SKIPPED: PostgreSQL not installed (no ${PG_ROOT}/*/bin/initdb): the PostgreSQL tests ` +
        "did not run; install postgresql to run them",
    );
  }
  return false;
}

/** Runs a command (as the postgres OS user when we are root) and fails with its output. */
async function run(bin: string, args: string[], what: string): Promise<string> {
  const asRoot = Deno.uid() === 0;
  const cmd = asRoot
    // cwd "/": the postgres user may not enter the checkout (a 0700 clone dir), and psql says
    // so on stderr, which would become part of every query's output.
    ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", bin, ...args], cwd: "/" })
    : new Deno.Command(bin, { args });
  const out = await cmd.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`Cannot ${what}: ${bin} exited ${out.code}: ${text}`);
  return text;
}

function runSync(bin: string, args: string[]): void {
  const asRoot = Deno.uid() === 0;
  const cmd = asRoot
    ? new Deno.Command("runuser", {
      args: ["-u", "postgres", "--", bin, ...args],
      cwd: "/",
      stdout: "null",
      stderr: "null",
    })
    : new Deno.Command(bin, { args, stdout: "null", stderr: "null" });
  cmd.outputSync();
}

/** A TCP port nobody listens on now (the kernel's pick for port 0). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function chownToPostgres(path: string): Promise<void> {
  if (Deno.uid() !== 0) return;
  const out = await new Deno.Command("chown", { args: ["-R", "postgres:postgres", path] }).output();
  if (!out.success) throw new Error(`Cannot chown ${path} to postgres`);
}

/** Servers of this process still running: stopped synchronously when the process exits. */
const running = new Set<{ ctl: string; data: string; dir: string }>();
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const s of running) {
      try {
        runSync(s.ctl, ["stop", "-D", s.data, "-m", "immediate", "-w"]);
        Deno.removeSync(s.dir, { recursive: true });
      } catch { /* best effort at exit */ }
    }
    running.clear();
  });
}

/**
 * Starts a fresh PostgreSQL: initdb into a new temp dir (as the `postgres` OS user when we are
 * root), listening on a free port on 127.0.0.1 only, unix socket in the temp dir, password auth
 * over TCP, `fsync=off` (a test cluster is thrown away; durability is PostgreSQL's own business).
 * Makes a database `chat` and returns its URL. `stop()` (or disposal) stops it and removes the dir;
 * a server still running when the process exits is stopped then.
 */
export async function startPostgres(
  opts: { settings?: Record<string, string> } = {},
): Promise<TestPostgres> {
  const bin = findPgBin();
  if (bin === null) throw new Error("Cannot start PostgreSQL: it is not installed");
  const dir = await Deno.makeTempDir({ prefix: "chat-pg-" });
  const data = `${dir}/data`;
  const socketDir = `${dir}/sock`;
  const log = `${dir}/postgres.log`;
  await Deno.mkdir(socketDir);
  await Deno.writeTextFile(`${dir}/pwfile`, `${PASSWORD}\n`);
  await chownToPostgres(dir);
  const ctl = `${bin}/pg_ctl`;
  const entry = { ctl, data, dir };
  try {
    await run(`${bin}/initdb`, [
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
      "--no-sync",
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
    fsync: "off",
    full_page_writes: "off",
    max_connections: "100",
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
    await run(ctl, ["start", "-D", data, "-l", log, "-w", "-t", "60"], "start PostgreSQL");
    up = true;
  };
  const stopServer = async () => {
    if (!up) return;
    await run(ctl, ["stop", "-D", data, "-m", "fast", "-w", "-t", "60"], "stop PostgreSQL");
    up = false;
  };
  hookUnload();
  running.add(entry);
  const psql = (sql: string, database = "chat") =>
    run(`${bin}/psql`, [
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
    ], "run SQL on the test PostgreSQL");
  const urlOf = (db: string) =>
    `postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/${db}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await stopServer();
    } finally {
      running.delete(entry);
      await Deno.remove(dir, { recursive: true });
    }
  };
  try {
    await startServer();
    await psql("CREATE DATABASE chat", "postgres");
  } catch (err) {
    await stop();
    throw err;
  }
  let n = 0;
  return {
    url: urlOf("chat"),
    host: "127.0.0.1",
    port,
    user: "postgres",
    password: PASSWORD,
    dir,
    async createDatabase(o = {}) {
      const name = o.name ?? `t${Deno.pid}_${++n}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      const template = o.template ? ` TEMPLATE ${o.template} STRATEGY FILE_COPY` : "";
      await psql(`CREATE DATABASE ${name}${template}`, "postgres");
      return urlOf(name);
    },
    psql,
    stopServer,
    startServer,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

let shared: Promise<TestPostgres> | null = null;

/**
 * One PostgreSQL for the whole test file (process), started on first use and stopped when the
 * process exits. Tests take a fresh database each (`createDatabase`) so they never share rows.
 * Tests that stop and start the server MUST use their own `startPostgres()` instead.
 */
export function sharedPostgres(): Promise<TestPostgres> {
  return shared ??= startPostgres();
}
