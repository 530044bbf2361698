// Owns write batching: every write queued during one event-loop turn commits in one transaction.
import type { DatabaseSync } from "node:sqlite";
import { ChatError } from "../errors.ts";

interface PendingWrite {
  run: () => unknown;
  savepoint: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
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
 */
export class GroupCommit {
  #db: DatabaseSync;
  #queue: PendingWrite[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Number of committed batches and writes, for stats. */
  batches = 0;
  writes = 0;

  constructor(db: DatabaseSync) {
    this.#db = db;
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
      const failure = new ChatError(
        "storage_failed",
        `Cannot store: the database refused the write (${(err as Error).message})`,
      );
      for (const w of batch) w.reject(failure);
      return;
    }
    this.batches++;
    this.writes += batch.length;
    for (let i = 0; i < batch.length; i++) {
      const r = results[i];
      if (r.ok) batch[i].resolve(r.value);
      else batch[i].reject(r.value);
    }
  }

  /** Flushes what is queued and refuses new writes. */
  close(): void {
    this.flush();
    this.#closed = true;
  }
}
