// Owns the trust-on-first-use store: which certificate fingerprint each server had when the
// user first accepted it (the client's equivalent of ssh's known_hosts).
import { ChatError } from "../errors.ts";

/** One remembered server. */
export interface KnownServer {
  /** `host:port`, host lowercase, IPv6 in brackets (see {@linkcode serverKey}). */
  key: string;
  /** SHA-256 of the DER certificate, uppercase colon hex (`AB:CD:…`). */
  fingerprint: string;
  /** 1-based line in the file, for the "remove line N" hint. */
  line: number;
}

const HEADER = "# chat known servers: <host:port> sha256:<fingerprint of the TLS certificate>\n" +
  "# Written by `chat connect` when you accept a server; remove a line to forget it.\n";

/**
 * Where the store lives: `$CHAT_CONFIG_DIR/known_servers`, else
 * `$XDG_CONFIG_HOME/chat/known_servers`, else `$HOME/.config/chat/known_servers`.
 */
export function knownServersPath(env: (name: string) => string | undefined): string {
  const dir = env("CHAT_CONFIG_DIR");
  if (dir) return `${dir.replace(/\/+$/, "")}/known_servers`;
  const xdg = env("XDG_CONFIG_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/chat/known_servers`;
  const home = env("HOME") ?? env("USERPROFILE");
  if (!home) {
    throw new ChatError(
      "no_config_dir",
      "Cannot find the config directory: set HOME, XDG_CONFIG_HOME or CHAT_CONFIG_DIR",
    );
  }
  return `${home.replace(/\/+$/, "")}/.config/chat/known_servers`;
}

/** The store key of a server: lowercase host, IPv6 literals in brackets, and the port. */
export function serverKey(host: string, port: number): string {
  const h = host.toLowerCase();
  return h.includes(":") ? `[${h}]:${port}` : `${h}:${port}`;
}

/**
 * Parses a fingerprint as users write it: optional `sha256:` prefix, hex with or without colons,
 * any case. Returns the canonical uppercase colon form, or null when it is not 32 bytes of hex.
 */
export function parseFingerprint(text: string): string | null {
  const hex = text.trim().replace(/^sha-?256:/i, "").replace(/[:\s]/g, "");
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().match(/../g)!.join(":");
}

/** How a fingerprint is shown: `sha256:AB:CD:…`. */
export function showFingerprint(fp: string): string {
  return `sha256:${fp}`;
}

/** The known_servers file: read once, looked up by key, added to atomically. */
export class KnownServers {
  readonly path: string;
  #entries: Map<string, KnownServer>;

  private constructor(path: string, entries: Map<string, KnownServer>) {
    this.path = path;
    this.#entries = entries;
  }

  /** Reads the file; a missing file is an empty store. Malformed lines are ignored. */
  static async load(path: string): Promise<KnownServers> {
    return new KnownServers(path, parse(await readOrEmpty(path)));
  }

  get(key: string): KnownServer | undefined {
    return this.#entries.get(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Remembers `fingerprint` for `key`, replacing an older line for the same key. Re-reads the
   * file first (another client may have written it), then writes a temporary file and renames
   * it over the old one (mode 0600, directory 0700).
   */
  async add(key: string, fingerprint: string): Promise<void> {
    const text = await readOrEmpty(this.path);
    const kept = text.split("\n").filter((l) => {
      const parts = l.trim().split(/\s+/);
      return l.trim() !== "" && !(parts[0]?.toLowerCase() === key && !l.trim().startsWith("#"));
    });
    if (kept.length === 0 || !kept[0].startsWith("#")) {
      kept.unshift(...HEADER.trimEnd().split("\n"));
    }
    kept.push(`${key} ${showFingerprint(fingerprint)}`);
    const out = kept.join("\n") + "\n";
    const dir = this.path.slice(0, Math.max(0, this.path.lastIndexOf("/"))) || ".";
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(tmp, out, { createNew: true, mode: 0o600 });
      await Deno.rename(tmp, this.path);
    } catch (err) {
      await Deno.remove(tmp).catch(() => {});
      throw new ChatError(
        "known_servers_write",
        `Cannot remember the server in ${this.path}: ${(err as Error).message}`,
      );
    }
    this.#entries = parse(out);
  }
}

function parse(text: string): Map<string, KnownServer> {
  const entries = new Map<string, KnownServer>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [key, fpText] = line.split(/\s+/);
    const fingerprint = fpText ? parseFingerprint(fpText) : null;
    if (!key || !fingerprint) return;
    entries.set(key.toLowerCase(), { key: key.toLowerCase(), fingerprint, line: i + 1 });
  });
  return entries;
}

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "";
    throw new ChatError(
      "known_servers_read",
      `Cannot read ${path}: ${(err as Error).message}`,
    );
  }
}
