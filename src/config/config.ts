// Owns server configuration: typed defaults, merged from file < environment < flags, validated once.
import { ChatError } from "../errors.ts";
import type { WireLimits } from "../protocol/frames.ts";

/**
 * What a listener can serve per ALPN id: a wire protocol (src/server/protocols.ts has one adapter
 * per name), or `https`: the web app and its WebSocket (src/web/web_service.ts), which carries
 * chat/1.
 */
export const PROTOCOL_NAMES = ["chat/1", "seed", "irc", "https"] as const;
export type ProtocolName = typeof PROTOCOL_NAMES[number];
/** The names that are a session protocol (everything but `https`). */
export type SessionProtocolName = Exclude<ProtocolName, "https">;

/**
 * One listening socket. TLS unless `tls` is false; after the handshake the protocol is chosen by
 * the client's ALPN offer: `alpn` maps an ALPN id to a protocol, and the entry `""` is for
 * clients that offer none (a client that offers only ids not listed fails the handshake).
 */
export interface ListenerConfig {
  /** Listen address; "" = all interfaces (IPv6 and IPv4). */
  host: string;
  port: number;
  alpn: Readonly<Record<string, ProtocolName>>;
  /**
   * Plain TCP when false (default true): only on a loopback address (127.0.0.0/8, ::1,
   * localhost), for a local client or a TLS-terminating proxy; then the `""` entry of `alpn`
   * is the protocol.
   */
  tls?: boolean;
}

/** The IRC port's protocols (`--irc-port`): IRC with ALPN `irc` or without ALPN. */
export const IRC_ALPN: Readonly<Record<string, ProtocolName>> = Object.freeze({
  "": "irc",
  "irc": "irc",
});

/**
 * The chat port's protocols: chat/1 by ALPN, the web app for browsers (ALPN `http/1.1`), the seed
 * text protocol without ALPN.
 */
export const DEFAULT_ALPN: Readonly<Record<string, ProtocolName>> = Object.freeze({
  "chat/1": "chat/1",
  "http/1.1": "https",
  "": "seed",
});

/** Everything `chat serve` can be told. Frozen after `resolveConfig`. */
export interface ServerConfig {
  /** Address and port of the chat listener (the first of `listeners`). "" = all interfaces. */
  host: string;
  port: number;
  /**
   * Every listener. When the config does not list them, one on `host`:`port` with DEFAULT_ALPN;
   * when it does, `host` and `port` (and their flags) set the first one's address.
   */
  listeners: readonly ListenerConfig[];
  /**
   * When set, one more listener on `host`:`ircPort` with IRC_ALPN (TLS), after the listeners
   * above (`chat serve --irc-port 6697`). Default null: no IRC listener.
   */
  ircPort: number | null;
  /**
   * The server's name on IRC: the source of numerics and server lines, PONG's first parameter.
   * A host name with at least one dot (IRC tells servers from nicks by it). Default `chat.server`.
   */
  ircServerName: string;
  dataDir: string;
  /** Paths to a real certificate and key; when unset a self-signed pair lives in dataDir. */
  certFile: string | null;
  keyFile: string | null;
  registration: "open" | "invite" | "closed";
  logFormat: "text" | "json";
  logLevel: "debug" | "info" | "warning" | "error";
  /** `FULL` survives power loss (default); `NORMAL` survives process crashes only. */
  dbSynchronous: "FULL" | "NORMAL";
  /**
   * Where data lives: "" (default) is SQLite in `dataDir`; a `postgres://user:pass@host/db` URL
   * is a PostgreSQL shared by every node (`?sslmode=require|verify-full` for TLS). Never logged
   * with its password.
   */
  store: string;
  /** PostgreSQL: connections in each node's pool (default 10). */
  storePoolSize: number;
  /** PostgreSQL: how long connecting may take before it fails (default 5000 ms). */
  storeConnectTimeoutMs: number;
  /** Messages older than this many days are deleted (checked hourly); 0 keeps them forever. */
  retentionDays: number;
  /** Who may create a room with `join`: any user, or administrators only. */
  roomCreate: "anyone" | "admin";
  /** Who may set a room's topic: any member, its owner (creator) or an admin, or admins only. */
  roomTopic: "anyone" | "owner" | "admin";
  /**
   * The bus between the nodes of a cluster: `nats://[user:pass@]host:port[,host:port…]`
   * (`tls://…` requires TLS); null = one node, in-process fan-out. Never logged with its
   * credentials (src/server/bus.ts).
   */
  bus: string | null;
  /** Subject prefix part on the bus, so chat clusters can share one NATS (default `chat`). */
  busCluster: string;
  /** PEM files for TLS to the bus: the CA to trust, and a client certificate and key. */
  busCaFile: string | null;
  busCertFile: string | null;
  busKeyFile: string | null;
  /** This node's name in the cluster, unique per node (null: `<hostname>-<pid>`). */
  nodeName: string | null;
  /**
   * Bearer token for `GET /metrics` on the web listener (Prometheus text); null (the default)
   * turns `/metrics` off. At least 16 characters.
   */
  metricsToken: string | null;
  /**
   * Who runs server-side TLS: `deno` (default; `Deno.listenTls`: the fastest and leanest, but a
   * socket that never finishes its handshake keeps its descriptor until the peer acts) or `node`
   * (node:net sockets upgraded by node:tls, freed at `handshakeTimeoutMs`; measured ~40 % more
   * server CPU per delivery in fan-out and ~23 KiB more per idle connection). Both set
   * `TCP_NODELAY` (src/server/tcp_nodelay.ts). docs/RELIABILITY.md, "Failing or open today" item 1.
   */
  tlsEngine: "node" | "deno";
  /** Session tokens (PROTOCOL.md §2.1) expire this many days after they were issued (default 30). */
  sessionTokenDays: number;
  limits: ServerLimits;
}

