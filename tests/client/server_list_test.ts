// Several servers for one session: the order of a round (names in order, every address of a
// name, the last good one first), names that do not resolve, and a real connection to the second
// address of a name when the first refuses, pinned once for the name.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { ChatConnection } from "../../src/client/connection.ts";
import { KnownServers } from "../../src/client/known_servers.ts";
import { parseAddresses } from "../../src/client/mod.ts";
import { ServerList } from "../../src/client/server_list.ts";
import { generateSelfSigned } from "../../src/tls/certificate.ts";
import { EventLog, pinnedPolicy } from "./helpers.ts";

/** A resolver answering from a table (a name missing from it does not resolve). */
function table(t: Record<string, string[]>) {
  return (host: string) =>
    t[host] ? Promise.resolve(t[host]) : Promise.reject(
      Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" }),
    );
}

/** A port nobody listens on now. */
function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("parseAddresses() takes commas and --server, in order, without repeats", () => {
  assertEquals(parseAddresses(undefined), [{ host: "localhost", port: 7443 }]);
  assertEquals(parseAddresses("a:1, b:2,a:1", ["[::1]:3", "b:2"]), [
    { host: "a", port: 1 },
    { host: "b", port: 2 },
    { host: "::1", port: 3 },
  ]);
});

Deno.test("ServerList.round() lists every address of every name and starts from the last good one", async () => {
  const list = new ServerList(
    [{ host: "one", port: 1 }, { host: "two", port: 2 }],
    table({ one: ["10.0.0.1", "10.0.0.2"], two: ["10.0.0.3"] }),
  );
  const order = async () => (await list.round()).candidates.map((c) => `${c.host}/${c.address}`);
  assertEquals(await order(), ["one/10.0.0.1", "one/10.0.0.2", "two/10.0.0.3"]);
  list.markGood({ host: "one", port: 1, address: "10.0.0.2" });
  assertEquals(await order(), ["one/10.0.0.2", "two/10.0.0.3", "one/10.0.0.1"]);
  list.markGood({ host: "two", port: 2, address: "10.0.0.3" });
  assertEquals(await order(), ["two/10.0.0.3", "one/10.0.0.1", "one/10.0.0.2"]);
  // The good address left DNS: its name's first address leads.
  list.markGood({ host: "one", port: 1, address: "10.0.0.9" });
  assertEquals(await order(), ["one/10.0.0.1", "one/10.0.0.2", "two/10.0.0.3"]);
});

Deno.test("ServerList.round() leaves out a name that does not resolve and says so", async () => {
  const list = new ServerList(
    [{ host: "gone", port: 1 }, { host: "two", port: 2 }],
    table({ two: ["10.0.0.3"] }),
  );
  const r = await list.round();
  assertEquals(r.candidates.map((c) => c.address), ["10.0.0.3"]);
  assertEquals(r.errors.map((e) => [e.code, e.message]), [
    ["connect_failed", "Cannot connect to gone:1: unknown host"],
  ]);
});

Deno.test("ChatConnection tries every address of a name: the first refuses, the second logs in; one pin for the name", async () => {
  await using ts = await startTestServer();
  await using cfg = await tempDir();
  const policy = await pinnedPolicy(cfg.path, ts.certPem);
  // 127.0.0.2 is loopback too, but the server listens on 127.0.0.1 only: refused.
  const servers = new ServerList(
    [{ host: "chat.test", port: ts.port }],
    table({ "chat.test": ["127.0.0.2", "127.0.0.1"] }),
  );
  const log = new EventLog();
  const conn = await ChatConnection.open({
    host: "chat.test",
    port: ts.port,
    servers,
    policy,
    credentials: { user: "multi", password: "password-multi", register: true },
    onEvent: log.push,
  });
  try {
    assertEquals(conn.remote, `chat.test:${ts.port} (127.0.0.1)`);
    assert(log.events.some((e) => e.type === "up" && e.server === conn.remote));
    const ack = await conn.send({ room: "general" }, "via the second address");
    assert(ack.id > 0);
  } finally {
    await conn.close();
  }
  const known = await KnownServers.load(`${cfg.path}/known_servers`);
  assertEquals(known.size, 1);
  assert(known.get(`chat.test:${ts.port}`) !== undefined, "pinned under the name typed");
});

Deno.test("ChatConnection: when no address answers, open() fails with the retryable connect error", async () => {
  await using cfg = await tempDir();
  const { certPem } = await generateSelfSigned();
  const port = deadPort();
  const servers = new ServerList(
    [{ host: "gone", port }, { host: "127.0.0.1", port }],
    table({ "127.0.0.1": ["127.0.0.1"] }),
  );
  let err: unknown;
  try {
    await ChatConnection.open({
      host: "127.0.0.1",
      port,
      servers,
      policy: await pinnedPolicy(cfg.path, certPem),
      credentials: { user: "x", password: "password-x" },
    });
  } catch (e) {
    err = e;
  }
  const e = err as { code?: string; message?: string };
  assertEquals(e.code, "connect_failed");
  assert(e.message!.includes(`127.0.0.1:${port}: connection refused`), e.message);
});
