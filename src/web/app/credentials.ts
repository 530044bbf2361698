/// <reference lib="dom" />
// Owns what the app logs in with, in memory only (never storage, never a cookie).
//
// Seam for revocable session tokens: today the password is kept in this module's memory for the
// life of the page, so a reconnect can log in again. When chat/1 `login` takes a token, `remember`
// keeps the token the server issued instead of the password, `loginFrame` sends it, and `forget`
// (logout) sends its revocation. Nothing else in the app sees the secret.

export interface Credentials {
  user: string;
  password: string;
}

let held: Credentials | null = null;

export function remember(c: Credentials): void {
  held = { ...c };
}

export function forget(): void {
  held = null;
}

export function heldUser(): string | null {
  return held?.user ?? null;
}

/** The frame that logs in again after a reconnect, or null when there is nothing to log in with. */
export function loginFrame(
  resume: { rooms: Record<string, number>; dm: number },
): Record<string, unknown> | null {
  if (!held) return null;
  return { type: "login", user: held.user, password: held.password, resume };
}