/** Every limit, each with its default; all on by default. */
export interface ServerLimits {
  maxLineBytes: number;
  maxBodyBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  /**
   * Pacing (PROTOCOL.md §8): time a connection waited for message tokens, draining at half the
   * clock's speed; past this (default 10 s, about 20 s of nonstop flooding) it is cut (`flood`).
   */
  messageFloodMs: number;
  historyMax: number;
  resumeMaxMessages: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  authTimeoutMs: number;
  preAuthMaxFrames: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  sendQueueBytes: number;
  /** Password hashing: worker threads and queue length. */
  hashWorkers: number;
  hashQueue: number;
  /** Failed logins: bucket size and refill interval, per account and per address. */
  loginFailuresPerAccount: number;
  loginFailureRefillMsPerAccount: number;
  loginFailuresPerAddress: number;
  loginFailureRefillMsPerAddress: number;
  /** Registrations per address: bucket size and refill interval. */
  registrationsPerAddress: number;
  registrationRefillMs: number;
  /** Per-address limits count an IPv6 address by its first this many bits (0-128; 128 = each). */
  ipv6PrefixBits: number;
  /** Time given to clients and the database at shutdown. */
  shutdownGraceMs: number;
  /** Rooms (not direct conversations) that may exist in all; `join` past it: `too_many_rooms`. */
  maxRooms: number;
  /** Rooms one user may create in all (archived ones count). */
  roomsPerUser: number;
  /** Room creation per user: bucket size and refill interval (`throttled` when empty). */
  roomCreateBurst: number;
  roomCreateRefillMs: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxLineBytes: 8192,
  maxBodyBytes: 4000,
  messagesPerSecond: 10,
  messageBurst: 30,
  messageFloodMs: 10_000,
  historyMax: 500,
  resumeMaxMessages: 1000,
  pingIntervalMs: 30_000,
  idleTimeoutMs: 75_000,
  handshakeTimeoutMs: 10_000,
  authTimeoutMs: 30_000,
  preAuthMaxFrames: 20,
  maxConnections: 10_000,
  maxConnectionsPerAddress: 64,
  sendQueueBytes: 1024 * 1024,
  hashWorkers: 1,
  hashQueue: 64,
  loginFailuresPerAccount: 5,
  loginFailureRefillMsPerAccount: 30_000,
  loginFailuresPerAddress: 20,
  loginFailureRefillMsPerAddress: 3_000,
  registrationsPerAddress: 10,
  registrationRefillMs: 10_000,
  ipv6PrefixBits: 64,
  shutdownGraceMs: 5_000,
  maxRooms: 10_000,
  roomsPerUser: 50,
  roomCreateBurst: 5,
  roomCreateRefillMs: 60_000,
});

/** The limits a server announces in `hello`: the part of `ServerLimits` clients must respect. */
export function wireLimits(l: Readonly<ServerLimits>): WireLimits {
  return {
    maxLineBytes: l.maxLineBytes,
    maxBodyBytes: l.maxBodyBytes,
    messagesPerSecond: l.messagesPerSecond,
    messageBurst: l.messageBurst,
    historyMax: l.historyMax,
    resumeMaxMessages: l.resumeMaxMessages,
    pingIntervalMs: l.pingIntervalMs,
    idleTimeoutMs: l.idleTimeoutMs,
  };
}

