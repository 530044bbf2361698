// Owns automatic message retention: the server deletes messages older than `retentionDays`.
import { getLogger } from "@logtape/logtape";
import type { Store } from "../store/store.ts";

const log = getLogger(["chat", "admin"]);

const DAY_MS = 24 * 60 * 60 * 1000;

/** How often the server prunes by default: hourly. */
export const RETENTION_INTERVAL_MS = 60 * 60 * 1000;

/**
 * Prunes once at start and then every `intervalMs` (default hourly), through the store's batched
 * prune so live traffic keeps flowing. Each run that deleted something writes one audit line
 * (actor `server`, action `retention.prune`). Runs never overlap; `close()` waits for a running one.
 */
export class RetentionJob {
  #store: Store;
  #days: number;
  #clock: () => number;
  #intervalMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<number> | null = null;
  #closed = false;

  constructor(
    opts: { store: Store; days: number; clock?: () => number; intervalMs?: number },
  ) {
    this.#store = opts.store;
    this.#days = opts.days;
    this.#clock = opts.clock ?? Date.now;
    this.#intervalMs = opts.intervalMs ?? RETENTION_INTERVAL_MS;
  }

  /** Starts the schedule: a first run right away, then one per interval. */
  start(): void {
    this.#schedule(0);
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.runOnce().catch((err) => {
        log.error("Retention prune failed: {error}", { error: String(err) });
      }).finally(() => this.#schedule(this.#intervalMs));
    }, delay);
  }

  /** Deletes what is older than the retention period now; resolves with how many. */
  runOnce(): Promise<number> {
    return this.#running ??= this.#run().finally(() => this.#running = null);
  }

  async #run(): Promise<number> {
    const before = this.#clock() - this.#days * DAY_MS;
    const deleted = await this.#store.pruneMessages(before);
    if (deleted > 0) {
      log.info("Retention: deleted {n} messages older than {days} days", {
        n: deleted,
        days: this.#days,
      });
      await this.#store.audit({
        ts: this.#clock(),
        actor: "server",
        action: "retention.prune",
        target: null,
        remote: "local",
        detail: { before: new Date(before).toISOString(), deleted, days: this.#days },
      });
    }
    return deleted;
  }

  /** Stops the schedule and waits for a run in progress. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }
}
