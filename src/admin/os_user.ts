// Owns naming the operating-system user this process runs as, for audit lines of administration.
import { userInfo } from "node:os";

/**
 * The name of the effective OS user (from the password database, not from `$USER`, which the
 * caller controls); `uid<N>` when it has no name, `unknown` without permission to ask. Only
 * `[A-Za-z0-9._-]` is kept, at most 64 characters.
 */
export function osUserName(): string {
  let name = "";
  try {
    name = userInfo().username;
  } catch {
    try {
      name = `uid${Deno.uid() ?? "unknown"}`;
    } catch {
      name = "unknown";
    }
  }
  return name.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64) || "unknown";
}
