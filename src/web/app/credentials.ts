/// <reference lib="dom" />
// Owns the session token the app reconnects with (docs/PROTOCOL.md §2.1), in this page's memory
// only: never storage, a cookie or the URL. The password is never kept (docs/WEB.md "Credentials").

/** What a login left: the account and the revocable token the server issued for this page. */
export interface Session {
  user: string;
  token: string;
  /** ms since the epoch (`tokenExpiresAt`). */
  expiresAt: number;
}

let held: Session | null = null;

/** Keeps the token of a login's `ok` (replacing any earlier one, e.g. after `passwd`). */
export function remember(s: Session): void {
  held = { ...s };
}

/** Drops the token (sign-out, or the server refused it): nothing is left to log in with. */
export function forget(): void {
  held = null;
}

/**
 * The frame that logs in again after a reconnect, with the token and the resume points, or null
 * when there is nothing to log in with (never a password: it was not kept).
 */
export function loginFrame(
  resume: { rooms: Record<string, number>; dm: number },
): Record<string, unknown> | null {
  if (!held) return null;
  return { type: "login", user: held.user, token: held.token, resume };
}
