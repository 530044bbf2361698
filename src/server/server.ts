// Owns the TLS listener: accept loop, connection limits, deadlines, keepalive sweep and shutdown.
import { getLogger } from "@logtape/logtape";
import { ChatError } from "../errors.ts";
import type { ListenerConfig, ServerConfig } from "../config/config.ts";
import type { Store } from "../store/store.ts";
import { addressKey } from "./address_key.ts";
import { AuthService } from "./auth.ts";
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";
import { ChatService } from "./chat_service.ts";
import { type Fanout, LocalFanout } from "./fanout.ts";
import { Hub } from "./hub.ts";
import { PasswordHasher } from "./password_hasher.ts";
import { HeapCollector, v8FullCollection } from "./heap_collector.ts";
import { type LineFraming, lineFraming, type ProtocolFactory, PROTOCOLS } from "./protocols.ts";
import { Session, type SessionDeps } from "./session.ts";
import type { Clock } from "./token_bucket.ts";
import { LineTransport, type MessageTransport } from "./transport.ts";
import { WebSocketTransport } from "./websocket_transport.ts";
import { setListenerNoDelay } from "./tcp_nodelay.ts";
import {
  type AcceptedConn,
  listenDenoTls,
  listenPlain,
  listenTls,
  type TlsAcceptor,
} from "./tls_acceptor.ts";
import { WEB_ASSETS } from "../web/assets.gen.ts";
import { WebService } from "../web/web_service.ts";

const log = getLogger(["chat", "server"]);

/** Builds the protocol adapter for a connection that offered no ALPN (default: the seed codec). */
export type FallbackProtocol = ProtocolFactory;

/** What `startServer` needs. */
export interface StartOptions {
  config: ServerConfig;
  store: Store;
  certPem: string;
  keyPem: string;
  clock?: Clock;
  /** Protocol for clients without ALPN on the chat listener (overrides its `""` entry). */
  fallback?: FallbackProtocol;
  /** The fan-out between nodes (default: in-process only). */
  fanout?: Fanout;
  /** Monotonic time for pacing and waits (send queues, admission, stream gaps). */
  timers?: Timers;
  /** The web app sends HSTS (set when the certificate is not self-signed). */
  hsts?: boolean;
  /**
   * Timers that run on `clock` (a fake clock in tests): a session waiting for a message token
   * sleeps on them, because its bucket reads `clock`. Default: the runtime's timers.
   */
  clockTimers?: Timers;
}

/** A protocol a listener serves under one ALPN id. */
interface Served {
  create: ProtocolFactory;
  framing: LineFraming;
}

/** A bound listener and what it serves. */
interface Listening {
  config: ListenerConfig;
  /** A TLS listener, or a plain TCP one (`tls: false`, loopback only). */
  listener: TlsAcceptor;
  loop: Promise<void>;
  protocols: Map<string, Served>;
  /** ALPN ids served as HTTPS (the web app; its WebSocket carries chat/1). */
  https: Set<string>;
}

/** Live numbers for `chat admin stats` and benchmarks. */
export interface ServerStats {
  connections: number;
  sessions: number;
  messagesStored: number;
  deliveries: number;
  queuedBytes: number;
  maxQueuedBytes: number;
  hasher: PasswordHasher["stats"];
  /**
   * Event-loop responsiveness, from a timer that should fire every 10 ms: `maxLagMs` is the worst
   * delay since the previous read of `stats` (reading resets it), `stalls` counts delays over
   * 20 ms since start.
   */
  loop: { maxLagMs: number; stalls: number };
}

/**
 * Connections over a limit that may still finish their handshake (to be told why with an error)
 * per address, and server-wide; past these an accepted socket is closed at once, unhandshaken.
 */
const REFUSALS_IN_HANDSHAKE_PER_ADDRESS = 4;
const REFUSALS_IN_HANDSHAKE = 256;

/** An idle listener (nothing accepted for this long) is probed this often, with this patience. */
const LISTENER_PROBE_MS = 2000;
const LISTENER_PROBE_TIMEOUT_MS = 1000;

/** Period of the event-loop lag probe. */
const LAG_TICK_MS = 10;
/** A probe tick later than this counts as a stall. */
const STALL_MS = 20;

