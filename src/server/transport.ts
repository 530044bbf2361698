// Owns the message-oriented connection under a session: whole messages in (lines over TLS today;
// WebSocket messages next), bytes out. Sessions never see how messages are framed.
import { LineSplitter } from "../protocol/line_decoder.ts";

/** A connection that delivers whole inbound messages and writes outbound bytes. */
export interface MessageTransport {
  /** The peer's address, normalised (limits and logs key on it). */
  readonly remote: string;
  /**
   * The next inbound messages (all complete ones from one read, in order), or null at the end of
   * the stream. Throws ChatError `line_too_long` (fatal) when a message is over the cap.
   * The messages MAY share the transport's read buffer: they are valid until the next `read`.
   */
  read(): Promise<Uint8Array[] | null>;
  /** Writes bytes (the send queue's sink); resolves with how many were taken. */
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** The byte stream a line transport reads and writes (a Deno.TlsConn after its handshake). */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Read buffer of a connection: its size while idle, and the most it grows to under load. */
const READ_BUFFER_MIN = 1024;
const READ_BUFFER_MAX = 16384;

/** Lines of at most `maxLineBytes` over a byte stream (chat/1, the seed protocol, IRC). */
export class LineTransport implements MessageTransport {
  readonly remote: string;
  #conn: ByteConn;
  #splitter: LineSplitter;
  /**
   * An idle connection keeps its read buffer pinned by the pending read: start small, grow (up to
   * 16 KiB) while reads fill it (a sender's burst), shrink after a quiet spell.
   */
  #buf = new Uint8Array(READ_BUFFER_MIN);
  #smallReads = 0;

  /**
   * `overlong: "skip"`: a line over the cap is dropped and read as an empty message (see
   * LineSplitter) instead of ending the connection.
   */
  constructor(
    conn: ByteConn,
    remote: string,
    maxLineBytes: number,
    opts: { overlong?: "fatal" | "skip" } = {},
  ) {
    this.#conn = conn;
    this.remote = remote;
    this.#splitter = new LineSplitter(maxLineBytes, opts);
  }

  async read(): Promise<Uint8Array[] | null> {
    for (;;) {
      const buf = this.#buf;
      const n = await this.#conn.read(buf);
      if (n === null) return null;
      if (n === buf.length && buf.length < READ_BUFFER_MAX) {
        this.#buf = new Uint8Array(buf.length * 4);
        this.#smallReads = 0;
      } else if (buf.length > READ_BUFFER_MIN && n < READ_BUFFER_MIN && ++this.#smallReads >= 64) {
        this.#buf = new Uint8Array(READ_BUFFER_MIN);
        this.#smallReads = 0;
      }
      // Complete lines are views of `buf` (valid until the next read); partial ones are copied.
      const lines = this.#splitter.push(buf.subarray(0, n));
      if (lines.length > 0) return lines;
    }
  }

  /** Pass empty lines on instead of skipping them (see LineSplitter.keepEmpty). */
  set keepEmptyLines(on: boolean) {
    this.#splitter.keepEmpty = on;
  }

  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  close(): void {
    this.#conn.close();
  }
}
