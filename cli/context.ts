// Owns what every command receives from main.ts: output streams and the exit code it reports.
import type { FallbackProtocol } from "../src/server/server.ts";

/** Shared dependencies of the command groups. */
export interface CliContext {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Set by a command to report a non-zero outcome without throwing. */
  exitCode: number;
  /** Protocol for TLS clients without ALPN (the seed text protocol when built in). */
  fallbackProtocol?: FallbackProtocol;
}