/** Strips the IPv4-mapped prefix so limits and logs see one address per client. */
export function normalizeAddress(addr: Deno.Addr): string {
  if (addr.transport !== "tcp") return addr.transport;
  const h = addr.hostname;
  return h.startsWith("::ffff:") && h.includes(".") ? h.slice(7) : h;
}

/** ALPN ids a listener offers (the `""` entry is for clients that offer none). */
function offeredAlpn(l: ListenerConfig): string[] {
  return Object.keys(l.alpn).filter((id) => id !== "");
}

/**
 * A running chat server. `close()` stops accepting, answers what is in flight, tells clients,
 * flushes and closes the store within `shutdownGraceMs`.
 */
export class ChatServer {
  readonly config: ServerConfig;
  readonly hub: Hub;
  readonly service: ChatService;
  readonly auth: AuthService;
  readonly hasher: PasswordHasher;
  #store: Store;
  #listening: Listening[];
  #certPem: string;
  #keyPem: string;
  #clock: Clock;
  #sessions = new Set<Session>();
  /** Sessions on a WebSocket (for the per-transport session counts of /metrics). */
  #webSessions = new WeakSet<Session>();
  /** Sockets accepted but not yet past the TLS handshake. */
  #handshaking = new Map<AcceptedConn, number>();
  #perAddress = new Map<string, number>();
  /** Accepted sockets over a limit still in their handshake, per address and in all. */
  #overLimitHandshakes = new Map<string, number>();
  #overLimitTotal = 0;
  #sweeper: TimerHandle | undefined;
  #timers: Timers;
  #lagProbe: ReturnType<typeof setInterval>;
  #listenerProbe: ReturnType<typeof setInterval>;
  #probing: Promise<void> | null = null;
  #lagDue = performance.now() + LAG_TICK_MS;
  #lagMax = 0;
  #stalls = 0;
  /** Listeners replaced by reloadCertificate: their accept loops end quietly. */
  #retired = new WeakSet<TlsAcceptor>();
  #reloading: Promise<void> = Promise.resolve();
  #closeHooks: (() => Promise<void> | void)[] = [];
  #stopping = false;
  #closed: Promise<void> | null = null;
  #deps: SessionDeps;
  #web: WebService;
  /** Connections speaking HTTP (not yet, or never, a WebSocket session). */
  #http = new Set<AcceptedConn>();

