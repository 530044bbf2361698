// Owns a loopback TCP proxy for fault tests: one client's link to a server can be cut and
// restored (on the same port) while everyone else stays connected.
import { freePort } from "./nats.ts";

/** Forwards 127.0.0.1:<port> to `target`; `await using` stops it. */
export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  readonly #target: number;
  #listener: Deno.Listener | null = null;
  #loop: Promise<void> = Promise.resolve();
  #pairs = new Set<[Deno.Conn, Deno.Conn]>();
  #pipes = new Set<Promise<void>>();

  constructor(targetPort: number) {
    this.#target = targetPort;
    this.port = freePort();
    this.restore();
  }

  /** Accepts and forwards again (after `cut`). */
  restore(): void {
    if (this.#listener) return;
    const l = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.#listener = l;
    this.#loop = (async () => {
      for (;;) {
        let c: Deno.Conn;
        try {
          c = await l.accept();
        } catch {
          return;
        }
        let up: Deno.Conn;
        try {
          up = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
        } catch {
          c.close();
          continue;
        }
        const pair: [Deno.Conn, Deno.Conn] = [c, up];
        this.#pairs.add(pair);
        const p = Promise.all([pipe(c, up), pipe(up, c)]).then(() => {
          this.#pairs.delete(pair);
          for (const x of pair) {
            try {
              x.close();
            } catch { /* closed */ }
          }
        });
        this.#pipes.add(p);
        p.then(() => this.#pipes.delete(p));
      }
    })();
  }

  /** Closes every forwarded connection and refuses new ones until `restore`. */
  async cut(): Promise<void> {
    this.#listener?.close();
    this.#listener = null;
    await this.#loop;
    for (const pair of this.#pairs) {
      for (const x of pair) {
        try {
          x.close();
        } catch { /* closed */ }
      }
    }
    await Promise.all([...this.#pipes]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cut();
  }
}

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } catch { /* one side closed */ }
  try {
    await to.closeWrite();
  } catch { /* closed */ }
}
