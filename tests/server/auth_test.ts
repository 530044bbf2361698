import { assert, assertEquals } from "../harness/assert.ts";
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

/** Like withAuth, with a clock the test moves (`time.now += ms`). */
async function withAuthAt(
  limits: Record<string, number>,
  fn: (auth: AuthService, time: { now: number }, store: SqliteStore) => Promise<void>,
  config: Record<string, unknown> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "chat-auth-" });
  const store = SqliteStore.open({ path: `${dir}/chat.db` });
  const hasher = new PasswordHasher({ workers: 1, queue: 64 });
  const time = { now: Date.parse("2026-03-10T12:00:00Z") };
  try {
    await fn(
      new AuthService({
        store,
        hasher,
        config: resolveConfig({ ...config, limits }),
        clock: () => time.now,
      }),
      time,
      store,
    );
  } finally {
    hasher.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return err instanceof ChatError ? err.code : String(err);
  }
}

const ACCOUNT_LIMITS = {
  loginFailuresPerAccount: 3,
  loginFailureRefillMsPerAccount: 30_000,
  loginFailuresPerAddress: 100,
  loginFailureRefillMsPerAddress: 1,
};

Deno.test("AuthService: a stranger's failures from other addresses never lock out the user at an address that has not failed", async () => {
  await withAuthAt(ACCOUNT_LIMITS, async (auth) => {
    await auth.register({ user: "victim", password: "password-victim" }, "198.51.100.1");
    // The attacker empties the account bucket from three addresses, then keeps trying.
    const attacker = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    const codes: string[] = [];
    for (const a of attacker) {
      codes.push(await code(auth.login({ user: "victim", password: "guess" }, a)));
    }
    for (const a of attacker) {
      codes.push(await code(auth.login({ user: "victim", password: "guess" }, a)));
    }
    assertEquals(codes, [
      "auth_failed",
      "auth_failed",
      "auth_failed",
      "throttled",
      "throttled",
      "throttled",
    ]);
    // The user, from an address that has not failed: in at once, the clock has not moved.
    assertEquals(
      await code(auth.login({ user: "victim", password: "password-victim" }, "198.51.100.7")),
      "ok",
    );
    // And again (a success leaves the address clean).
    assertEquals(
      await code(auth.login({ user: "victim", password: "password-victim" }, "198.51.100.7")),
      "ok",
    );
  });
});

Deno.test("AuthService: an address that failed for the account meets the emptied account bucket until it refills", async () => {
  await withAuthAt(ACCOUNT_LIMITS, async (auth, time) => {
    await auth.register({ user: "carol", password: "password-carol" }, "198.51.100.1");
    for (const a of ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) {
      assertEquals(await code(auth.login({ user: "carol", password: "guess" }, a)), "auth_failed");
    }
    // The user mistypes once from home: the home address is now one that failed.
    const home = "198.51.100.9";
    assertEquals(await code(auth.login({ user: "carol", password: "typo" }, home)), "auth_failed");
    assertEquals(
      await code(auth.login({ user: "carol", password: "password-carol" }, home)),
      "throttled",
    );
    // One refill later a token is back for it.
    time.now += 30_000;
    assertEquals(
      await code(auth.login({ user: "carol", password: "password-carol" }, home)),
      "ok",
    );
    // The per-account bucket still bounds an attacker's parallel guesses from one address: once
    // it is full again (3), a fresh address gets its first guess and then what the bucket holds.
    time.now += 60_000;
    const guesses = await Promise.all(
      Array.from(
        { length: 6 },
        (_, i) => code(auth.login({ user: "carol", password: `g${i}` }, "203.0.113.50")),
      ),
    );
    assertEquals(guesses.filter((c) => c === "auth_failed").length, 3, guesses.join(","));
  });
});

Deno.test("AuthService: session tokens log in without a password, are bound to their account, expire, and a password change revokes them", async () => {
  await withAuthAt({}, async (auth, time, store) => {
    const reg = await auth.register(
      { user: "tess", password: "password-tess", device: "laptop" },
      "127.0.0.1",
    );
    assertEquals(reg.token?.device, "laptop");
    const token = reg.issued!.token;
    assert(/^[0-9]+\.[A-Za-z0-9_-]{43}$/.test(token), token);
    assertEquals(reg.issued!.expiresAt, time.now + 30 * 86_400_000);
    // Stored only as a hash.
    const [rec] = await store.listSessionTokens(reg.user.id);
    assert(!rec.tokenHash.includes(token.split(".")[1]), "the secret is stored");
    assertEquals(rec.tokenHash.length, 64);
    const r = await auth.login({ user: "TESS", token }, "127.0.0.1");
    assertEquals([r.user.name, r.token?.id, r.issued], ["tess", rec.id, undefined]);
    // Another account's name, a changed secret, garbage: auth_failed.
    await auth.register({ user: "other", password: "password-other" }, "127.0.0.1");
    assertEquals(await code(auth.login({ user: "other", token }, "127.0.0.1")), "auth_failed");
    const wrong = token.slice(0, -1) + (token.endsWith("A") ? "B" : "A");
    assertEquals(
      await code(auth.login({ user: "tess", token: wrong }, "127.0.0.1")),
      "auth_failed",
    );
    assertEquals(await code(auth.login({ user: "tess", token: "x" }, "127.0.0.1")), "auth_failed");
    assertEquals(
      await code(auth.login({ user: "tess", token, password: "password-tess" }, "127.0.0.1")),
      "bad_frame",
    );
    // A password change revokes every token; the session's device gets a new one.
    const second = await auth.login(
      { user: "tess", password: "password-tess", device: "phone" },
      "127.0.0.2",
    );
    const changed = await auth.changePassword(
      reg.user,
      "password-tess",
      "new-password-tess",
      "127.0.0.1",
      "laptop",
    );
    assertEquals(await code(auth.login({ user: "tess", token }, "127.0.0.1")), "auth_failed");
    assertEquals(
      await code(auth.login({ user: "tess", token: second.issued!.token }, "127.0.0.1")),
      "auth_failed",
    );
    assertEquals(
      (await auth.login({ user: "tess", token: changed.issued!.token }, "127.0.0.1")).user.name,
      "tess",
    );
    // Past its expiry a token fails and is gone.
    time.now += 30 * 86_400_000;
    assertEquals(
      await code(auth.login({ user: "tess", token: changed.issued!.token }, "127.0.0.1")),
      "auth_failed",
    );
    assertEquals(await store.listSessionTokens(reg.user.id), []);
  }, { sessionTokenDays: 30 });
});

Deno.test("AuthService: bad tokens are throttled like failed logins", async () => {
  await withAuthAt(
    { loginFailuresPerAddress: 3, loginFailureRefillMsPerAddress: 60_000 },
    async (auth) => {
      await auth.register({ user: "tom", password: "password-tom" }, "127.0.0.9");
      const codes: string[] = [];
      for (let i = 0; i < 4; i++) {
        codes.push(
          await code(auth.login({ user: "tom", token: `1.${"A".repeat(43)}` }, "10.0.0.1")),
        );
      }
      assertEquals(codes, ["auth_failed", "auth_failed", "auth_failed", "throttled"]);
    },
  );
});
