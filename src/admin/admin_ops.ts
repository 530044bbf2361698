// Owns the table of admin operations: names, argument checks and the service call behind each,
// shared by the admin socket (server side) and the CLI's direct database access.
import { ChatError } from "../errors.ts";
import type {
  AdminService,
  InviteView,
  LiveStats,
  Role,
  RoomView,
  SessionsResult,
  UserDetail,
  UserView,
} from "./admin_service.ts";

/** Every operation: its arguments and its result (both plain JSON). */
export interface AdminOpMap {
  "users.add": [{ name: string; passwordHash: string; role: Role }, UserView];
  "users.show": [{ name: string }, UserDetail];
  "users.passwd": [{ name: string; passwordHash: string; kick: boolean }, { kicked: number }];
  "users.disable": [{ name: string }, { changed: boolean; kicked: number }];
  "users.enable": [{ name: string }, { changed: boolean }];
  "users.remove": [{ name: string }, { kicked: number }];
  "users.role": [{ name: string; role: Role }, { changed: boolean }];
  "users.sessions": [{ name: string; revoke: number | "all" | null }, SessionsResult];
  "invites.create": [
    { uses: number | null; expiresAt: number | null },
    { code: string; invite: InviteView },
  ];
  "invites.revoke": [{ id: number }, { changed: boolean }];
  "rooms.create": [{ name: string; topic: string }, RoomView];
  "rooms.topic": [{ name: string; topic: string }, { changed: boolean }];
  "rooms.archive": [{ name: string }, { changed: boolean }];
  "rooms.unarchive": [{ name: string }, { changed: boolean }];
  "rooms.private": [{ name: string }, { changed: boolean }];
  "rooms.public": [{ name: string }, { changed: boolean }];
  "rooms.members": [{ name: string }, { room: string; members: string[] }];
  "rooms.add_member": [{ name: string; user: string }, { changed: boolean }];
  "rooms.remove_member": [{ name: string; user: string }, { changed: boolean }];
  "certs.changed": [
    { action: "init" | "import" | "rotate" | "reload"; fingerprint: string | null },
    { reloaded: boolean; serving: string | null; certPath: string | null },
  ];
  "history.prune": [{ beforeTs: number; room: string | null }, { deleted: number }];
  "audit.record": [
    { action: string; target: string | null; detail: Record<string, unknown> },
    Record<string, never>,
  ];
  stats: [Record<string, never>, LiveStats];
}

export type OpName = keyof AdminOpMap;
export type OpArgs<K extends OpName> = AdminOpMap[K][0];
export type OpResult<K extends OpName> = AdminOpMap[K][1];

type Raw = Record<string, unknown>;

function bad(op: string, detail: string): ChatError {
  return new ChatError("bad_request", `Cannot run ${op}: ${detail}`);
}

function str(op: string, a: Raw, key: string, max = 4096): string {
  const v = a[key];
  if (typeof v !== "string" || v.length > max) throw bad(op, `${key} must be a string`);
  return v;
}

function nullableStr(op: string, a: Raw, key: string): string | null {
  return a[key] === null || a[key] === undefined ? null : str(op, a, key);
}

function int(op: string, a: Raw, key: string): number {
  const v = a[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v)) throw bad(op, `${key} must be an integer`);
  return v;
}

function nullableInt(op: string, a: Raw, key: string): number | null {
  return a[key] === null || a[key] === undefined ? null : int(op, a, key);
}

function role(op: string, a: Raw): Role {
  const v = a.role;
  if (v !== "admin" && v !== "member") throw bad(op, "role must be admin or member");
  return v;
}

function oneOf<T extends string>(op: string, a: Raw, key: string, allowed: readonly T[]): T {
  const v = a[key];
  if (typeof v !== "string" || !allowed.includes(v as T)) {
    throw bad(op, `${key} must be one of ${allowed.join(", ")}`);
  }
  return v as T;
}

type Runner<K extends OpName> = (svc: AdminService, actor: string, a: Raw) => Promise<OpResult<K>>;

