// Owns the dev scripts' flag parsing: node:util parseArgs, where a bad flag is a message and exit 2.
import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * `parseArgs(config)`, except that an unknown flag, a missing value or a value that looks like a
 * flag (`--v8-flags --x`: write `--v8-flags=--x`) prints one line naming the script and exits 2,
 * instead of a stack trace.
 */
export function parseScriptArgs<T extends ParseArgsConfig>(
  script: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    console.error(`${script}: ${(err as Error).message}`);
    Deno.exit(2);
  }
}
