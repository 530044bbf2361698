import postgres from "postgres";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { pgAvailable, startPostgres } from "./postgres.ts";

const ignore = !pgAvailable();

Deno.test({
  name: "startPostgres runs a loopback PostgreSQL with password auth; stop() removes its dir",
  ignore,
  async fn() {
    const pg = await startPostgres();
    try {
      assert(
        pg.url.startsWith(`postgres://postgres:`) && pg.url.includes(`@127.0.0.1:${pg.port}/chat`),
      );
      const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
      try {
        const [row] = await sql`SELECT current_database() AS db, inet_server_addr()::text AS addr`;
        assertEquals([row.db, row.addr], ["chat", "127.0.0.1/32"]);
        // A pool, and a transaction on one connection with pipelined statements.
        await sql`CREATE TABLE t (n int)`;
        const got = await sql.begin((tx) => [
          tx`INSERT INTO t VALUES (1)`,
          tx`INSERT INTO t VALUES (2)`,
          tx`SELECT sum(n)::int AS s FROM t`,
        ]);
        assertEquals(got[2][0].s, 3);
      } finally {
        await sql.end();
      }
      const wrong = postgres(pg.url.replace(pg.password, "nope"), { max: 1, onnotice: () => {} });
      await assertRejects(() => wrong`SELECT 1`);
      await wrong.end();
      const other = await pg.createDatabase();
      assert(other.endsWith(`/t${Deno.pid}_1`));
      assertEquals((await pg.psql("SELECT 1", "postgres")).trim(), "1");
    } finally {
      await pg.stop();
    }
    await assertRejects(() => Deno.stat(pg.dir), Deno.errors.NotFound);
    await pg.stop(); // idempotent
  },
});

Deno.test({
  name: "stopServer() and startServer() keep the data and the port",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    await pg.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
    await pg.stopServer();
    const sql = postgres(pg.url, { max: 1, onnotice: () => {}, connect_timeout: 2 });
    try {
      await assertRejects(() => sql`SELECT 1`);
      await pg.startServer();
      const [row] = await sql`SELECT n FROM kept`;
      assertEquals(row.n, 7);
    } finally {
      await sql.end();
    }
  },
});

Deno.test("pgAvailable() without PostgreSQL skips with one SKIPPED line, but fails under CI=true", async () => {
  const run = async (ci: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { pgAvailable } from "${new URL("./postgres.ts", import.meta.url)}";` +
        "console.log(pgAvailable(), pgAvailable());",
      ],
      env: { PG_BIN: "/nonexistent", CI: ci, NO_COLOR: "1" },
    }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  };
  const dev = await run("");
  assertEquals([dev.code, dev.stdout.trim()], [0, "false false"]);
  assertEquals(
    dev.stderr.split("\n").filter((l) => l.startsWith("SKIPPED: PostgreSQL not installed")).length,
    1,
  );
  const ci = await run("true");
  assert(ci.code !== 0 && ci.stderr.includes("CI=true"), ci.stderr);
});
