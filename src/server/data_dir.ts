// Owns the data dir's permissions: owner-only directory, database files created and kept 0600.
import { getLogger } from "@logtape/logtape";
import { join } from "node:path";
import { ChatError } from "../errors.ts";
import { DB_FILE } from "../store/open_store.ts";

const log = getLogger(["chat", "server"]);

export { DB_FILE };

/**
 * Makes `dir` ready to hold the server's files, whatever the umask.
 *
 * 1. A missing dir is created 0700 (parents too). An existing one must be a directory owned by
 *    this user with no group or other permission bits; otherwise it is refused with
 *    `data_dir_unsafe` (nothing is created in it): every file inside would be as open as the dir
 *    lets it be, and tightening a dir the operator made is their call, not ours.
 * 2. `chat.db` is created empty at 0600 before SQLite opens it: SQLite gives the `-wal` and `-shm`
 *    files the main file's mode, and a migration backup (`copyFile`) copies it.
 * 3. Database files an older version left open to others (`chat.db*`: main file, WAL, shared
 *    memory, backups) are tightened to 0600, and each is logged.
 *
 * Without POSIX modes (Windows) only step 1's creation happens.
 * @throws {ChatError} `data_dir_unsafe` (fatal).
 */
export async function prepareDataDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  if (Deno.build.os === "windows") return;
  const info = await Deno.stat(dir);
  const mode = (info.mode ?? 0) & 0o777;
  if (!info.isDirectory) {
    throw unsafe(`Cannot use data dir ${dir}: it is not a directory`);
  }
  if (info.uid !== null && info.uid !== Deno.uid()) {
    throw unsafe(
      `Cannot use data dir ${dir}: it belongs to uid ${info.uid}, not to this user ` +
        `(uid ${Deno.uid()}); run as its owner`,
    );
  }
  if ((mode & 0o077) !== 0) {
    throw unsafe(
      `Cannot use data dir ${dir}: other users can reach it (mode ${octal(mode)}); ` +
        `run chmod 700 ${dir}`,
    );
  }
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.startsWith(DB_FILE)) continue;
    const path = join(dir, e.name);
    const m = ((await Deno.lstat(path)).mode ?? 0) & 0o777;
    if ((m & 0o077) !== 0) {
      await Deno.chmod(path, m & 0o700);
      log.warn("Tightened {path} from mode {from} to {to}: it was open to other users", {
        path,
        from: octal(m),
        to: octal(m & 0o700),
      });
    }
  }
  try {
    const f = await Deno.open(join(dir, DB_FILE), { createNew: true, write: true, mode: 0o600 });
    f.close();
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
}

function unsafe(message: string): ChatError {
  return new ChatError("data_dir_unsafe", message, { fatal: true });
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}
