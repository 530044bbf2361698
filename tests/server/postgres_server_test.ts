import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { pgAvailable, startPostgres } from "../harness/postgres.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChatError } from "../../src/errors.ts";

const ignore = !pgAvailable();

/** A frame's field, whatever its type. */
const field = (f: unknown, k: string) => (f as Record<string, unknown>)[k];

Deno.test({
  name:
    "chat serve on PostgreSQL: messages are acked and delivered; while PostgreSQL is down sends get storage_failed; after it is back they work again",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    const srv = await startTestServer({ config: { store: pg.url, storeConnectTimeoutMs: 2000 } });
    const a = await WireClient.login(srv.port, srv.certPem, "ann", { register: true });
    const b = await WireClient.login(srv.port, srv.certPem, "bob", { register: true });
    try {
      for (const c of [a, b]) {
        c.send({ type: "join", room: "general", ref: "j" });
        await c.expect((f) => f.type === "ok" && field(f, "ref") === "j");
      }
      const ack = await a.say("general", "before");
      assertEquals(ack.type, "ack");
      await b.expect((f) => f.type === "msg" && field(f, "body") === "before");

      await pg.stopServer();
      const refused = await a.say("general", "while down");
      assertEquals([refused.type, field(refused, "code")], ["error", "storage_failed"]);

      await pg.startServer();
      const back = await a.say("general", "after");
      assertEquals(back.type, "ack");
      assert(Number(field(back, "id")) > Number(field(ack, "id")));
      const got = await b.expect((f) => f.type === "msg" && field(f, "body") === "after");
      assertEquals(field(got, "id"), field(back, "id"));
      await b.expectNone(
        (f) => f.type === "msg" && field(f, "body") === "while down",
        "a refused send",
      );
    } finally {
      a.close();
      b.close();
      await srv.stop();
    }
  },
});

Deno.test({
  name:
    "chat serve with an unreachable PostgreSQL fails at start with db_open_failed, password not shown",
  ignore,
  async fn() {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const err = await assertRejects(
      () =>
        startTestServer({
          config: {
            store: `postgres://chat:hunter2@127.0.0.1:${port}/chat`,
            storeConnectTimeoutMs: 1000,
          },
        }),
      ChatError,
    );
    assertEquals(err.code, "db_open_failed");
    assert(/unreachable/.test(err.message) && !err.message.includes("hunter2"), err.message);
  },
});
