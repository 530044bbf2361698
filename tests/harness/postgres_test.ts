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
