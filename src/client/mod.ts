// Owns `chat connect` from parsed options to exit code: address, trust, credentials, and which
// mode runs (interactive screen, send, listen, or stdin lines).
import { ChatError, ExitCode } from "../errors.ts";
import {
  ChatConnection,
  type ConnectionEvent,
  type Credentials,
  type SendTarget,
} from "./connection.ts";
import { KnownServers, knownServersPath, parseFingerprint, serverKey } from "./known_servers.ts";
import { sanitize } from "./render.ts";
import { ServerList, type ServerName } from "./server_list.ts";
import { deviceLabel, SessionTokens, sessionTokensPath } from "./session_tokens.ts";
import { listen, readLines, type ScriptOutput, sendLines, sendOne } from "./script.ts";
import { Terminal } from "./terminal.ts";
import { TerminalUi } from "./terminal_ui.ts";
import { dialTls } from "./tls_dial.ts";
import { TrustPolicy } from "./trust.ts";

/** Default port of a chat server. */
export const DEFAULT_PORT = 7443;

/** Options of `chat connect`, as parsed from the command line. */
export interface ConnectOptions {
  /** `HOST[:PORT]`, `[IPv6]:PORT`, or several separated by commas; default `localhost:7443`. */
  address?: string;
  /** More servers of the same cluster (`--server`, repeatable), tried after `address`. */
  server?: string[];
  user?: string;
  register?: boolean;
  passwordStdin?: boolean;
  invite?: string;
  /** PEM file of a CA to trust. */
  ca?: string;
  /** `sha256:…` of the server certificate to accept without asking. */
  trustFingerprint?: string;
  send?: string;
  room?: string;
  to?: string;
  listen?: boolean;
  json?: boolean;
}

/** What `runConnect` needs from the process. */
export interface ConnectIo extends ScriptOutput {
  env(name: string): string | undefined;
}

/** Splits `HOST[:PORT]` (IPv6 as `[::1]:7443` or bare `::1`). */
export function parseAddress(address: string | undefined): { host: string; port: number } {
  const a = (address ?? "").trim();
  if (a === "") return { host: "localhost", port: DEFAULT_PORT };
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(a);
  if (bracket) {
    host = bracket[1];
    portText = bracket[2];
  } else if ((a.match(/:/g) ?? []).length > 1) {
    host = a; // A bare IPv6 literal: no port.
  } else {
    const i = a.lastIndexOf(":");
    host = i === -1 ? a : a.slice(0, i);
    portText = i === -1 ? undefined : a.slice(i + 1);
  }
  const port = portText === undefined ? DEFAULT_PORT : Number(portText);
  if (host === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ChatError(
      "usage",
      `Cannot connect: ${JSON.stringify(a)} is not HOST[:PORT] (IPv6 as [::1]:7443)`,
    );
  }
  return { host, port };
}

/**
 * The servers of `address` (comma-separated) and then of each `--server`, in that order, without
 * repeats; `localhost:7443` when none is given.
 */
export function parseAddresses(address: string | undefined, more: string[] = []): ServerName[] {
  const parts = [address ?? "", ...more].flatMap((a) => a.split(",")).map((a) => a.trim())
    .filter((a) => a !== "");
  if (parts.length === 0) return [parseAddress(undefined)];
  const seen = new Set<string>();
  const out: ServerName[] = [];
  for (const p of parts) {
    const n = parseAddress(p);
    const key = serverKey(n.host, n.port);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(n);
  }
  return out;
}

