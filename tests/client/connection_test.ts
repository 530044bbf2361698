// End-to-end tests of ChatConnection against a real server over TLS on loopback.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChatConnection } from "../../src/client/connection.ts";
import { EventLog, pinnedPolicy, tempConfigDir } from "./helpers.ts";

Deno.test("ChatConnection registers, sends with an ack and receives others' messages", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempConfigDir();
  const log = new EventLog();
  const conn = await ChatConnection.open({
    host: "127.0.0.1",
    port: ts.port,
    policy: await pinnedPolicy(cfg.path, ts.certPem),
    credentials: { user: "Alice", password: "password-Alice", register: true },
    onEvent: log.push,
  });
  try {
    assertEquals(conn.user, "Alice");
    assertEquals(conn.rooms, ["general"]);
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    const ack = await conn.send({ room: "general" }, "hello bob");
    assert(ack.id > 0);
    const m = await bob.expect((f) => f.type === "msg");
    assertEquals(m.type === "msg" && m.body, "hello bob");
    await bob.say("general", "hi alice");
    await log.waitFor((e) => e.type === "msg" && e.msg.body === "hi alice", "bob's message");
  } finally {
    await conn.close();
  }
});
