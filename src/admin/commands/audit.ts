// Owns `chat admin audit` (the audit trail) and `chat admin stats` (live and stored numbers).
import { ChatError } from "../../errors.ts";
import type { StorageStats } from "../../store/store.ts";
import type { LiveStats } from "../admin_service.ts";
import { parseWhen } from "../dates.ts";
import { fmtBytes, fmtDuration, fmtTime, keyValues, table, truncate } from "../format.ts";
import { AdminConnection, type AdminEnv, emit } from "./context.ts";

export async function auditList(
  env: AdminEnv,
  opts: { since?: string; limit?: string },
): Promise<void> {
  const limit = opts.limit === undefined
    ? 100
    : /^\d{1,7}$/.test(opts.limit)
    ? Number(opts.limit)
    : 0;
  if (limit < 1) {
    throw new ChatError(
      "bad_request",
      "Cannot show audit trail: --limit must be a positive integer",
    );
  }
  const sinceTs = opts.since === undefined
    ? undefined
    : parseWhen(opts.since, env.clock(), "--since");
  await using conn = await AdminConnection.open(env);
  const entries = await (await conn.store()).auditTrail({ limit, sinceTs });
  emit(env, entries, () =>
    table(
      ["TIME", "ACTOR", "ACTION", "TARGET", "REMOTE", "DETAIL"],
      entries.map((e) => [
        fmtTime(e.ts),
        e.actor ?? "-",
        e.action,
        e.target ?? "-",
        e.remote ?? "-",
        e.detail ? truncate(JSON.stringify(e.detail), 80) : "",
      ]),
    ));
}

/** Rates between two samples of live stats. */
function rates(a: LiveStats, b: LiveStats, ms: number) {
  const per = (x: number, y: number) => Math.max(0, y - x) * 1000 / Math.max(1, ms);
  return {
    messagesPerSecond: Math.round(per(a.messagesStored, b.messagesStored) * 10) / 10,
    deliveriesPerSecond: Math.round(per(a.deliveries, b.deliveries) * 10) / 10,
    intervalMs: ms,
  };
}

/** The counts every engine has, e.g. `120 users, 4 rooms, 10500 messages`. */
function countsLine(s: StorageStats): string {
  return `${s.users} users, ${s.rooms} rooms, ${s.messages} messages`;
}

/**
 * The engine's own figures, named after the engine: `sqlite: file 1.2 MiB, wal 0 B, …`. Figures
 * named `…Bytes` are sizes; other names are split into words (`commitBatches` → `commit batches`).
 */
export function engineLine(s: StorageStats): string {
  const parts = Object.entries(s.engine.figures).map(([key, value]) => {
    const bytes = key.endsWith("Bytes");
    const label = (bytes ? key.slice(0, -5) : key).replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
    return `${label} ${bytes ? fmtBytes(value) : value}`;
  });
  return `${s.engine.name}: ${parts.join(", ")}`;
}

export async function stats(env: AdminEnv, opts: { interval?: string }): Promise<void> {
  const interval = opts.interval === undefined
    ? 1000
    : /^\d{1,6}$/.test(opts.interval)
    ? Number(opts.interval)
    : -1;
  if (interval < 100) {
    throw new ChatError("bad_request", "Cannot show stats: --interval must be at least 100 (ms)");
  }
  await using conn = await AdminConnection.open(env);
  if (!conn.live) {
    const storage = await (await conn.store()).storageStats();
    emit(env, { live: false, storage }, () =>
      "No server is running on this data dir.\n" +
      keyValues([
        ["stored", countsLine(storage)],
        ["engine", engineLine(storage)],
      ]));
    return;
  }
  // Rates come from two samples `interval` apart, taken by this command, not the server.
  const t0 = performance.now();
  const first = await conn.call("stats", {});
  await new Promise((r) => setTimeout(r, interval));
  const s = await conn.call("stats", {});
  const r = rates(first, s, performance.now() - t0);
  emit(env, { live: true, ...s, ...r }, () =>
    keyValues([
      ["uptime", fmtDuration(s.uptimeMs)],
      ["connections", s.connections],
      ["sessions", s.sessions],
      ["messages/s", r.messagesPerSecond],
      ["deliveries/s", r.deliveriesPerSecond],
      ["messages stored", `${s.messagesStored} since start`],
      ["send queues", `${fmtBytes(s.queuedBytes)} in all, largest ${fmtBytes(s.maxQueuedBytes)}`],
      [
        "password hashing",
        `${s.hasher.running} running, ${s.hasher.queued} queued, ` +
        `${s.hasher.rejectedBusy} refused as busy`,
      ],
      ["stored", countsLine(s.storage)],
      ["engine", engineLine(s.storage)],
      ["retention", s.retentionDays > 0 ? `${s.retentionDays} days` : "keep forever"],
      ["certificate", `${s.certificate.fingerprint} until ${fmtTime(s.certificate.notAfter)}`],
    ]));
}
