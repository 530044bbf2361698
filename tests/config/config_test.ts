import { assert, assertEquals, assertThrows } from "../harness/assert.ts";
import {
  configFromEnv,
  DEFAULT_CONFIG,
  defaultConfigText,
  readConfigFile,
  resolveConfig,
} from "../../src/config/config.ts";
import { ChatError } from "../../src/errors.ts";
import { tempDir } from "../harness/temp_dir.ts";

Deno.test("resolveConfig() gives the documented defaults, frozen", () => {
  const c = resolveConfig();
  assertEquals([c.port, c.host, c.dataDir, c.registration], [7443, "", "./data", "open"]);
  assertEquals(c.limits.maxLineBytes, 8192);
  assert(Object.isFrozen(c) && Object.isFrozen(c.limits));
});

Deno.test("later layers win: file < environment < flags", () => {
  const file = { port: 1000, registration: "closed" as const, limits: { maxConnections: 5 } };
  const env = configFromEnv((n) => ({ CHAT_PORT: "2000", CHAT_LIMIT_MAX_CONNECTIONS: "7" })[n]);
  const flags = { port: "3000" } as never;
  const c = resolveConfig(file, env, flags);
  assertEquals([c.port, c.registration, c.limits.maxConnections], [3000, "closed", 7]);
});

Deno.test("configFromEnv() reads only the variables that are set", () => {
  assertEquals(configFromEnv(() => undefined), {});
  assertEquals(configFromEnv((n) => (n === "CHAT_DATA" ? "/srv/chat" : undefined)), {
    dataDir: "/srv/chat",
  });
});

const invalid: { name: string; layer: Record<string, unknown> }[] = [
  { name: "a port out of range", layer: { port: 70000 } },
  { name: "a non-numeric port", layer: { port: "http" } },
  { name: "an unknown setting", layer: { prot: 1 } },
  { name: "an unknown limit", layer: { limits: { maxFoo: 1 } } },
  { name: "a negative limit", layer: { limits: { maxConnections: -1 } } },
  { name: "an unknown registration policy", layer: { registration: "maybe" } },
  { name: "a cert without a key", layer: { certFile: "/x.pem" } },
  { name: "a line limit below the body limit", layer: { limits: { maxLineBytes: 1000 } } },
];

for (const c of invalid) {
  Deno.test(`resolveConfig() rejects ${c.name} with config_invalid`, () => {
    const err = assertThrows(() => resolveConfig(c.layer as never), ChatError);
    assertEquals(err.code, "config_invalid");
    assert(err.message.startsWith("Cannot use configuration"));
  });
}

Deno.test("the printed default config reads back to the defaults", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  await Deno.writeTextFile(`${dir}/c.json`, defaultConfigText());
  const c = resolveConfig(await readConfigFile(`${dir}/c.json`));
  assertEquals(c, resolveConfig());
  assertEquals(c.port, DEFAULT_CONFIG.port);
  await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
  const err = await readConfigFile(`${dir}/bad.json`).catch((e) => e);
  assertEquals((err as ChatError).code, "config_invalid");
});

Deno.test("listeners: one on host:port by default; a listed first one takes host and port from the flags", () => {
  const d = resolveConfig({ host: "127.0.0.1", port: 9000 });
  assertEquals(d.listeners, [{
    host: "127.0.0.1",
    port: 9000,
    alpn: { "chat/1": "chat/1", "http/1.1": "https", "": "seed" },
  }]);
  const c = resolveConfig(
    {
      listeners: [{ alpn: { "chat/1": "chat/1" } }, {
        host: "::1",
        port: 7444,
        alpn: { "": "seed" },
      }],
    },
    { port: 8000 },
  );
  assertEquals(c.listeners.map((l) => [l.host, l.port, l.alpn]), [
    ["", 8000, { "chat/1": "chat/1" }],
    ["::1", 7444, { "": "seed" }],
  ]);
});

Deno.test("listeners: unknown protocols, fields, empty lists and repeated addresses are refused", () => {
  const bad = [
    [],
    [{ alpn: { "chat/1": "gopher" } }],
    [{ alpn: {} }],
    [{ alpn: { "chat/1": "chat/1" }, colour: "red" }],
    [{}, { host: "::1", port: 7444 }, { host: "::1", port: 7444 }],
    "7443",
  ];
  for (const listeners of bad) {
    const err = assertThrows(() => resolveConfig({ listeners }), ChatError);
    assertEquals(err.code, "config_invalid", JSON.stringify(listeners));
  }
});

Deno.test("store: SQLite in the data dir by default; a postgres:// URL from file, CHAT_STORE or flag; anything else refused without echoing it", () => {
  const d = resolveConfig();
  assertEquals([d.store, d.storePoolSize, d.storeConnectTimeoutMs], ["", 10, 5000]);
  const env = configFromEnv((n) =>
    ({ CHAT_STORE: "postgres://chat:pw@db:5432/chat", CHAT_STORE_POOL_SIZE: "20" })[n]
  );
  const c = resolveConfig({ store: "postgres://file/x" }, env);
  assertEquals([c.store, c.storePoolSize], ["postgres://chat:pw@db:5432/chat", 20]);
  assertEquals(
    resolveConfig(env, { store: "postgresql://flag/y" } as never).store,
    "postgresql://flag/y",
  );
  for (const bad of ["mysql://x/y", "sqlite:chat.db", "postgres://u:sekrit@[bad/db"]) {
    const err = assertThrows(() => resolveConfig({ store: bad }), ChatError);
    assertEquals(err.code, "config_invalid");
    assert(!err.message.includes("sekrit"), err.message);
  }
  assertThrows(() => resolveConfig({ storePoolSize: 1 }), ChatError);
});
