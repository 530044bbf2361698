// Owns the CLI end of the admin socket: finding a running server and calling operations on it.
import { ChatError } from "../errors.ts";
import { LineSplitter } from "../protocol/line_decoder.ts";
import type { OpArgs, OpName, OpResult } from "./admin_ops.ts";
import { type AdminResponse, adminSocketPath } from "./admin_socket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Largest response accepted (user and invite lists are the big ones). */
const MAX_RESPONSE_BYTES = 64 << 20;

/** A connection to a running server's admin socket. One request at a time. */
export class AdminClient {
  #conn: Deno.UnixConn;
  #splitter = new LineSplitter(MAX_RESPONSE_BYTES);
  #pending: Uint8Array[] = [];
  #buf = new Uint8Array(65536);
  #nextId = 1;
  readonly path: string;

  private constructor(conn: Deno.UnixConn, path: string) {
    this.#conn = conn;
    this.path = path;
  }

  /**
   * Connects to the server running on `dataDir`; null when none runs (no socket, or a stale one
   * nobody answers on).
   * @throws {ChatError} `admin_socket_denied` when the socket belongs to another user.
   */
  static async connect(dataDir: string): Promise<AdminClient | null> {
    const path = adminSocketPath(dataDir);
    try {
      return new AdminClient(await Deno.connect({ transport: "unix", path }), path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused) {
        return null;
      }
      if (err instanceof Deno.errors.PermissionDenied) {
        throw new ChatError(
          "admin_socket_denied",
          `Cannot reach the running server: ${path}: permission denied ` +
            "(run chat admin as the user that runs the server)",
        );
      }
      throw new ChatError(
        "admin_socket_failed",
        `Cannot reach the running server: ${path}: ${(err as Error).message}`,
      );
    }
  }

  /** Runs `op` in the server; throws the server's ChatError when it refuses. */
  async call<K extends OpName>(op: K, actor: string, args: OpArgs<K>): Promise<OpResult<K>> {
    const id = this.#nextId++;
    const line = JSON.stringify({ id, op, actor, args }) + "\n";
    try {
      const bytes = encoder.encode(line);
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
    } catch (err) {
      throw this.#gone(op, err);
    }
    for (;;) {
      const res = await this.#readResponse(op);
      if (res.id !== id) continue;
      if (res.ok) return res.result as OpResult<K>;
      throw ChatError.fromPeer(res.error.code, res.error.message);
    }
  }

  async #readResponse(op: string): Promise<AdminResponse> {
    while (this.#pending.length === 0) {
      let n: number | null;
      try {
        n = await this.#conn.read(this.#buf);
      } catch (err) {
        throw this.#gone(op, err);
      }
      if (n === null) throw this.#gone(op, null);
      this.#pending.push(...this.#splitter.push(this.#buf.subarray(0, n)));
    }
    const line = this.#pending.shift()!;
    try {
      return JSON.parse(decoder.decode(line)) as AdminResponse;
    } catch {
      throw new ChatError("server_gone", `Cannot ${op}: the server sent an unreadable answer`);
    }
  }

  #gone(op: string, err: unknown): ChatError {
    const why = err ? ` (${(err as Error).message})` : "";
    return new ChatError(
      "server_gone",
      `Cannot ${op}: the server closed the admin connection${why}; check whether it was applied`,
    );
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}
