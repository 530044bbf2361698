// Owns the server side of TLS: a TCP listener whose sockets the server owns, upgraded with a
// server-side TLS handshake, so that a socket that never finishes its handshake can be freed.
import net from "node:net";
import tls from "node:tls";
import type { ByteConn } from "./transport.ts";

/**
 * Why not `Deno.listenTls`: Deno keeps the TCP socket of a TLS connection whose handshake never
 * finished open until the peer sends or closes, whatever the server does (`close()` with or
 * without `handshake()`, even right after `accept()`), so silent sockets held a descriptor each
 * past every limit. A `node:net` socket upgraded by `new tls.TLSSocket(socket, { isServer })`
 * (rustls underneath, as for `Deno.listenTls`: the same versions, suites and ALPN refusals) is
 * freed by `destroy()`. Measured by tools/silent_socket_fds.ts (docs/RELIABILITY.md).
 */

/** An accepted connection: TLS handshake first, then bytes (a LineTransport reads it). */
export interface AcceptedConn extends ByteConn {
  readonly remoteAddr: Deno.NetAddr;
  /** Resolves once the handshake is done, with the protocol ALPN chose (null: none offered). */
  handshake(): Promise<{ alpnProtocol: string | null }>;
}

/** A bound TLS listener. */
export interface TlsAcceptor {
  readonly addr: Deno.NetAddr;
  /** The next connection; rejects with `Deno.errors.BadResource` once closed. */
  accept(): Promise<AcceptedConn>;
  close(): void;
  /** performance.now() of the last connection the kernel handed over (0: none yet). */
  readonly lastAcceptAt: number;
  /**
   * Connects to the listener itself and reports whether the connection arrived within
   * `timeoutMs` (null: the probe could not even be made, e.g. out of descriptors). node:net in
   * Deno 2.9.6 stops accepting for good after one accept failed with EMFILE (reproduced in
   * docs/RELIABILITY.md); a listener bound again works, so the server probes an idle listener
   * and binds it again when the probe does not arrive.
   */
  probe(timeoutMs: number): Promise<boolean | null>;
}

/** Inbound bytes kept before the socket is paused (TCP then pushes back on the peer). */
const READ_HIGH_WATER = 64 * 1024;
/** Reading resumes once the kept bytes are below this. */
const READ_LOW_WATER = 16 * 1024;
/** After `close()` of a connection that was up, how long unsent bytes may take to leave. */
const CLOSE_GRACE_MS = 2000;

function netAddr(host: string | undefined, port: number | undefined): Deno.NetAddr {
  return { transport: "tcp", hostname: host ?? "", port: port ?? 0 };
}

/** One server-side TLS connection over a socket this process owns. */
class NodeTlsConn implements AcceptedConn {
  readonly remoteAddr: Deno.NetAddr;
  #raw: net.Socket;
  #tls: tls.TLSSocket;
  #secure: Promise<{ alpnProtocol: string | null }>;
  #isSecure = false;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #paused = false;
  #closed = false;

  constructor(raw: net.Socket, context: tls.SecureContext, alpn: string[]) {
    this.#raw = raw;
    this.remoteAddr = netAddr(raw.remoteAddress, raw.remotePort);
    raw.setNoDelay(true);
    raw.on("error", () => {/* the TLS socket reports it */});
    this.#tls = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: context,
      ...(alpn.length ? { ALPNProtocols: alpn } : {}),
    });
    this.#secure = new Promise((resolve, reject) => {
      this.#tls.once("secure", () => {
        this.#isSecure = true;
        const p = this.#tls.alpnProtocol;
        resolve({ alpnProtocol: typeof p === "string" && p !== "" ? p : null });
      });
      this.#tls.once("close", () => reject(new Deno.errors.ConnectionReset("closed in handshake")));
      this.#tls.once("error", (err: Error) => reject(err));
    });
    this.#secure.catch(() => {/* handshake() callers see it */});
    this.#tls.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > READ_HIGH_WATER && !this.#paused) {
        this.#paused = true;
        this.#tls.pause();
      }
      this.#notify();
    });
    this.#tls.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    this.#tls.on("error", (err: Error) => {
      this.#error ??= err;
      this.#notify();
    });
    this.#tls.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  handshake(): Promise<{ alpnProtocol: string | null }> {
    return this.#secure;
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended || this.#closed) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const c = this.#chunks[0];
      const take = Math.min(c.length, p.length - n);
      p.set(take === c.length ? c : c.subarray(0, take), n);
      n += take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#queued -= n;
    if (this.#paused && this.#queued < READ_LOW_WATER) {
      this.#paused = false;
      this.#tls.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed || this.#tls.destroyed) {
      return Promise.reject(new Deno.errors.BrokenPipe("connection closed"));
    }
    return new Promise((resolve, reject) => {
      this.#tls.write(p, (err?: Error | null) => err ? reject(err) : resolve(p.length));
    });
  }

  /**
   * Closes the connection. In its handshake (or already failed) the socket is destroyed at once,
   * which frees its descriptor; a connection that was up first sends what it has queued.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#notify();
    if (!this.#isSecure || this.#tls.destroyed) {
      this.#tls.destroy();
      this.#raw.destroy();
      return;
    }
    const timer = setTimeout(() => {
      this.#tls.destroy();
      this.#raw.destroy();
    }, CLOSE_GRACE_MS);
    this.#tls.once("close", () => clearTimeout(timer));
    this.#tls.end();
  }
}

function isLoopback(addr: string | undefined): boolean {
  return addr === "127.0.0.1" || addr === "::1" || addr === "::ffff:127.0.0.1";
}

/** A TCP listener handing out server-side TLS connections. */
class NodeTlsAcceptor implements TlsAcceptor {
  readonly addr: Deno.NetAddr;
  #server: net.Server;
  #context: tls.SecureContext;
  #alpn: string[];
  #ready: AcceptedConn[] = [];
  #waiter: { resolve: (c: AcceptedConn) => void; reject: (e: Error) => void } | null = null;
  #error: Error | null = null;
  #closed = false;
  #probes = new Map<number, () => void>();
  lastAcceptAt = 0;

