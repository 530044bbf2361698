// Owns a raw chat/1 test client: send frames, await frames by predicate with a deadline.
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { FrameInbox } from "./frame_inbox.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A test connection speaking chat/1 (or raw bytes) over real TLS. */
export class WireClient extends FrameInbox implements AsyncDisposable {
  readonly conn: Deno.TlsConn;
  #closedResolve!: () => void;
  readonly closed: Promise<void>;
  /** The `ok` of the login (or registration) that `login()` made. */
  loginOk?: ServerFrame;
  #reader: Promise<void>;
  raw = "";

  private constructor(conn: Deno.TlsConn) {
    super(5000, "c");
    this.conn = conn;
    this.closed = new Promise((r) => this.#closedResolve = r);
    this.#reader = this.#read();
  }

  /** Connects with ALPN chat/1 (or `alpn: []` for none), trusting the test server's cert. */
  static async connect(
    port: number,
    certPem: string,
    opts: { alpn?: string[]; hostname?: string } = {},
  ): Promise<WireClient> {
    const conn = await Deno.connectTls({
      hostname: opts.hostname ?? "127.0.0.1",
      port,
      caCerts: [certPem],
      alpnProtocols: opts.alpn ?? ["chat/1"],
    });
    return new WireClient(conn);
  }

  /** Connects, says hello and logs in (registering first when `register`). */
  static async login(
    port: number,
    certPem: string,
    user: string,
    opts: { register?: boolean; password?: string; resume?: unknown; hostname?: string } = {},
  ): Promise<WireClient> {
    const c = await WireClient.connect(port, certPem, { hostname: opts.hostname });
    c.send({ type: "hello", version: 1 });
    await c.expect((f) => f.type === "hello");
    c.send({
      type: opts.register ? "register" : "login",
      user,
      password: opts.password ?? "password-" + user,
      ...(opts.resume ? { resume: opts.resume } : {}),
    });
    const r = await c.expect((f) => f.type === "ok" || f.type === "error");
    if (r.type !== "ok") throw new Error(`login of ${user} failed: ${JSON.stringify(r)}`);
    c.loginOk = r;
    return c;
  }

  async #read(): Promise<void> {
    const splitter = new LineSplitter(1 << 24);
    const buf = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          const text = dec.decode(line);
          this.raw += text + "\n";
          let f: ServerFrame;
          try {
            f = JSON.parse(text);
          } catch {
            continue;
          }
          this.receive(f);
        }
      }
    } catch { /* reset or closed locally */ }
    this.#closedResolve();
  }

  /** Writes one frame as a JSON line. */
  override send(frame: Record<string, unknown>): void {
    this.writeRaw(JSON.stringify(frame) + "\n");
  }

  /** Writes raw text or bytes. */
  writeRaw(data: string | Uint8Array): void {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    this.conn.write(bytes).catch(() => {});
  }

  /** Writes and waits until written. */
  async writeAll(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#reader;
  }
}
