// Proves the single-file property: the bundled dist file serves chat/1 from an empty directory.
import { assert, assertEquals } from "../harness/assert.ts";
import { WireClient } from "../harness/wire_client.ts";
import { tempDir } from "../harness/temp_dir.ts";

const root = new URL("../../", import.meta.url).pathname;

async function waitForPort(
  stdout: ReadableStream<Uint8Array>,
): Promise<{ port: number; rest: Promise<string> }> {
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
    const m = text.match(/listening on port (\d+)/);
    if (m) {
      const rest = (async () => {
        let more = "";
        while (true) {
          const r = await reader.read();
          if (r.done) return more;
          more += r.value;
        }
      })();
      return { port: Number(m[1]), rest };
    }
  }
  throw new Error(`server did not report its port; stdout: ${text}`);
}

Deno.test("the bundled single file runs `chat serve` and does a protocol round trip", async () => {
  await using tmp = await tempDir("chat-bundle-");
  const work = tmp.path;
  const bundle = `${work}/chat.js`;
  const build = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--platform", "deno", "-o", bundle, "main.ts"],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).output();
  assertEquals(build.code, 0, new TextDecoder().decode(build.stderr));
  // Run from an empty directory, without the project's config or node_modules.
  const run = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-config",
      "--no-lock",
      bundle,
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--data",
      `${work}/data`,
    ],
    cwd: work,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderrText = new Response(run.stderr).text();
  const { port, rest } = await waitForPort(run.stdout);
  const certPem = await Deno.readTextFile(`${work}/data/cert.pem`);
  {
    await using a = await WireClient.login(port, certPem, "bundle", { register: true });
    const ack = await a.say("general", "from the bundle");
    assertEquals(ack.type, "ack");
    a.send({ type: "history", room: "general", ref: "h" });
    const h = await a.expect((f) => f.type === "history");
    assert(h.type === "history" && h.messages[0].body === "from the bundle");
  }
  run.kill("SIGTERM");
  const status = await run.status;
  await rest;
  const err = await stderrText;
  assertEquals(status.code, 0, err);
  assert(!err.includes("from the bundle"), "a message body reached the log");
});
