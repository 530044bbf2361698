// Owns the bench's IRC speaker (NICK/USER/JOIN/PRIVMSG over TLS), to measure an IRC server alike.
import { ChatError } from "../errors.ts";
import type { BenchClient, ProtocolAdapter } from "./adapter.ts";
import { LineClient } from "./line_client.ts";

const decoder = new TextDecoder();
const SPACE = 0x20;
const COLON = 0x3a;
const P = 0x50;

/** Room number → channel: room 0 is `#general`. */
export function ircChannel(room: number): string {
  return room === 0 ? "#general" : `#bench-${room}`;
}

class IrcClient extends LineClient implements BenchClient {
  #quitting = false;

  protected override onLoginNoise(line: string): void {
    if (line.startsWith("PING")) this.write("PONG" + line.slice(4) + "\r\n");
  }

  protected onLine(buf: Uint8Array, start: number, end: number, now: number): void {
    // ":nick!user@host PRIVMSG #chan :body" — the command is the second word.
    let i = start;
    if (buf[i] === COLON) {
      i = buf.indexOf(SPACE, i);
      if (i < 0 || i >= end) return;
      i++;
    }
    if (buf[i] === P && buf[i + 1] === 0x52 && buf[i + 2] === 0x49) { // PRI(VMSG)
      this.hooks.onDelivery(this.index, buf, start, end, now);
      return;
    }
    const text = decoder.decode(buf.subarray(start, end));
    if (text.startsWith("PING")) {
      this.write("PONG" + text.slice(4) + "\r\n");
    } else if (/^:\S+ PONG /.test(text)) {
      this.hooks.onPong(this.index, now);
    } else if (this.#quitting) {
      return; // ERROR :Closing link … answers our QUIT
    } else if (/^:\S+ (4\d\d|5\d\d) /.test(text) || text.startsWith("ERROR")) {
      this.hooks.onError(this.index, text.split(" ")[1] ?? "ERROR");
    }
  }

  sendBody(room: number, body: string): void {
    this.write(`PRIVMSG ${ircChannel(room)} :${body}\r\n`);
  }

  probe(): void {
    this.write("PING :probe\r\n");
  }

  quit(): void {
    this.#quitting = true;
    this.write("QUIT :bench done\r\n");
    this.closeSoon(200);
  }
}

/**
 * IRC over TLS (no ALPN). The account is the nick, its password goes in PASS (ignored by an IRC
 * server without a connection password). Ready after RPL_WELCOME (001) and the end of NAMES (366) of the channel.
 */
export const IRC_ADAPTER: ProtocolAdapter = {
  name: "irc",
  acks: false,
  rooms: true,
  bodySuffix: 0,
  probes: true,
  async open(o): Promise<BenchClient> {
    const deadline = Date.now() + o.timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const conn = await LineClient.dial(o.endpoint, []);
    const c = new IrcClient(o.index, conn, o.hooks, o.bufBytes);
    c.maxWriteBytes = 1024;
    try {
      const nick = o.credentials.user;
      // PASS: our server's account password (a new name registers when registration is open);
      // servers without a connection password, such as a default ngircd, ignore it.
      c.write(`PASS ${o.credentials.password}\r\nNICK ${nick}\r\nUSER ${nick} 0 * :chat bench\r\n`);
      const welcome = await c.waitLine(
        (l) => /^:\S+ (001|4\d\d) /.test(l) || /^ERROR/.test(l),
        left(),
      );
      if (!/^:\S+ 001 /.test(welcome)) {
        throw new ChatError("login_failed", `Cannot register ${nick}: ${welcome || "closed"}`);
      }
      const chan = ircChannel(o.room);
      c.write(`JOIN ${chan}\r\n`);
      const names = await c.waitLine(
        // 422 (ERR_NOMOTD) ends a registration burst; it is not a refusal of the JOIN.
        (l) => /^:\S+ (366|4(?!22)\d\d) /.test(l) || /^ERROR/.test(l),
        left(),
      );
      if (!/^:\S+ 366 /.test(names)) {
        throw new ChatError("login_failed", `Cannot join ${chan}: ${names || "closed"}`);
      }
      c.goLive();
      return c;
    } catch (err) {
      c.close();
      throw err;
    }
  },
};
