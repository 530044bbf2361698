// Owns a raw IRC test client over real TLS: lines out, parsed messages in, awaited by predicate.
import { assertSettlesWithin } from "./assert.ts";
import { type IrcMessage, parseIrcText } from "../../src/protocol/irc_codec.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export type IrcPred = (m: IrcMessage) => boolean;

/** A test connection speaking IRC; `await using` closes it. */
export class IrcClient implements AsyncDisposable {
  readonly conn: Deno.TlsConn;
  /** Received and not yet taken, in arrival order. */
  readonly inbox: IrcMessage[] = [];
  /** Every line received, as text. */
  readonly raw: string[] = [];
  readonly closed: Promise<void>;
  #closedResolve!: () => void;
  #waiters: { pred: IrcPred; resolve: (m: IrcMessage) => void }[] = [];
  #reader: Promise<void>;
  #pings = 0;

  private constructor(conn: Deno.TlsConn) {
    this.conn = conn;
    this.closed = new Promise((r) => this.#closedResolve = r);
    this.#reader = this.#read();
  }

  static async connect(port: number, certPem: string, alpn: string[] = []): Promise<IrcClient> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [certPem],
      alpnProtocols: alpn,
    });
    return new IrcClient(conn);
  }

  /**
   * Connects and registers with SASL PLAIN (CAP LS 302, REQ `caps` + sasl, AUTHENTICATE, CAP
   * END); resolves after the end of the registration burst (RPL_ENDOFMOTD/ERR_NOMOTD).
   */
  static async sasl(
    port: number,
    certPem: string,
    user: string,
    opts: { password?: string; caps?: string[] } = {},
  ): Promise<IrcClient> {
    const c = await IrcClient.connect(port, certPem);
    const caps = ["sasl", ...(opts.caps ?? [])];
    c.send("CAP LS 302");
    await c.expect((m) => m.command === "CAP" && m.params[1] === "LS");
    c.send(`CAP REQ :${caps.join(" ")}`);
    await c.expect((m) => m.command === "CAP" && m.params[1] === "ACK");
    c.send(`NICK ${user}`);
    c.send(`USER ${user} 0 * :${user}`);
    c.send("AUTHENTICATE PLAIN");
    await c.expect((m) => m.command === "AUTHENTICATE" && m.params[0] === "+");
    c.send("AUTHENTICATE " + btoa(`\0${user}\0${opts.password ?? "password-" + user}`));
    const r = await c.expect((m) => m.command === "903" || m.command === "904");
    if (r.command !== "903") throw new Error(`SASL for ${user} failed: ${c.raw.join("\n")}`);
    c.send("CAP END");
    await c.expect((m) => m.command === "422" || m.command === "376");
    await c.barrier(); // the rest of the burst (JOIN, NAMES of each room) is dropped
    return c;
  }

  async #read(): Promise<void> {
    const splitter = new LineSplitter(1 << 20);
    const buf = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const line of splitter.push(buf.subarray(0, n))) {
          const text = dec.decode(line);
          this.raw.push(text);
          let m: IrcMessage;
          try {
            m = parseIrcText(text);
          } catch {
            continue;
          }
          const i = this.#waiters.findIndex((w) => w.pred(m));
          if (i >= 0) this.#waiters.splice(i, 1)[0].resolve(m);
          else this.inbox.push(m);
        }
      }
    } catch { /* reset */ }
    this.#closedResolve();
  }

  /** Writes one line (CR LF added). */
  send(line: string): void {
    this.write(line + "\r\n");
  }

  write(data: string | Uint8Array): void {
    this.conn.write(typeof data === "string" ? enc.encode(data) : data).catch(() => {});
  }

  async writeAll(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** The first message (received or future) matching `pred`; consumes it. */
  expect(pred: IrcPred, timeoutMs = 5000): Promise<IrcMessage> {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out waiting for a line; got:\n${this.raw.join("\n")}`));
      }, timeoutMs);
      const done = (m: IrcMessage) => {
        clearTimeout(timer);
        resolve(m);
      };
      this.#waiters.push({ pred, resolve: done });
    });
  }

  /** A numeric or command by name. */
  expectCommand(command: string, timeoutMs?: number): Promise<IrcMessage> {
    return this.expect((m) => m.command === command, timeoutMs);
  }

  /**
   * PING with a fresh token and wait for its PONG: everything the server queued for this client
   * before it handled the PING has arrived (it answers a connection's lines in order). Returns
   * the messages that arrived before the PONG and were not taken.
   */
  async barrier(): Promise<IrcMessage[]> {
    const token = `b${++this.#pings}`;
    this.send(`PING ${token}`);
    await this.expect((m) => m.command === "PONG" && m.params.at(-1) === token);
    return this.inbox.splice(0);
  }

  async expectClosed(timeoutMs = 5000): Promise<void> {
    await assertSettlesWithin(this.closed, timeoutMs, "server did not close");
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.#reader;
  }
}
