import { assert, assertEquals } from "../harness/assert.ts";
import { concatBytes } from "../../src/protocol/concat_bytes.ts";

const b = (...xs: number[]) => new Uint8Array(xs);

const cases: { name: string; chunks: Uint8Array[]; want: number[] }[] = [
  { name: "no chunks", chunks: [], want: [] },
  { name: "one chunk", chunks: [b(1, 2)], want: [1, 2] },
  { name: "several chunks", chunks: [b(1), b(), b(2, 3)], want: [1, 2, 3] },
];

for (const c of cases) {
  Deno.test(`concatBytes() joins ${c.name}`, () => {
    assertEquals([...concatBytes(c.chunks)], c.want);
  });
}

Deno.test("concatBytes() returns a single chunk without copying, and copies several", () => {
  const one = b(7);
  assert(concatBytes([one]) === one);
  const parts = [b(1), b(2)];
  const joined = concatBytes(parts, 2);
  parts[0][0] = 9;
  assertEquals([...joined], [1, 2]);
});
