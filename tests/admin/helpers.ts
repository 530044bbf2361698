// Owns what the admin tests share: running `chat admin` as a real process and filling a real
// database.
import { fileURLToPath } from "node:url";
import { openStore as openEngine, storeSpec } from "../../src/store/open_store.ts";
import type { Store } from "../../src/store/store.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What a finished CLI process left. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `chat admin <args>` as a subprocess (`deno run -A main.ts`) from the repository root.
 * `stdin` is written and closed; without it stdin is empty (not a terminal).
 */
export async function admin(args: string[], opts: { stdin?: string } = {}): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "admin", ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", USER: "tester" },
  }).spawn();
  const writer = child.stdin.getWriter();
  if (opts.stdin !== undefined) await writer.write(new TextEncoder().encode(opts.stdin));
  await writer.close();
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Runs and expects exit code 0; returns stdout. */
export async function adminOk(args: string[], opts: { stdin?: string } = {}): Promise<string> {
  const r = await admin(args, opts);
  if (r.code !== 0) {
    throw new Error(`chat admin ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** Runs with --json and parses stdout. */
export async function adminJson<T = unknown>(
  args: string[],
  opts: { stdin?: string } = {},
): Promise<T> {
  return JSON.parse(await adminOk([...args, "--json"], opts)) as T;
}

/** Opens the data dir's store (creating it), closed by `await using`. */
export async function openStore(dataDir: string): Promise<Store & AsyncDisposable> {
  const store = await openEngine(storeSpec({ dataDir }));
  return Object.assign(store, { [Symbol.asyncDispose]: () => store.close() });
}

/** True when util-linux `script` exists (terminal tests need a pseudo-terminal). */
export async function haveScript(): Promise<boolean> {
  try {
    const r = await new Deno.Command("script", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * Runs `chat admin <args>` inside a pseudo-terminal (util-linux `script`), typing `keys` after
 * `waitFor` appears in the output each time. Returns everything the terminal showed.
 */
export async function adminInTerminal(
  args: string[],
  dialogue: { waitFor: string; keys: string }[],
): Promise<{ code: number; screen: string }> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const cmd = [Deno.execPath(), "run", "-A", "main.ts", "admin", ...args].map(quote).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qefc", cmd, "/dev/null"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", USER: "tester", TERM: "dumb" },
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.getReader();
  let screen = "";
  const decoder = new TextDecoder();
  for (const step of dialogue) {
    while (!screen.includes(step.waitFor)) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(`terminal closed before ${JSON.stringify(step.waitFor)}: ${screen}`);
      }
      screen += decoder.decode(value, { stream: true });
    }
    screen = screen.slice(screen.indexOf(step.waitFor) + step.waitFor.length);
    await writer.write(new TextEncoder().encode(step.keys));
  }
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    rest += decoder.decode(value, { stream: true });
  }
  await writer.close().catch(() => {});
  const status = await child.status;
  await child.stderr.cancel();
  return { code: status.code, screen: rest };
}
