// Owns what the client tests share: trust setup for test servers, waiting.
import { certificateInfo } from "../../src/tls/certificate.ts";
import { KnownServers } from "../../src/client/known_servers.ts";
import { TrustPolicy } from "../../src/client/trust.ts";
import type { ConnectionEvent } from "../../src/client/connection.ts";

/** The server certificate's fingerprint as `sha256:AB:CD:…`. */
export async function fingerprintOf(certPem: string): Promise<string> {
  return `sha256:${(await certificateInfo(certPem)).fingerprintSha256}`;
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

/** The repository root (where main.ts and deno.json are). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/** Permissions of `deno task chat` (see deno.json). */
export const CHAT_PERMISSIONS = [
  "--allow-ffi",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-run",
];

/** The argv that runs `chat connect …` from source. */
export function chatCommand(args: string[]): string[] {
  return [Deno.execPath(), "run", ...CHAT_PERMISSIONS, `${REPO_ROOT}main.ts`, "connect", ...args];
}

/** Runs `chat connect …` to completion with optional stdin text. */
export async function runChat(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = chatCommand(args);
  const child = new Deno.Command(cmd, {
    args: rest,
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", ...opts.env },
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A running `chat connect …` whose output is read line by line. */
export class ChatProcess implements AsyncDisposable {
  readonly stdoutLines: string[] = [];
  readonly stderrLines: string[] = [];
  #child: Deno.ChildProcess;
  #readers: Promise<void>;

  constructor(args: string[], env: Record<string, string>) {
    const [cmd, ...rest] = chatCommand(args);
    this.#child = new Deno.Command(cmd, {
      args: rest,
      cwd: REPO_ROOT,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#readers = Promise.all([
      collect(this.#child.stdout, this.stdoutLines),
      collect(this.#child.stderr, this.stderrLines),
    ]).then(() => {});
  }

  /** Waits until a stdout or stderr line satisfies `pred`. */
  async waitFor(
    stream: "stdout" | "stderr",
    pred: (line: string) => boolean,
    what: string,
    timeoutMs = 20000,
  ): Promise<string> {
    const lines = stream === "stdout" ? this.stdoutLines : this.stderrLines;
    let found: string | undefined;
    try {
      await until(() => (found = lines.find(pred)) !== undefined, what, timeoutMs);
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\nstdout:\n${this.stdoutLines.join("\n")}\nstderr:\n${
          this.stderrLines.join("\n")
        }`,
      );
    }
    return found!;
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    try {
      this.#child.kill(signal);
    } catch { /* already exited */ }
    const status = await this.#child.status;
    await this.#readers;
    return status.code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    const parts = rest.split("\n");
    rest = parts.pop()!;
    into.push(...parts);
  }
  if (rest) into.push(rest);
}
