// Owns accounts at the door: registration policy, login (password or session token) with
// throttling, session tokens, and their audit lines.
import { timingSafeEqual } from "node:crypto";
import { ChatError } from "../errors.ts";
import type { ServerConfig } from "../config/config.ts";
import { checkPassword, checkUserName } from "../protocol/text_rules.ts";
import { invalidInvite, type Store, type UserRecord } from "../store/store.ts";
import { addressKey } from "./address_key.ts";
import type { PasswordHasher } from "./password_hasher.ts";
import { type Clock, KeyedBuckets } from "./token_bucket.ts";

const AUTH_FAILED_MESSAGE = "Cannot log in: wrong user name or password";
const TOKEN_FAILED_MESSAGE = "Cannot log in: the session token is unknown, revoked or expired";

/** Session tokens kept per account (the least recently used beyond go). */
export const SESSION_TOKENS_PER_USER = 20;

/** `<id>.<secret>`: a decimal id, then 32 random bytes in base64url (43 characters). */
const TOKEN_FORMAT = /^([1-9][0-9]{0,14})\.([A-Za-z0-9_-]{43})$/;

/** What a successful login or registration gives the session. */
export interface LoginResult {
  user: UserRecord;
  /** The session token this login presented or was issued, if any (logout revokes it). */
  token: { id: number; device: string } | null;
  /** A token issued now (a password login or registration that named a `device`). */
  issued?: { token: string; expiresAt: number };
}

