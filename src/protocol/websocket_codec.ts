// Owns WebSocket framing (RFC 6455), server side: masked client frames in, whole messages out,
// with a hard cap on a message's size; unmasked server frames out. Pure: no I/O.
import { ChatError } from "../errors.ts";
import { concatBytes } from "./concat_bytes.ts";

export const WS_TEXT = 0x1;
export const WS_BINARY = 0x2;
export const WS_CLOSE = 0x8;
export const WS_PING = 0x9;
export const WS_PONG = 0xa;

/** One whole message or control frame from the client. */
export interface WsMessage {
  opcode: number;
  data: Uint8Array;
}

/** The GUID of RFC 6455 §1.3 that turns a client key into the accept value. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`. */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + WS_GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

function protocolError(detail: string): ChatError {
  return new ChatError("bad_frame", `Cannot read WebSocket frame: ${detail}`, { fatal: true });
}

/**
 * Splits the client's byte stream into messages. `push` returns the complete messages and
 * control frames in a chunk, in order. Holds at most one unfinished frame header (14 bytes) and
 * `maxMessageBytes` of an unfinished message: a frame whose declared length would take a message
 * over that throws `line_too_long` before any of its payload is kept (the same cap and the same
 * answer as a chat/1 line). Unmasked frames, reserved bits, unknown opcodes and fragmented or
 * long control frames throw `bad_frame` (fatal).
 */
export class WsDecoder {
  #max: number;
  #buf: Uint8Array = new Uint8Array(0);
  /** Fragments of the data message being reassembled, and its opcode (0: none). */
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #opcode = 0;

  constructor(maxMessageBytes: number) {
    this.#max = maxMessageBytes;
  }

  push(chunk: Uint8Array): WsMessage[] {
    const buf = this.#buf.length === 0 ? chunk : concatBytes([this.#buf, chunk]);
    const out: WsMessage[] = [];
    let at = 0;
    for (;;) {
      const f = this.#frame(buf, at);
      if (!f) break;
      at = f.next;
      if (f.msg) out.push(f.msg);
    }
    // Keep only the unfinished frame (copied: the caller may reuse its read buffer).
    this.#buf = buf.slice(at);
    return out;
  }

  #frame(buf: Uint8Array, at: number): { next: number; msg: WsMessage | null } | null {
    if (buf.length - at < 2) return null;
    const b0 = buf[at];
    const b1 = buf[at + 1];
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) throw protocolError("reserved bits set");
    if ((b1 & 0x80) === 0) throw protocolError("client frames must be masked");
    let len = b1 & 0x7f;
    let pos = at + 2;
    if (len === 126) {
      if (buf.length - pos < 2) return null;
      len = (buf[pos] << 8) | buf[pos + 1];
      pos += 2;
    } else if (len === 127) {
      if (buf.length - pos < 8) return null;
      const hi = (buf[pos] << 24 >>> 0) + (buf[pos + 1] << 16) + (buf[pos + 2] << 8) + buf[pos + 3];
      if (hi !== 0) throw this.#tooLong();
      len = (buf[pos + 4] << 24 >>> 0) + (buf[pos + 5] << 16) + (buf[pos + 6] << 8) +
        buf[pos + 7];
      pos += 8;
    }
    const control = opcode >= 0x8;
    if (control) {
      if (opcode !== WS_CLOSE && opcode !== WS_PING && opcode !== WS_PONG) {
        throw protocolError(`unknown opcode ${opcode}`);
      }
      if (!fin || len > 125) throw protocolError("control frames must be whole and short");
    } else {
      if (opcode !== 0 && opcode !== WS_TEXT && opcode !== WS_BINARY) {
        throw protocolError(`unknown opcode ${opcode}`);
      }
      if (opcode === 0 && this.#opcode === 0) throw protocolError("continuation of nothing");
      if (opcode !== 0 && this.#opcode !== 0) throw protocolError("message inside a message");
      // Checked on the declared length, before the payload is held.
      if (this.#partBytes + len > this.#max) throw this.#tooLong();
    }
    if (buf.length - pos < 4 + len) {
      // Not here yet; keeps at most the cap (checked above) plus a header.
      return null;
    }
    const mask = buf.subarray(pos, pos + 4);
    pos += 4;
    const data = buf.slice(pos, pos + len);
    for (let i = 0; i < data.length; i++) data[i] ^= mask[i & 3];
    const next = pos + len;
    if (control) return { next, msg: { opcode, data } };
    if (opcode !== 0) this.#opcode = opcode;
    this.#parts.push(data);
    this.#partBytes += len;
    if (!fin) return { next, msg: null };
    const msg = { opcode: this.#opcode, data: concatBytes(this.#parts, this.#partBytes) };
    this.#parts = [];
    this.#partBytes = 0;
    this.#opcode = 0;
    return { next, msg };
  }

  #tooLong(): ChatError {
    return new ChatError(
      "line_too_long",
      `Cannot read message: longer than ${this.#max} bytes`,
      { fatal: true },
    );
  }
}

/** One unmasked, unfragmented server frame. */
export function encodeWsFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + n);
  out[0] = 0x80 | opcode;
  if (n < 126) {
    out[1] = n;
  } else if (n < 65536) {
    out[1] = 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    const v = new DataView(out.buffer);
    v.setUint32(2, Math.floor(n / 2 ** 32));
    v.setUint32(6, n >>> 0);
  }
  out.set(payload, head);
  return out;
}

/** A close frame with a status code (1000 normal, 1008 policy, 1009 too big). */
export function encodeWsClose(code: number): Uint8Array {
  return encodeWsFrame(WS_CLOSE, new Uint8Array([code >> 8, code & 0xff]));
}
