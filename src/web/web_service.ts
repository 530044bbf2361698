// Owns HTTPS on a chat listener's TLS connection (ALPN http/1.1): the embedded web app with its
// security headers, and the WebSocket upgrade that hands the connection to a chat/1 session.
import { gunzipSync } from "node:zlib";
import { concatBytes } from "../protocol/concat_bytes.ts";
import {
  headEnd,
  headerHas,
  HttpError,
  type HttpRequest,
  MAX_HEAD_BYTES,
  parseRequestHead,
} from "../protocol/http_request.ts";
import { acceptKey } from "../protocol/websocket_codec.ts";
import type { ByteConn } from "../server/transport.ts";

/** One embedded file of the app (src/web/assets.gen.ts, written by `deno task web:build`). */
export interface WebAsset {
  /** URL path: `/` for the page, `/assets/<name>-<hash>.<ext>` for the rest. */
  path: string;
  type: string;
  /** SHA-256 of the uncompressed bytes, hex (the ETag; also in the file name of `/assets/`). */
  hash: string;
  /** The gzip-compressed bytes, base64. */
  gzip: string;
}

/** The WebSocket endpoint (chat/1, one frame per message; docs/PROTOCOL.md §11). */
export const WS_PATH = "/ws";

/**
 * The Content-Security-Policy of every response: only this origin's script, style and
 * WebSocket; no inline script or style; never framed.
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** HSTS for a certificate a browser can verify (never for the self-signed default). */
const HSTS = "max-age=31536000";

export interface WebServiceOptions {
  assets: readonly WebAsset[];
  /** Send Strict-Transport-Security (the certificate is not self-signed). */
  hsts: boolean;
  /** A request head must arrive within this long (the first and every later one). */
  headTimeoutMs: number;
  /** `GET /metrics` with `Authorization: Bearer <token>`; absent: `/metrics` is 404. */
  metrics?: { token: string; render: () => Promise<string> };
}

/** A connection that asked for the WebSocket and got `101`: the session takes it from here. */
export interface Upgrade {
  /** Bytes read past the upgrade request. */
  leftover: Uint8Array;
}

interface Served {
  type: string;
  hash: string;
  gzip: Uint8Array;
  identity: Uint8Array | null;
  immutable: boolean;
}

const enc = new TextEncoder();

/**
 * Serves one HTTP/1.1 connection: GET and HEAD of the embedded files (keep-alive, gzip when
 * accepted, ETag and 304; hashed `/assets/` for a year, the page revalidated), and the upgrade of
 * `/ws` from the same origin. Requests with a body, other methods and malformed heads are refused.
 */
export class WebService {
  #files = new Map<string, Served>();
  #opts: WebServiceOptions;

