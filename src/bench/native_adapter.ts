// Owns the bench's chat/1 speaker: hello, register/login with retries, join, pipelined sends, acks.
import { retryAfterError } from "../error_catalogue.ts";
import { ChatError } from "../errors.ts";
import { ALPN_CHAT1 } from "../protocol/frames.ts";
import type { BenchClient, Credentials, ProtocolAdapter } from "./adapter.ts";
import { type ClientHooks, LineClient, sleep } from "./line_client.ts";

/** `{"type":"msg"` — a delivery, recognised without parsing the JSON. */
const MSG_PREFIX = new TextEncoder().encode('{"type":"msg"');
/** `{"type":"presence"` — skipped without decoding (logins of thousands make millions). */
const PRESENCE_PREFIX = new TextEncoder().encode('{"type":"presence"');
const decoder = new TextDecoder();

/** Room number → chat/1 room name: room 0 is `general`, where every user already is. */
export function nativeRoomName(room: number): string {
  return room === 0 ? "general" : `bench-${room}`;
}

function startsWith(buf: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[start + i] !== prefix[i]) return false;
  return true;
}

interface Reply {
  type: string;
  code?: string;
  retryAfterMs?: number;
  cid?: string;
  op?: string;
}

class NativeClient extends LineClient implements BenchClient {
  #runId: string;

  constructor(
    index: number,
    conn: Deno.TlsConn,
    hooks: ClientHooks,
    bufBytes: number,
    runId: string,
  ) {
    super(index, conn, hooks, bufBytes);
    this.#runId = runId;
  }

  frame(f: Record<string, unknown>): void {
    this.write(JSON.stringify(f) + "\n");
  }

  async request(f: Record<string, unknown>, timeoutMs: number): Promise<Reply> {
    const ref = String(f.type);
    this.frame({ ...f, ref });
    const line = await this.waitLine((l) => l.includes(`"ref":"${ref}"`), timeoutMs);
    if (line === "") {
      throw new ChatError("connect_failed", "Cannot log in: the server closed the connection");
    }
    return JSON.parse(line) as Reply;
  }

  protected override onLoginNoise(line: string): void {
    if (line.startsWith('{"type":"ping"')) this.frame({ type: "pong" });
  }

  protected onLine(buf: Uint8Array, start: number, end: number, now: number): void {
    if (startsWith(buf, start, end, MSG_PREFIX)) {
      this.hooks.onDelivery(this.index, buf, start, end, now);
      return;
    }
    if (startsWith(buf, start, end, PRESENCE_PREFIX)) return;
    let f: Reply;
    try {
      f = JSON.parse(decoder.decode(buf.subarray(start, end))) as Reply;
    } catch {
      this.hooks.onError(this.index, "bad_line");
      return;
    }
    switch (f.type) {
      case "ack": {
        const dot = f.cid!.lastIndexOf(".");
        this.hooks.onAck(this.index, Number(f.cid!.slice(dot + 1)), now);
        return;
      }
      case "error":
        this.hooks.onError(this.index, f.code ?? "?");
        return;
      case "ping":
        this.frame({ type: "pong" });
        return;
      case "pong":
        this.hooks.onPong(this.index, now);
        return;
      case "bye":
        if (f.code !== "quit") this.hooks.onError(this.index, `bye:${f.code}`);
        return;
    }
  }

  sendBody(room: number, body: string, seq: number): void {
    // A hand-built line: the body is ASCII without quotes or backslashes (payload.ts).
    this.write(
      `{"type":"send","cid":"${this.#runId}.${seq}","room":"${
        nativeRoomName(room)
      }","body":"${body}"}\n`,
    );
  }

  probe(): void {
    this.write('{"type":"ping"}\n');
  }

  quit(): void {
    this.write('{"type":"quit"}\n');
    this.closeSoon(200);
  }
}

/** chat/1 over TLS with ALPN `chat/1`. */
export const NATIVE_ADAPTER: ProtocolAdapter = {
  name: "chat/1",
  acks: true,
  rooms: true,
  bodySuffix: 2,
  probes: true,
  async open(o): Promise<BenchClient> {
    const deadline = Date.now() + o.timeoutMs;
    const conn = await LineClient.dial(o.endpoint, [ALPN_CHAT1]);
    const c = new NativeClient(o.index, conn, o.hooks, o.bufBytes, o.runId);
    try {
      const left = () => Math.max(1, deadline - Date.now());
      c.frame({ type: "hello", version: 1, client: "chat-bench" });
      const hello = await c.waitLine((l) => l.startsWith('{"type":"hello"'), left());
      if (!hello) throw new ChatError("connect_failed", "Cannot log in: no hello from the server");
      await authenticate(c, o.credentials, left);
      if (o.room !== 0) {
        const r = await c.request({ type: "join", room: nativeRoomName(o.room) }, left());
        if (r.type !== "ok") throw refusal("join", r);
      }
      c.goLive();
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  },
};

function refusal(what: string, r: Reply): ChatError {
  return ChatError.fromPeer(
    r.code ?? "login_failed",
    `Cannot ${what}: the server answered ${r.code}`,
    {
      retryAfterMs: r.retryAfterMs,
    },
  );
}

/**
 * register/login with the retry rules of `Credentials.mode`; a refusal the catalogue retries
 * after `retryAfterMs` (`busy`, `throttled`) waits and retries.
 */
async function authenticate(c: NativeClient, cr: Credentials, left: () => number): Promise<void> {
  let type: "login" | "register" = cr.mode === "login" ? "login" : "register";
  for (;;) {
    const r = await c.request({ type, user: cr.user, password: cr.password }, left());
    if (r.type === "ok") return;
    if (r.code === "user_exists" && cr.mode === "auto") {
      type = "login";
      continue;
    }
    const hinted = retryAfterError(r.code ?? "").kind === "after_hint";
    if (hinted && left() > (r.retryAfterMs ?? 100)) {
      await sleep(Math.max(10, r.retryAfterMs ?? 100));
      continue;
    }
    throw refusal(type, r);
  }
}

/** One login without retries (login storms): resolves with the server's answer code. */
export async function nativeLoginOnce(
  o: Parameters<ProtocolAdapter["open"]>[0],
): Promise<string> {
  const conn = await LineClient.dial(o.endpoint, [ALPN_CHAT1]);
  const c = new NativeClient(o.index, conn, o.hooks, 4096, o.runId);
  try {
    c.frame({ type: "hello", version: 1, client: "chat-bench" });
    await c.waitLine((l) => l.startsWith('{"type":"hello"'), o.timeoutMs);
    const r = await c.request(
      { type: "login", user: o.credentials.user, password: o.credentials.password },
      o.timeoutMs,
    );
    return r.type === "ok" ? "ok" : r.code ?? "error";
  } finally {
    c.close();
    await c.done;
  }
}

export type { Credentials };
