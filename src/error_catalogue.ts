// Owns the list of every error code and `bye` code: its scope, fatality, what a client does next
// and its meaning. docs/PROTOCOL.md §9 is generated from it (`deno task docs:errors`).

/**
 * What a client does after an error.
 *
 * - `never`: the same request fails again; tell the user or fix the request.
 * - `after_hint`: repeat the same request after the error's `retryAfterMs`.
 * - `backoff`: a transient fault; repeat the request a few times with growing delays.
 * - `reconnect`: the connection ends (or the server is going away); open a new one with backoff,
 *   log in again (with `resume`) and repeat then what was not confirmed.
 */
export type Retry =
  | { readonly kind: "never" }
  | { readonly kind: "after_hint" }
  | { readonly kind: "backoff" }
  | { readonly kind: "reconnect" };

/** One error code. */
export interface ErrorInfo {
  /**
   * `wire`: a server sends it on chat/1 or the seed protocol (documented in PROTOCOL.md §9);
   * `cli`: it never crosses the chat wire (admin socket, CLI, the client's own failures) and is
   * shown as `chat: <message> [<code>]`.
   */
  readonly scope: "wire" | "cli";
  /**
   * Whether the connection (wire) or the command or session (cli) ends. `pre-login`: fatal before
   * login, not after it; the code that raises it decides (so `ChatError.fatal` is false unless the
   * caller says otherwise).
   */
  readonly fatal: "yes" | "no" | "pre-login";
  readonly retry: Retry;
  /** One line; for wire codes the "meaning" column of PROTOCOL.md §9. */
  readonly meaning: string;
  /** The message when there is one fixed text ("Cannot <action>: <detail>"). */
  readonly defaultMessage?: string;
}

/** One `bye` code: why the server closes, and whether a client reconnects (`reconnect`) or stops. */
export interface ByeInfo {
  readonly meaning: string;
  readonly retry: { readonly kind: "reconnect" } | { readonly kind: "never" };
  /** The server's `message` (the seed protocol's `[SERVER] code: message`). */
  readonly message?: string;
}

const never = Object.freeze({ kind: "never" } as const);
const afterHint = Object.freeze({ kind: "after_hint" } as const);
const backoff = Object.freeze({ kind: "backoff" } as const);
const reconnect = Object.freeze({ kind: "reconnect" } as const);

function deepFrozen<T extends Record<string, object>>(table: T): Readonly<T> {
  for (const entry of Object.values(table)) Object.freeze(entry);
  return Object.freeze(table);
}

