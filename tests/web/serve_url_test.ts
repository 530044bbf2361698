// `chat serve` (what `npm start` runs) as a real process prints the address of the web app, and
// that address serves the app over HTTPS with the certificate it generated.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("serve: `chat serve` prints the web app's URL, and a GET of that URL returns the app", async () => {
  await using tmp = await tempDir("chat-serve-url-");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}main.ts`,
      "serve",
      "--data",
      `${tmp.path}/data`,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--log-level",
      "error",
    ],
    cwd: tmp.path,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.text();
  try {
    // Read stdout until the line naming the web app (bounded: the process prints two lines).
    const lines: string[] = [];
    const splitter = new LineSplitter(4096);
    const reader = child.stdout.getReader();
    const dec = new TextDecoder();
    let url = "";
    for (let reads = 0; url === "" && reads < 100; reads++) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const line of splitter.push(value)) {
        lines.push(dec.decode(line));
        const m = /^chat: web app at (\S+) \(open it in a browser\)$/.exec(lines.at(-1)!);
        if (m) url = m[1];
      }
    }
    reader.releaseLock();
    assert(url !== "", `no web app line in: ${JSON.stringify(lines)}`);
    assertMatch(url, /^https:\/\/127\.0\.0\.1:[0-9]+\/$/);
    const port = Number(/:(\d+)\/$/.exec(url)![1]);
    const cert = await Deno.readTextFile(`${tmp.path}/data/cert.pem`);
    const client = Deno.createHttpClient({ caCerts: [cert] });
    try {
      const res = await fetch(url, { client });
      const body = await res.text();
      assertEquals(res.status, 200);
      assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
      assert(body.includes('<form id="login"'), body.slice(0, 200));
      assert(new URL(url).port === String(port));
    } finally {
      client.close();
    }
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    await stderr;
  }
});
