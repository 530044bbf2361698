// Owns `chat admin rooms …`: creating rooms, topics, archiving, private rooms and their members.
import { ChatError } from "../../errors.ts";
import { checkRoomName } from "../../protocol/text_rules.ts";
import { AdminService } from "../admin_service.ts";
import { fmtTime, table, truncate } from "../format.ts";
import { AdminConnection, type AdminEnv, confirm, emit, liveNote } from "./context.ts";

export async function roomsCreate(
  env: AdminEnv,
  name: string,
  opts: { topic?: string },
): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("rooms.create", { name, topic: opts.topic ?? "" });
  emit(env, r, () => `Created room ${r.name}.\n`);
}

export async function roomsList(env: AdminEnv, opts: { all: boolean }): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const rooms = (await new AdminService({ store: await conn.store() }).listRooms())
    .filter((r) => opts.all || !r.archived);
  emit(env, rooms, () =>
    table(
      ["NAME", "ACCESS", "MEMBERS", "STATUS", "CREATED", "TOPIC"],
      rooms.map((r) => [
        r.name,
        r.private ? "private" : "public",
        r.members,
        r.archived ? "archived" : "active",
        fmtTime(r.createdAt),
        truncate(r.topic, 60),
      ]),
    ));
}

export async function roomsTopic(env: AdminEnv, name: string, topic: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("rooms.topic", { name, topic });
  emit(
    env,
    r,
    () => `${topic.trim() ? "Set the topic of" : "Cleared the topic of"} ${name.toLowerCase()}.\n`,
  );
}

export async function roomsArchive(
  env: AdminEnv,
  name: string,
  opts: { archived: boolean },
): Promise<void> {
  const key = checkRoomName(name);
  await using conn = await AdminConnection.open(env);
  if (opts.archived) {
    const room = await (await conn.store()).roomByName(key);
    if (!room || room.kind !== "room") {
      throw new ChatError("no_such_room", `Cannot archive ${key}: no such room`);
    }
    await confirm(
      env,
      `archive ${key}`,
      `Archive room ${key}? Nobody can join or write in it; its history stays.`,
    );
  }
  const op = opts.archived ? "rooms.archive" : "rooms.unarchive";
  const r = await conn.call(op, { name: key });
  const verb = opts.archived ? "Archived" : "Unarchived";
  emit(
    env,
    r,
    () => `${r.changed ? verb : `Already ${verb.toLowerCase()}:`} ${key}${liveNote(conn)}.\n`,
  );
}

export async function roomsAccess(
  env: AdminEnv,
  name: string,
  opts: { private: boolean },
): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call(opts.private ? "rooms.private" : "rooms.public", { name });
  const what = opts.private ? "private" : "public";
  emit(
    env,
    r,
    () => `${name.toLowerCase()} is ${r.changed ? "now" : "already"} ${what}${liveNote(conn)}.\n`,
  );
}

export async function roomsMembers(env: AdminEnv, name: string): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const r = await conn.call("rooms.members", { name });
  emit(
    env,
    r,
    () => r.members.length ? r.members.join("\n") + "\n" : `${r.room} has no members.\n`,
  );
}

export async function roomsMember(
  env: AdminEnv,
  name: string,
  user: string,
  opts: { add: boolean },
): Promise<void> {
  await using conn = await AdminConnection.open(env);
  const op = opts.add ? "rooms.add_member" : "rooms.remove_member";
  const r = await conn.call(op, { name, user });
  const key = name.toLowerCase();
  emit(
    env,
    r,
    () =>
      opts.add
        ? `${r.changed ? "Added" : "Already a member:"} ${user} ${r.changed ? "to" : "of"} ${key}${
          liveNote(conn)
        }.\n`
        : `${r.changed ? "Removed" : "Not a member:"} ${user} ${r.changed ? "from" : "of"} ${key}${
          liveNote(conn)
        }.\n`,
  );
}
