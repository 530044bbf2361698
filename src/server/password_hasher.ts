// Owns password hashing: argon2id on worker threads with a bounded queue, so logins never stall chat.
import { argon2id, argon2Verify } from "hash-wasm";
import { setPriority } from "node:os";
import { ChatError } from "../errors.ts";
import { REAL_TIMERS, type TimerHandle, type Timers } from "./clock.ts";

/**
 * Nice value of a hashing thread (Linux). Hashing is the one CPU-heavy job of the server: a login
 * storm must not take the event loop's core, so under contention chat traffic runs first and
 * logins wait in the bounded queue (or get `busy`). Idle cores still hash at full speed.
 */
export const HASHER_NICE = 10;

/** Lowers this thread's priority; best effort (other systems, no --allow-sys: unchanged). */
function lowerThreadPriority(): void {
  try {
    const tid = Number(Deno.readLinkSync("/proc/thread-self").split("/").pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, HASHER_NICE);
  } catch { /* not Linux, or not permitted */ }
}

/**
 * A pool with nothing to hash for this long ends its workers. A worker holds about 44 MB (its
 * isolate and one argon2 memory of 19 MiB) that an idle server should not keep; starting one
 * again costs the next login about 100 ms once (docs/PERFORMANCE.md, "Memory under real logins").
 */
export const HASHER_IDLE_MS = 1000;

/** OWASP's minimum for argon2id: m=19 MiB, t=2, p=1. */
export const ARGON2_PARAMS = Object.freeze({ memorySize: 19456, iterations: 2, parallelism: 1 });

type Job =
  | { op: "hash"; id: number; password: string }
  | { op: "verify"; id: number; password: string; hash: string };
/** `instances`: WebAssembly instances the worker holds after the job (see reuseWasmInstances). */
type JobResult =
  & { id: number; instances: number }
  & ({ ok: true; value: string | boolean } | { ok: false; error: string });

async function runJob(job: Job): Promise<string | boolean> {
  if (job.op === "hash") {
    return await argon2id({
      password: job.password,
      salt: crypto.getRandomValues(new Uint8Array(16)),
      ...ARGON2_PARAMS,
      hashLength: 32,
      outputType: "encoded",
    });
  }
  try {
    return await argon2Verify({ password: job.password, hash: job.hash });
  } catch {
    return false; // a malformed stored hash never authenticates
  }
}

/** Per module: instances free for the next job, and those the running job took. */
const wasmPools = new Map<
  WebAssembly.Module,
  { free: WebAssembly.Instance[]; taken: WebAssembly.Instance[] }
>();
let wasmInstances = 0;

/**
 * Makes hash-wasm reuse its WebAssembly instances across jobs instead of creating new ones.
 *
 * hash-wasm's `argon2id`/`argon2Verify` instantiate the argon2 module afresh for every call and
 * grow that instance's memory to m KiB (19 MiB), plus two BLAKE2b instances. A dropped instance's
 * memory is returned only when V8 collects it, and this worker allocates almost no JavaScript, so
 * collections are rare: 100 hashes on one worker peaked at 440 MB, 1,000 real registrations at
 * 1.6 GB (docs/PERFORMANCE.md, "Memory under real logins"). Here each module's instances are
 * handed out from a pool and all given back when the job ends, so a worker allocates one argon2
 * memory (of the largest m it has seen) once and hashes in it for its whole life. Results are
 * unchanged: the same code runs on a memory it overwrites before reading.
 *
 * MUST: one job at a time per worker (the `turn` chain below): an instance goes back to the pool
 * only when nothing of its job can still use it.
 */
function reuseWasmInstances(): void {
  const instantiate = WebAssembly.instantiate.bind(WebAssembly);
  // deno-lint-ignore no-explicit-any
  (WebAssembly as any).instantiate = (source: any, imports?: WebAssembly.Imports) => {
    const plain = source instanceof WebAssembly.Module &&
      (imports === undefined || Object.keys(imports).length === 0);
    if (!plain) return instantiate(source, imports);
    let pool = wasmPools.get(source);
    if (!pool) wasmPools.set(source, pool = { free: [], taken: [] });
    let instance = pool.free.pop();
    if (!instance) {
      instance = new WebAssembly.Instance(source, {});
      wasmInstances++;
    }
    pool.taken.push(instance);
    return Promise.resolve(instance);
  };
}

/**
 * Gives every instance the finished job took back to its pool. A memory-hard module's work area
 * (from `Hash_GetBuffer()` to the end of its memory, the part it grows) is zeroed first: hash-wasm's
 * argon2 XORs into its blocks even in the first pass, so it needs them as a fresh instance has
 * them. That also wipes the password-derived blocks as soon as the job is done. The module's own
 * statics lie below that offset and are left alone.
 */
