// Owns the bench's speaker of the seed text protocol (PROTOCOL.md §10): dialogue, lines, `name: body`.
import { ChatError } from "../errors.ts";
import type { BenchClient, ProtocolAdapter } from "./adapter.ts";
import { LineClient } from "./line_client.ts";

const LBRACKET = 0x5b;

class SeedClient extends LineClient implements BenchClient {
  protected onLine(buf: Uint8Array, start: number, end: number, now: number): void {
    if (buf[start] === LBRACKET) {
      // Notices: [USERS_LIST], [JOINED], [LEFT], [ERROR] code: …, [SERVER] code: …
      if (buf[start + 1] === 0x45 || buf[start + 1] === 0x53) { // [ERROR] / [SERVER]
        const text = new TextDecoder().decode(buf.subarray(start, end));
        const m = /^\[(?:ERROR|SERVER)\] (\w+)/.exec(text);
        if (m) this.hooks.onError(this.index, m[1]);
      }
      return;
    }
    this.hooks.onDelivery(this.index, buf, start, end, now);
  }

  sendBody(_room: number, body: string): void {
    this.write(body + "\n");
  }

  probe(): void {}

  quit(): void {
    this.close();
  }
}

/**
 * The seed protocol: TLS without ALPN, everyone in `general`, no acknowledgements and no ping (a
 * seed client has neither). `auto` tries LOGIN, then REGISTER after AUTH_FAILED.
 */
export const SEED_ADAPTER: ProtocolAdapter = {
  name: "seed",
  acks: false,
  rooms: false,
  bodySuffix: 0,
  probes: false,
  async open(o): Promise<BenchClient> {
    const deadline = Date.now() + o.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const conn = await LineClient.dial(o.endpoint, []);
    const c = new SeedClient(o.index, conn, o.hooks, o.bufBytes);
    try {
      const cr = o.credentials;
      const tries: string[] = cr.mode === "auto"
        ? ["LOGIN", "REGISTER"]
        : [cr.mode === "login" ? "LOGIN" : "REGISTER"];
      let last = "";
      for (const verb of tries) {
        const ask = await c.waitLine((l) => l === "AUTH_REQUIRED", left());
        if (!ask) break;
        // The dialogue may be sent at once (§10: lines are handled in order).
        c.write(`${verb}\n${cr.user}\n${cr.password}\n`);
        last = await c.waitLine((l) => l === "AUTH_SUCCESS" || l === "AUTH_FAILED", left());
        if (last === "AUTH_SUCCESS") {
          c.goLive();
          return c;
        }
      }
      throw new ChatError("login_failed", `Cannot log in ${cr.user}: ${last || "closed"}`);
    } catch (err) {
      c.close();
      throw err;
    }
  },
};
