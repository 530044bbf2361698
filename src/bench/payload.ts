// Owns the benchmark message body: sender, sequence number and send time, found again in raw bytes.

const TILDE = 0x7e;
const B = 0x62;
const DOT = 0x2e;
const ZERO = 0x30;

/** Smallest body `encodeBody` makes for the largest numbers a run uses. */
export const MIN_PAYLOAD_BYTES = 24;

/**
 * A message body `~b<sender>.<seq>.<sentMicros>~` padded with `x` to `size` bytes. Only ASCII
 * letters, digits, `.` and `~`, so it passes every protocol unchanged (no JSON escaping, no IRC
 * or seed separators) and can be found by a byte scan without decoding the line.
 */
export function encodeBody(sender: number, seq: number, sentMicros: number, size: number): string {
  const head = `~b${sender}.${seq}.${Math.floor(sentMicros)}~`;
  return head.length >= size ? head : head + "x".repeat(size - head.length);
}

/** What `parseBody` found in a line. */
export interface ParsedBody {
  sender: number;
  seq: number;
  sentMicros: number;
}

/**
 * Finds a benchmark body in `buf[start, end)` (one received line, any protocol) and decodes it
 * into `out`. Returns false when the line carries none (presence, acks, notices). `hint` is where
 * the body probably starts (checked first, searched for when wrong).
 */
export function parseBody(
  buf: Uint8Array,
  start: number,
  end: number,
  out: ParsedBody,
  hint = -1,
): boolean {
  let i = start;
  if (hint >= start && hint + 1 < end && buf[hint] === TILDE && buf[hint + 1] === B) {
    i = hint; // where a body of the run's size starts: no search
  } else {
    for (;;) {
      i = buf.indexOf(TILDE, i);
      if (i < 0 || i + 1 >= end) return false;
      if (buf[i + 1] === B) break;
      i++;
    }
  }
  i += 2;
  const nums = [0, 0, 0];
  for (let k = 0; k < 3; k++) {
    let n = 0;
    let digits = 0;
    while (i < end) {
      const c = buf[i] - ZERO;
      if (c < 0 || c > 9) break;
      n = n * 10 + c;
      digits++;
      i++;
    }
    if (digits === 0 || i >= end) return false;
    const sep = buf[i++];
    if (k < 2 ? sep !== DOT : sep !== TILDE) return false;
    nums[k] = n;
  }
  out.sender = nums[0];
  out.seq = nums[1];
  out.sentMicros = nums[2];
  return true;
}