  private constructor(opts: StartOptions, listening: Listening[]) {
    this.config = opts.config;
    this.#store = opts.store;
    this.#listening = listening;
    this.#certPem = opts.certPem;
    this.#keyPem = opts.keyPem;
    this.#clock = opts.clock ?? Date.now;
    const timers = opts.timers ?? REAL_TIMERS;
    this.#timers = timers;
    this.hub = new Hub(opts.fanout ?? new LocalFanout(), timers);
    const l = opts.config.limits;
    const heap = new HeapCollector({ collect: v8FullCollection() });
    this.hasher = new PasswordHasher({
      workers: l.hashWorkers,
      queue: l.hashQueue,
      timers,
      onJobDone: () => heap.jobDone(),
      onIdle: () => heap.burstEnded(),
    });
    this.auth = new AuthService({
      store: opts.store,
      hasher: this.hasher,
      config: opts.config,
      clock: this.#clock,
    });
    this.service = new ChatService({
      store: opts.store,
      hub: this.hub,
      config: opts.config,
      clock: this.#clock,
    });
    this.#deps = {
      service: this.service,
      auth: this.auth,
      limits: l,
      clock: this.#clock,
      timers,
      pacer: opts.clockTimers ?? REAL_TIMERS,
      onClosed: (s) => this.#forget(s),
    };
    const tick = Math.max(
      20,
      Math.min(
        1000,
        Math.floor(
          Math.min(l.pingIntervalMs, l.idleTimeoutMs, l.authTimeoutMs, l.handshakeTimeoutMs) / 4,
        ),
      ),
    );
    // The sweep runs on the injected timers (a fake clock drives it in tests) and reads `clock`.
    const sweep = () => {
      this.#sweep();
      if (!this.#stopping) this.#sweeper = timers.setTimeout(sweep, tick);
    };
    this.#sweeper = timers.setTimeout(sweep, tick);
    this.#lagProbe = setInterval(() => {
      const now = performance.now();
      const lag = Math.max(0, now - this.#lagDue);
      this.#lagDue = now + LAG_TICK_MS;
      if (lag > this.#lagMax) this.#lagMax = lag;
      if (lag > STALL_MS) this.#stalls++;
    }, LAG_TICK_MS);
    const token = opts.config.metricsToken;
    this.#web = new WebService({
      assets: WEB_ASSETS,
      hsts: opts.hsts ?? false,
      headTimeoutMs: l.handshakeTimeoutMs,
      ...(token !== null ? { metrics: { token, render: () => this.#metrics() } } : {}),
    });
    for (const li of listening) li.loop = this.#accept(li);
    this.#listenerProbe = setInterval(() => {
      if (!this.#probing && !this.#stopping) {
        this.#probing = this.#probeListeners().finally(() => this.#probing = null);
      }
    }, LISTENER_PROBE_MS);
  }

  /**
   * Binds a listener again when it stopped accepting (see TlsAcceptor.probe: after running out of
   * descriptors node:net never accepts again). Only idle listeners are probed.
   */
  async #probeListeners(): Promise<void> {
    const now = performance.now();
    let stuck = false;
    for (const li of this.#listening) {
      if (now - li.listener.lastAcceptAt < LISTENER_PROBE_MS) continue;
      if ((await li.listener.probe(LISTENER_PROBE_TIMEOUT_MS)) === false) stuck = true;
    }
    if (stuck && !this.#stopping) {
      log.warn("A listener stopped accepting (after running out of descriptors?); binding again");
      try {
        await this.reloadCertificate(this.#certPem, this.#keyPem);
        log.warn("Listeners bound again: accepting");
      } catch (err) {
        log.error("Binding the listener again failed: {error}", { error: String(err) });
      }
    }
  }

  /** Binds every listener of the config, opens the store-backed service and starts accepting. */
  static async start(opts: StartOptions): Promise<ChatServer> {
    const listening: Listening[] = [];
    try {
      for (const [i, lc] of opts.config.listeners.entries()) {
        const l = opts.config.limits;
        const protocols = new Map<string, Served>();
        const https = new Set<string>();
        for (const [id, name] of Object.entries(lc.alpn)) {
          if (name === "https") https.add(id);
          else protocols.set(id, { create: PROTOCOLS[name], framing: lineFraming(name, l) });
        }
        if (i === 0 && opts.fallback) {
          protocols.set("", { create: opts.fallback, framing: lineFraming(undefined, l) });
        }
        listening.push({
          config: lc,
          listener: await bind(lc, opts.certPem, opts.keyPem, opts.config.tlsEngine),
          loop: Promise.resolve(),
          protocols,
          https,
        });
      }
    } catch (err) {
      for (const li of listening) li.listener.close();
      throw err;
    }
    const server = new ChatServer(opts, listening);
    try {
      await server.service.init();
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  /** The bound address of the chat listener (port 0 resolves here). */
  get addr(): Deno.NetAddr {
    return this.#listening[0].listener.addr as Deno.NetAddr;
  }

  /** Every bound listener's address, in config order. */
  get addrs(): Deno.NetAddr[] {
    return this.#listening.map((l) => l.listener.addr as Deno.NetAddr);
  }

  get stats(): ServerStats {
    const maxLag = this.#lagMax;
    this.#lagMax = 0;
    let queued = 0;
    let maxQueued = 0;
    for (const s of this.#sessions) {
      queued += s.queue.bytes;
      if (s.queue.bytes > maxQueued) maxQueued = s.queue.bytes;
    }
    return {
      connections: this.#sessions.size + this.#handshaking.size,
      sessions: this.hub.sessionCount,
      messagesStored: this.service.stored,
      deliveries: this.hub.delivered,
      queuedBytes: queued,
      maxQueuedBytes: maxQueued,
      hasher: this.hasher.stats,
      loop: { maxLagMs: Math.round(maxLag * 10) / 10, stalls: this.#stalls },
    };
  }

  /** The Prometheus text of `GET /metrics` (docs/OPERATIONS.md "Metrics"). */
  async #metrics(): Promise<string> {
    const st = this.stats;
    const perProtocol = new Map<string, number>();
    for (const s of this.#sessions) {
      const key = `protocol="${s.adapter.name}",transport="${
        this.#webSessions.has(s) ? "websocket" : "tls"
      }"`;
      perProtocol.set(key, (perProtocol.get(key) ?? 0) + 1);
    }
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, values: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of values) out.push(`${name}${labels ? `{${labels}}` : ""} ${v}`);
    };
    metric("chat_connections", "gauge", "Open connections, handshakes included.", [[
      "",
      st.connections,
    ]]);
    metric("chat_sessions", "gauge", "Connections by protocol and transport.", [
      ...perProtocol,
    ]);
    metric("chat_online_sessions", "gauge", "Logged-in sessions.", [["", st.sessions]]);
    metric("chat_messages_stored_total", "counter", "Messages committed by this node.", [[
      "",
      st.messagesStored,
    ]]);
    metric("chat_deliveries_total", "counter", "Messages queued to recipients.", [[
      "",
      st.deliveries,
    ]]);
    metric("chat_send_queue_bytes", "gauge", "Unsent bytes over all send queues.", [[
      "",
      st.queuedBytes,
    ]]);
    metric("chat_send_queue_max_bytes", "gauge", "Unsent bytes of the fullest queue.", [[
      "",
      st.maxQueuedBytes,
    ]]);
    metric("chat_hash_queue", "gauge", "Password hashes waiting for a worker.", [[
      "",
      st.hasher.queued,
    ]]);
    metric("chat_hash_running", "gauge", "Password hashes running.", [["", st.hasher.running]]);
    metric("chat_hash_busy_total", "counter", "Logins refused busy (hash queue full).", [[
      "",
      st.hasher.rejectedBusy,
    ]]);
    metric("chat_event_loop_lag_max_ms", "gauge", "Worst event-loop delay since the last read.", [[
      "",
      st.loop.maxLagMs,
    ]]);
    metric("chat_event_loop_stalls_total", "counter", "Event-loop delays over 20 ms.", [[
      "",
      st.loop.stalls,
    ]]);
    const store = await this.#store.storageStats();
    metric("chat_store_messages", "gauge", "Stored messages.", [["", store.messages]]);
    metric("chat_store_users", "gauge", "Accounts.", [["", store.users]]);
    for (const [k, v] of Object.entries(store.engine.figures)) {
      const snake = k.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
      const counter = !k.endsWith("Bytes");
      metric(
        `chat_store_${snake}${counter ? "_total" : ""}`,
        counter ? "counter" : "gauge",
        `Storage engine (${store.engine.name}) figure ${k}.`,
        [["", v]],
      );
    }
    return out.join("\n") + "\n";
  }

  async #accept(li: Listening): Promise<void> {
    const listener = li.listener;
    let backoffMs = 0;
    while (!this.#stopping && !this.#retired.has(listener)) {
      let conn: AcceptedConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#stopping || this.#retired.has(listener)) return;
        if (err instanceof Deno.errors.BadResource) return;
        // Out of file descriptors (EMFILE) lasts until a connection closes: retrying at once
        // spun a core and wrote ~15,000 log lines a second. Back off 10 ms → 1 s, log each wait
        // of a second (and the first).
        backoffMs = Math.min(1000, backoffMs * 2 || 10);
        if (backoffMs === 10 || backoffMs === 1000) {
          log.warn("Accept failed: {error}; retrying in {ms} ms", {
            error: String(err),
            ms: backoffMs,
          });
        }
        await new Promise((r) => setTimeout(r, backoffMs));
        continue;
      }
      backoffMs = 0;
      // Failure boundary: nothing one connection does can end the accept loop.
      this.#admit(conn, li).catch((err) => {
        log.error("Connection setup failed: {error}", { error: String(err) });
        try {
          conn.close();
        } catch { /* gone */ }
      });
    }
  }

  async #admit(conn: AcceptedConn, li: Listening): Promise<void> {
    const remote = normalizeAddress(conn.remoteAddr);
    const l = this.config.limits;
    // Counted per address, IPv6 per /ipv6PrefixBits (one host holds a whole /64).
    const key = addressKey(remote, l.ipv6PrefixBits);
    const total = this.#sessions.size + this.#handshaking.size;
    const fromHere = this.#perAddress.get(key) ?? 0;
    // Counted at accept, before any TLS work: a socket that never starts its handshake counts
    // against its own address from the first byte it did not send. Over a limit, a few may still
    // finish the handshake to be told why (`too_many_connections`, `server_full`); the rest are
    // closed at once. (Deno still holds such a socket's fd until the peer acts: RELIABILITY §4.)
    const over = total >= l.maxConnections || fromHere >= l.maxConnectionsPerAddress;
    if (over) {
      const here = this.#overLimitHandshakes.get(key) ?? 0;
      if (
        here >= REFUSALS_IN_HANDSHAKE_PER_ADDRESS || this.#overLimitTotal >= REFUSALS_IN_HANDSHAKE
      ) {
        log.debug("Refused {remote} at accept: over the connection limits", { remote });
        try {
          conn.close();
        } catch { /* gone */ }
        return;
      }
      this.#overLimitHandshakes.set(key, here + 1);
      this.#overLimitTotal++;
    }
    this.#handshaking.set(conn, this.#clock());
    this.#perAddress.set(key, fromHere + 1);
    let session: Session | null = null;
    try {
      // A plain listener (loopback only) has no handshake and no ALPN: its "" protocol.
      const alpn = li.config.tls === false ? "" : (await conn.handshake()).alpnProtocol ?? "";
      this.#handshaking.delete(conn);
      if (this.#stopping) {
        conn.close();
        return;
      }
      let served = li.protocols.get(alpn);
      let transport: MessageTransport;
      if (li.https.has(alpn)) {
        // A browser: HTTP until it upgrades to the WebSocket, which carries chat/1.
        this.#http.add(conn);
        const upgrade = await this.#web.serve(conn).finally(() => this.#http.delete(conn));
        if (!upgrade) return;
        if (this.#stopping) {
          conn.close();
          return;
        }
        served = { create: PROTOCOLS["chat/1"], framing: lineFraming("chat/1", l) };
        transport = new WebSocketTransport(conn, remote, l.maxLineBytes, upgrade.leftover);
      } else if (served) {
        transport = new LineTransport(conn, remote, served.framing.maxLineBytes, {
          overlong: served.framing.overlong,
        });
      } else {
        conn.close(); // rustls refuses unlisted ids; only a client without ALPN lands here
        return;
      }
      const refusal = total >= l.maxConnections
        ? new ChatError("server_full", "Cannot connect: the server is full", { fatal: true })
        : fromHere >= l.maxConnectionsPerAddress
        ? new ChatError(
          "too_many_connections",
          "Cannot connect: too many connections from your address",
          { fatal: true },
        )
        : null;
      session = new Session(transport, this.#deps);
      if (transport instanceof WebSocketTransport) this.#webSessions.add(session);
      const adapter = served.create(session);
      session.setAdapter(adapter);
      if (adapter.keepEmptyLines && transport instanceof LineTransport) {
        transport.keepEmptyLines = true;
      }
      this.#sessions.add(session);
      if (refusal) {
        log.warn("Refused {remote}: {code}", { remote, code: refusal.code });
        session.fail(refusal);
        return;
      }
      log.debug("Connect {connId} from {remote} ({protocol})", {
        connId: session.connId,
        remote,
        protocol: adapter.name,
      });
      // Not awaited: this frame (and its promise chain) would otherwise stay suspended for the
      // whole life of the connection, about 0.5 KB of heap each. `run` never throws, and the
      // session forgets itself through `onClosed`.
      void session.run();
    } catch (err) {
      log.debug("Handshake with {remote} failed: {error}", { remote, error: String(err) });
      try {
        conn.close();
      } catch { /* gone */ }
    } finally {
      this.#handshaking.delete(conn);
      if (!session) this.#release(key);
      if (over) {
        const here = (this.#overLimitHandshakes.get(key) ?? 1) - 1;
        if (here <= 0) this.#overLimitHandshakes.delete(key);
        else this.#overLimitHandshakes.set(key, here);
        this.#overLimitTotal--;
      }
    }
  }

  #release(key: string): void {
    const n = (this.#perAddress.get(key) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(key);
    else this.#perAddress.set(key, n);
  }

  #forget(s: Session): void {
    if (this.#sessions.delete(s)) {
      this.#release(addressKey(s.remote, this.config.limits.ipv6PrefixBits));
    }
  }

  /** Deadlines and keepalive, checked for every connection on one timer. */
  #sweep(): void {
    const now = this.#clock();
    const l = this.config.limits;
    for (const [conn, since] of this.#handshaking) {
      if (now - since > l.handshakeTimeoutMs) {
        this.#handshaking.delete(conn);
        try {
          conn.close();
        } catch { /* gone */ }
      }
    }
    for (const s of this.#sessions) {
      if (s.closed || s.draining) continue;
      if (!s.user && s.authElapsed(now) > l.authTimeoutMs) {
        s.fail(
          new ChatError("auth_timeout", "Cannot continue: login took too long", { fatal: true }),
        );
        continue;
      }
      const silent = now - s.lastRx;
      if (silent > l.idleTimeoutMs) {
        s.close("idle_timeout", "No traffic received in time", true);
      } else if (silent > l.pingIntervalMs && !s.pingSent) {
        s.pingSent = true;
        s.adapter.ping();
      }
    }
  }

  /** Closes every session of a user on every node with `bye` `kicked`; returns how many here. */
  kickUser(userId: number, message: string): number {
    return this.service.kickUser(userId, message);
  }

  /** Closes the sessions of a user that used one of `tokenIds`; returns how many here. */
  kickTokens(userId: number, tokenIds: number[], message: string): number {
    return this.service.kickTokens(userId, tokenIds, message);
  }

  /**
   * Serves a new certificate to connections accepted from now on; open connections keep theirs
   * (a TlsConn does not depend on the listener that accepted it). Reloads run one at a time.
   *
   * Deno fixes a TLS listener's certificate when it is created, so this binds a new listener on the
   * same address and closes the old one. Binding both at once needs SO_REUSEPORT, which Deno 2.9
   * allows on a TLS listener only with --unstable-net; so the old listener closes first and the new
   * one is bound right after (measured on Linux: 0.3 ms median, 3 ms at most, from closing the old
   * listener to the new one accepting; a client connecting in a tight loop saw about one refused
   * attempt per reload; clients reconnect).
   * The pair is first tried on a throwaway loopback listener, so a pair that TLS refuses never
   * costs the working listeners.
   * @throws {ChatError} `cert_invalid` when TLS refuses the pair, `listen_failed` when an address
   * could not be bound again (that listener then accepts no new connections; logged as an error).
   */
  reloadCertificate(certPem: string, keyPem: string): Promise<void> {
    const next = this.#reloading.catch(() => {}).then(() => this.#swapListeners(certPem, keyPem));
    this.#reloading = next;
    return next;
  }

  async #swapListeners(certPem: string, keyPem: string): Promise<void> {
    if (this.#stopping) {
      throw new ChatError("shutting_down", "Cannot reload certificate: the server is stopping");
    }
    try {
      checkPair(certPem, keyPem);
    } catch (err) {
      throw new ChatError("cert_invalid", `Cannot reload certificate: ${(err as Error).message}`);
    }
    this.#certPem = certPem;
    this.#keyPem = keyPem;
    let failure: ChatError | null = null;
    for (const li of this.#listening) {
      if (li.config.tls === false) continue; // no certificate to change
      const old = li.listener;
      const port = (old.addr as Deno.NetAddr).port;
      const at = { ...li.config, port };
      this.#retired.add(old);
      old.close();
      await li.loop;
      let listener: TlsAcceptor | null = null;
      let lastError: unknown;
      // The old socket is released asynchronously once its pending accept is cancelled.
      for (let attempt = 0; attempt < 200 && !listener; attempt++) {
        try {
          listener = await bind(at, certPem, keyPem, this.config.tlsEngine);
        } catch (err) {
          lastError = err;
          await new Promise((r) => setTimeout(r, Math.min(50, 1 + attempt)));
        }
      }
      const hostname = at.host === "" ? "::" : at.host;
      if (!listener) {
        log.error("Certificate reload could not bind {host} port {port} again: {error}", {
          host: hostname,
          port,
          error: String(lastError),
        });
        failure ??= new ChatError(
          "listen_failed",
          `Cannot reload certificate: ${hostname} port ${port} could not be bound again ` +
            `(${(lastError as Error).message}); the server accepts no new connections there`,
        );
        continue;
      }
      li.listener = listener;
      li.loop = this.#accept(li);
      log.info("Certificate reloaded; listening on {host} port {port}", { host: hostname, port });
    }
    if (failure) throw failure;
  }

  /** Runs `hook` at the start of close(), before connections end and the store closes. */
  onClose(hook: () => Promise<void> | void): void {
    this.#closeHooks.push(hook);
  }

  /**
   * Graceful stop, within `shutdownGraceMs`: stop accepting; every session stops reading and
   * answers what it read (requests in flight finish and get their ack or error; requests read
   * after this get `shutting_down`); then `bye` `shutdown`, queues drain, the store commits
   * and closes. Idempotent.
   */
  close(): Promise<void> {
    return this.#closed ??= this.#close();
  }

  async #close(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#listenerProbe);
    await this.#probing;
    const grace = this.config.limits.shutdownGraceMs;
    const deadline = performance.now() + grace;
    log.info("Shutting down: {n} connections", { n: this.#sessions.size });
    for (const hook of this.#closeHooks) {
      try {
        await hook();
      } catch (err) {
        log.error("Shutdown hook failed: {error}", { error: String(err) });
      }
    }
    await this.#reloading.catch(() => {});
    for (const li of this.#listening) {
      try {
        li.listener.close();
      } catch { /* already closed */ }
    }
    for (const conn of [...this.#handshaking.keys(), ...this.#http]) {
      try {
        conn.close();
      } catch { /* gone */ }
    }
    const sessions = [...this.#sessions];
    for (const s of sessions) s.drain();
    // Requests in flight wait for their commit; the hasher stops only after (a login in
    // progress gets its answer either way).
    await withDeadline(Promise.all(sessions.map((s) => s.settled())), deadline);
    this.hasher.close();
    // Everyone here is told `bye` now: telling each one first of the leaves of those closed
    // before it was N²/2 frames (Hub.stopPresence).
    this.hub.stopPresence();
    for (const s of sessions) s.close("shutdown", "The server is shutting down", true, grace);
    await withDeadline(Promise.all(sessions.map((s) => s.queue.flushed())), deadline);
    if (this.#sweeper !== undefined) this.#timers.clearTimeout(this.#sweeper);
    clearInterval(this.#lagProbe);
    clearInterval(this.#listenerProbe);
    await Promise.all(this.#listening.map((l) => l.loop));
    this.hub.close();
    await this.hub.fanout.close();
    await this.#store.close();
    log.info("Stopped");
  }
}

/** Waits for `p` until `deadline` (performance.now() time), whichever comes first. */
async function withDeadline(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    p,
    new Promise((r) => timer = setTimeout(r, Math.max(0, deadline - performance.now()))),
  ]);
  clearTimeout(timer);
}

/**
 * Binds a listener: TLS, or with `tls: false` (validated to a loopback host by the config) plain
 * TCP; that path is only the bind, the rest of a connection's life is the same.
 */
/**
 * Throws when TLS refuses the pair (rustls checks it as `Deno.listenTls` does; the throwaway
 * listener is closed at once).
 */
function checkPair(cert: string, key: string): void {
  Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }).close();
}

async function bind(
  l: ListenerConfig,
  cert: string,
  key: string,
  engine: "node" | "deno",
): Promise<TlsAcceptor> {
  try {
    if (l.tls === false) {
      return listenPlain({ hostname: l.host === "" ? "::" : l.host, port: l.port });
    }
    checkPair(cert, key);
    const opts = {
      hostname: l.host === "" ? "::" : l.host,
      port: l.port,
      cert,
      key,
      alpnProtocols: offeredAlpn(l),
    };
    if (engine === "node") return await listenTls(opts); // sets TCP_NODELAY per socket itself
    const listener = listenDenoTls(opts);
    const why = setListenerNoDelay(listener.addr.port);
    if (why !== null) {
      log.warn("TCP_NODELAY not set on port {port} ({why}): small writes may wait for ACKs", {
        port: listener.addr.port,
        why,
      });
    }
    return listener;
  } catch (err) {
    throw new ChatError(
      "listen_failed",
      `Cannot listen on ${l.host || "[::]"}:${l.port}: ${(err as Error).message}`,
      { fatal: true },
    );
  }
}