export const DEFAULT_CONFIG: Readonly<ServerConfig> = Object.freeze({
  host: "",
  port: 7443,
  listeners: Object.freeze([Object.freeze({ host: "", port: 7443, alpn: DEFAULT_ALPN })]),
  ircPort: null,
  ircServerName: "chat.server",
  dataDir: "./data",
  certFile: null,
  keyFile: null,
  registration: "open",
  logFormat: "text",
  logLevel: "info",
  dbSynchronous: "FULL",
  store: "",
  storePoolSize: 10,
  storeConnectTimeoutMs: 5000,
  retentionDays: 0,
  roomCreate: "anyone",
  roomTopic: "owner",
  bus: null,
  busCluster: "chat",
  busCaFile: null,
  busCertFile: null,
  busKeyFile: null,
  nodeName: null,
  metricsToken: null,
  sessionTokenDays: 30,
  tlsEngine: "deno",
  limits: DEFAULT_LIMITS,
});

/** Environment variable for each top-level setting (limits use CHAT_LIMIT_<NAME>). */
export const ENV_NAMES: Readonly<
  Record<Exclude<keyof ServerConfig, "limits" | "listeners">, string>
> = {
  host: "CHAT_HOST",
  port: "CHAT_PORT",
  ircPort: "CHAT_IRC_PORT",
  ircServerName: "CHAT_IRC_SERVER_NAME",
  dataDir: "CHAT_DATA",
  certFile: "CHAT_CERT",
  keyFile: "CHAT_KEY",
  registration: "CHAT_REGISTRATION",
  logFormat: "CHAT_LOG_FORMAT",
  logLevel: "CHAT_LOG_LEVEL",
  dbSynchronous: "CHAT_DB_SYNCHRONOUS",
  store: "CHAT_STORE",
  storePoolSize: "CHAT_STORE_POOL_SIZE",
  storeConnectTimeoutMs: "CHAT_STORE_CONNECT_TIMEOUT_MS",
  retentionDays: "CHAT_RETENTION_DAYS",
  roomCreate: "CHAT_ROOM_CREATE",
  roomTopic: "CHAT_ROOM_TOPIC",
  bus: "CHAT_BUS",
  busCluster: "CHAT_BUS_CLUSTER",
  busCaFile: "CHAT_BUS_CA",
  busCertFile: "CHAT_BUS_CERT",
  busKeyFile: "CHAT_BUS_KEY",
  nodeName: "CHAT_NODE_NAME",
  metricsToken: "CHAT_METRICS_TOKEN",
  sessionTokenDays: "CHAT_SESSION_TOKEN_DAYS",
  tlsEngine: "CHAT_TLS_ENGINE",
};

type Partialish = Partial<Omit<ServerConfig, "limits" | "listeners">> & {
  limits?: Partial<ServerLimits>;
  listeners?: unknown;
};

function invalid(field: string, detail: string): ChatError {
  return new ChatError("config_invalid", `Cannot use configuration: ${field} ${detail}`);
}

function oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== "string" || !allowed.includes(v as T)) {
    throw invalid(field, `must be one of ${allowed.join(", ")} (got ${JSON.stringify(v)})`);
  }
  return v as T;
}

