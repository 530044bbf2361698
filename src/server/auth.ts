// Owns accounts at the door: registration policy, login with throttling, and their audit lines.
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import { checkPassword, checkUserName } from "../protocol/text_rules.ts";
import type { Store, UserRecord } from "../store/store.ts";
import type { PasswordHasher } from "./password_hasher.ts";
import { type Clock, KeyedBuckets } from "./token_bucket.ts";

const AUTH_FAILED_MESSAGE = "Cannot log in: wrong user name or password";

/** SHA-256 hex of an invite code: only this is stored. */
export async function inviteCodeHash(code: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(code));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Registration and login.
 *
 * - Failed logins charge a token bucket per account and one per remote address; while either is
 *   empty, attempts are refused with `throttled` before any password is checked.
 * - An unknown user is checked against a dummy hash, so it fails with the same message in the
 *   same time as a wrong password.
 * - Every attempt lands in the audit trail (never the password).
 */
export class AuthService {
  #store: Store;
  #hasher: PasswordHasher;
  #config: ServerConfig;
  #clock: Clock;
  #perAccount: KeyedBuckets;
  #perAddress: KeyedBuckets;
  #registrations: KeyedBuckets;
  #dummyHash: Promise<string> | undefined;

  constructor(opts: { store: Store; hasher: PasswordHasher; config: ServerConfig; clock: Clock }) {
    this.#store = opts.store;
    this.#hasher = opts.hasher;
    this.#config = opts.config;
    this.#clock = opts.clock;
    const l = opts.config.limits;
    this.#perAccount = new KeyedBuckets({
      capacity: l.loginFailuresPerAccount,
      refillMs: l.loginFailureRefillMsPerAccount,
      clock: opts.clock,
    });
    this.#perAddress = new KeyedBuckets({
      capacity: l.loginFailuresPerAddress,
      refillMs: l.loginFailureRefillMsPerAddress,
      clock: opts.clock,
    });
    this.#registrations = new KeyedBuckets({
      capacity: l.registrationsPerAddress,
      refillMs: l.registrationRefillMs,
      clock: opts.clock,
    });
  }

  /** The registration policy in force. */
  get registration(): "open" | "invite" | "closed" {
    return this.#config.registration;
  }

  #dummy(): Promise<string> {
    const dummy = this.#dummyHash ??= this.#hasher.hash(crypto.randomUUID());
    // A refused dummy (`busy`) must not be remembered: every later unknown-user login would be
    // refused as busy, telling unknown users from wrong passwords.
    dummy.catch(() => {
      if (this.#dummyHash === dummy) this.#dummyHash = undefined;
    });
    return dummy;
  }

  async #audit(
    action: string,
    user: string | null,
    remote: string,
    detail?: Record<string, unknown>,
  ) {
    await this.#store.audit({
      ts: this.#clock(),
      actor: user,
      action,
      target: user,
      remote,
      detail,
    }).catch(() => {/* an audit failure must not turn into a login failure */});
  }

  /** Creates an account under the registration policy. */
  async register(
    req: { user: string; password: string; invite?: string },
    remote: string,
  ): Promise<UserRecord> {
    const policy = this.#config.registration;
    if (policy === "closed") {
      throw new ChatError("registration_closed", "Cannot register: registration is closed");
    }
    const name = checkUserName(req.user);
    checkPassword(req.password);
    if (policy === "invite" && !req.invite) {
      throw new ChatError("invite_required", "Cannot register: an invite code is required");
    }
    const wait = this.#registrations.take(remote);
    if (wait > 0) {
      void this.#audit("register_throttled", name, remote);
      throw new ChatError("throttled", "Cannot register: too many registrations, retry later", {
        retryAfterMs: wait,
      });
    }
    if (await this.#store.userByName(name)) {
      void this.#audit("register_failed", name, remote, { reason: "user_exists" });
      throw new ChatError("user_exists", `Cannot register: the name ${name} is taken`);
    }
    let passwordHash: string;
    try {
      passwordHash = await this.#hasher.hash(req.password);
    } catch (err) {
      void this.#audit("register_refused", name, remote, {
        reason: err instanceof ChatError ? err.code : "internal",
      });
      throw err;
    }
    if (policy === "invite") {
      const ok = await this.#store.consumeInvite(await inviteCodeHash(req.invite!), this.#clock());
      if (!ok) {
        void this.#audit("register_failed", name, remote, { reason: "invalid_invite" });
        throw new ChatError(
          "invalid_invite",
          "Cannot register: the invite is unknown, used up or expired",
        );
      }
    }
    const user = await this.#store.createUser({ name, passwordHash, ts: this.#clock() });
    await this.#audit("register", user.name, remote);
    return user;
  }

  /** Checks a login; throws `throttled`, `busy` or `auth_failed`. */
  async login(req: { user: string; password: string }, remote: string): Promise<UserRecord> {
    const key = typeof req.user === "string" ? req.user.toLowerCase().slice(0, 64) : "";
    const wait = Math.max(this.#perAccount.peek(key), this.#perAddress.peek(remote));
    if (wait > 0) {
      void this.#audit("login_throttled", key || null, remote);
      throw new ChatError("throttled", "Cannot log in: too many failed attempts, retry later", {
        retryAfterMs: wait,
      });
    }
    // Only a well-formed (ASCII) name can name an account: lowercasing a look-alike such as the
    // Kelvin sign (U+212A lowercases to "k") must not reach the ASCII account.
    const user = key && wellFormedName(req.user) ? await this.#store.userByName(key) : null;
    const password = typeof req.password === "string" ? req.password : "";
    let ok: boolean;
    try {
      ok = await this.#hasher.verify(password, user ? user.passwordHash : await this.#dummy());
    } catch (err) {
      // `busy` or `shutting_down`: refused without a verdict, but still an attempt to audit.
      void this.#audit("login_refused", key || null, remote, {
        reason: err instanceof ChatError ? err.code : "internal",
      });
      throw err;
    }
    // Re-read after the slow check: an administrator may have disabled or removed the account
    // while the password was being verified.
    const current = user && ok ? await this.#store.userById(user.id) : user;
    if (!user || !ok || !current || current.disabled) {
      this.#perAccount.take(key);
      this.#perAddress.take(remote);
      void this.#audit("login_failed", key || null, remote, {
        reason: !user ? "unknown_user" : !ok ? "bad_password" : !current ? "removed" : "disabled",
      });
      throw new ChatError("auth_failed", AUTH_FAILED_MESSAGE);
    }
    void this.#audit("login", current.name, remote);
    return current;
  }

  /** Changes a password after checking the old one. */
  async changePassword(
    user: Pick<UserRecord, "id" | "name">,
    oldPw: string,
    newPw: string,
    remote: string,
  ): Promise<void> {
    checkPassword(newPw);
    const current = await this.#store.userById(user.id);
    if (!current || !(await this.#hasher.verify(oldPw, current.passwordHash))) {
      void this.#audit("passwd_failed", user.name, remote);
      throw new ChatError("auth_failed", "Cannot change password: the old password is wrong");
    }
    await this.#store.updateUser(user.id, { passwordHash: await this.#hasher.hash(newPw) });
    await this.#audit("passwd", user.name, remote);
  }
}

function wellFormedName(name: unknown): boolean {
  try {
    checkUserName(name);
    return true;
  } catch {
    return false;
  }
}
