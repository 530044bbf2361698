// Owns the server end of the admin socket: `<data>/admin.sock`, owner-only, JSON lines in and out.
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { ChatError } from "../errors.ts";
import { LineSplitter } from "../protocol/line_decoder.ts";
import { osUserName } from "./os_user.ts";

const log = getLogger(["chat", "admin"]);

/** File name of the admin socket inside the data dir. */
export const ADMIN_SOCKET_FILE = "admin.sock";
/** Longest request line; requests are small (no file contents travel over the socket). */
export const MAX_REQUEST_BYTES = 1 << 20;
/** Admin connections served at once; more are closed at once. */
const MAX_CONNECTIONS = 16;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * One request line: `{"id":1,"op":"users.disable","actor":"admin:root","args":{"name":"bob"}}`.
 * `actor` is what the client claims; the server does not trust it (AdminSocketServer, item 5).
 */
export interface AdminRequest {
  id: number | string;
  op: string;
  actor: string;
  args?: Record<string, unknown>;
}

/** One response line: `{"id":1,"ok":true,"result":…}` or `{"id":1,"ok":false,"error":{…}}`. */
export type AdminResponse =
  | { id: number | string | null; ok: true; result: unknown }
  | { id: number | string | null; ok: false; error: { code: string; message: string } };

/** Runs one request; throws a ChatError for a refusal. */
export type AdminHandler = (op: unknown, actor: unknown, args: unknown) => Promise<unknown>;

/** Path of the admin socket of a data dir. */
export function adminSocketPath(dataDir: string): string {
  return join(dataDir, ADMIN_SOCKET_FILE);
}

/**
 * Makes `<data>/admin.sock` free for a starting server: a socket file left by a killed server (no
 * one answers) is removed. Call before anything else at startup.
 * @throws {ChatError} `data_dir_in_use` when a running server answers on it, `admin_socket_failed`
 * when the path exists but is not a socket.
 */
export async function claimAdminSocket(dataDir: string): Promise<void> {
  const path = adminSocketPath(dataDir);
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) {
    throw new ChatError(
      "admin_socket_failed",
      `Cannot start: ${path} exists and is not a socket; move it away`,
      { fatal: true },
    );
  }
  let conn: Deno.UnixConn | null = null;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    // Nobody listens: a server was killed without cleaning up.
    await Deno.remove(path).catch(() => {});
    log.info("Removed stale admin socket {path}", { path });
    return;
  }
  conn.close();
  throw new ChatError(
    "data_dir_in_use",
    `Cannot start: another chat server is running on ${dataDir} (its admin socket answers)`,
    { fatal: true },
  );
}

/**
 * The admin socket listener.
 *
 * 1. The socket is bound inside a fresh private directory (created 0700 by this process and
 *    checked: ours, no group or other bits), made mode 0600 and only then renamed to
 *    `admin.sock`, so whatever the umask and whatever the data dir's mode, no other user can
 *    connect at any instant. Only this user and root can reach it.
 * 2. Each connection reads requests in order, one JSON object per line (at most
 *    MAX_REQUEST_BYTES), and answers each with one line carrying the request's `id`.
 * 3. A failing request is answered with its error and the connection goes on; a broken
 *    connection ends that connection only.
 * 4. `close()` stops accepting, waits for requests in progress, and removes the socket file.
 * 5. The handler gets `admin:<OS user of this process>` as the actor, never the client's claim:
 *    Deno does not expose SO_PEERCRED, and item 1 makes the peer this user (or root, which the
 *    server cannot tell apart). A different claim is logged at info level.
 */
export class AdminSocketServer {
  readonly path: string;
  #listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
  #handler: AdminHandler;
  #conns = new Map<Deno.UnixConn, Promise<void>>();
  #acceptLoop: Promise<void>;
  #inode: number | null;
  #closing = false;
  #closed: Promise<void> | null = null;

  private constructor(
    path: string,
    listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>,
    inode: number | null,
    handler: AdminHandler,
  ) {
    this.path = path;
    this.#listener = listener;
    this.#inode = inode;
    this.#handler = handler;
    this.#acceptLoop = this.#accept();
  }

