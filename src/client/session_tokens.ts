// Owns the terminal client's saved session tokens: one per server and user, in the user's config
// dir beside known_servers, owner-only, so a restart or reconnect needs no password.
import { ChatError } from "../errors.ts";

/** One saved token. */
export interface SavedToken {
  /** `host:port` as in known_servers (serverKey). */
  server: string;
  /** The user name, lowercase. */
  user: string;
  token: string;
  /** Milliseconds since the epoch (0: unknown). */
  expiresAt: number;
}

const HEADER = "# chat session tokens: <host:port> <user> <token> <expires ms>\n" +
  "# Written by `chat connect`; each line logs that user in without a password. Keep it private.\n";

/** `session_tokens` in the directory of `knownServersPath` (same rules: CHAT_CONFIG_DIR, XDG, HOME). */
export function sessionTokensPath(knownServersFile: string): string {
  const i = knownServersFile.lastIndexOf("/");
  return `${i < 0 ? "." : knownServersFile.slice(0, i)}/session_tokens`;
}

/** A device label for this client: "chat terminal on <host name>" (at most 64 characters). */
export function deviceLabel(): string {
  let host = "";
  try {
    host = Deno.hostname();
  } catch { /* no permission: unnamed */ }
  host = host.replace(/[^\x21-\x7e]/g, "").slice(0, 40);
  return host ? `chat terminal on ${host}` : "chat terminal";
}

/**
 * The session_tokens file. Every change re-reads the file (another client may have written it),
 * writes a temporary file (mode 0600, directory 0700) and renames it over the old one. Expired
 * tokens are not offered.
 */
export class SessionTokens {
  readonly path: string;
  #clock: () => number;

  constructor(path: string, clock: () => number = Date.now) {
    this.path = path;
    this.#clock = clock;
  }

  /** The saved token for `user` on `server`, unless expired. */
  async get(server: string, user: string): Promise<string | undefined> {
    const now = this.#clock();
    const hit = parse(await this.#read()).find((t) =>
      t.server === server && t.user === user.toLowerCase() &&
      (t.expiresAt === 0 || t.expiresAt > now)
    );
    return hit?.token;
  }

  /** Saves (token) or forgets (null) the token of `user` on `server`. */
  async set(server: string, user: string, token: string | null, expiresAt = 0): Promise<void> {
    const key = user.toLowerCase();
    const now = this.#clock();
    const kept = parse(await this.#read()).filter((t) =>
      !(t.server === server && t.user === key) && (t.expiresAt === 0 || t.expiresAt > now)
    );
    if (token !== null) kept.push({ server, user: key, token, expiresAt });
    const out = HEADER +
      kept.map((t) => `${t.server} ${t.user} ${t.token} ${t.expiresAt}`).join("\n") +
      (kept.length ? "\n" : "");
    const dir = this.path.slice(0, Math.max(0, this.path.lastIndexOf("/"))) || ".";
    const tmp = `${this.path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(tmp, out, { createNew: true, mode: 0o600 });
      await Deno.rename(tmp, this.path);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw new ChatError(
        "session_tokens_write",
        `Cannot save the session token in ${this.path}: ${(err as Error).message}`,
      );
    }
  }

  async #read(): Promise<string> {
    try {
      return await Deno.readTextFile(this.path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return "";
      throw new ChatError(
        "session_tokens_read",
        `Cannot read ${this.path}: ${(err as Error).message}`,
      );
    }
  }
}

function parse(text: string): SavedToken[] {
  const out: SavedToken[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [server, user, token, exp] = line.split(/\s+/);
    if (!server || !user || !token) continue;
    out.push({ server, user, token, expiresAt: Number(exp) || 0 });
  }
  return out;
}
