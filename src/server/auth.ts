// Owns accounts at the door: registration policy, login with throttling, and their audit lines.
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import { checkPassword, checkUserName } from "../protocol/text_rules.ts";
import type { Store, UserRecord } from "../store/store.ts";
import { addressKey } from "./address_key.ts";
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
 * - Every login charges a token bucket per account and one per remote address (IPv6 by its
 *   `ipv6PrefixBits` prefix) before the password is checked; while either is empty the attempt is
 *   refused with `throttled`. A success, or an attempt the hasher refused (`busy`), gets its two
 *   tokens back, so only failures stay charged and parallel guesses cannot all pass a check made
 *   before any of them failed. A wrong old password in `passwd` charges the account's bucket too.
 * - Invite registration checks the invite before anything else about the name, so a taken and a
 *   free name get the same `invalid_invite`, and no password is hashed for a bad invite.
 * - A password that is not well-formed Unicode is refused at registration and passwd, and never
 *   matches at login.
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

  #addressKey(remote: string): string {
    return addressKey(remote, this.#config.limits.ipv6PrefixBits);
  }

  /** Takes a token from both login buckets, or from neither; returns the wait when throttled. */
  #charge(account: string, address: string): number {
    const wait = this.#perAccount.take(account);
    if (wait > 0) return wait;
    const addrWait = this.#perAddress.take(address);
    if (addrWait > 0) this.#perAccount.refund(account);
    return addrWait;
  }

  /** True when an invite with this code hash exists and can still be used (nothing consumed). */
  async #inviteUsable(codeHash: string): Promise<boolean> {
    const now = this.#clock();
    return (await this.#store.listInvites()).some((i) =>
      i.codeHash === codeHash && !i.revoked && (i.expiresAt === null || i.expiresAt > now) &&
      (i.usesLeft === null || i.usesLeft > 0)
    );
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
    const wait = this.#registrations.take(this.#addressKey(remote));
    if (wait > 0) {
      void this.#audit("register_throttled", name, remote);
      throw new ChatError("throttled", "Cannot register: too many registrations, retry later", {
        retryAfterMs: wait,
      });
    }
    // The invite first, read only: a bad invite is answered alike for a taken and a free name,
    // before any hashing. It is consumed only after the password is hashed, just before the
    // account is created (the store's conditional update: a use is never taken twice).
    const codeHash = policy === "invite" ? await inviteCodeHash(String(req.invite)) : null;
    if (codeHash !== null && !(await this.#inviteUsable(codeHash))) {
      void this.#audit("register_failed", name, remote, { reason: "invalid_invite" });
      throw invalidInvite();
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
    if (codeHash !== null && !(await this.#store.consumeInvite(codeHash, this.#clock()))) {
      // Used up or revoked while the password was hashed.
      void this.#audit("register_failed", name, remote, { reason: "invalid_invite" });
      throw invalidInvite();
    }
    const user = await this.#store.createUser({ name, passwordHash, ts: this.#clock() });
    await this.#audit("register", user.name, remote);
    return user;
  }

  /** Checks a login; throws `throttled`, `busy` or `auth_failed`. */
  async login(req: { user: string; password: string }, remote: string): Promise<UserRecord> {
    const key = typeof req.user === "string" ? req.user.toLowerCase().slice(0, 64) : "";
    const address = this.#addressKey(remote);
    // Charged before the slow check (MUST stay synchronous with the check of the buckets): a
    // charge made only after the hash let every parallel guess pass the check.
    const wait = this.#charge(key, address);
    if (wait > 0) {
      void this.#audit("login_throttled", key || null, remote);
      throw new ChatError("throttled", "Cannot log in: too many failed attempts, retry later", {
        retryAfterMs: wait,
      });
    }
    const refund = () => {
      this.#perAccount.refund(key);
      this.#perAddress.refund(address);
    };
    // Only a well-formed (ASCII) name can name an account: lowercasing a look-alike such as the
    // Kelvin sign (U+212A lowercases to "k") must not reach the ASCII account.
    const user = key && wellFormedName(req.user) ? await this.#store.userByName(key) : null;
    // A password that is not well-formed Unicode cannot be one that was set; it fails unhashed.
    const password = typeof req.password === "string" && req.password.isWellFormed()
      ? req.password
      : null;
    let ok = false;
    if (password !== null) {
      try {
        ok = await this.#hasher.verify(password, user ? user.passwordHash : await this.#dummy());
      } catch (err) {
        // `busy` or `shutting_down`: refused without a verdict, but still an attempt to audit.
        refund();
        void this.#audit("login_refused", key || null, remote, {
          reason: err instanceof ChatError ? err.code : "internal",
        });
        throw err;
      }
    }
    // Re-read after the slow check: an administrator may have disabled or removed the account
    // while the password was being verified.
    const current = user && ok ? await this.#store.userById(user.id) : user;
    if (!user || !ok || !current || current.disabled) {
      void this.#audit("login_failed", key || null, remote, {
        reason: !user
          ? "unknown_user"
          : password === null
          ? "malformed_password"
          : !ok
          ? "bad_password"
          : !current
          ? "removed"
          : "disabled",
      });
      throw new ChatError("auth_failed", AUTH_FAILED_MESSAGE);
    }
    refund();
    void this.#audit("login", current.name, remote);
    return current;
  }

  /**
   * Changes a password after checking the old one. A check charges the account's login bucket
   * first (refunded when the old password is right), so a session cannot fill the hash queue.
   */
  async changePassword(
    user: Pick<UserRecord, "id" | "name">,
    oldPw: string,
    newPw: string,
    remote: string,
  ): Promise<void> {
    checkPassword(newPw);
    const key = user.name.toLowerCase();
    const wait = this.#perAccount.take(key);
    if (wait > 0) {
      void this.#audit("passwd_throttled", user.name, remote);
      throw new ChatError(
        "throttled",
        "Cannot change password: too many wrong old passwords, retry later",
        { retryAfterMs: wait },
      );
    }
    const current = await this.#store.userById(user.id);
    let ok = false;
    if (current && typeof oldPw === "string" && oldPw.isWellFormed()) {
      try {
        ok = await this.#hasher.verify(oldPw, current.passwordHash);
      } catch (err) {
        this.#perAccount.refund(key);
        throw err;
      }
    }
    if (!ok) {
      void this.#audit("passwd_failed", user.name, remote);
      throw new ChatError("auth_failed", "Cannot change password: the old password is wrong");
    }
    this.#perAccount.refund(key);
    await this.#store.updateUser(user.id, { passwordHash: await this.#hasher.hash(newPw) });
    await this.#audit("passwd", user.name, remote);
  }
}

function invalidInvite(): ChatError {
  return new ChatError(
    "invalid_invite",
    "Cannot register: the invite is unknown, used up or expired",
  );
}

function wellFormedName(name: unknown): boolean {
  try {
    checkUserName(name);
    return true;
  } catch {
    return false;
  }
}
