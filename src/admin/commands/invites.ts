// Owns `chat admin invites …`: one-time codes for invite-only registration.
import { ChatError } from "../../errors.ts";
import { AdminService } from "../admin_service.ts";
import { parseDuration } from "../dates.ts";
import { fmtTime, table } from "../format.ts";
import { AdminConnection, type AdminEnv, confirm, emit } from "./context.ts";

/** `--uses`: a positive integer, or `unlimited` (null). */
export function parseUses(text: string): number | null {
  if (text === "unlimited") return null;
  const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1)) {
    throw new ChatError(
      "bad_request",
      `Cannot create invite: --uses must be a positive integer or unlimited (got ${text})`,
    );
  }
  return n;
}

/** `--expires`: an age such as 7d, or `never` (null); returns the expiry time. */
export function parseExpiry(text: string, now: number): number | null {
  if (text === "never") return null;
  const ms = parseDuration(text);
  if (ms === null || ms <= 0) {
    throw new ChatError(
      "bad_request",
      `Cannot create invite: --expires must be a duration such as 12h, 7d or 2w, or never ` +
        `(got ${text})`,
    );
  }
  return now + ms;
}

export async function invitesCreate(
  env: AdminEnv,
  opts: { uses: string; expires: string },
): Promise<void> {
  const uses = parseUses(opts.uses);
  const expiresAt = parseExpiry(opts.expires, env.clock());
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("invites.create", { uses, expiresAt });
  emit(env, r, () =>
    `Invite ${r.invite.id}: ${r.code}\n` +
    `Uses: ${uses ?? "unlimited"}; expires: ${fmtTime(expiresAt)}.\n` +
    "The code is shown only now: only its SHA-256 is stored.\n");
}

export async function invitesList(env: AdminEnv): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const invites = await new AdminService({ store: await conn.store(), clock: env.clock })
    .listInvites();
  emit(env, invites, () =>
    table(
      ["ID", "STATUS", "USES LEFT", "EXPIRES", "CREATED", "BY"],
      invites.map((i) => [
        i.id,
        i.status,
        i.usesLeft ?? "unlimited",
        i.expiresAt === null ? "never" : fmtTime(i.expiresAt),
        fmtTime(i.createdAt),
        i.createdBy ?? "-",
      ]),
    ));
}

export async function invitesRevoke(env: AdminEnv, idText: string): Promise<void> {
  const id = /^\d{1,15}$/.test(idText) ? Number(idText) : NaN;
  if (!Number.isSafeInteger(id)) {
    throw new ChatError("bad_request", `Cannot revoke invite ${idText}: the id is a number`);
  }
  await using conn = await AdminConnection.open(env);
  const invites = await (await conn.store()).listInvites();
  if (!invites.some((i) => i.id === id)) {
    throw new ChatError("no_such_invite", `Cannot revoke invite ${id}: no such invite`);
  }
  await confirm(env, `revoke invite ${id}`, `Revoke invite ${id}? Its code stops working.`);
  const r = await conn.call("invites.revoke", { id });
  emit(env, r, () => `${r.changed ? "Revoked" : "Already revoked:"} invite ${id}.\n`);
}
