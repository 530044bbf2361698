// The terminal client on a cluster: `chat connect` (a real process) given two nodes of a cluster
// on PostgreSQL and NATS; kill -9 of the node it is on costs one reconnect, to the other node,
// and the listener resumes there with every message once, in order (docs/CLIENT.md).
import { assertEquals } from "../harness/assert.ts";
import { startChildNodes } from "../harness/child_cluster.ts";
import { waitUntil } from "../harness/cluster.ts";
import { NATS_AVAILABLE, NatsServer } from "../harness/nats.ts";
import { pgAvailable, startPostgres } from "../harness/postgres.ts";
import { ackedAtLeast, assertExactlyOnceInOrder, StormSender } from "../harness/storm.ts";
import { WireClient } from "../harness/wire_client.ts";
import { ChatProcess, fingerprintOf } from "../client/helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

const ignore = !NATS_AVAILABLE || !pgAvailable();

Deno.test({
  name:
    "chat connect with two nodes: kill -9 of its node mid-storm costs one reconnect, to the other node, and --listen prints every message once, in order",
  ignore,
  async fn() {
    await using pg = await startPostgres();
    await using nats = await NatsServer.start();
    await using c = await startChildNodes(await pg.createDatabase(), nats.url, 2);
    const [p0, p1] = c.nodes;
    await using cfg = await tempDir();
    (await WireClient.login(p0.port, c.certPem, "watch", { register: true })).close();
    await using listener = new ChatProcess(
      [
        `127.0.0.1:${p0.port},127.0.0.1:${p1.port}`,
        "-u",
        "watch",
        "--trust-fingerprint",
        await fingerprintOf(c.certPem),
        "--listen",
        "--json",
      ],
      { CHAT_CONFIG_DIR: cfg.path, CHAT_PASSWORD: "password-watch" },
    );
    await listener.waitFor(
      "stderr",
      (l) => l.includes(`listening as watch on 127.0.0.1:${p0.port}`),
      "the listener on p0, the first address",
    );
    const printed = () =>
      listener.stdoutLines.map((l) => JSON.parse(l)).filter((o) =>
        o.type === "msg" && o.room === "general"
      );
    const sender = await StormSender.login(p1.port, c.certPem, "fsend", true);
    try {
      sender.start({ room: "general" }, 2);
      await waitUntil(() => printed().length >= 50, "50 messages printed on p0", 30_000);
      p0.kill("SIGKILL");
      await p0.wait();
      await listener.waitFor(
        "stderr",
        (l) => l === `chat: reconnected to 127.0.0.1:${p1.port}`,
        "the reconnect to p1",
      );
      const atReconnect = sender.acked.size;
      await ackedAtLeast([sender], atReconnect + 50);
      await sender.stop();
      const expected = [...sender.acked.values()].sort((a, b) => a - b);
      const newest = expected[expected.length - 1];
      await waitUntil(
        () => printed().some((m) => m.id === newest),
        "the newest message printed",
        30_000,
      );
      assertExactlyOnceInOrder(printed().map((m) => m.id), expected, "the listener's output");
      // One drop, one attempt: its round found p0 refusing and p1 answering.
      const notices = listener.stderrLines.filter((l) =>
        /^chat: (disconnected|reconnecting|reconnected)/.test(l)
      );
      assertEquals(notices.length, 3, notices.join("\n"));
      assertEquals(notices[1].startsWith("chat: reconnecting in "), true, notices[1]);
    } finally {
      sender.close();
      await sender.closed();
    }
    assertEquals(await listener.stop("SIGTERM"), 0);
  },
});