  constructor(server: net.Server, context: tls.SecureContext, alpn: string[]) {
    this.#server = server;
    this.#context = context;
    this.#alpn = alpn;
    const a = server.address() as net.AddressInfo;
    this.addr = netAddr(a.address, a.port);
    server.on("connection", (sock: net.Socket) => {
      this.lastAcceptAt = performance.now();
      if (this.#closed) {
        sock.destroy();
        return;
      }
      const probe = this.#probes.get(sock.remotePort ?? -1);
      if (probe && isLoopback(sock.remoteAddress)) {
        sock.destroy();
        probe();
        return;
      }
      let conn: AcceptedConn;
      try {
        conn = new NodeTlsConn(sock, this.#context, this.#alpn);
      } catch {
        // Out of descriptors or memory while setting up TLS: drop this one, keep accepting.
        sock.destroy();
        return;
      }
      const w = this.#waiter;
      if (w) {
        this.#waiter = null;
        w.resolve(conn);
      } else this.#ready.push(conn);
    });
    // Accept failures (out of descriptors) surface to the accept loop, which backs off.
    server.on("error", (err: Error) => {
      const w = this.#waiter;
      if (w) {
        this.#waiter = null;
        w.reject(err);
      } else this.#error = err;
    });
  }

  accept(): Promise<AcceptedConn> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("listener closed"));
    const conn = this.#ready.shift();
    if (conn) return Promise.resolve(conn);
    if (this.#error) {
      const err = this.#error;
      this.#error = null;
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }

  probe(timeoutMs: number): Promise<boolean | null> {
    const a = this.addr;
    const host = a.hostname === "::" || a.hostname === "0.0.0.0" || a.hostname === ""
      ? "127.0.0.1"
      : a.hostname;
    return new Promise((resolve) => {
      let port = -1;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (v: boolean | null) => {
        clearTimeout(timer);
        this.#probes.delete(port);
        sock.destroy();
        resolve(v);
      };
      const sock = net.connect({ host, port: a.port });
      sock.on("error", () => done(null));
      sock.on("connect", () => {
        port = sock.localPort ?? -1;
        this.#probes.set(port, () => done(true));
        timer = setTimeout(() => done(false), timeoutMs);
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const c of this.#ready.splice(0)) c.close();
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(new Deno.errors.BadResource("listener closed"));
  }
}

/**
 * Binds `hostname:port` (`::` listens on IPv4 too) and serves TLS with `cert`/`key`, offering
 * `alpnProtocols` (a client offering others fails the handshake with `no_application_protocol`).
 */
export async function listenTls(opts: {
  hostname: string;
  port: number;
  cert: string;
  key: string;
  alpnProtocols: string[];
}): Promise<TlsAcceptor> {
  const context = tls.createSecureContext({ cert: opts.cert, key: opts.key });
  const server = net.createServer({ noDelay: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: opts.hostname, port: opts.port, backlog: 511 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return new NodeTlsAcceptor(server, context, opts.alpnProtocols);
}

/** `Deno.listenTls` as a TlsAcceptor: leaner per connection, but silent sockets keep their fd. */
class DenoTlsAcceptor implements TlsAcceptor {
  readonly addr: Deno.NetAddr;
  lastAcceptAt = 0;
  #listener: Deno.TlsListener;

  constructor(listener: Deno.TlsListener) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
  }

  async accept(): Promise<AcceptedConn> {
    const conn = await this.#listener.accept();
    this.lastAcceptAt = performance.now();
    return conn as unknown as AcceptedConn;
  }

  close(): void {
    this.#listener.close();
  }

  /** Deno's own listener recovers from EMFILE by itself (the accept loop backs off). */
  probe(): Promise<boolean | null> {
    return Promise.resolve(true);
  }
}

/** `Deno.listenTls` behind the same interface (config `tlsEngine: "deno"`). */
export function listenDenoTls(opts: {
  hostname: string;
  port: number;
  cert: string;
  key: string;
  alpnProtocols: string[];
}): TlsAcceptor {
  return new DenoTlsAcceptor(Deno.listenTls(opts));
}

/** A plain TCP listener (`tls: false`, loopback only) behind the same interface: no handshake. */
class PlainAcceptor implements TlsAcceptor {
  readonly addr: Deno.NetAddr;
  lastAcceptAt = 0;
  #listener: Deno.Listener;

  constructor(listener: Deno.Listener) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
  }

  async accept(): Promise<AcceptedConn> {
    const conn = await this.#listener.accept() as Deno.TcpConn;
    this.lastAcceptAt = performance.now();
    conn.setNoDelay(true);
    return {
      remoteAddr: conn.remoteAddr as Deno.NetAddr,
      handshake: () => Promise.resolve({ alpnProtocol: null }),
      read: (p) => conn.read(p),
      write: (p) => conn.write(p),
      close: () => conn.close(),
    };
  }

  close(): void {
    this.#listener.close();
  }

  probe(): Promise<boolean | null> {
    return Promise.resolve(true);
  }
}

/** Plain TCP on `hostname:port` as a TlsAcceptor whose connections have no handshake. */
export function listenPlain(opts: { hostname: string; port: number }): TlsAcceptor {
  return new PlainAcceptor(Deno.listen(opts));
}