/** A login request as the command table passes it (one of `password` or `token`). */
export interface LoginRequest {
  user: string;
  password?: string;
  token?: string;
  device?: string;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Constant-time equality of two hex digests (different lengths: false). */
function sameDigest(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The device label of a request: 1–64 characters, no control characters; else bad_frame. */
function checkDevice(device: unknown): string | undefined {
  if (device === undefined) return undefined;
  if (
    typeof device !== "string" || device.length < 1 || device.length > 64 ||
    !device.isWellFormed() || /[\p{Cc}\p{Cf}]/u.test(device)
  ) {
    throw new ChatError(
      "bad_frame",
      "Cannot log in: device must be 1-64 characters without control characters",
    );
  }
  return device;
}

/** SHA-256 hex of an invite code: only this is stored. */
export async function inviteCodeHash(code: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(code));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Registration and login.
 *
 * - Every login (password or token) charges a token bucket per remote address (IPv6 by its
 *   `ipv6PrefixBits` prefix), and one per account, before the secret is checked. The address
 *   bucket always applies. The account bucket applies only to an address that has failed for
 *   this account lately (or has an attempt at it in flight): a stranger's failures from other
 *   addresses never lock out a user whose address has not failed (docs/RELIABILITY.md). A
 *   success, or an attempt the hasher refused (`busy`), gets its tokens back, so only failures
 *   stay charged and parallel guesses cannot all pass a check made before any of them failed. A
 *   wrong old password in `passwd` is charged the same way.
 * - Session tokens (`<id>.<secret>`, 256 random bits) are stored as the SHA-256 of the secret and
 *   compared in constant time; no password is hashed for them. A password change revokes all of
 *   the account's tokens (the session that changed it gets a new one for its device).
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
  /** (account, address) pairs that failed lately: only they meet the account bucket. */
  #failedPairs: KeyedBuckets;
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
    // A pair stays "failed" for as long as the account bucket takes to fill up again.
    this.#failedPairs = new KeyedBuckets({
      capacity: 1,
      refillMs: Math.max(1, l.loginFailuresPerAccount * l.loginFailureRefillMsPerAccount),
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

  /**
   * Charges an attempt at `account` from `address` (MUST stay synchronous with the check: see
   * login). Returns the wait in ms when throttled, else the refund to call on success.
   */
  #charge(account: string, address: string): number | (() => void) {
    const addrWait = this.#perAddress.take(address);
    if (addrWait > 0) return addrWait;
    const pair = `${account}\n${address}`;
    // Marked before the check, so a second attempt in flight from here meets the account bucket.
    const fresh = this.#failedPairs.take(pair) === 0;
    const acctWait = this.#perAccount.take(account);
    if (acctWait > 0 && !fresh) {
      this.#perAddress.refund(address);
      return acctWait;
    }
    return () => {
      this.#perAddress.refund(address);
      if (fresh) this.#failedPairs.refund(pair);
      if (acctWait === 0) this.#perAccount.refund(account);
    };
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
    req: { user: string; password: string; invite?: string; device?: string },
    remote: string,
  ): Promise<LoginResult> {
    const policy = this.#config.registration;
    const device = checkDevice(req.device);
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
    // before any hashing. It is consumed only after the password is hashed, with the account.
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
    let user: UserRecord;
    try {
      // The invite's use is taken in the account's own transaction (used up or revoked while the
      // password was hashed: invalid_invite; a name taken meanwhile: user_exists, no use taken).
      user = await this.#store.createUser({
        name,
        passwordHash,
        ts: this.#clock(),
        ...(codeHash !== null ? { inviteCodeHash: codeHash } : {}),
      });
    } catch (err) {
      if (
        err instanceof ChatError && (err.code === "invalid_invite" || err.code === "user_exists")
      ) {
        void this.#audit("register_failed", name, remote, { reason: err.code });
      }
      throw err;
    }
    await this.#audit("register", user.name, remote);
    return await this.#withToken(user, device, remote);
  }

  /** The login result for `user`, with a new session token when a device was named. */
  async #withToken(
    user: UserRecord,
    device: string | undefined,
    remote: string,
  ): Promise<LoginResult> {
    if (device === undefined) return { user, token: null };
    const issued = await this.issueToken(user, device, remote);
    return { user, token: { id: issued.id, device }, issued };
  }

  /** Issues a session token for `user` on `device`; only its hash is stored. */
  async issueToken(
    user: Pick<UserRecord, "id" | "name">,
    device: string,
    remote: string,
  ): Promise<{ id: number; token: string; expiresAt: number }> {
    const secret = base64url(crypto.getRandomValues(new Uint8Array(32)));
    const now = this.#clock();
    const expiresAt = now + this.#config.sessionTokenDays * 86_400_000;
    const rec = await this.#store.createSessionToken({
      userId: user.id,
      tokenHash: await sha256Hex(secret),
      device,
      createdAt: now,
      lastUsedAt: now,
      expiresAt,
    }, SESSION_TOKENS_PER_USER);
    void this.#audit("token_issued", user.name, remote, { id: rec.id, device });
    return { id: rec.id, token: `${rec.id}.${secret}`, expiresAt };
  }

  /** Revokes one token (the presenting session's, on `logout`) of `user`. */
  async revokeToken(user: Pick<UserRecord, "id" | "name">, id: number, remote: string) {
    const gone = await this.#store.revokeSessionTokens(user.id, id);
    void this.#audit("logout", user.name, remote, { id, revoked: gone.length });
  }

  /**
   * Checks a login by password or by session token (exactly one); throws `throttled`, `busy`,
   * `auth_failed` or `bad_frame`.
   */
  async login(req: LoginRequest, remote: string): Promise<LoginResult> {
    const key = typeof req.user === "string" ? req.user.toLowerCase().slice(0, 64) : "";
    const device = checkDevice(req.device);
    if ((req.password === undefined) === (req.token === undefined)) {
      throw new ChatError("bad_frame", "Cannot log in: give either password or token");
    }
    const address = this.#addressKey(remote);
    // Charged before the slow check (MUST stay synchronous with the check of the buckets): a
    // charge made only after the hash let every parallel guess pass the check.
    const charged = this.#charge(key, address);
    if (typeof charged === "number") {
      void this.#audit("login_throttled", key || null, remote);
      throw new ChatError("throttled", "Cannot log in: too many failed attempts, retry later", {
        retryAfterMs: charged,
      });
    }
    const refund = charged;
    if (req.token !== undefined) {
      return await this.#tokenLogin(key, req.user, req.token, remote, refund);
    }
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
    return await this.#withToken(current, device, remote);
  }

  /** The token half of login: no password hashing, a constant-time compare of digests. */
  async #tokenLogin(
    key: string,
    name: unknown,
    token: unknown,
    remote: string,
    refund: () => void,
  ): Promise<LoginResult> {
    const m = typeof token === "string" ? TOKEN_FORMAT.exec(token) : null;
    const user = key && wellFormedName(name) ? await this.#store.userByName(key) : null;
    const rec = m ? await this.#store.sessionToken(Number(m[1])) : null;
    const digest = await sha256Hex(m ? m[2] : "");
    const now = this.#clock();
    const match = sameDigest(digest, rec?.tokenHash ?? "0".repeat(64));
    const reason = !m
      ? "malformed_token"
      : !user
      ? "unknown_user"
      : !rec || rec.userId !== user.id || !match
      ? "bad_token"
      : rec.expiresAt <= now
      ? "expired_token"
      : user.disabled
      ? "disabled"
      : null;
    if (reason !== null || !user || !rec) {
      if (reason === "expired_token" && rec) {
        await this.#store.revokeSessionTokens(rec.userId, rec.id).catch(() => {});
      }
      void this.#audit("login_failed", key || null, remote, { reason });
      throw new ChatError("auth_failed", TOKEN_FAILED_MESSAGE);
    }
    refund();
    // Last use is bookkeeping: the login does not wait for it.
    this.#store.touchSessionToken(rec.id, now).catch(() => {});
    void this.#audit("login", user.name, remote, { token: rec.id });
    return { user, token: { id: rec.id, device: rec.device } };
  }

  /**
   * Changes a password after checking the old one. A check is charged like a login attempt first
   * (refunded when the old password is right), so a session cannot fill the hash queue. Revokes
   * every session token of the account; with `device` (the session's own token) a new token for
   * that device is issued and returned.
   */
  async changePassword(
    user: Pick<UserRecord, "id" | "name">,
    oldPw: string,
    newPw: string,
    remote: string,
    device?: string,
  ): Promise<{ issued?: { id: number; token: string; expiresAt: number } }> {
    checkPassword(newPw);
    const key = user.name.toLowerCase();
    const charged = this.#charge(key, this.#addressKey(remote));
    if (typeof charged === "number") {
      void this.#audit("passwd_throttled", user.name, remote);
      throw new ChatError(
        "throttled",
        "Cannot change password: too many wrong old passwords, retry later",
        { retryAfterMs: charged },
      );
    }
    const current = await this.#store.userById(user.id);
    let ok = false;
    if (current && typeof oldPw === "string" && oldPw.isWellFormed()) {
      try {
        ok = await this.#hasher.verify(oldPw, current.passwordHash);
      } catch (err) {
        charged();
        throw err;
      }
    }
    if (!ok) {
      void this.#audit("passwd_failed", user.name, remote);
      throw new ChatError("auth_failed", "Cannot change password: the old password is wrong");
    }
    charged();
    await this.#store.updateUser(user.id, { passwordHash: await this.#hasher.hash(newPw) });
    const revoked = await this.#store.revokeSessionTokens(user.id);
    await this.#audit("passwd", user.name, remote, { tokensRevoked: revoked.length });
    if (device === undefined) return {};
    return { issued: await this.issueToken(user, device, remote) };
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
