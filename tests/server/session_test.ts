// Sessions and handlers without a socket: an in-memory transport under a real Session, service
// and SQLite store. Reply order, pre-login limits, and the service's hold-and-release on resume.
import { assert, assertEquals } from "../harness/assert.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { resolveConfig, type ServerLimits } from "../../src/config/config.ts";
import { AuthService } from "../../src/server/auth.ts";
import { ChatService } from "../../src/server/chat_service.ts";
import { LocalFanout } from "../../src/server/fanout.ts";
import { Hub } from "../../src/server/hub.ts";
import { NativeProtocol } from "../../src/server/native_protocol.ts";
import { PasswordHasher } from "../../src/server/password_hasher.ts";
import { Session } from "../../src/server/session.ts";
import { REAL_TIMERS } from "../../src/server/clock.ts";
import type { MessageTransport } from "../../src/server/transport.ts";
import { SqliteStore } from "../../src/store/sqlite_store.ts";
import type { Store } from "../../src/store/store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A transport whose inbound messages the test pushes and whose output it reads. */
class MemoryTransport implements MessageTransport {
  readonly remote = "memory";
  out = "";
  #inbox: Uint8Array[][] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  #waiters: { pred: (f: Record<string, unknown>) => boolean; resolve: () => void }[] = [];

  push(...frames: Record<string, unknown>[]): void {
    this.#inbox.push(frames.map((f) => enc.encode(JSON.stringify(f))));
    this.#wake?.();
  }

  async read(): Promise<Uint8Array[] | null> {
    while (this.#inbox.length === 0 && !this.#closed) {
      await new Promise<void>((r) => this.#wake = r);
    }
    return this.#closed ? null : this.#inbox.shift()!;
  }

  write(p: Uint8Array): Promise<number> {
    this.out += dec.decode(p);
    const frames = this.frames;
    this.#waiters = this.#waiters.filter((w) => {
      if (!frames.some(w.pred)) return true;
      w.resolve();
      return false;
    });
    return Promise.resolve(p.length);
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  get frames(): Record<string, unknown>[] {
    return this.out.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
  }

  /** Resolves once a frame matching `pred` was written. */
  until(pred: (f: Record<string, unknown>) => boolean): Promise<void> {
    if (this.frames.some(pred)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }
}

async function world(limits: Partial<ServerLimits> = {}, wrap: (s: Store) => Store = (s) => s) {
  const dir = await tempDir("chat-session-");
  const config = resolveConfig({
    limits: { messagesPerSecond: 100_000, messageBurst: 100_000, ...limits },
  });
  const store = wrap(SqliteStore.open({ path: `${dir.path}/chat.db` }));
  const hub = new Hub(new LocalFanout());
  const service = new ChatService({ store, hub, config, clock: Date.now });
  await service.init();
  const hasher = new PasswordHasher({ workers: 1, queue: 64 });
  const auth = new AuthService({ store, hasher, config, clock: Date.now });
  const sessions: Session[] = [];
  const connect = () => {
    const t = new MemoryTransport();
    const s = new Session(t, {
      service,
      auth,
      limits: config.limits,
      clock: Date.now,
      timers: REAL_TIMERS,
      pacer: REAL_TIMERS,
      onClosed: () => {},
    });
    s.setAdapter(new NativeProtocol(s));
    void s.run();
    sessions.push(s);
    t.push({ type: "hello", version: 1 });
    return { t, s };
  };
  const user = async (name: string, resume?: unknown) => {
    const c = connect();
    const known = await store.userByName(name);
    c.t.push({
      type: known ? "login" : "register",
      user: name,
      password: `password-${name}`,
      ref: "in",
      ...(resume ? { resume } : {}),
    });
    await c.t.until((f) => f.ref === "in");
    return c;
  };
  return {
    store,
    connect,
    user,
    async [Symbol.asyncDispose]() {
      for (const s of sessions) s.close("eof", "", false);
      hasher.close();
      await store.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

Deno.test("session: replies leave in request order though the store answers late and out of order", async () => {
  const { SlowStore } = await import("../store/slow_store.ts");
  await using w = await world({}, (s) => new SlowStore(s));
  const a = await w.user("ann");
  const sends = Array.from({ length: 30 }, (_, i) => ({
    type: "send",
    cid: `c${i}`,
    ref: `c${i}`,
    room: "general",
    body: `m${i}`,
  }));
  a.t.push(...sends, { type: "who", room: "general", ref: "w" }, {
    type: "history",
    room: "general",
    ref: "h",
  });
  await a.t.until((f) => f.ref === "h");
  const refs = a.t.frames.filter((f) => typeof f.ref === "string" && f.ref !== "in").map((f) =>
    f.ref
  );
  assertEquals(refs, [...sends.map((s) => s.ref), "w", "h"]);
});

Deno.test("session: too many frames before login end the connection, whatever the protocol", async () => {
  await using w = await world({ preAuthMaxFrames: 3 });
  const c = w.connect();
  c.t.push({ type: "ping" }, { type: "ping" }, { type: "ping" });
  await c.t.until((f) => f.type === "error");
  assertEquals(c.t.frames.filter((f) => f.type === "error").map((f) => f.code), [
    "too_many_frames",
  ]);
  assert(c.s.closed);
});

Deno.test("service: resume holds live messages while the backlog streams, then releases each once", async () => {
  await using w = await world({ resumeMaxMessages: 50 });
  const writer = await w.user("wri");
  const before: Record<string, unknown>[] = [];
  for (let i = 0; i < 180; i++) {
    before.push({ type: "send", cid: `b${i}`, ref: `b${i}`, room: "general", body: `b${i}` });
  }
  writer.t.push(...before);
  await writer.t.until((f) => f.ref === "b179");
  // The reader resumes from 0 while the writer keeps sending: 180 in the backlog (four slices),
  // 60 more racing it.
  const readerP = w.user("rea", { rooms: { general: 0 } });
  const live: Record<string, unknown>[] = [];
  for (let i = 0; i < 60; i++) {
    live.push({ type: "send", cid: `l${i}`, ref: `l${i}`, room: "general", body: `l${i}` });
  }
  writer.t.push(...live);
  const reader = await readerP;
  await writer.t.until((f) => f.ref === "l59");
  const ackIds = writer.t.frames.filter((f) => f.type === "ack").map((f) => f.id as number);
  await reader.t.until((f) => f.type === "msg" && f.id === ackIds[ackIds.length - 1]);
  const frames = reader.t.frames;
  const ids = frames.filter((f) => f.type === "msg").map((f) => f.id as number);
  assertEquals(ids, ackIds, "every message once, in id order");
  const resumed = frames.findIndex((f) => f.type === "resumed");
  assert(resumed > frames.findIndex((f) => f.ref === "in"), "ok comes before the backlog");
  assert((frames[resumed].count as number) >= 180);
});
