// Every accepted connection has Nagle's algorithm off (TCP_NODELAY), on both TLS engines and the
// plain loopback listener: read back from the kernel with getsockopt(2) on the server's sockets.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { tempDir } from "../harness/temp_dir.ts";

// The test reads the option itself (not through src/server/tcp_nodelay.ts), from libc.
const libc = Deno.dlopen("libc.so.6", {
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
}).symbols;

function option(fd: number, level: number, name: number): number | null {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  const r = libc.getsockopt(fd, level, name, new Uint8Array(v.buffer), new Uint8Array(len.buffer));
  return r === 0 ? v[0] : null;
}

/** TCP_NODELAY of each socket of this process accepted on `port` (not the listener itself). */
function acceptedNoDelay(port: number): boolean[] {
  const out: boolean[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    const fd = Number(e.name);
    const sa = new Uint8Array(128);
    const len = new Uint32Array([128]);
    if (libc.getsockname(fd, sa, new Uint8Array(len.buffer)) !== 0) continue;
    const family = sa[0] | (sa[1] << 8);
    if ((family !== 2 && family !== 10) || ((sa[2] << 8) | sa[3]) !== port) continue;
    if (option(fd, 1, /* SOL_SOCKET */ 30 /* SO_ACCEPTCONN */) !== 0) continue;
    out.push(option(fd, 6, /* IPPROTO_TCP */ 1 /* TCP_NODELAY */) !== 0);
  }
  return out;
}

for (const engine of ["deno", "node"] as const) {
  Deno.test({
    name: `TCP_NODELAY: connections accepted by the ${engine} TLS engine have Nagle off`,
    ignore: Deno.build.os !== "linux",
    fn: async () => {
      await using ts = await startTestServer({ config: { tlsEngine: engine } });
      await using a = await WireClient.login(ts.port, ts.certPem, "nagle1", { register: true });
      await using b = await WireClient.login(ts.port, ts.certPem, "nagle2", { register: true });
      assertEquals((await a.say("general", "hello")).type, "ack");
      const seen = acceptedNoDelay(ts.port);
      assertEquals(seen.length, 2, "both accepted sockets found");
      assert(seen.every((on) => on), `TCP_NODELAY per accepted socket: ${seen}`);
      void b;
    },
  });
}

Deno.test({
  name: "TCP_NODELAY: connections on a plain loopback listener have Nagle off",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    await using ts = await startTestServer({
      config: {
        listeners: [{ port: 0 }, { host: "127.0.0.1", port: 0, alpn: { "": "irc" }, tls: false }],
      } as never,
    });
    const port = ts.server.addrs[1].port;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      // An answer proves the server has accepted the socket.
      await conn.write(new TextEncoder().encode("PING :x\r\n"));
      assert((await conn.read(new Uint8Array(4096))) !== null, "the server answered");
      const seen = acceptedNoDelay(port);
      assertEquals(seen.length, 1);
      assert(seen[0], "TCP_NODELAY on the accepted plain socket");
    } finally {
      conn.close();
    }
  },
});

Deno.test({
  name:
    "TCP_NODELAY: set with the compiled binary's permissions (deno.json compile task), no warning",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const root = new URL("../../", import.meta.url).pathname;
    const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks;
    const perms = (tasks.compile as string).split(/\s+/).filter((a) => a.startsWith("--allow-"));
    assert(perms.includes("--allow-ffi"), `compile permissions: ${perms}`);
    await using tmp = await tempDir("chat-nodelay-");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...perms,
        `${root}main.ts`,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data",
        `${tmp.path}/data`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!/listening on port \d+/.test(out)) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    // The server is up: every listener has been bound (and TCP_NODELAY tried) before this line.
    child.kill("SIGTERM");
    for (let r = await reader.read(); !r.done; r = await reader.read()) out += r.value;
    await child.status;
    const all = out + (await stderr);
    assert(/listening on port \d+/.test(all), all);
    assert(!all.includes("TCP_NODELAY not set"), all);
  },
});
