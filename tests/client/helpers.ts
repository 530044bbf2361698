// Owns what the client tests share: trust setup for test servers, temp config dirs, waiting.
import { certificateInfo } from "../../src/tls/certificate.ts";
import { KnownServers } from "../../src/client/known_servers.ts";
import { TrustPolicy } from "../../src/client/trust.ts";
import type { ConnectionEvent } from "../../src/client/connection.ts";

/** The server certificate's fingerprint as `sha256:AB:CD:…`. */
export async function fingerprintOf(certPem: string): Promise<string> {
  return `sha256:${(await certificateInfo(certPem)).fingerprintSha256}`;
}

/** A temp config dir (for known_servers), removed on dispose. */
export async function tempConfigDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "chat-client-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** A trust policy pinning the test server's certificate (as `--trust-fingerprint`). */
export async function pinnedPolicy(dir: string, certPem: string): Promise<TrustPolicy> {
  const known = await KnownServers.load(`${dir}/known_servers`);
  const fp = (await certificateInfo(certPem)).fingerprintSha256;
  return new TrustPolicy({ known, pinned: fp, warn: () => {} });
}

/** Collects connection events and lets a test wait for one. */
export class EventLog {
  readonly events: ConnectionEvent[] = [];
  #waiters: { pred: (e: ConnectionEvent) => boolean; resolve: () => void }[] = [];

  readonly push = (e: ConnectionEvent): void => {
    this.events.push(e);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.pred(e)) return true;
      w.resolve();
      return false;
    });
  };

  /** Resolves when an event matching `pred` was logged (before or after the call). */
  async waitFor(
    pred: (e: ConnectionEvent) => boolean,
    what: string,
    timeoutMs = 15000,
  ): Promise<void> {
    if (this.events.some(pred)) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#waiters.push({ pred, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`timed out waiting for ${what}; events: ${JSON.stringify(this.events)}`),
            ),
          timeoutMs,
        );
      }),
    ]);
    clearTimeout(timer);
  }

  /** Bodies of the message events, in order. */
  bodies(): string[] {
    return this.events.flatMap((e) => e.type === "msg" ? [e.msg.body] : []);
  }
}

/** Polls `cond` every 20 ms until true or `timeoutMs` passed; throws with `what` on timeout. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
