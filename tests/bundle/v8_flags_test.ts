// The V8 flags the server ships with: the same in `deno task chat` and in the compiled binary, and
// flags this Deno's V8 knows (docs/DEVELOPERS.md, "V8's young generation is capped").
import { assert, assertEquals } from "../harness/assert.ts";

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
