// Owns where the client connects: the servers given, every address each name resolves to, and
// the order of one round of attempts (starting from the address that worked last).
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { ChatError } from "../errors.ts";
import { serverKey } from "./known_servers.ts";

/** A server as the user named it: the name is what certificates and known_servers are keyed by. */
export interface ServerName {
  host: string;
  port: number;
}

/** One address to dial: the name it came from and the IP address it resolved to. */
export interface Candidate extends ServerName {
  address: string;
}

/** Every address `host` resolves to, in the resolver's order, without repeats. */
export type Resolver = (host: string) => Promise<string[]>;

/** `node:dns` lookup with `all: true` (the system resolver: /etc/hosts, then DNS); IP literals as they are. */
export async function resolveAll(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  const found = await lookup(host, { all: true, verbatim: true });
  return [...new Set(found.map((a) => a.address))];
}

/** `name:port`, plus the address in brackets when it is not the name itself. */
export function describeCandidate(c: Candidate): string {
  const key = serverKey(c.host, c.port);
  return c.address.toLowerCase() === c.host.toLowerCase() ? key : `${key} (${c.address})`;
}

/**
 * The servers of one session and the order to try them in.
 *
 * 1. `round()` resolves every name again (DNS may have changed) and returns each name's
 *    addresses, names in the order given, rotated so that the address that worked last comes
 *    first (or, when it is gone from DNS, the first address of its name).
 * 2. A name that does not resolve is left out of the round and reported in `errors`; the round
 *    has no candidates only when no name resolved.
 * 3. `markGood()` records the address a session logged in on.
 */
export class ServerList {
  readonly names: readonly ServerName[];
  #resolve: Resolver;
  #good: Candidate | null = null;

  constructor(names: ServerName[], resolve: Resolver = resolveAll) {
    if (names.length === 0) throw new RangeError("ServerList needs at least one server");
    this.names = names;
    this.#resolve = resolve;
  }

  /** The address of the last successful login, if any. */
  get current(): Candidate | null {
    return this.#good;
  }

  markGood(c: Candidate): void {
    this.#good = c;
  }

  /** One round of candidates (see the class contract). */
  async round(): Promise<{ candidates: Candidate[]; errors: ChatError[] }> {
    const errors: ChatError[] = [];
    const lists = await Promise.all(this.names.map(async (n) => {
      try {
        return (await this.#resolve(n.host)).map((address) => ({ ...n, address }));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException)?.code ?? "";
        const why = code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "ENODATA"
          ? "unknown host"
          : String((err as Error)?.message ?? err).split("\n")[0];
        errors.push(
          new ChatError("connect_failed", `Cannot connect to ${serverKey(n.host, n.port)}: ${why}`),
        );
        return [];
      }
    }));
    const all = lists.flat();
    const g = this.#good;
    let start = g === null
      ? -1
      : all.findIndex((c) => c.host === g.host && c.port === g.port && c.address === g.address);
    if (start === -1 && g !== null) {
      start = all.findIndex((c) => c.host === g.host && c.port === g.port);
    }
    const candidates = start <= 0 ? all : [...all.slice(start), ...all.slice(0, start)];
    return { candidates, errors };
  }
}