/** The entries of {@linkcode ERRORS}, before freezing. */
const ERROR_TABLE = {
  // ---- wire: chat/1 and the seed protocol ----
  bad_frame: {
    scope: "wire",
    fatal: "pre-login",
    retry: never,
    meaning: "not a JSON object, missing or wrong-typed field; a bad value is never fatal (§1)",
  },
  invalid_utf8: {
    scope: "wire",
    fatal: "pre-login",
    retry: never,
    meaning: "the line is not valid UTF-8",
  },
  line_too_long: {
    scope: "wire",
    fatal: "yes",
    retry: never,
    meaning: "line over `maxLineBytes`",
  },
  unknown_type: { scope: "wire", fatal: "no", retry: never, meaning: "unknown frame `type`" },
  unsupported_version: {
    scope: "wire",
    fatal: "yes",
    retry: never,
    meaning: "`hello` with a version other than 1",
  },
  hello_required: {
    scope: "wire",
    fatal: "yes",
    retry: never,
    meaning: "first frame was not `hello`",
    defaultMessage: "Cannot continue: send hello first",
  },
  not_authenticated: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "a chat frame before login",
  },
  already_authenticated: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "`login`/`register` after login",
  },
  forbidden: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "needs the administrator role, or the room's owner (kick, topic, room creation)",
  },
  auth_failed: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "wrong user name or password, unknown or revoked session token, or disabled account",
  },
  throttled: {
    scope: "wire",
    fatal: "no",
    retry: afterHint,
    meaning: "too many failed logins, passwds, registrations or new rooms; see `retryAfterMs`",
  },
  busy: {
    scope: "wire",
    fatal: "no",
    retry: afterHint,
    meaning: "password hashing queue full; retry after `retryAfterMs`",
  },
  registration_closed: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "registration is closed",
  },
  invite_required: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "registration needs an invite",
  },
  invalid_invite: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "unknown, used up, revoked or expired invite",
  },
  user_exists: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "the name is taken (case-insensitively)",
  },
  invalid_username: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "name does not follow §8",
  },
  weak_password: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "password shorter than 8 or longer than 1024 bytes, or not well-formed Unicode",
  },
  invalid_room: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "room name does not follow §7",
  },
  no_such_room: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "room does not exist, is archived, or is private and you are not a member",
  },
  too_many_rooms: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "creating a room past `roomsPerUser` or `maxRooms`",
  },
  no_such_user: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "DM or history to an unknown user",
  },
  not_member: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "send, history, who, part, read, search or invite on a room the user has not joined",
  },
  cannot_part: { scope: "wire", fatal: "no", retry: never, meaning: "parting `general`" },
  invalid_text: {
    scope: "wire",
    fatal: "no",
    retry: never,
    meaning: "empty, control characters, bidi controls, bad `cid`",
  },
  too_large: { scope: "wire", fatal: "no", retry: never, meaning: "body over `maxBodyBytes`" },
  rate_limited: {
    scope: "wire",
    fatal: "no",
    retry: afterHint,
    meaning: "over the message rate (servers before pacing, §8; this one paces instead)",
    defaultMessage: "Cannot send: too many messages, slow down",
  },
  storage_failed: {
    scope: "wire",
    fatal: "no",
    retry: backoff,
    meaning: "the database could not commit; nothing was stored",
  },
  too_many_frames: {
    scope: "wire",
    fatal: "yes",
    retry: never,
    meaning: "too many frames before login",
  },
  auth_timeout: {
    scope: "wire",
    fatal: "yes",
    retry: reconnect,
    meaning: "login not completed in time",
    defaultMessage: "Cannot continue: login took too long",
  },
  server_full: {
    scope: "wire",
    fatal: "yes",
    retry: reconnect,
    meaning: "`maxConnections` reached",
    defaultMessage: "Cannot connect: the server is full",
  },
  too_many_connections: {
    scope: "wire",
    fatal: "yes",
    retry: reconnect,
    meaning: "per-address connection limit reached",
    defaultMessage: "Cannot connect: too many connections from your address",
  },
  // Not fatal (the request is refused, the connection stays until `bye shutdown`), but the
  // request can only succeed on the next server: so `reconnect`, not `backoff`.
  shutting_down: {
    scope: "wire",
    fatal: "no",
    retry: reconnect,
    meaning: "request refused because the server is stopping",
  },
  // Fatal, so the connection is gone: `reconnect` (a fatal code is `never` or `reconnect`).
  internal: {
    scope: "wire",
    fatal: "yes",
    retry: reconnect,
    meaning: "unexpected server fault (logged with the connection id)",
    defaultMessage: "Cannot continue: internal server error",
  },

  // ---- cli: the client's own failures ----
  connect_failed: {
    scope: "cli",
    fatal: "no",
    retry: reconnect,
    meaning: "TCP connect or TLS handshake failed",
  },
  connection_lost: {
    scope: "cli",
    fatal: "no",
    retry: reconnect,
    meaning: "the connection dropped before the reply",
  },
  timed_out: {
    scope: "cli",
    fatal: "no",
    retry: backoff,
    meaning: "the server did not answer a request in time",
  },
  not_connected: {
    scope: "cli",
    fatal: "no",
    retry: backoff,
    meaning: "a request while the client is reconnecting",
  },
  closed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the session was closed before the server confirmed the request",
  },
  reconnect_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the client gave up reconnecting after its last attempt",
  },
  kicked: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server said `bye kicked`: an administrator disabled or removed the account",
  },
  password_changed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server said `bye password_changed`: the password was changed in another session",
  },
  not_chat_server: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server did not agree to speak chat/1 (ALPN)",
  },
  cert_missing: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a certificate or key file (or the server's certificate) is missing",
  },
  cert_unknown: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server's certificate is not signed by a trusted authority and not pinned",
  },
  cert_untrusted: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the certificate is not valid for the name or not signed by the given CA",
  },
  cert_changed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server's certificate is not the one remembered in known_servers",
  },
  cert_mismatch: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server's certificate is not the pinned fingerprint",
  },
  cert_rejected: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the user did not accept the server's certificate",
  },
  known_servers_read: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the known_servers file cannot be read",
  },
  known_servers_write: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the known_servers file cannot be written",
  },
  session_tokens_read: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the session_tokens file cannot be read",
  },
  session_tokens_write: {
    scope: "cli",
    fatal: "no",
    retry: never,
    meaning: "the session_tokens file cannot be written (the session goes on without saving)",
  },
  no_config_dir: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "no directory for the client's configuration",
  },
  usage: { scope: "cli", fatal: "yes", retry: never, meaning: "wrong options or arguments" },
  cancelled: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the user cancelled at a prompt",
  },

  // ---- cli: the server's start, configuration, database and certificates ----
  config_invalid: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the configuration (file, environment or flags) is not valid",
  },
  listen_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server cannot bind its port",
  },
  data_dir_in_use: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "another server runs on the data directory",
  },
  data_dir_unsafe: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the data directory is not this user's or is open to group or others",
  },
  db_open_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the database cannot be opened",
  },
  db_readonly: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the database file is read-only",
  },
  db_locked: {
    scope: "cli",
    fatal: "yes",
    retry: backoff,
    meaning: "another process holds the database lock",
  },
  db_corrupt: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the database file is damaged",
  },
  db_too_new: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the database schema is newer than this build",
  },
  cert_invalid: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a certificate is not usable (not PEM, not a CA, wrong issuer)",
  },
  cert_unreadable: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a certificate or key file cannot be read",
  },
  cert_exists: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "certificate files exist already",
  },
  cert_expired: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the certificate has expired",
  },
  cert_not_yet_valid: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the certificate is not valid yet",
  },
  cert_key_mismatch: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the private key does not belong to the certificate",
  },
  key_invalid: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the private key is not a usable PEM key",
  },
  key_permissions: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the private key file is readable by group or others",
  },

  // ---- cli: administration (the admin socket and `chat admin`) ----
  bad_request: {
    scope: "cli",
    fatal: "no",
    retry: never,
    meaning: "an admin request with missing or wrong arguments",
  },
  unknown_op: { scope: "cli", fatal: "no", retry: never, meaning: "no such admin operation" },
  admin_socket_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the admin socket cannot be opened or reached",
  },
  admin_socket_denied: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "no permission on the admin socket",
  },
  server_gone: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the server closed the admin connection or answered garbage",
  },
  server_not_running: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the operation needs a running server",
  },
  no_database: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "there is no database in the data directory",
  },
  no_such_invite: { scope: "cli", fatal: "no", retry: never, meaning: "no invite with that id" },
  room_exists: { scope: "cli", fatal: "no", retry: never, meaning: "the room exists already" },
  cannot_archive: {
    scope: "cli",
    fatal: "no",
    retry: never,
    meaning: "archiving or renaming `general`",
  },
  invalid_date: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a date option that is not a date",
  },
  confirmation_required: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a destructive command without a terminal to confirm on and no `--yes`",
  },
  password_required: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "no password given and no terminal to ask on",
  },
  password_mismatch: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the two passwords typed differ",
  },
  stdin_too_large: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "more than 1 MiB on standard input",
  },
  file_exists: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the output file exists and `--force` was not given",
  },
  file_unwritable: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the output file cannot be written",
  },

  // ---- cli: the load generator ----
  bench_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "the benchmark's server did not start",
  },
  login_failed: {
    scope: "cli",
    fatal: "yes",
    retry: never,
    meaning: "a benchmark client could not log in",
  },
} satisfies Record<string, ErrorInfo>;

