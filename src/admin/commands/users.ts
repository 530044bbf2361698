// Owns `chat admin users …`: accounts, passwords, roles, disabling and removal.
import { ChatError } from "../../errors.ts";
import { checkUserName } from "../../protocol/text_rules.ts";
import type { Role, UserView } from "../admin_service.ts";
import { fmtTime, keyValues, table } from "../format.ts";
import {
  AdminConnection,
  type AdminEnv,
  confirm,
  emit,
  hashPassword,
  liveNote,
  readNewPassword,
} from "./context.ts";

/** Checks a role argument. */
export function parseRole(text: string, action: string): Role {
  if (text !== "admin" && text !== "member") {
    throw new ChatError("bad_request", `Cannot ${action}: role must be admin or member`);
  }
  return text;
}

function sessions(n: number): string {
  return `${n} session${n === 1 ? "" : "s"}`;
}

export async function usersAdd(
  env: AdminEnv,
  name: string,
  opts: { passwordStdin: boolean; role: string },
): Promise<void> {
  checkUserName(name);
  const role = parseRole(opts.role, `add user ${name}`);
  const password = await readNewPassword(env, {
    fromStdin: opts.passwordStdin,
    action: `add user ${name}`,
  });
  const passwordHash = await hashPassword(password);
  await using conn = await AdminConnection.open(env);
  const u = await conn.call("users.add", { name, passwordHash, role });
  emit(env, u, () => `Added user ${u.name} (${u.role}).\n`);
}

export async function usersList(env: AdminEnv): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const users: UserView[] = (await (await conn.store()).listUsers()).map((u) => ({
    id: u.id,
    name: u.name,
    role: u.role,
    disabled: u.disabled,
    createdAt: u.createdAt,
  }));
  emit(env, users, () =>
    table(
      ["NAME", "ROLE", "STATUS", "CREATED"],
      users.map((u) => [u.name, u.role, u.disabled ? "disabled" : "active", fmtTime(u.createdAt)]),
    ));
}

export async function usersShow(env: AdminEnv, name: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const u = await conn.call("users.show", { name });
  emit(env, u, () =>
    keyValues([
      ["name", u.name],
      ["id", u.id],
      ["role", u.role],
      ["status", u.disabled ? "disabled" : "active"],
      ["created", fmtTime(u.createdAt)],
      ["rooms", u.rooms.join(", ") || "-"],
      ["online", u.online === null ? "unknown (no server running)" : sessions(u.online)],
    ]));
}

export async function usersPasswd(
  env: AdminEnv,
  name: string,
  opts: { passwordStdin: boolean; kick: boolean },
): Promise<void> {
  checkUserName(name);
  await using conn = await AdminConnection.open(env);
  // Fail on an unknown name before asking for a password.
  if (!(await (await conn.store()).userByName(name))) {
    throw new ChatError("no_such_user", `Cannot change the password of ${name}: no such user`);
  }
  const password = await readNewPassword(env, {
    fromStdin: opts.passwordStdin,
    action: `change the password of ${name}`,
  });
  const passwordHash = await hashPassword(password);
  const r = await conn.call("users.passwd", { name, passwordHash, kick: opts.kick });
  emit(
    env,
    r,
    () =>
      `Changed the password of ${name}` +
      (opts.kick ? `; closed ${sessions(r.kicked)}` : "") + `${liveNote(conn)}.\n`,
  );
}

export async function usersDisable(env: AdminEnv, name: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("users.disable", { name });
  emit(
    env,
    r,
    () =>
      `${r.changed ? "Disabled" : "Already disabled:"} ${name}` +
      (conn.live ? `; closed ${sessions(r.kicked)}.\n` : `${liveNote(conn)}.\n`),
  );
}

export async function usersEnable(env: AdminEnv, name: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("users.enable", { name });
  emit(env, r, () => `${r.changed ? "Enabled" : "Already enabled:"} ${name}.\n`);
}

export async function usersRemove(env: AdminEnv, name: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const existing = await (await conn.store()).userByName(name);
  if (!existing) throw new ChatError("no_such_user", `Cannot remove ${name}: no such user`);
  await confirm(
    env,
    `remove ${existing.name}`,
    `Remove user ${existing.name}? Their sessions close; their messages stay.`,
  );
  const r = await conn.call("users.remove", { name });
  emit(
    env,
    r,
    () =>
      `Removed ${existing.name}` +
      (conn.live ? `; closed ${sessions(r.kicked)}.\n` : ".\n"),
  );
}

/** `users sessions NAME [--revoke ID|all]`: the account's session tokens (devices). */
export async function usersSessions(
  env: AdminEnv,
  name: string,
  opts: { revoke?: string },
): Promise<void> {
  let revoke: number | "all" | null = null;
  if (opts.revoke !== undefined) {
    if (opts.revoke === "all") revoke = "all";
    else if (/^[1-9][0-9]{0,14}$/.test(opts.revoke)) revoke = Number(opts.revoke);
    else {
      throw new ChatError(
        "usage",
        `Cannot revoke sessions of ${name}: --revoke takes an id or all`,
      );
    }
  }
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("users.sessions", { name, revoke });
  emit(env, r, () => {
    const head = revoke === null ? "" : `Revoked ${r.revoked.length} session token` +
      `${r.revoked.length === 1 ? "" : "s"} of ${name}` +
      (conn.live ? `; closed ${sessions(r.kicked)}.\n` : `${liveNote(conn)}.\n`);
    const list = r.sessions.length === 0 ? `${name} has no session tokens.\n` : table(
      ["ID", "DEVICE", "CREATED", "LAST USED", "EXPIRES"],
      r.sessions.map((t) => [
        String(t.id),
        t.device,
        fmtTime(t.createdAt),
        fmtTime(t.lastUsedAt),
        fmtTime(t.expiresAt),
      ]),
    );
    return head + list;
  });
}

export async function usersRole(env: AdminEnv, name: string, roleText: string): Promise<void> {
  const role = parseRole(roleText, `change the role of ${name}`);
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("users.role", { name, role });
  emit(env, r, () => `${name} is ${r.changed ? "now" : "already"} ${role}.\n`);
}
