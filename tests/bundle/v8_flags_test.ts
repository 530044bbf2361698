// The V8 flags the server ships with: the same in `deno task chat` and in the compiled binary, and
// flags this Deno's V8 knows (docs/DEVELOPERS.md, "V8's young generation is capped").
import { assert, assertEquals } from "../harness/assert.ts";
import { SERVER_V8_FLAGS, spawnServer } from "../../src/bench/spawn.ts";

const root = new URL("../../", import.meta.url);

async function taskFlags(): Promise<{ chat: string | undefined; compile: string | undefined }> {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", root))).tasks;
  const flagsOf = (task: string) => /--v8-flags=(\S+)/.exec(task)?.[1];
  return { chat: flagsOf(tasks.chat), compile: flagsOf(tasks.compile) };
}

Deno.test("`deno task chat` and `deno task compile` run the server with the same V8 flags", async () => {
  const { chat, compile } = await taskFlags();
  assert(compile !== undefined, "the compile task embeds V8 flags");
  assertEquals(chat, compile);
  assert(compile.split(",").some((f) => f.startsWith("--max-semi-space-size=")));
  // `chat bench --spawn` starts a server from source with the same flags.
  assertEquals(SERVER_V8_FLAGS, compile);
});

Deno.test("this Deno's V8 accepts the server's V8 flags", async () => {
  const { compile } = await taskFlags();
  // A flag V8 does not know (or a bad value) makes deno refuse to start.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=${compile}`, "console.log('started')"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  assertEquals(new TextDecoder().decode(out.stdout).trim(), "started");
});

Deno.test("`chat bench --spawn` starts the server with the shipped V8 flags, or the caller's own", async () => {
  const { compile } = await taskFlags();
  const entry = new URL("main.ts", root).pathname;
  const argvOf = async (pid: number) =>
    (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").filter((a) => a);
  {
    await using s = await spawnServer({ limits: {}, users: [], entry });
    const argv = await argvOf(s.pid);
    assert(argv.includes(`--v8-flags=${compile}`), argv.join(" "));
  }
  {
    await using s = await spawnServer({
      limits: {},
      users: [],
      entry,
      denoFlags: ["--v8-flags=--max-semi-space-size=4"],
    });
    const argv = await argvOf(s.pid);
    assert(argv.includes("--v8-flags=--max-semi-space-size=4"), argv.join(" "));
    assert(!argv.includes(`--v8-flags=${compile}`), argv.join(" "));
  }
});