function releaseWasmInstances(): void {
  for (const pool of wasmPools.values()) {
    for (const instance of pool.taken) {
      const x = instance.exports as {
        memory?: WebAssembly.Memory;
        Hash_SetMemorySize?: unknown;
        Hash_GetBuffer?: () => number;
      };
      if (x.memory && x.Hash_SetMemorySize && x.Hash_GetBuffer) {
        new Uint8Array(x.memory.buffer, x.Hash_GetBuffer()).fill(0);
      }
      pool.free.push(instance);
    }
    pool.taken.length = 0;
  }
}

function inWorkerScope(): boolean {
  // deno-lint-ignore no-explicit-any
  const g = globalThis as any;
  return typeof g.WorkerGlobalScope === "function" && g instanceof g.WorkerGlobalScope;
}

// This module is its own worker script: loaded in a worker it serves jobs. The bundle and the
// compiled binary are one module graph, so `import.meta.url` works as the worker URL in both.
if (inWorkerScope()) {
  lowerThreadPriority();
  reuseWasmInstances();
  // deno-lint-ignore no-explicit-any
  const scope = globalThis as any;
  // One job at a time, in arrival order (the pool sends one per worker; this makes it a rule):
  // reused instances are only safe between jobs.
  let turn = Promise.resolve();
  scope.onmessage = (e: MessageEvent<Job>) => {
    turn = turn.then(async () => {
      let result: JobResult;
      try {
        const value = await runJob(e.data);
        releaseWasmInstances();
        result = { id: e.data.id, ok: true, value, instances: wasmInstances };
      } catch (err) {
        releaseWasmInstances();
        const error = String((err as Error).message ?? err);
        result = { id: e.data.id, ok: false, error, instances: wasmInstances };
      }
      scope.postMessage(result);
    });
  };
}

/** True inside a hashing worker: the entry point must then do nothing else. */
export function isHasherWorker(): boolean {
  return inWorkerScope();
}

interface Waiting {
  job: Job;
  resolve: (v: string | boolean) => void;
  reject: (e: unknown) => void;
}

/** Statistics for `chat admin stats` and benchmarks. */
export interface HasherStats {
  queued: number;
  running: number;
  completed: number;
  rejectedBusy: number;
  /** WebAssembly instances the workers hold; flat after each worker's first job (reuse). */
  wasmInstances: number;
  /** Workers alive now (0 when the pool has been idle for `idleMs`). */
  workers: number;
}

/**
 * A pool of argon2id workers.
 *
 * 1. At most `workers` jobs run at once, one per worker; the rest wait in FIFO order.
 * 2. At most `queue` jobs wait; past that `hash`/`verify` reject at once with ChatError `busy`
 *    carrying `retryAfterMs`, so a login storm costs memory proportional to `queue`, not to it.
 * 3. Workers start lazily on first use; once nothing has been queued or running for `idleMs`
 *    they are all ended (their memory goes back to the system) and the next job starts one
 *    again. `close()` ends them for good.
 * 4. `onJobDone` is called after each finished job (its promise settled), `onIdle`
 *    after the workers were ended for idleness (not by `close()`); the server's HeapCollector
 *    listens to both.
 */
export class PasswordHasher {
  #size: number;
  #maxQueue: number;
  #idle: Worker[] = [];
  #all: Worker[] = [];
  #waiting: Waiting[] = [];
  #running = new Map<number, { worker: Worker; w: Waiting }>();
  #instances = new Map<Worker, number>();
  #nextId = 1;
  #completed = 0;
  #rejectedBusy = 0;
  #closed = false;
  /** Average job time, used for the retry hint. */
  #avgMs = 80;
  #idleMs: number;
  #timers: Timers;
  #idleTimer: TimerHandle | undefined;
  #onJobDone: (() => void) | undefined;
  #onIdle: (() => void) | undefined;

  constructor(
    opts: {
      workers: number;
      queue: number;
      /** Idle time after which the workers end. Default `HASHER_IDLE_MS`. */
      idleMs?: number;
      /** Timers of the idle wait. Default `REAL_TIMERS`. */
      timers?: Timers;
      /** Called after each finished job (see item 4). */
      onJobDone?: () => void;
      /** Called after the workers ended for idleness (see item 4). */
      onIdle?: () => void;
    },
  ) {
    this.#onJobDone = opts.onJobDone;
    this.#onIdle = opts.onIdle;
    this.#size = Math.max(1, opts.workers);
    this.#maxQueue = opts.queue;
    this.#idleMs = opts.idleMs ?? HASHER_IDLE_MS;
    this.#timers = opts.timers ?? REAL_TIMERS;
  }

