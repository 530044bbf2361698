// Owns throwaway nats-server instances for tests: a free loopback port, no auth, stop and
// restart on the same port, and the skip (or, in CI, the failure) when nats-server is missing.

/** Where nats-server is looked for (Debian's package installs /usr/sbin/nats-server). */
const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

function findNatsServer(): string | null {
  for (const p of CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

const BINARY = findNatsServer();

/**
 * True when tests that need nats-server can run. When it is missing they are skipped with one
 * loud line, except in CI (`CI=true`), where a missing nats-server fails the run.
 */
export const NATS_AVAILABLE: boolean = (() => {
  if (BINARY) return true;
  if (Deno.env.get("CI") === "true") {
    throw new Error("nats-server is not installed, and CI must run the bus tests (.ci/run)");
  }
  console.warn("SKIPPED: nats-server not found (apt-get install nats-server): bus tests skipped");
  return false;
})();

/** A port free on 127.0.0.1 right now (the kernel's choice). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A nats-server on 127.0.0.1; `await using` stops it. */
export class NatsServer implements AsyncDisposable {
  readonly port: number;
  #child: Deno.ChildProcess | null = null;
  #log = "";
  #draining: Promise<void> = Promise.resolve();

  private constructor(port: number) {
    this.port = port;
  }

  /** `nats://127.0.0.1:<port>` */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== null;
  }

  /** Starts a server on a free port and waits until it says it is ready. */
  static async start(): Promise<NatsServer> {
    if (!BINARY) throw new Error("nats-server is not installed");
    const s = new NatsServer(freePort());
    await s.#spawn();
    return s;
  }

  async #spawn(): Promise<void> {
    const child = new Deno.Command(BINARY!, {
      args: ["-a", "127.0.0.1", "-p", String(this.port)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    // nats-server logs to stderr; "Server is ready" comes once it accepts clients.
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let ready = false;
    while (!ready) {
      const { value, done } = await reader.read();
      if (done) break;
      this.#log += value;
      ready = this.#log.includes("Server is ready");
    }
    if (!ready) {
      await child.status;
      this.#child = null;
      throw new Error(`nats-server did not start on port ${this.port}:\n${this.#log}`);
    }
    // Keep draining its log so the pipe never fills.
    this.#draining = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          this.#log += value;
        }
      } catch { /* gone */ }
    })();
  }

  /** Stops the server (`SIGKILL`: an outage, not a goodbye) and waits for it to exit. */
  async stop(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = null;
    try {
      child.kill(signal);
    } catch { /* exited */ }
    await child.status;
    await this.#draining;
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