/** Every code this build knows; `new ChatError(code, …)` takes only these. */
export type ErrorCode = keyof typeof ERROR_TABLE;

/**
 * Every error code, keyed by code, frozen. Wire codes first, in the order of PROTOCOL.md §9.
 *
 * To add a code: add an entry to the table above (a misspelt `new ChatError(code, …)` is a
 * compile error until it exists); for a wire code, run `deno task docs:errors` to regenerate §9.
 */
export const ERRORS: Readonly<Record<ErrorCode, ErrorInfo>> = deepFrozen(ERROR_TABLE);

/** The entries of {@linkcode BYE_CODES}, before freezing. */
const BYE_TABLE = {
  shutdown: {
    meaning: "the server is stopping or restarting",
    retry: reconnect,
    message: "The server is shutting down",
  },
  idle_timeout: {
    meaning: "nothing received for `idleTimeoutMs`",
    retry: reconnect,
    message: "No traffic received in time",
  },
  slow_consumer: {
    meaning: "unsent output over `sendQueueBytes`",
    retry: reconnect,
  },
  kicked: {
    meaning: "an administrator disabled or removed the account, or revoked this session",
    retry: never,
  },
  password_changed: {
    meaning: "the password was changed in another session (every other session ends); log in " +
      "with the new one",
    retry: never,
    message: "The password of this account was changed; log in with the new one",
  },
  flood: {
    meaning: "kept sending faster than the message rate for too long (`messageFloodMs`, §8)",
    retry: reconnect,
    message: "Excess flood: too many messages for too long",
  },
  quit: { meaning: "the answer to the client's `quit`", retry: never, message: "Goodbye" },
} satisfies Record<string, ByeInfo>;

/** Every `bye` code this build knows. */
export type ByeCode = keyof typeof BYE_TABLE;

/** Every `bye` code, frozen, in the order of PROTOCOL.md §9. */
export const BYE_CODES: Readonly<Record<ByeCode, ByeInfo>> = deepFrozen(BYE_TABLE);

/** True when this build knows `code` (a peer may send one it does not). */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** The entry of a code, or undefined for a code this build does not know. */
export function errorInfo(code: string): ErrorInfo | undefined {
  return isErrorCode(code) ? ERRORS[code] : undefined;
}

/** The entry of a `bye` code, or undefined for one this build does not know. */
export function byeInfo(code: string): ByeInfo | undefined {
  return Object.hasOwn(BYE_CODES, code) ? BYE_CODES[code as ByeCode] : undefined;
}

/** What to do after an error with `code`; an unknown code is never repeated. */
export function retryAfterError(code: string): Retry {
  return errorInfo(code)?.retry ?? never;
}

/**
 * What to do after `bye code`. An unknown code reconnects: the connection ended for a reason this
 * build cannot name, and a server that does not want the client back refuses its login.
 */
export function retryAfterBye(code: string): ByeInfo["retry"] {
  return byeInfo(code)?.retry ?? reconnect;
}
