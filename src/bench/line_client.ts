// Owns the bench's side of one TLS connection: a lean line reader and a coalescing writer.
import { concatBytes } from "../protocol/concat_bytes.ts";
import { ChatError } from "../errors.ts";

const LF = 0x0a;
const CR = 0x0d;

/**
 * Index of the first LF in `buf[from, to)`, or -1. Reads four bytes at a time through `words` (a
 * Uint32Array over the same, 4-aligned buffer): `Uint8Array.indexOf` costs about 90 ns a call, a
 * tenth of the bench's time per delivery, and this about half of that.
 */
export function findLF(buf: Uint8Array, words: Uint32Array, from: number, to: number): number {
  let i = from;
  while (i < to && (i & 3) !== 0) {
    if (buf[i] === LF) return i;
    i++;
  }
  const end = to & ~3;
  for (; i < end; i += 4) {
    const x = words[i >> 2] ^ 0x0a0a0a0a;
    // Has a zero byte (an LF before the xor): exact test below, since a borrow can flag a byte.
    if (((x - 0x01010101) & ~x & 0x80808080) !== 0) {
      if (buf[i] === LF) return i;
      if (buf[i + 1] === LF) return i + 1;
      if (buf[i + 2] === LF) return i + 2;
      if (buf[i + 3] === LF) return i + 3;
    }
  }
  for (; i < to; i++) if (buf[i] === LF) return i;
  return -1;
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where and how the bench connects; every connection verifies the server certificate. */
export interface Endpoint {
  host: string;
  port: number;
  /** Trust anchors (PEM); without them the system roots are used. */
  caCerts?: string[];
}

/** What the runner hears from every connection. */
export interface ClientHooks {
  /** A received line that may carry a benchmark body; `now` is performance.now() of the read. */
  onDelivery(client: number, buf: Uint8Array, start: number, end: number, now: number): void;
  /** A `send` was acknowledged (chat/1 only); `seq` is the sender's sequence number. */
  onAck(client: number, seq: number, now: number): void;
  /** The server refused something after login (error code). */
  onError(client: number, code: string): void;
  /** A keepalive answer arrived (for the loop-lag probe). */
  onPong(client: number, now: number): void;
}

/** Waits for a line matching a predicate during login; the reader feeds it. */
interface LineWaiter {
  match: (line: string) => boolean;
  resolve: (line: string) => void;
}

/**
 * One connection of the load generator. Reads with one buffer per connection (sized by the
 * caller: many connections get small buffers), hands complete lines to `onLine` as byte ranges
 * (no copy, no decode), and writes through a queue that joins everything written in one turn into
 * one TLS write. Protocol adapters extend it.
 */
export abstract class LineClient {
  readonly index: number;
  readonly conn: Deno.TlsConn;
  protected hooks: ClientHooks;
  #buf: Uint8Array;
  #words: Uint32Array;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #closed = false;
  #waiter: LineWaiter | null = null;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the bench itself ends the connection. */
  #ending = false;
  /** Lines that arrived during login while nobody waited (read by `waitLine`). */
  #early: string[] = [];
  /** True once login finished: lines then go to `onLine` only. */
  protected live = false;
  readonly done: Promise<void>;
  /**
   * Largest single write (one TLS record at most). Unlimited by default; the IRC adapter keeps
   * records small because some servers (ngircd with GnuTLS) read one record at a time into a small
   * buffer and stall on data left decrypted inside the TLS library.
   */
  maxWriteBytes = Number.MAX_SAFE_INTEGER;
  /** Bytes received, for "has the traffic settled" checks. */
  rxBytes = 0;

  constructor(index: number, conn: Deno.TlsConn, hooks: ClientHooks, bufBytes: number) {
    this.index = index;
    this.conn = conn;
    this.hooks = hooks;
    this.#buf = new Uint8Array(bufBytes);
    this.#words = new Uint32Array(this.#buf.buffer, 0, this.#buf.length >> 2);
    this.done = this.#read();
  }

  /** Opens a verified TLS connection. */
  static async dial(ep: Endpoint, alpn: string[]): Promise<Deno.TlsConn> {
    try {
      // TCP first, for TCP_NODELAY (Deno.connectTls cannot set it): without it, a small write
      // that follows an unacknowledged one waits for the peer's delayed ACK (~40 ms on Linux),
      // which showed as a fixed ~40 ms in the latency tail and in the ping probe's round trips.
      const tcp = await Deno.connect({ hostname: ep.host, port: ep.port });
      tcp.setNoDelay(true);
      const conn = await Deno.startTls(tcp, {
        hostname: ep.host,
        caCerts: ep.caCerts,
        alpnProtocols: alpn.length ? alpn : undefined,
      });
      await conn.handshake();
      return conn;
    } catch (err) {
      throw new ChatError(
        "connect_failed",
        `Cannot connect to ${ep.host} port ${ep.port}: ${(err as Error).message}`,
      );
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  async #read(): Promise<void> {
    let fill = 0;
    try {
      while (!this.#closed) {
        if (fill === this.#buf.length) {
          const bigger = new Uint8Array(this.#buf.length * 2);
          bigger.set(this.#buf);
          this.#buf = bigger;
          this.#words = new Uint32Array(bigger.buffer, 0, bigger.length >> 2);
        }
        const n = await this.conn.read(this.#buf.subarray(fill));
        if (n === null) break;
        this.rxBytes += n;
        const now = performance.now();
        const buf = this.#buf;
        const words = this.#words;
        const total = fill + n;
        let start = 0;
        let nl = findLF(buf, words, fill, total);
        while (nl >= 0) {
          const end = nl > start && buf[nl - 1] === CR ? nl - 1 : nl;
          if (end > start) this.#line(buf, start, end, now);
          start = nl + 1;
          nl = findLF(buf, words, start, total);
        }
        if (start < total) buf.copyWithin(0, start, total);
        fill = total - start;
      }
    } catch { /* reset or closed locally */ }
    clearTimeout(this.#closeTimer);
    // A live connection the bench did not end was dropped by the server (slow_consumer, …).
    if (this.live && !this.#ending) this.hooks.onError(this.index, "closed_by_server");
    this.close();
    const w = this.#waiter;
    this.#waiter = null;
    w?.resolve("");
  }

  #line(buf: Uint8Array, start: number, end: number, now: number): void {
    if (this.live) {
      this.onLine(buf, start, end, now);
      return;
    }
    const text = decoder.decode(buf.subarray(start, end));
    const w = this.#waiter;
    if (w && w.match(text)) {
      this.#waiter = null;
      w.resolve(text);
    } else {
      this.#early.push(text);
      if (this.#early.length > 10_000) this.#early.shift();
      this.onLoginNoise(text);
    }
  }

  /** During login: a line nobody waited for (answer pings here). */
  protected onLoginNoise(_line: string): void {}

  /** After login: one received line as a byte range of a buffer reused by the next read. */
  protected abstract onLine(buf: Uint8Array, start: number, end: number, now: number): void;

  /**
   * Resolves with the first line (already received or future) matching `match`; "" when the
   * connection closed. Rejects after `timeoutMs`.
   */
  waitLine(match: (line: string) => boolean, timeoutMs: number): Promise<string> {
    const i = this.#early.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#early.splice(i, 1)[0]);
    if (this.#closed) return Promise.resolve("");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        reject(new ChatError("login_failed", `Cannot log in: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = {
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
    });
  }

  /** Starts delivering lines to `onLine` (call when login is complete). */
  goLive(): void {
    this.live = true;
    this.#early = [];
  }

  /** Queues text or bytes; everything queued before the writer runs leaves in one write. */
  write(data: string | Uint8Array): void {
    if (this.#closed) return;
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (!this.#writing) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    // Let the caller finish its turn so its writes coalesce.
    await Promise.resolve();
    try {
      while (this.#out.length && !this.#closed) {
        const chunks = this.#out;
        const size = this.#outBytes;
        this.#out = [];
        this.#outBytes = 0;
        const buf = concatBytes(chunks, size);
        let off = 0;
        while (off < buf.length) {
          off += await this.conn.write(buf.subarray(off, off + this.maxWriteBytes));
        }
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }

  /** Closes after `ms` unless the server closed first (after a quit). */
  closeSoon(ms: number): void {
    this.#ending = true;
    if (!this.#closed) this.#closeTimer ??= setTimeout(() => this.close(), ms);
  }

  close(): void {
    this.#ending = true;
    clearTimeout(this.#closeTimer);
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** Sleeps `ms` (used for retry hints during login). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
