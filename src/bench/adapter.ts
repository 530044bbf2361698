// Owns the seam between the workload and a wire protocol: what every protocol adapter offers.
import type { ClientHooks, Endpoint, LineClient } from "./line_client.ts";

/** How a client gets its account. */
export type AuthMode = "login" | "register" | "auto";

/** One account for one connection. */
export interface Credentials {
  user: string;
  password: string;
  mode: AuthMode;
}

/** A connected, logged-in bench client, whatever the protocol. */
export interface BenchClient extends LineClient {
  /** Sends a message body to room number `room` (the adapter names it). */
  sendBody(room: number, body: string, seq: number): void;
  /** Sends a keepalive probe; the answer comes back through `ClientHooks.onPong`. */
  probe(): void;
  /** Says goodbye politely (quit), then closes. */
  quit(): void;
}

/** A wire protocol the bench can speak. */
export interface ProtocolAdapter {
  readonly name: string;
  /** True when the server acknowledges each message (then accepted/s and ack latency exist). */
  readonly acks: boolean;
  /** True when the protocol can reach rooms other than the default one. */
  readonly rooms: boolean;
  /** Bytes after the body at the end of a delivery line (`"}` for chat/1), to find it fast. */
  readonly bodySuffix: number;
  /** True when `probe()` gets an answer (for the loop-lag probe). */
  readonly probes: boolean;
  /**
   * Connects, logs in and enters room number `room`; resolves when live. Retries `busy` and
   * `throttled` answers after their hint, up to `timeoutMs` overall.
   */
  open(opts: {
    endpoint: Endpoint;
    index: number;
    credentials: Credentials;
    room: number;
    hooks: ClientHooks;
    bufBytes: number;
    timeoutMs: number;
    /** Prefix making this run's message ids unique on the server (chat/1 `cid`). */
    runId: string;
  }): Promise<BenchClient>;
}

/** Outcome of one login attempt in a login storm. */
export type LoginOutcome = "ok" | "busy" | "throttled" | "failed" | "error";
