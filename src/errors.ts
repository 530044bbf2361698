// Owns the project's typed error: a stable code plus a human message, shared by wire and CLI.

/** A failure with a stable machine code and a message that reads "Cannot <action>: <detail>". */
export class ChatError extends Error {
  readonly code: string;
  /** True when the connection (or command) cannot go on after this error. */
  readonly fatal: boolean;
  /** For rate limits and throttles: how long the client should wait. */
  readonly retryAfterMs?: number;
  /** The request this error answers, when the failing frame carried a `ref`. */
  ref?: string;

  constructor(
    code: string,
    message: string,
    opts: { fatal?: boolean; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    this.fatal = opts.fatal ?? false;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

/** Exit codes used by the CLI (main.ts maps errors to these in one place). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
} as const;