  /** Binds `<dataDir>/admin.sock` (call claimAdminSocket first). */
  static async listen(dataDir: string, handler: AdminHandler): Promise<AdminSocketServer> {
    const path = adminSocketPath(dataDir);
    // makeTempDir creates the dir with mode 0700 in one mkdir (the umask can only remove bits).
    const privateDir = await Deno.makeTempDir({ dir: dataDir, prefix: ".admin-" });
    // A one-letter name: a Unix socket path must fit in 108 bytes.
    const tmp = join(privateDir, "s");
    let listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr> | null = null;
    try {
      await checkPrivateDir(privateDir);
      listener = Deno.listen({ transport: "unix", path: tmp });
      await Deno.chmod(tmp, 0o600);
      await Deno.rename(tmp, path);
    } catch (err) {
      listener?.close();
      await Deno.remove(tmp).catch(() => {});
      throw err;
    } finally {
      await Deno.remove(privateDir).catch(() => {});
    }
    const inode = (await Deno.lstat(path)).ino;
    return new AdminSocketServer(path, listener, inode, handler);
  }

  /** The actor recorded for every request: the OS user this server runs as. */
  readonly actor = `admin:${osUserName()}`;

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.UnixConn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closing || err instanceof Deno.errors.BadResource) return;
        log.warn("Admin socket accept failed: {error}", { error: String(err) });
        continue;
      }
      if (this.#conns.size >= MAX_CONNECTIONS) {
        conn.close();
        continue;
      }
      const done = this.#serve(conn).finally(() => this.#conns.delete(conn));
      this.#conns.set(conn, done);
    }
  }

  async #serve(conn: Deno.UnixConn): Promise<void> {
    const splitter = new LineSplitter(MAX_REQUEST_BYTES);
    const buf = new Uint8Array(16384);
    try {
      while (!this.#closing) {
        const n = await conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          const response = await this.#answer(line);
          await writeAll(conn, encoder.encode(JSON.stringify(response) + "\n"));
        }
      }
    } catch (err) {
      if (!this.#closing) log.debug("Admin connection ended: {error}", { error: String(err) });
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  async #answer(line: Uint8Array): Promise<AdminResponse> {
    let req: Partial<AdminRequest>;
    try {
      const v = JSON.parse(decoder.decode(line));
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
      req = v;
    } catch {
      return {
        id: null,
        ok: false,
        error: { code: "bad_request", message: "Cannot run request: not a JSON object" },
      };
    }
    const id = typeof req.id === "number" || typeof req.id === "string" ? req.id : null;
    try {
      if (req.actor !== this.actor) {
        log.info("Admin request {op} claims actor {claimed}; recorded as {actor}", {
          op: String(req.op),
          claimed: String(req.actor).slice(0, 80),
          actor: this.actor,
        });
      }
      return { id, ok: true, result: await this.#handler(req.op, this.actor, req.args) };
    } catch (err) {
      if (err instanceof ChatError) {
        return { id, ok: false, error: { code: err.code, message: err.message } };
      }
      log.error("Admin request {op} failed: {error}", {
        op: String(req.op),
        error: err instanceof Error ? err.stack ?? err.message : String(err),
      });
      return {
        id,
        ok: false,
        error: { code: "internal", message: `Cannot run ${String(req.op)}: internal error` },
      };
    }
  }

  /** Stops accepting, finishes requests in progress, removes the socket file. Idempotent. */
  close(): Promise<void> {
    return this.#closed ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#closing = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    // Closing ends a pending read; a request in progress still finishes (its answer is lost).
    for (const conn of this.#conns.keys()) {
      try {
        conn.close();
      } catch { /* gone */ }
    }
    await Promise.allSettled([...this.#conns.values()]);
    try {
      // Only our own file: a later server may have claimed the path meanwhile.
      if ((await Deno.lstat(this.path)).ino === this.#inode) await Deno.remove(this.path);
    } catch { /* already gone */ }
  }
}

/** Throws unless `dir` is a directory of this user with no group or other permission bits. */
async function checkPrivateDir(dir: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  const info = await Deno.lstat(dir);
  const mode = (info.mode ?? 0) & 0o777;
  if (!info.isDirectory || info.uid !== Deno.uid() || (mode & 0o077) !== 0) {
    throw new ChatError(
      "admin_socket_failed",
      `Cannot bind the admin socket: ${dir} is not a private directory (mode ${mode.toString(8)})`,
    );
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
