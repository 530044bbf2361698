import { assertEquals } from "../harness/assert.ts";
import { findLF } from "../../src/bench/line_client.ts";

Deno.test("findLF finds the same LF as indexOf at every alignment, including none and bytes 0x0b/0x8a", () => {
  // Seeded pseudo-random bytes, LF sparse; 0x0b and 0x8a are the neighbours a borrow could flag.
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const alphabet = [0x0a, 0x0b, 0x8a, 0x09, 0x00, 0xff, 0x41, 0x7b];
  for (let round = 0; round < 200; round++) {
    const buf = new Uint8Array(64 + Math.floor(rnd() * 64));
    for (let i = 0; i < buf.length; i++) {
      buf[i] = rnd() < 0.05 ? 0x0a : alphabet[1 + Math.floor(rnd() * (alphabet.length - 1))];
    }
    const words = new Uint32Array(buf.buffer, 0, buf.length >> 2);
    for (let from = 0; from < 9; from++) {
      const to = buf.length - Math.floor(rnd() * 5);
      const want = buf.subarray(0, to).indexOf(0x0a, from);
      assertEquals(findLF(buf, words, from, to), want, `round ${round} from ${from} to ${to}`);
    }
  }
  const none = new Uint8Array(40).fill(0x0b);
  assertEquals(findLF(none, new Uint32Array(none.buffer), 0, 40), -1);
});