/** Buffers connection events until someone subscribes (events start before the UI exists). */
class EventHub {
  #buffer: ConnectionEvent[] = [];
  #fn: ((ev: ConnectionEvent) => void) | null = null;
  readonly push = (ev: ConnectionEvent): void => {
    if (this.#fn) this.#fn(ev);
    else if (this.#buffer.length < 10000) this.#buffer.push(ev);
  };
  subscribe(fn: (ev: ConnectionEvent) => void): void {
    this.#fn = fn;
    for (const ev of this.#buffer.splice(0)) fn(ev);
  }
}

type Mode = "interactive" | "send" | "listen" | "stdin";

/** Runs `chat connect`; returns the exit code (errors are thrown as ChatError). */
export async function runConnect(opts: ConnectOptions, io: ConnectIo): Promise<number> {
  const names = parseAddresses(opts.address, opts.server);
  const servers = new ServerList(names);
  if (opts.send !== undefined && opts.listen) {
    throw new ChatError("usage", "Cannot connect: use either --send or --listen, not both");
  }
  if (opts.room !== undefined && opts.to !== undefined) {
    throw new ChatError("usage", "Cannot connect: use either --room or --to, not both");
  }
  const pinned = opts.trustFingerprint === undefined
    ? undefined
    : parseFingerprint(opts.trustFingerprint) ?? (() => {
      throw new ChatError(
        "usage",
        "Cannot connect: --trust-fingerprint must be sha256: followed by 64 hex digits",
      );
    })();
  const ttyIn = Terminal.stdinIsTerminal;
  const mode: Mode = opts.send !== undefined
    ? "send"
    : opts.listen
    ? "listen"
    : !ttyIn
    ? "stdin"
    : "interactive";
  if (mode === "interactive" && !Terminal.stdoutIsTerminal) {
    throw new ChatError(
      "usage",
      "Cannot start the chat screen: stdout is not a terminal; use --listen, --send or pipe lines in",
    );
  }
  const term = new Terminal();
  const caPem = opts.ca === undefined ? undefined : await readCa(opts.ca);
  const knownPath = knownServersPath(io.env);
  const known = await KnownServers.load(knownPath);
  const tokens = new SessionTokens(sessionTokensPath(knownPath));
  // Session tokens are kept per server as typed first (a cluster's nodes share one account).
  const key = serverKey(names[0].host, names[0].port);
  // Asking is for the start only: once the session runs (the chat screen owns the terminal), a
  // server never accepted before is refused (`cert_unknown`) and another one is tried.
  let mayAsk = ttyIn;
  const policy = new TrustPolicy({
    known,
    pinned,
    caFile: opts.ca,
    warn: (text) => io.stderr(text),
    prompt: ttyIn
      ? (question) => {
        if (!mayAsk) {
          return Promise.reject(
            new ChatError(
              "cert_unknown",
              "Cannot connect: a server not accepted at start showed a certificate never seen " +
                "before; connect to it alone once to accept it",
            ),
          );
        }
        return term.confirm(`${question}Trust this server and remember it (yes/no)? `);
      }
      : undefined,
  });

  // Verify the servers before asking for a password (like ssh's host key check).
  if (ttyIn && (opts.user === undefined || passwordFromEnv(io) === undefined)) {
    await verifyServers(servers, caPem, policy, io);
  }

  const stdinLines = mode === "stdin" || (opts.passwordStdin && !ttyIn)
    ? readLines(Deno.stdin.readable)
    : undefined;
  const user = opts.user ?? io.env("CHAT_USER") ??
    (ttyIn ? (await term.prompt("User: ")).trim() : undefined);
  if (!user) {
    throw new ChatError("usage", "Cannot log in: no user name; use --user NAME or CHAT_USER");
  }
  let password: string | undefined;
  if (opts.passwordStdin && stdinLines) {
    const first = await stdinLines.next();
    password = first.done ? undefined : first.value;
  } else {
    password = passwordFromEnv(io);
  }
  // Without a password given, a saved session token (PROTOCOL.md §2.1) stands in for it (not for
  // registering): no prompt, no password hashing on the server.
  const savedToken = password === undefined && !opts.register
    ? await tokens.get(key, user)
    : undefined;
  if (password === undefined && ttyIn && savedToken === undefined) {
    password = await term.prompt(`Password for ${user}: `, { hidden: true });
    if (opts.register) await confirmPassword(term, password);
  }
  if (!password && savedToken === undefined) {
    throw new ChatError(
      "usage",
      "Cannot log in: no password; use --password-stdin or the CHAT_PASSWORD environment variable",
    );
  }

  const events = new EventHub();
  const creds: Credentials = {
    user,
    password: password ?? "",
    register: opts.register,
    invite: opts.invite,
    token: savedToken,
    device: deviceLabel(),
    // Saved in order; the process does not exit before the last save (see the finally below).
    onToken: (token, expiresAt) => {
      saving = saving.then(() => tokens.set(key, user, token, expiresAt)).catch((err) =>
        io.stderr(sanitize(`chat: ${(err as Error).message}`) + "\n")
      );
    },
  };
  let saving: Promise<void> = Promise.resolve();
  try {
    return await connectAndRun();
  } finally {
    await saving;
  }

  async function connectAndRun(): Promise<number> {
    // A script waiting for an ack gives up after about a minute and a half of failed reconnects.
    const maxAttempts = mode === "send" || mode === "stdin" ? 8 : undefined;
    const conn = await openWithPrompts({
      servers,
      caPem,
      policy,
      creds,
      events,
      term,
      ask: ttyIn,
      maxAttempts,
    });
    mayAsk = false;
    try {
      switch (mode) {
        case "send": {
          const target = await targetFor(conn, opts, io);
          await sendOne(conn, target, opts.send!, io, opts.json ?? false);
          return ExitCode.ok;
        }
        case "stdin": {
          const target = await targetFor(conn, opts, io);
          const failed = await sendLines(conn, target, stdinLines!, io, opts.json ?? false);
          return failed === 0 ? ExitCode.ok : ExitCode.failure;
        }
        case "listen": {
          const filter = await listenFilter(conn, opts, io);
          const scope = opts.to !== undefined
            ? ` (direct messages with ${opts.to})`
            : opts.room !== undefined
            ? ` (#${opts.room.replace(/^#/, "").toLowerCase()})`
            : "";
          io.stderr(
            sanitize(`chat: listening as ${conn.user} on ${conn.remote}${scope}; Ctrl-C stops`) +
              "\n",
          );
          await listen(conn, events, io, { json: opts.json ?? false, filter, stop: stopSignal() });
          return ExitCode.ok;
        }
        case "interactive": {
          const ui = new TerminalUi({
            conn,
            term: withKeys(term),
            color: useColor(io),
            server: key,
          });
          events.subscribe((ev) => ui.onEvent(ev));
          const onResize = () => ui.redraw();
          const onTerm = () => ui.requestQuit();
          Deno.addSignalListener("SIGWINCH", onResize);
          Deno.addSignalListener("SIGTERM", onTerm);
          Deno.addSignalListener("SIGHUP", onTerm);
          term.setRaw(true);
          try {
            await ui.run();
          } finally {
            term.setRaw(false);
            Deno.removeSignalListener("SIGWINCH", onResize);
            Deno.removeSignalListener("SIGTERM", onTerm);
            Deno.removeSignalListener("SIGHUP", onTerm);
          }
          return ExitCode.ok;
        }
      }
    } finally {
      await conn.close();
    }
  }
}

/**
 * Checks each server named (the first address of it that answers) against the trust policy,
 * asking about new ones; a name that cannot be reached now is skipped with a line on stderr, and
 * when none can be reached the first failure is thrown.
 */
async function verifyServers(
  servers: ServerList,
  caPem: string | undefined,
  policy: TrustPolicy,
  io: ConnectIo,
): Promise<void> {
  const { candidates, errors } = await servers.round();
  const failures = [...errors];
  let verified = 0;
  for (const n of servers.names) {
    const mine = candidates.filter((c) => c.host === n.host && c.port === n.port);
    let last: ChatError | undefined;
    for (const c of mine) {
      try {
        const { socket } = await dialTls({
          host: c.host,
          port: c.port,
          address: c.address,
          caPem,
          policy,
        });
        socket.destroy();
        last = undefined;
        verified++;
        break;
      } catch (err) {
        if (!(err instanceof ChatError) || err.code !== "connect_failed") throw err;
        last = err;
      }
    }
    if (last) failures.push(last);
  }
  if (verified === 0 && failures.length > 0) throw failures[0];
  if (servers.names.length > 1) {
    for (const f of failures) io.stderr(`chat: ${sanitize(f.message)} (tried again when needed)\n`);
  }
}

function passwordFromEnv(io: ConnectIo): string | undefined {
  const pw = io.env("CHAT_PASSWORD");
  return pw === undefined || pw === "" ? undefined : pw;
}

async function confirmPassword(term: Terminal, password: string): Promise<void> {
  const again = await term.prompt("Password again: ", { hidden: true });
  if (again !== password) {
    throw new ChatError("usage", "Cannot register: the two passwords differ");
  }
}

/**
 * Opens the session. From a terminal, a failed login offers to register the name, and a
 * registration that needs an invite asks for the code.
 */
async function openWithPrompts(a: {
  servers: ServerList;
  caPem?: string;
  policy: TrustPolicy;
  creds: Credentials;
  events: EventHub;
  term: Terminal;
  ask: boolean;
  maxAttempts?: number;
}): Promise<ChatConnection> {
  const creds = { ...a.creds };
  for (let attempt = 0;; attempt++) {
    try {
      return await ChatConnection.open({
        host: a.servers.names[0].host,
        port: a.servers.names[0].port,
        servers: a.servers,
        caPem: a.caPem,
        policy: a.policy,
        credentials: creds,
        onEvent: a.events.push,
        reconnect: { maxAttempts: a.maxAttempts },
      });
    } catch (err) {
      if (!a.ask || !(err instanceof ChatError) || attempt >= 3) throw err;
      if (err.code === "auth_failed" && creds.password === "") {
        // The saved session token was refused (revoked or expired): ask for the password.
        creds.token = undefined;
        creds.password = await a.term.prompt(
          `The saved session for ${creds.user} is no longer valid.\nPassword for ${creds.user}: `,
          { hidden: true },
        );
        continue;
      }
      if (err.code === "auth_failed" && !creds.register) {
        const yes = await a.term.confirm(
          `${err.message}.\nRegister ${creds.user} as a new account on this server (yes/no)? `,
        );
        if (!yes) throw err;
        await confirmPassword(a.term, creds.password);
        creds.register = true;
        continue;
      }
      if ((err.code === "invite_required" || err.code === "invalid_invite") && creds.register) {
        creds.invite = (await a.term.prompt(`${err.message}.\nInvite code: `)).trim();
        if (!creds.invite) throw err;
        continue;
      }
      throw err;
    }
  }
}

async function targetFor(
  conn: ChatConnection,
  opts: ConnectOptions,
  io: ConnectIo,
): Promise<SendTarget> {
  if (opts.to !== undefined) return { to: opts.to };
  const room = (opts.room ?? "general").replace(/^#/, "").toLowerCase();
  if (!conn.rooms.includes(room)) {
    const r = await conn.join(room);
    io.stderr(`chat: joined #${sanitize(r.room)}\n`);
    return { room: r.room };
  }
  return { room };
}

async function listenFilter(
  conn: ChatConnection,
  opts: ConnectOptions,
  io: ConnectIo,
): Promise<((ev: ConnectionEvent) => boolean) | undefined> {
  if (opts.to !== undefined) {
    const peer = opts.to.toLowerCase();
    return (ev) =>
      ev.type === "msg" && ev.msg.to !== undefined &&
      [ev.msg.from, ev.msg.to].some((u) => u.toLowerCase() === peer);
  }
  if (opts.room !== undefined) {
    const target = await targetFor(conn, opts, io);
    return (ev) =>
      (ev.type === "msg" && ev.msg.room === target.room) ||
      (ev.type === "presence" && ev.room === target.room);
  }
  return undefined;
}

/** Resolves on SIGINT or SIGTERM (then stops listening for them). */
function stopSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
}

function withKeys(term: Terminal) {
  return {
    write: (text: string) => term.write(text),
    get size() {
      return term.size;
    },
    readKeys: () => term.readKeys(),
  };
}

function useColor(io: ConnectIo): boolean {
  const noColor = io.env("NO_COLOR");
  return (noColor === undefined || noColor === "") && io.env("TERM") !== "dumb";
}

async function readCa(path: string): Promise<string> {
  try {
    const pem = await Deno.readTextFile(path);
    if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new ChatError("usage", `Cannot use --ca ${path}: it holds no PEM certificate`);
    }
    return pem;
  } catch (err) {
    if (err instanceof ChatError) throw err;
    throw new ChatError("usage", `Cannot read --ca ${path}: ${(err as Error).message}`);
  }
}
