// Owns chat/1 over WebSocket: one chat/1 frame per WebSocket message, in and out, on a TLS conn
// that an HTTP upgrade handed over (src/web/web_service.ts).
import {
  encodeWsClose,
  encodeWsFrame,
  WS_BINARY,
  WS_CLOSE,
  WS_PING,
  WS_PONG,
  WS_TEXT,
  WsDecoder,
} from "../protocol/websocket_codec.ts";
import { concatBytes } from "../protocol/concat_bytes.ts";
import type { ByteConn, MessageTransport } from "./transport.ts";

const LF = 0x0a;
const READ_BUFFER = 16384;

/**
 * WebSocket messages as a MessageTransport.
 *
 * 1. Inbound: a text or binary message is one chat/1 frame (the line without its newline). A
 *    message over `maxMessageBytes` (the server's maxLineBytes) throws `line_too_long` as soon as
 *    its length is declared, before its payload is held. Nothing is read while the session does
 *    not call `read`, so TCP pushes back on the browser as on any client.
 * 2. Outbound: the session writes chat/1 lines (the send queue may join several in one write);
 *    each line leaves as one text message. `write` resolves once the bytes are taken by the
 *    socket, so a reader that does not read fills the send queue and is cut at its bound.
 * 3. Pings are answered with pongs; a close frame ends the stream (answered with a close).
 * 4. Writes (the queue's and the pongs) are serialised: frames never interleave.
 */
export class WebSocketTransport implements MessageTransport {
  readonly remote: string;
  #conn: ByteConn;
  #decoder: WsDecoder;
  #pending: Uint8Array | null;
  #buf = new Uint8Array(READ_BUFFER);
  #writing: Promise<void> = Promise.resolve();
  /** A line the last write left unfinished (the queue never splits one; kept to be safe). */
  #carry: Uint8Array | null = null;
  #closed = false;
  #closeCode = 1000;
  #peerClosed = false;

  /** `leftover`: bytes read past the upgrade request (a client may send its first frame early). */
  constructor(conn: ByteConn, remote: string, maxMessageBytes: number, leftover?: Uint8Array) {
    this.#conn = conn;
    this.remote = remote;
    this.#decoder = new WsDecoder(maxMessageBytes);
    this.#pending = leftover && leftover.length > 0 ? leftover : null;
  }

  async read(): Promise<Uint8Array[] | null> {
    for (;;) {
      if (this.#peerClosed) return null;
      let chunk: Uint8Array;
      if (this.#pending) {
        chunk = this.#pending;
        this.#pending = null;
      } else {
        const n = await this.#conn.read(this.#buf);
        if (n === null) return null;
        chunk = this.#buf.subarray(0, n);
      }
      let msgs;
      try {
        msgs = this.#decoder.push(chunk);
      } catch (err) {
        this.#closeCode = (err as { code?: string }).code === "line_too_long" ? 1009 : 1002;
        throw err;
      }
      const out: Uint8Array[] = [];
      for (const m of msgs) {
        if (m.opcode === WS_TEXT || m.opcode === WS_BINARY) {
          out.push(m.data);
        } else if (m.opcode === WS_PING) {
          void this.#send(encodeWsFrame(WS_PONG, m.data)).catch(() => {});
        } else if (m.opcode === WS_CLOSE) {
          // The messages before it are still handled; the next read ends the stream.
          this.#peerClosed = true;
          break;
        }
      }
      if (out.length > 0) return out;
      if (this.#peerClosed) return null;
    }
  }

  async write(p: Uint8Array): Promise<number> {
    const taken = p.length;
    const bytes = this.#carry ? concatBytes([this.#carry, p]) : p;
    this.#carry = null;
    const frames: Uint8Array[] = [];
    let start = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(LF, start);
      if (nl === -1) {
        this.#carry = bytes.slice(start);
        break;
      }
      if (nl > start) frames.push(encodeWsFrame(WS_TEXT, bytes.subarray(start, nl)));
      start = nl + 1;
    }
    if (frames.length > 0) {
      await this.#send(concatBytes(frames));
    }
    return taken;
  }

  #send(bytes: Uint8Array): Promise<void> {
    const next = this.#writing.then(() => writeAll(this.#conn, bytes));
    this.#writing = next.catch(() => {});
    return next;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Says goodbye in WebSocket terms when the socket takes it promptly; closes either way.
    const timer = setTimeout(() => this.#end(), 500);
    this.#send(encodeWsClose(this.#closeCode)).catch(() => {}).finally(() => {
      clearTimeout(timer);
      this.#end();
    });
  }

  #end(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

async function writeAll(conn: ByteConn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