  get stats(): HasherStats {
    return {
      queued: this.#waiting.length,
      running: this.#running.size,
      completed: this.#completed,
      rejectedBusy: this.#rejectedBusy,
      wasmInstances: [...this.#instances.values()].reduce((a, b) => a + b, 0),
      workers: this.#all.length,
    };
  }

  /** Hashes a password into a PHC string `$argon2id$v=19$m=19456,t=2,p=1$…`. */
  hash(password: string): Promise<string> {
    return this.#submit({ op: "hash", id: this.#nextId++, password }) as Promise<string>;
  }

  /** Checks a password against a PHC string. A malformed hash is false, never an exception. */
  verify(password: string, hash: string): Promise<boolean> {
    return this.#submit({ op: "verify", id: this.#nextId++, password, hash }) as Promise<boolean>;
  }

  #submit(job: Job): Promise<string | boolean> {
    if (this.#closed) {
      return Promise.reject(
        new ChatError("shutting_down", "Cannot check password: server is stopping"),
      );
    }
    if (
      this.#waiting.length >= this.#maxQueue && this.#idle.length === 0 &&
      this.#all.length >= this.#size
    ) {
      this.#rejectedBusy++;
      const retryAfterMs = Math.ceil(((this.#waiting.length / this.#size) + 1) * this.#avgMs);
      return Promise.reject(
        new ChatError("busy", "Cannot check password now: the server is busy, retry shortly", {
          retryAfterMs,
        }),
      );
    }
    if (this.#idleTimer !== undefined) {
      this.#timers.clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    return new Promise((resolve, reject) => {
      this.#waiting.push({ job, resolve, reject });
      this.#pump();
    });
  }

  #spawn(): Worker {
    const worker = new Worker(import.meta.url, { type: "module" });
    worker.onmessage = (e: MessageEvent<JobResult>) => this.#onResult(worker, e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#onWorkerFailure(worker, e.message);
    };
    this.#all.push(worker);
    return worker;
  }

  #pump(): void {
    while (this.#waiting.length > 0) {
      let worker = this.#idle.pop();
      if (!worker) {
        if (this.#all.length >= this.#size) return;
        worker = this.#spawn();
      }
      const w = this.#waiting.shift()!;
      this.#running.set(w.job.id, { worker, w });
      (w as Waiting & { started?: number }).started = performance.now();
      worker.postMessage(w.job);
    }
  }

  #onResult(worker: Worker, r: JobResult): void {
    const entry = this.#running.get(r.id);
    if (!entry) return;
    this.#running.delete(r.id);
    this.#completed++;
    this.#instances.set(worker, r.instances);
    const started = (entry.w as Waiting & { started?: number }).started;
    if (started !== undefined) {
      this.#avgMs = this.#avgMs * 0.8 + (performance.now() - started) * 0.2;
    }
    if (r.ok) entry.w.resolve(r.value);
    else entry.w.reject(new ChatError("internal", `Cannot hash password: ${r.error}`));
    if (!this.#closed) {
      this.#idle.push(worker);
      this.#pump();
      if (this.#running.size === 0 && this.#waiting.length === 0) this.#armIdle();
      this.#onJobDone?.();
    }
  }

  /** Ends every worker after `idleMs` without work (a new job cancels the wait). */
  #armIdle(): void {
    if (this.#idleTimer !== undefined) this.#timers.clearTimeout(this.#idleTimer);
    this.#idleTimer = this.#timers.setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#closed || this.#running.size > 0 || this.#waiting.length > 0) return;
      for (const w of this.#all) w.terminate();
      this.#all = [];
      this.#idle = [];
      this.#instances.clear();
      this.#onIdle?.();
    }, this.#idleMs);
  }

  #onWorkerFailure(worker: Worker, message: string): void {
    worker.terminate();
    this.#instances.delete(worker);
    this.#all = this.#all.filter((w) => w !== worker);
    this.#idle = this.#idle.filter((w) => w !== worker);
    for (const [id, entry] of this.#running) {
      if (entry.worker === worker) {
        this.#running.delete(id);
        entry.w.reject(
          new ChatError("internal", `Cannot hash password: worker failed (${message})`),
        );
      }
    }
    if (!this.#closed) this.#pump();
  }

  /** Terminates the workers; queued and running jobs are rejected. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer !== undefined) this.#timers.clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const err = new ChatError("shutting_down", "Cannot check password: server is stopping");
    for (const w of this.#waiting) w.reject(err);
    for (const { w } of this.#running.values()) w.reject(err);
    this.#waiting = [];
    this.#running.clear();
    for (const w of this.#all) w.terminate();
    this.#all = [];
    this.#instances.clear();
    this.#idle = [];
  }
}
