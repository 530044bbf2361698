// Owns write batching: every write queued during one event-loop turn commits in one transaction.
import type { DatabaseSync } from "node:sqlite";
import { ChatError } from "../errors.ts";

interface PendingWrite {
  run: () => unknown;
  savepoint: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** A committed batch waiting for its WAL frames to reach the disk. */
interface CommittedBatch {
  batch: PendingWrite[];
  results: { ok: boolean; value: unknown }[];
}

/**
 * Makes committed WAL frames durable (fdatasync of the `-wal` file). `sync` runs off the main
 * thread; `syncNow` blocks (used at close).
 */
export interface WalSync {
  sync(): Promise<void>;
  syncNow(): void;
}

/**
 * Group commit for a synchronous SQLite handle.
 *
 * 1. `enqueue` MUST NOT run the write immediately: it is queued, and a flush is scheduled for the
 *    next macrotask, so all writes that arrive in the same turn share one transaction and one fsync.
 * 2. Writes run in enqueue order inside `BEGIN IMMEDIATE … COMMIT`; their promises resolve only
 *    after COMMIT returned, so callers can acknowledge durable data.
 * 3. If the transaction fails, it is rolled back and every write of the batch is rejected with
 *    `storage_failed`. A write that throws rejects alone: a single statement is atomic by itself, and
 *    a write of several statements MUST ask for `{ savepoint: true }` so its partial effects roll back.
 * 4. With a `WalSync` (the connection then runs `synchronous=NORMAL`, which does not sync at
 *    COMMIT), the promises resolve only after a WAL sync that started after their COMMIT: as
 *    durable as `synchronous=FULL`, but the fsync waits on a blocking-I/O thread instead of
 *    stalling the event loop, and batches that commit while one sync runs share the next one.
 *    Batches settle in commit order. A failed sync rejects its batches with `storage_failed`.
 */
export class GroupCommit {
  #db: DatabaseSync;
  #queue: PendingWrite[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #wal: WalSync | undefined;
  #onRollback: (() => void) | undefined;
  /** Committed, waiting for the next WAL sync; and the ones the running sync covers. */
  #unsynced: CommittedBatch[] = [];
  #syncing: CommittedBatch[] | null = null;
  /** Number of committed batches and writes, and WAL syncs, for stats. */
  batches = 0;
  writes = 0;
  syncs = 0;

  /** `onRollback`: called when a batch was rolled back (caches of what it wrote are stale). */
  constructor(db: DatabaseSync, opts: { wal?: WalSync; onRollback?: () => void } = {}) {
    this.#db = db;
    this.#wal = opts.wal;
    this.#onRollback = opts.onRollback;
  }

  /** Queues `run` for the next group transaction; resolves with its result after commit. */
  enqueue<T>(run: () => T, opts: { savepoint?: boolean } = {}): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new ChatError("storage_failed", "Cannot write: the database is closed"),
      );
    }
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({
        run,
        savepoint: opts.savepoint ?? false,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      if (this.#timer === undefined) this.#timer = setTimeout(() => this.flush(), 0);
    });
  }

  /** Commits everything queued now. Safe to call at any time (used by close). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    const results: { ok: boolean; value: unknown }[] = [];
    try {
      this.#db.exec("BEGIN IMMEDIATE");
      for (const w of batch) {
        if (w.savepoint) this.#db.exec("SAVEPOINT w");
        try {
          results.push({ ok: true, value: w.run() });
          if (w.savepoint) this.#db.exec("RELEASE w");
        } catch (err) {
          if (w.savepoint) {
            this.#db.exec("ROLLBACK TO w");
            this.#db.exec("RELEASE w");
          }
          results.push({ ok: false, value: err });
        }
      }
      this.#db.exec("COMMIT");
    } catch (err) {
      try {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      } catch { /* the connection may be unusable; the batch is rejected either way */ }
      this.#onRollback?.();
      const failure = new ChatError(
        "storage_failed",
        `Cannot store: the database refused the write (${(err as Error).message})`,
      );
      rejectAll(batch, failure);
      return;
    }
    this.batches++;
    this.writes += batch.length;
    if (!this.#wal) return settle({ batch, results });
    this.#unsynced.push({ batch, results });
    if (this.#syncing === null) void this.#syncLoop(this.#wal);
  }

  async #syncLoop(wal: WalSync): Promise<void> {
    while (this.#unsynced.length > 0) {
      const group = this.#syncing = this.#unsynced;
      this.#unsynced = [];
      let failure: unknown = null;
      try {
        await wal.sync();
        this.syncs++;
      } catch (err) {
        failure = err;
      }
      if (this.#syncing !== group) return; // close() settled it already
      for (const c of group) {
        failure === null ? settle(c) : rejectAll(c.batch, syncFailure(failure));
      }
    }
    this.#syncing = null;
  }

  /** Flushes what is queued, makes it durable, and refuses new writes. */
  close(): void {
    this.flush();
    this.#closed = true;
    const waiting = [...(this.#syncing ?? []), ...this.#unsynced];
    this.#syncing = null;
    this.#unsynced = [];
    if (waiting.length === 0 || !this.#wal) return;
    try {
      this.#wal.syncNow();
      this.syncs++;
      for (const c of waiting) settle(c);
    } catch (err) {
      for (const c of waiting) rejectAll(c.batch, syncFailure(err));
    }
  }
}

function settle({ batch, results }: CommittedBatch): void {
  for (let i = 0; i < batch.length; i++) {
    const r = results[i];
    if (r.ok) batch[i].resolve(r.value);
    else batch[i].reject(r.value);
  }
}

function rejectAll(batch: PendingWrite[], err: unknown): void {
  for (const w of batch) w.reject(err);
}

function syncFailure(err: unknown): ChatError {
  return new ChatError(
    "storage_failed",
    `Cannot store durably: syncing the database log failed (${(err as Error).message})`,
  );
}
