// Owns reading an HTTP/1.1 request head: the request line and headers, bounded, no I/O.

/** An HTTP request head (no body: the web service refuses requests that carry one). */
export interface HttpRequest {
  method: string;
  /** The request target as sent (origin form: path and query). */
  target: string;
  /** The path part of the target, without the query. */
  path: string;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  version: string;
  /** Lowercase names; repeated headers joined with ", " (RFC 9110 §5.3). */
  headers: Map<string, string>;
}

/** A request the server answers with `status` and closes. */
export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Longest request head accepted (request line and headers); past it: 431. */
export const MAX_HEAD_BYTES = 8192;
/** Most header fields in one request; past it: 431. */
export const MAX_HEADERS = 100;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^\/[\x21-\x7e]*$/;
const latin1 = new TextDecoder("latin1");

/** Index just past the `\r\n\r\n` that ends a head in `buf`, or -1 when it has not arrived. */
export function headEnd(buf: Uint8Array): number {
  for (let i = 3; i < buf.length; i++) {
    if (
      buf[i] === 0x0a && buf[i - 1] === 0x0d && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d
    ) return i + 1;
  }
  return -1;
}

/**
 * Parses a request head (up to and including its blank line). Throws HttpError 400 for anything
 * malformed (obsolete line folding, a target that is not a path, a bad header name), 505 for a
 * version other than 1.0/1.1, 431 past MAX_HEADERS.
 */
export function parseRequestHead(head: Uint8Array): HttpRequest {
  const lines = latin1.decode(head).split("\r\n");
  const [method, target, version, ...extra] = (lines[0] ?? "").split(" ");
  if (extra.length > 0 || !method || !TOKEN.test(method) || !target || !version) {
    throw new HttpError(400, "Cannot read request: bad request line");
  }
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new HttpError(505, "Cannot read request: only HTTP/1.1 is served");
  }
  if (!TARGET.test(target)) throw new HttpError(400, "Cannot read request: bad target");
  const headers = new Map<string, string>();
  let count = 0;
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    if (++count > MAX_HEADERS) throw new HttpError(431, "Cannot read request: too many headers");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new HttpError(400, "Cannot read request: bad header line");
    const value = line.slice(colon + 1).trim();
    const key = name.toLowerCase();
    const prev = headers.get(key);
    headers.set(key, prev === undefined ? value : `${prev}, ${value}`);
  }
  const q = target.indexOf("?");
  return { method, target, path: q === -1 ? target : target.slice(0, q), version, headers };
}

/** True when a comma-separated header value lists `token` (case-insensitive). */
export function headerHas(value: string | undefined, token: string): boolean {
  if (!value) return false;
  const t = token.toLowerCase();
  return value.split(",").some((v) => v.trim().toLowerCase() === t);
}
