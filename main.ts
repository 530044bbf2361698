// Entry point: builds the `chat` command tree and is the only place that sets the exit code.
import { Command, CommanderError } from "commander";
import { ChatError, ExitCode } from "./src/errors.ts";
import { isHasherWorker } from "./src/server/password_hasher.ts";
import type { CliContext } from "./cli/context.ts";
import { registerServe } from "./cli/serve.ts";
import { registerAdmin } from "./cli/admin.ts";
import { registerConnect } from "./cli/connect.ts";
import { registerBench } from "./cli/bench.ts";

const encoder = new TextEncoder();

/** Builds the command tree; each cli/ file adds one subcommand group. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command("chat")
    .description("Secure business chat: one file, TLS everywhere, durable history.")
    .version("0.1.0")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout(s),
      writeErr: (s) => ctx.stderr(s),
    });
  registerServe(program, ctx);
  registerAdmin(program, ctx);
  registerConnect(program, ctx);
  registerBench(program, ctx);
  return program;
}

/** Runs the CLI with `args`; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const ctx: CliContext = {
    stdout: (s) => Deno.stdout.writeSync(encoder.encode(s)),
    stderr: (s) => Deno.stderr.writeSync(encoder.encode(s)),
    exitCode: ExitCode.ok,
  };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(args, { from: "user" });
    return ctx.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (err instanceof ChatError) {
      ctx.stderr(`chat: ${err.message} [${err.code}]\n`);
      return ExitCode.failure;
    }
    ctx.stderr(`chat: unexpected failure: ${err instanceof Error ? err.stack : String(err)}\n`);
    return ExitCode.failure;
  }
}

// In a password-hashing worker this same module graph is loaded; only the worker code runs there.
if (import.meta.main && !isHasherWorker()) {
  Deno.exit(await main(Deno.args));
}
