/// <reference lib="dom" />
// Owns the WebSocket to the server: chat/1 frames (one per message), replies matched by `ref`,
// and reconnecting with backoff after a drop.

/** A frame from the server (docs/PROTOCOL.md §4); fields are read where they are used. */
// deno-lint-ignore no-explicit-any
export type Frame = { type: string; [k: string]: any };

export type LinkState = "connecting" | "online" | "offline" | "stopped";

export interface ConnectionEvents {
  /** The socket is open and the server said hello: log in now. */
  onHello(hello: Frame): void;
  /** A frame that answers no pending request (msg, presence, resumed, bye, ack of a resend…). */
  onFrame(f: Frame): void;
  onState(state: LinkState, detail: string): void;
  /**
   * Asked after a drop: reconnect? (Only while there is a session or a login to carry on: an idle
   * login screen whose socket the server closed at `authTimeoutMs` waits for the user instead of
   * reconnecting every half minute.)
   */
  shouldReconnect(): boolean;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 8000;

/** One logical connection that reconnects until `stop()`. */
export class Connection {
  #url: string;
  #events: ConnectionEvents;
  #ws: WebSocket | null = null;
  #waiting = new Map<string, (f: Frame) => void>();
  #nextRef = 1;
  #backoff = BACKOFF_MIN_MS;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;

  constructor(url: string, events: ConnectionEvents) {
    this.#url = url;
    this.#events = events;
  }

  get open(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  /** A socket is open or opening, or a reconnect is scheduled. */
  get active(): boolean {
    return this.#ws !== null || this.#timer !== undefined;
  }

  start(): void {
    this.#stopped = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#connect();
  }

  /** Closes this socket and reconnects with backoff (a refusal worth retrying later). */
  drop(): void {
    this.#ws?.close();
  }

  /** Closes for good (logout, kicked): no reconnect. */
  stop(detail = ""): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ws = this.#ws;
    this.#ws = null;
    ws?.close();
    this.#failWaiting();
    this.#events.onState("stopped", detail);
  }

  /** Sends a frame without waiting for an answer. */
  send(frame: Record<string, unknown>): boolean {
    if (!this.open) return false;
    this.#ws!.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a request and resolves with its reply (`ok`, `error`, `history`, `who`, `rooms`). */
  request(frame: Record<string, unknown>): Promise<Frame> {
    const ref = `r${this.#nextRef++}`;
    return new Promise((resolve) => {
      if (!this.send({ ...frame, ref })) {
        resolve({ type: "error", code: "offline", message: "Cannot send: not connected" });
        return;
      }
      this.#waiting.set(ref, resolve);
    });
  }

  /** The login went through: later drops reconnect from the shortest wait again. */
  loggedIn(): void {
    this.#backoff = BACKOFF_MIN_MS;
  }

  #connect(): void {
    this.#events.onState("connecting", "");
    const ws = new WebSocket(this.#url);
    this.#ws = ws;
    ws.addEventListener("open", () => this.send({ type: "hello", version: 1, client: "web" }));
    ws.addEventListener("message", (e) => {
      if (this.#ws !== ws || typeof e.data !== "string") return;
      let f: Frame;
      try {
        f = JSON.parse(e.data);
      } catch {
        return;
      }
      if (f.type === "ping") {
        this.send({ type: "pong" });
        return;
      }
      if (f.type === "hello") {
        this.#events.onState("online", "");
        this.#events.onHello(f);
        return;
      }
      const wait = typeof f.ref === "string" ? this.#waiting.get(f.ref) : undefined;
      if (wait && f.type !== "ack") {
        this.#waiting.delete(f.ref);
        wait(f);
        return;
      }
      this.#events.onFrame(f);
    });
    ws.addEventListener("close", () => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#failWaiting();
      if (this.#stopped) return;
      if (!this.#events.shouldReconnect()) {
        this.#events.onState("stopped", "");
        return;
      }
      this.#events.onState("offline", "");
      // Jittered exponential backoff: a restarting server is not met by every browser at once.
      const wait = this.#backoff * (0.5 + Math.random() / 2);
      this.#backoff = Math.min(BACKOFF_MAX_MS, this.#backoff * 2);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#connect();
      }, wait);
    });
  }

  #failWaiting(): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) {
      w({ type: "error", code: "offline", message: "Cannot finish: the connection closed" });
    }
  }
}
