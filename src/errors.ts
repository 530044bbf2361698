// Owns the project's typed error: a stable code plus a human message, shared by wire and CLI.
import { type ErrorCode, type ErrorInfo, ERRORS, isErrorCode } from "./error_catalogue.ts";

export type { ErrorCode } from "./error_catalogue.ts";

/** Options of a {@linkcode ChatError}. */
export interface ChatErrorOptions {
  /** Overrides the catalogue's fatality (a `pre-login` code is fatal only when the caller says). */
  fatal?: boolean;
  /** For rate limits and throttles: how long the client should wait. */
  retryAfterMs?: number;
  /** The error this one explains (kept for logs and for deciding by the runtime's codes). */
  cause?: unknown;
}

/**
 * A failure with a stable machine code and a message that reads "Cannot <action>: <detail>".
 * The code must be in the catalogue (`src/error_catalogue.ts`); a code a peer sent goes through
 * {@linkcode ChatError.fromPeer}.
 */
export class ChatError extends Error {
  /**
   * A catalogue code. Typed as one so that comparing with a misspelt code is a compile error; an
   * error from {@linkcode ChatError.fromPeer} keeps the peer's code even when this build does not
   * know it, so look a code up with `errorInfo()`, never by indexing `ERRORS`.
   */
  readonly code: ErrorCode;
  /**
   * True when the connection (or command) cannot go on after this error. Defaults to the
   * catalogue's `fatal` being `yes`.
   */
  readonly fatal: boolean;
  /** For rate limits and throttles: how long the client should wait. */
  readonly retryAfterMs?: number;
  /** The request this error answers, when the failing frame carried a `ref`. */
  ref?: string;

  /** `message` defaults to the catalogue's `defaultMessage` (then to its meaning). */
  constructor(code: ErrorCode, message?: string, opts: ChatErrorOptions = {}) {
    const info: ErrorInfo = ERRORS[code];
    super(
      message ?? info.defaultMessage ?? `Cannot continue: ${info.meaning}`,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = "ChatError";
    this.code = code;
    this.fatal = opts.fatal ?? info.fatal === "yes";
    this.retryAfterMs = opts.retryAfterMs;
  }

  /**
   * An error a peer (the server, the admin socket) reported. Its code is kept as sent, even when
   * this build does not know it (a newer peer); an unknown code is not fatal unless `opts` says.
   */
  static fromPeer(code: string, message: string, opts: ChatErrorOptions = {}): ChatError {
    if (isErrorCode(code)) return new ChatError(code, message, opts);
    const err = new ChatError("internal", message, { fatal: false, ...opts });
    // The one place a code outside the catalogue gets in: shown and passed on as the peer sent it.
    Object.defineProperty(err, "code", { value: code, enumerable: true });
    return err;
  }
}

/** Exit codes used by the CLI (main.ts maps errors to these in one place). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
} as const;