  constructor(opts: WebServiceOptions) {
    this.#opts = opts;
    for (const a of opts.assets) {
      this.#files.set(a.path, {
        type: a.type,
        hash: a.hash,
        gzip: Uint8Array.from(atob(a.gzip), (c) => c.charCodeAt(0)),
        identity: null,
        immutable: a.path.startsWith("/assets/"),
      });
    }
  }

  /**
   * Answers requests on `conn` until it closes, idles past `headTimeoutMs`, or upgrades (then
   * resolves with the Upgrade and leaves `conn` open). Never throws; closes `conn` unless upgraded.
   */
  async serve(conn: ByteConn): Promise<Upgrade | null> {
    let buf: Uint8Array = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    try {
      for (;;) {
        let end = headEnd(buf);
        if (end === -1) {
          const timer = setTimeout(() => conn.close(), this.#opts.headTimeoutMs);
          try {
            while ((end = headEnd(buf)) === -1) {
              if (buf.length > MAX_HEAD_BYTES) {
                throw new HttpError(431, "Cannot read request: head too large");
              }
              const n = await conn.read(chunk);
              if (n === null) {
                conn.close();
                return null;
              }
              buf = concatBytes([buf, chunk.slice(0, n)]);
            }
          } finally {
            clearTimeout(timer);
          }
        }
        if (end > MAX_HEAD_BYTES) throw new HttpError(431, "Cannot read request: head too large");
        const req = parseRequestHead(buf.subarray(0, end));
        buf = buf.slice(end);
        const length = req.headers.get("content-length");
        if (req.headers.has("transfer-encoding") || (length !== undefined && length !== "0")) {
          throw new HttpError(413, "Cannot read request: no request here takes a body");
        }
        if (req.path === WS_PATH) {
          await this.#upgrade(conn, req);
          return { leftover: buf };
        }
        const keepAlive = req.version === "HTTP/1.1" &&
          !headerHas(req.headers.get("connection"), "close");
        await writeAll(conn, await this.#respond(req, keepAlive));
        if (!keepAlive) {
          conn.close();
          return null;
        }
      }
    } catch (err) {
      if (err instanceof HttpError) {
        await writeAll(conn, this.#plain(err.status, err.message, false)).catch(() => {});
      }
      try {
        conn.close();
      } catch { /* gone */ }
      return null;
    }
  }

  /** Validates the upgrade (same origin, RFC 6455 headers) and writes `101`; throws HttpError. */
  async #upgrade(conn: ByteConn, req: HttpRequest): Promise<void> {
    const h = req.headers;
    if (req.method !== "GET") throw new HttpError(405, "Cannot upgrade: use GET");
    if (!headerHas(h.get("upgrade"), "websocket") || !headerHas(h.get("connection"), "upgrade")) {
      throw new HttpError(426, "Cannot serve /ws: it is a WebSocket endpoint");
    }
    const host = h.get("host");
    if (!host || h.get("origin") !== `https://${host}`) {
      throw new HttpError(403, "Cannot upgrade: the page is not from this server");
    }
    const key = h.get("sec-websocket-key") ?? "";
    if (h.get("sec-websocket-version") !== "13" || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
      throw new HttpError(400, "Cannot upgrade: WebSocket version 13 and a key are required");
    }
    const head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
      `Connection: Upgrade\r\nSec-WebSocket-Accept: ${await acceptKey(key)}\r\n\r\n`;
    await writeAll(conn, enc.encode(head));
  }

  async #respond(req: HttpRequest, keepAlive: boolean): Promise<Uint8Array> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return this.#plain(405, "Cannot serve: only GET and HEAD", keepAlive, { Allow: "GET, HEAD" });
    }
    const metrics = this.#opts.metrics;
    if (req.path === "/metrics" && metrics) {
      if (!sameSecret(req.headers.get("authorization") ?? "", `Bearer ${metrics.token}`)) {
        return this.#plain(401, "Cannot serve /metrics: a bearer token is required", keepAlive, {
          "WWW-Authenticate": 'Bearer realm="metrics"',
        });
      }
      const body = enc.encode(await metrics.render());
      const head = this.#head(
        200,
        {
          "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
          "Cache-Control": "no-store",
        },
        body.length,
        keepAlive,
      );
      return req.method === "HEAD" ? head : concatBytes([head, body]);
    }
    const file = this.#files.get(req.path === "/index.html" ? "/" : req.path);
    if (!file) return this.#plain(404, "Not found", keepAlive);
    const etag = `"${file.hash}"`;
    const headers: Record<string, string> = {
      "Content-Type": file.type,
      ETag: etag,
      "Cache-Control": file.immutable ? "public, max-age=31536000, immutable" : "no-cache",
      Vary: "Accept-Encoding",
    };
    if (headerHas(req.headers.get("if-none-match"), etag)) {
      return this.#head(304, headers, 0, keepAlive);
    }
    let body: Uint8Array;
    if (acceptsGzip(req.headers.get("accept-encoding"))) {
      headers["Content-Encoding"] = "gzip";
      body = file.gzip;
    } else {
      body = file.identity ??= new Uint8Array(gunzipSync(file.gzip));
    }
    const head = this.#head(200, headers, body.length, keepAlive);
    return req.method === "HEAD" ? head : concatBytes([head, body]);
  }

  #plain(
    status: number,
    text: string,
    keepAlive: boolean,
    extra: Record<string, string> = {},
  ): Uint8Array {
    const body = enc.encode(text + "\n");
    const head = this.#head(
      status,
      { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", ...extra },
      body.length,
      keepAlive,
    );
    return concatBytes([head, body]);
  }

  #head(
    status: number,
    headers: Record<string, string>,
    length: number,
    keepAlive: boolean,
  ): Uint8Array {
    const all: Record<string, string> = {
      ...headers,
      "Content-Length": String(length),
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "X-Frame-Options": "DENY",
      "Referrer-Policy": "no-referrer",
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Resource-Policy": "same-origin",
      "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
      ...(this.#opts.hsts ? { "Strict-Transport-Security": HSTS } : {}),
      Connection: keepAlive ? "keep-alive" : "close",
    };
    let text = `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n`;
    for (const [k, v] of Object.entries(all)) text += `${k}: ${v}\r\n`;
    return enc.encode(text + "\r\n");
  }
}

/** Compares secrets in time that depends on their lengths only. */
function sameSecret(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

const REASONS: Record<number, string> = {
  200: "OK",
  401: "Unauthorized",
  304: "Not Modified",
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  426: "Upgrade Required",
  431: "Request Header Fields Too Large",
  505: "HTTP Version Not Supported",
};

function acceptsGzip(v: string | undefined): boolean {
  if (!v) return false;
  return v.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding.trim() !== "gzip") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

async function writeAll(conn: ByteConn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
