// Owns a raw WebSocket test client over real TLS (ALPN http/1.1): the upgrade request, masked
// frames out, chat/1 frames in (one per message), and raw HTTP requests for header tests.
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { FrameInbox } from "./frame_inbox.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A plain HTTP/1.1 response: status, lowercase headers, body bytes. */
export interface HttpResponse {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
}

/** Connects with ALPN http/1.1 as a browser would, trusting the test server's certificate. */
export function connectHttps(port: number, certPem: string): Promise<Deno.TlsConn> {
  return Deno.connectTls({
    hostname: "127.0.0.1",
    port,
    caCerts: [certPem],
    alpnProtocols: ["http/1.1"],
  });
}

/** Reads one response (with Content-Length) from `conn`; `rest` carries bytes read past it. */
export async function readResponse(
  conn: Deno.TlsConn,
  carry: { rest: Uint8Array } = { rest: new Uint8Array(0) },
  opts: { head?: boolean } = {},
): Promise<HttpResponse> {
  let buf = carry.rest;
  const chunk = new Uint8Array(65536);
  const headEnd = () => {
    for (let i = 3; i < buf.length; i++) {
      if (buf[i - 3] === 13 && buf[i - 2] === 10 && buf[i - 1] === 13 && buf[i] === 10) {
        return i + 1;
      }
    }
    return -1;
  };
  let end: number;
  while ((end = headEnd()) === -1) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("connection closed before a response");
    buf = concat(buf, chunk.subarray(0, n));
  }
  const lines = dec.decode(buf.subarray(0, end)).split("\r\n");
  const status = Number(lines[0].split(" ")[1]);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).toLowerCase(), l.slice(i + 1).trim());
  }
  const length = opts.head || status === 101 || status === 304
    ? 0
    : Number(headers.get("content-length") ?? 0);
  while (buf.length < end + length) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("connection closed inside a body");
    buf = concat(buf, chunk.subarray(0, n));
  }
  carry.rest = buf.slice(end + length);
  return { status, headers, body: buf.slice(end, end + length) };
}

/** Sends one request and reads its response on a fresh connection, then closes it. */
export async function httpGet(
  port: number,
  certPem: string,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<HttpResponse> {
  const conn = await connectHttps(port, certPem);
  try {
    let req = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n`;
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`;
    await writeAll(conn, enc.encode(req + "\r\n"));
    return await readResponse(conn, undefined, { head: method === "HEAD" });
  } finally {
    conn.close();
  }
}

/** A masked client frame (opcode 1 text by default). */
export function clientFrame(payload: Uint8Array, opcode = 1, fin = true): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setUint32(6, n);
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  out.set(mask, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

/** A chat/1 client over the web listener's WebSocket. */
export class WsClient extends FrameInbox implements AsyncDisposable {
  readonly conn: Deno.TlsConn;
  /** Close frames received (their status codes). */
  readonly closeCodes: number[] = [];
  readonly closed: Promise<void>;
  #closedResolve!: () => void;
  #reader: Promise<void>;
  /** Whether the test reads: a test that stops reading makes this client a slow consumer. */
  #paused: Promise<void> | null = null;
  #resume: (() => void) | null = null;

  private constructor(conn: Deno.TlsConn, rest: Uint8Array) {
    super(5000, "w");
    this.conn = conn;
    this.closed = new Promise((r) => this.#closedResolve = r);
    this.#reader = this.#read(rest);
  }

  /** Upgrades `/ws` with `origin` (default: the server's own); throws with the status if refused. */
  static async open(
    port: number,
    certPem: string,
    opts: { origin?: string | null } = {},
  ): Promise<WsClient> {
    const conn = await connectHttps(port, certPem);
    const host = `127.0.0.1:${port}`;
    const origin = opts.origin === undefined ? `https://${host}` : opts.origin;
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const req =
      `GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (origin === null ? "" : `Origin: ${origin}\r\n`) + "\r\n";
    await writeAll(conn, enc.encode(req));
    const carry = { rest: new Uint8Array(0) };
    const res = await readResponse(conn, carry);
    if (res.status !== 101) {
      conn.close();
      throw new UpgradeRefused(res.status);
    }
    return new WsClient(conn, carry.rest);
  }

  /** Opens, says hello and logs in (registering first when `register`). */
  static async login(
    port: number,
    certPem: string,
    user: string,
    opts: { register?: boolean; resume?: unknown } = {},
  ): Promise<WsClient> {
    const c = await WsClient.open(port, certPem);
    c.send({ type: "hello", version: 1 });
    await c.expect((f) => f.type === "hello");
    c.send({
      type: opts.register ? "register" : "login",
      user,
      password: "password-" + user,
      ...(opts.resume ? { resume: opts.resume } : {}),
    });
    const r = await c.expect((f) => f.type === "ok" || f.type === "error");
    if (r.type !== "ok") throw new Error(`login of ${user} failed: ${JSON.stringify(r)}`);
    return c;
  }

  async #read(rest: Uint8Array): Promise<void> {
    let buf = rest;
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        // Parse every whole frame in buf (server frames are unmasked and never fragmented).
        for (;;) {
          if (buf.length < 2) break;
          let len = buf[1] & 0x7f;
          let pos = 2;
          if (len === 126) {
            if (buf.length < 4) break;
            len = (buf[2] << 8) | buf[3];
            pos = 4;
          } else if (len === 127) {
            if (buf.length < 10) break;
            len = new DataView(buf.buffer, buf.byteOffset).getUint32(6);
            pos = 10;
          }
          if (buf.length < pos + len) break;
          const opcode = buf[0] & 0x0f;
          const payload = buf.slice(pos, pos + len);
          buf = buf.slice(pos + len);
          if (opcode === 8) this.closeCodes.push(len >= 2 ? (payload[0] << 8) | payload[1] : 0);
          else if (opcode === 1) this.receive(JSON.parse(dec.decode(payload)) as ServerFrame);
        }
        if (this.#paused) await this.#paused;
        const n = await this.conn.read(chunk);
        if (n === null) break;
        buf = concat(buf, chunk.subarray(0, n));
      }
    } catch { /* reset or closed locally */ }
    this.#closedResolve();
  }

  /** Stops reading from the socket (a slow consumer) until `resume()`. */
  pause(): void {
    this.#paused ??= new Promise((r) => this.#resume = r);
  }

  override send(frame: Record<string, unknown>): void {
    this.writeRaw(clientFrame(enc.encode(JSON.stringify(frame))));
  }

  writeRaw(bytes: Uint8Array): void {
    writeAll(this.conn, bytes).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.#resume?.();
    await this.#reader;
  }
}

/** The server answered the upgrade with another status. */
export class UpgradeRefused extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`upgrade refused with ${status}`);
    this.status = status;
  }
}

async function writeAll(conn: Deno.TlsConn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
