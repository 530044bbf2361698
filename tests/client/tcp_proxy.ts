// Owns a real TCP relay for tests that need a network fault: refuse new connections, silently
// drop the server's bytes, or cut every connection — between a real client and a real server.

interface Pair {
  client: Deno.Conn;
  server: Deno.Conn;
  done: Promise<void>;
}

/** A loopback TCP proxy to `127.0.0.1:targetPort`; `await using` closes everything. */
export class TcpProxy implements AsyncDisposable {
  readonly port: number;
  targetPort: number;
  /** New connections are closed at once (the "network" is down). */
  blocked = false;
  /** Bytes from the server are read and thrown away (acks get lost). */
  dropFromServer = false;
  #listener: Deno.Listener;
  #pairs = new Set<Pair>();
  #accepting: Promise<void>;
  #handshakes = new Set<Promise<void>>();

  private constructor(listener: Deno.Listener, targetPort: number) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.targetPort = targetPort;
    this.#accepting = this.#accept();
  }

  static start(targetPort: number): TcpProxy {
    return new TcpProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), targetPort);
  }

  /** Connections currently relayed. */
  get connections(): number {
    return this.#pairs.size;
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      if (this.blocked) {
        client.close();
        continue;
      }
      const p = this.#connect(client);
      this.#handshakes.add(p);
      p.finally(() => this.#handshakes.delete(p));
    }
  }

  async #connect(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
    } catch {
      client.close();
      return;
    }
    const pair = { client, server } as Pair;
    pair.done = Promise.all([
      this.#pump(client, server, () => false),
      this.#pump(server, client, () => this.dropFromServer),
    ]).then(() => {
      this.#pairs.delete(pair);
    });
    this.#pairs.add(pair);
  }

  async #pump(from: Deno.Conn, to: Deno.Conn, drop: () => boolean): Promise<void> {
    const buf = new Uint8Array(16384);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        if (drop()) continue;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  }

  /** Closes every relayed connection (both sides see a reset or EOF). */
  async cutAll(): Promise<void> {
    const pairs = [...this.#pairs];
    for (const p of pairs) {
      for (const c of [p.client, p.server]) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
    }
    await Promise.all(pairs.map((p) => p.done));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#accepting.catch(() => {});
    await Promise.all(this.#handshakes);
    await this.cutAll();
  }
}