/** The dispatch table: one place that checks arguments and names the service call. */
const OPS: { [K in OpName]: Runner<K> } = {
  "users.add": (svc, actor, a) =>
    svc.addUser(actor, {
      name: str("users.add", a, "name"),
      passwordHash: str("users.add", a, "passwordHash"),
      role: role("users.add", a),
    }),
  "users.show": (svc, _actor, a) => svc.showUser({ name: str("users.show", a, "name") }),
  "users.passwd": (svc, actor, a) =>
    svc.setPassword(actor, {
      name: str("users.passwd", a, "name"),
      passwordHash: str("users.passwd", a, "passwordHash"),
      kick: a.kick === true,
    }),
  "users.disable": (svc, actor, a) =>
    svc.disableUser(actor, { name: str("users.disable", a, "name") }),
  "users.enable": (svc, actor, a) =>
    svc.enableUser(actor, { name: str("users.enable", a, "name") }),
  "users.remove": (svc, actor, a) =>
    svc.removeUser(actor, { name: str("users.remove", a, "name") }),
  "users.sessions": (svc, actor, a) =>
    svc.sessions(actor, {
      name: str("users.sessions", a, "name"),
      revoke: a.revoke === "all" ? "all" : nullableInt("users.sessions", a, "revoke"),
    }),
  "users.role": (svc, actor, a) =>
    svc.setRole(actor, { name: str("users.role", a, "name"), role: role("users.role", a) }),
  "invites.create": (svc, actor, a) =>
    svc.createInvite(actor, {
      uses: nullableInt("invites.create", a, "uses"),
      expiresAt: nullableInt("invites.create", a, "expiresAt"),
    }),
  "invites.revoke": (svc, actor, a) =>
    svc.revokeInvite(actor, { id: int("invites.revoke", a, "id") }),
  "rooms.create": (svc, actor, a) =>
    svc.createRoom(actor, {
      name: str("rooms.create", a, "name"),
      topic: nullableStr("rooms.create", a, "topic") ?? "",
    }),
  "rooms.topic": (svc, actor, a) =>
    svc.setTopic(actor, {
      name: str("rooms.topic", a, "name"),
      topic: str("rooms.topic", a, "topic"),
    }),
  "rooms.archive": (svc, actor, a) =>
    svc.setArchived(actor, { name: str("rooms.archive", a, "name"), archived: true }),
  "rooms.unarchive": (svc, actor, a) =>
    svc.setArchived(actor, { name: str("rooms.unarchive", a, "name"), archived: false }),
  "rooms.private": (svc, actor, a) =>
    svc.setPrivate(actor, { name: str("rooms.private", a, "name"), private: true }),
  "rooms.public": (svc, actor, a) =>
    svc.setPrivate(actor, { name: str("rooms.public", a, "name"), private: false }),
  "rooms.members": (svc, _actor, a) => svc.roomMembers({ name: str("rooms.members", a, "name") }),
  "rooms.add_member": (svc, actor, a) =>
    svc.setMember(actor, {
      name: str("rooms.add_member", a, "name"),
      user: str("rooms.add_member", a, "user"),
      add: true,
    }),
  "rooms.remove_member": (svc, actor, a) =>
    svc.setMember(actor, {
      name: str("rooms.remove_member", a, "name"),
      user: str("rooms.remove_member", a, "user"),
      add: false,
    }),
  "certs.changed": (svc, actor, a) =>
    svc.certificateChanged(actor, {
      action: oneOf("certs.changed", a, "action", ["init", "import", "rotate", "reload"] as const),
      fingerprint: nullableStr("certs.changed", a, "fingerprint"),
    }),
  "history.prune": (svc, actor, a) =>
    svc.prune(actor, {
      beforeTs: int("history.prune", a, "beforeTs"),
      room: nullableStr("history.prune", a, "room"),
    }),
  "audit.record": (svc, actor, a) => {
    const detail = a.detail ?? {};
    if (typeof detail !== "object" || detail === null || Array.isArray(detail)) {
      throw bad("audit.record", "detail must be an object");
    }
    return svc.record(actor, {
      action: str("audit.record", a, "action", 64),
      target: nullableStr("audit.record", a, "target"),
      detail: detail as Record<string, unknown>,
    });
  },
  stats: (svc) => svc.stats(),
};

/** Actors look like `admin:<os user>`. */
const ACTOR_RE = /^admin:[A-Za-z0-9._-]{1,64}$/;

/** True when `op` names an operation. */
export function isOpName(op: unknown): op is OpName {
  return typeof op === "string" && Object.hasOwn(OPS, op);
}

/**
 * Checks and runs one operation. Arguments come from JSON (the admin socket) or from the CLI.
 * @throws {ChatError} `unknown_op`, `bad_request`, or whatever the operation throws.
 */
export async function runAdminOp(
  svc: AdminService,
  op: unknown,
  actor: unknown,
  args: unknown,
): Promise<unknown> {
  if (!isOpName(op)) {
    throw new ChatError("unknown_op", `Cannot run ${String(op)}: no such admin operation`);
  }
  if (typeof actor !== "string" || !ACTOR_RE.test(actor)) {
    throw bad(op, "actor must look like admin:<user>");
  }
  const a = args ?? {};
  if (typeof a !== "object" || Array.isArray(a)) throw bad(op, "args must be an object");
  return await (OPS[op] as Runner<OpName>)(svc, actor, a as Raw);
}