function int(field: string, v: unknown, min: number, max: number): number {
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw invalid(field, `must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  }
  return n;
}

function str(field: string, v: unknown): string {
  if (typeof v !== "string") throw invalid(field, "must be a string");
  return v;
}

/** Reads a JSON config file; unknown keys are an error so typos do not pass silently. */
export async function readConfigFile(path: string): Promise<Partialish> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ChatError(
      "config_invalid",
      `Cannot read config file ${path}: ${(err as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ChatError(
      "config_invalid",
      `Cannot parse config file ${path}: ${(err as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ChatError("config_invalid", `Cannot use config file ${path}: not a JSON object`);
  }
  return value as Partialish;
}

/** Settings found in the environment (only the variables that are set). */
export function configFromEnv(env: (name: string) => string | undefined): Partialish {
  const out: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const v = env(name);
    if (v !== undefined && v !== "") out[key] = v;
  }
  const limits: Record<string, unknown> = {};
  for (const key of Object.keys(DEFAULT_LIMITS)) {
    const v = env(`CHAT_LIMIT_${key.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase()}`);
    if (v !== undefined && v !== "") limits[key] = v;
  }
  if (Object.keys(limits).length) out.limits = limits;
  return out as Partialish;
}

/** Merges layers (later wins), validates every field, and returns a frozen config. */
export function resolveConfig(...layers: Partialish[]): ServerConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG };
  const limits: Record<string, unknown> = { ...DEFAULT_LIMITS };
  for (const layer of layers) {
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      if (k === "limits") {
        if (typeof v !== "object" || v === null) throw invalid("limits", "must be an object");
        for (const [lk, lv] of Object.entries(v)) {
          if (!(lk in DEFAULT_LIMITS)) throw invalid(`limits.${lk}`, "is not a known limit");
          if (lv !== undefined) limits[lk] = lv;
        }
      } else {
        if (!(k in DEFAULT_CONFIG)) throw invalid(k, "is not a known setting");
        merged[k] = v;
      }
    }
  }
  const checkedLimits = {} as Record<string, number>;
  for (const k of Object.keys(DEFAULT_LIMITS)) {
    const [min, max] = k === "hashWorkers"
      ? [1, 2 ** 40]
      : k === "ipv6PrefixBits"
      ? [0, 128]
      : [0, 2 ** 40];
    checkedLimits[k] = int(`limits.${k}`, limits[k], min, max);
  }
  const l = checkedLimits as unknown as ServerLimits;
  if (l.maxBodyBytes + 512 > l.maxLineBytes) {
    throw invalid("limits.maxLineBytes", "must leave at least 512 bytes over maxBodyBytes");
  }
  const host = str("host", merged.host);
  const port = int("port", merged.port, 0, 65535);
  const ircPort = merged.ircPort === null ? null : int("ircPort", merged.ircPort, 0, 65535);
  const listeners = checkListeners(merged.listeners, host, port);
  const config: ServerConfig = {
    host,
    port,
    listeners: ircPort === null ? listeners : Object.freeze([
      ...listeners,
      Object.freeze({ host, port: ircPort, alpn: IRC_ALPN }),
    ]),
    ircPort,
    ircServerName: checkServerName(merged.ircServerName),
    dataDir: str("dataDir", merged.dataDir),
    certFile: merged.certFile === null ? null : str("certFile", merged.certFile),
    keyFile: merged.keyFile === null ? null : str("keyFile", merged.keyFile),
    registration: oneOf("registration", merged.registration, ["open", "invite", "closed"] as const),
    logFormat: oneOf("logFormat", merged.logFormat, ["text", "json"] as const),
    logLevel: oneOf("logLevel", merged.logLevel, ["debug", "info", "warning", "error"] as const),
    dbSynchronous: oneOf("dbSynchronous", merged.dbSynchronous, ["FULL", "NORMAL"] as const),
    store: storeSetting(merged.store),
    storePoolSize: int("storePoolSize", merged.storePoolSize, 2, 1000),
    storeConnectTimeoutMs: int("storeConnectTimeoutMs", merged.storeConnectTimeoutMs, 100, 600_000),
    retentionDays: int("retentionDays", merged.retentionDays, 0, 100_000),
    roomCreate: oneOf("roomCreate", merged.roomCreate, ["anyone", "admin"] as const),
    roomTopic: oneOf("roomTopic", merged.roomTopic, ["anyone", "owner", "admin"] as const),
    bus: merged.bus === null ? null : checkBus(str("bus", merged.bus)),
    busCluster: checkToken("busCluster", merged.busCluster),
    busCaFile: optStr("busCaFile", merged.busCaFile),
    busCertFile: optStr("busCertFile", merged.busCertFile),
    busKeyFile: optStr("busKeyFile", merged.busKeyFile),
    nodeName: merged.nodeName === null ? null : checkToken("nodeName", merged.nodeName),
    metricsToken: merged.metricsToken === null ? null : str("metricsToken", merged.metricsToken),
    sessionTokenDays: int("sessionTokenDays", merged.sessionTokenDays, 1, 100_000),
    tlsEngine: oneOf("tlsEngine", merged.tlsEngine, ["node", "deno"] as const),
    limits: Object.freeze(l),
  };
  if (config.metricsToken !== null && !/^[\x21-\x7e]{16,}$/.test(config.metricsToken)) {
    throw invalid("metricsToken", "must be at least 16 printable ASCII characters");
  }
  if ((config.busCertFile === null) !== (config.busKeyFile === null)) {
    throw invalid("busCertFile/busKeyFile", "must be given together");
  }
  if ((config.certFile === null) !== (config.keyFile === null)) {
    throw invalid("certFile/keyFile", "must be given together");
  }
  return Object.freeze(config);
}

function optStr(field: string, v: unknown): string | null {
  return v === null ? null : str(field, v);
}

/** A name that fits in a NATS subject token: letters, digits, `-` and `_`, 1-64 of them. */
function checkServerName(v: unknown): string {
  const t = str("ircServerName", v);
  if (t.length > 63 || !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(t)) {
    throw invalid("ircServerName", "must be a host name with a dot, at most 63 characters");
  }
  return t;
}

function checkToken(field: string, v: unknown): string {
  const t = str(field, v);
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(t)) {
    throw invalid(field, "must be 1-64 letters, digits, - or _");
  }
  return t;
}

/** The bus URL's shape; the message never repeats it (it may carry a password). */
function checkBus(v: string): string {
  if (!/^(nats|tls):\/\/([^@/\s]+@)?[^@/\s]+(:\d+)?(,[^@/\s,]+(:\d+)?)*\/?$/.test(v)) {
    throw invalid("bus", "must be nats://[user:pass@]host:port[,host:port…] or tls://…");
  }
  return v;
}

/** "" (SQLite in the data dir) or a postgres:// URL that parses. */
function storeSetting(v: unknown): string {
  const s = str("store", v);
  if (s === "") return s;
  if (!/^postgres(ql)?:\/\//i.test(s)) {
    throw invalid("store", 'must be "" (SQLite in the data dir) or a postgres:// URL');
  }
  try {
    new URL(s);
  } catch {
    // The URL may hold a password: say what is wrong without echoing it.
    throw invalid("store", "is not a valid URL");
  }
  return s;
}

function checkListeners(v: unknown, host: string, port: number): readonly ListenerConfig[] {
  if (v === DEFAULT_CONFIG.listeners || v === undefined) {
    return Object.freeze([Object.freeze({ host, port, alpn: DEFAULT_ALPN })]);
  }
  if (!Array.isArray(v) || v.length === 0) throw invalid("listeners", "must be a non-empty array");
  const seen = new Set<string>();
  return Object.freeze(v.map((raw, i) => {
    const f = `listeners[${i}]`;
    if (typeof raw !== "object" || raw === null) throw invalid(f, "must be an object");
    const l = raw as Record<string, unknown>;
    for (const k of Object.keys(l)) {
      if (!["host", "port", "alpn", "tls"].includes(k)) {
        throw invalid(`${f}.${k}`, "is not a known field");
      }
    }
    // The first listener is the chat port: `host`/`port` (and their flags) say where it is.
    const lHost = i === 0 ? host : str(`${f}.host`, l.host ?? "");
    const lPort = i === 0 ? port : int(`${f}.port`, l.port, 0, 65535);
    const alpnRaw = l.alpn ?? DEFAULT_ALPN;
    if (typeof alpnRaw !== "object" || alpnRaw === null || Array.isArray(alpnRaw)) {
      throw invalid(`${f}.alpn`, "must be an object of ALPN id to protocol");
    }
    const alpn: Record<string, ProtocolName> = {};
    for (const [id, proto] of Object.entries(alpnRaw)) {
      alpn[id] = oneOf(`${f}.alpn.${JSON.stringify(id)}`, proto, PROTOCOL_NAMES);
    }
    if (Object.keys(alpn).length === 0) throw invalid(`${f}.alpn`, "must name a protocol");
    const key = `${lHost}:${lPort}`;
    if (lPort !== 0 && seen.has(key)) throw invalid(f, `repeats ${key}`);
    seen.add(key);
    if (l.tls !== undefined && typeof l.tls !== "boolean") {
      throw invalid(`${f}.tls`, "must be a boolean");
    }
    if (l.tls === false) {
      if (!isLoopback(lHost)) {
        throw invalid(
          `${f}.tls`,
          `may be false only on a loopback host (got ${JSON.stringify(lHost)})`,
        );
      }
      if (!alpn[""]) throw invalid(`${f}.alpn`, 'must have a "" entry when tls is false');
      return Object.freeze({ host: lHost, port: lPort, alpn: Object.freeze(alpn), tls: false });
    }
    return Object.freeze({ host: lHost, port: lPort, alpn: Object.freeze(alpn) });
  }));
}

/** True for an address that only this machine can reach: 127.0.0.0/8, ::1 or `localhost`. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The default configuration as a commented JSON document (`chat serve --print-config`). */
export function defaultConfigText(): string {
  return JSON.stringify(
    { ...DEFAULT_CONFIG, limits: { ...DEFAULT_LIMITS } },
    null,
    2,
  ) + "\n";
}
