import { assertEquals } from "../harness/assert.ts";
import { resolveConfig } from "../../src/config/config.ts";
import { ChatError } from "../../src/errors.ts";
import { AuthService } from "../../src/server/auth.ts";
import { PasswordHasher } from "../../src/server/password_hasher.ts";
import { SqliteStore } from "../../src/store/sqlite_store.ts";

async function withAuth(
  limits: Record<string, number>,
  fn: (auth: AuthService) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "chat-auth-" });
  const store = SqliteStore.open({ path: `${dir}/chat.db` });
  const hasher = new PasswordHasher({ workers: 1, queue: 64 });
  const now = Date.parse("2026-03-10T12:00:00Z");
  try {
    await fn(
      new AuthService({ store, hasher, config: resolveConfig({ limits }), clock: () => now }),
    );
  } finally {
    hasher.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The error code of a failed login (`ok` when it succeeded). */
async function loginCode(auth: AuthService, user: string, remote: string): Promise<string> {
  try {
    await auth.login({ user, password: "wrong-password" }, remote);
    return "ok";
  } catch (err) {
    return err instanceof ChatError ? err.code : String(err);
  }
}

Deno.test("AuthService throttles failed logins per IPv6 /64, not per address", async () => {
  const limits = { loginFailuresPerAddress: 3, loginFailureRefillMsPerAddress: 60_000 };
  await withAuth(limits, async (auth) => {
    const codes: string[] = [];
    // A different account and a different address of one /64 each time.
    for (let i = 1; i <= 5; i++) {
      codes.push(await loginCode(auth, `user${i}`, `2001:db8:0:1::${i}`));
    }
    assertEquals(codes, ["auth_failed", "auth_failed", "auth_failed", "throttled", "throttled"]);
    // Another /64 of the same /48 has its own bucket.
    assertEquals(await loginCode(auth, "user9", "2001:db8:0:2::1"), "auth_failed");
    assertEquals(await loginCode(auth, "user9", "203.0.113.5"), "auth_failed");
  });
});

Deno.test("AuthService with ipv6PrefixBits 128 keys every IPv6 address apart", async () => {
  await withAuth({ loginFailuresPerAddress: 1, ipv6PrefixBits: 128 }, async (auth) => {
    assertEquals(await loginCode(auth, "usera", "2001:db8::1"), "auth_failed");
    assertEquals(await loginCode(auth, "userb", "2001:db8::2"), "auth_failed");
    assertEquals(await loginCode(auth, "userc", "2001:db8::2"), "throttled");
  });
});
