import { assertEquals } from "../harness/assert.ts";
import { KeyedBuckets, TokenBucket } from "../../src/server/token_bucket.ts";

function fakeClock(start = 1000) {
  let now = start;
  return { clock: () => now, advance: (ms: number) => now += ms };
}

Deno.test("TokenBucket allows a burst, then one token per refill interval", () => {
  const t = fakeClock();
  const b = new TokenBucket({ capacity: 3, refillMs: 100, clock: t.clock });
  assertEquals([b.take(), b.take(), b.take()], [0, 0, 0]);
  assertEquals(b.take(), 100);
  t.advance(50);
  assertEquals(b.take(), 50);
  t.advance(50);
  assertEquals(b.take(), 0);
  assertEquals(b.peek(), 100);
});

Deno.test("TokenBucket never holds more than its capacity", () => {
  const t = fakeClock();
  const b = new TokenBucket({ capacity: 2, refillMs: 10, clock: t.clock });
  t.advance(10_000);
  assertEquals([b.take(), b.take(), b.take() > 0], [0, 0, true]);
});

Deno.test("KeyedBuckets keeps keys apart and bounds the number of keys", () => {
  const t = fakeClock();
  const k = new KeyedBuckets({ capacity: 1, refillMs: 1000, clock: t.clock, maxKeys: 10 });
  assertEquals(k.take("a"), 0);
  assertEquals(k.take("b"), 0);
  assertEquals(k.take("a") > 0, true);
  for (let i = 0; i < 100; i++) k.take(`k${i}`);
  assertEquals(k.size <= 10, true);
  t.advance(1000);
  assertEquals(k.peek("never-seen"), 0);
});

Deno.test("KeyedBuckets: cycling new keys never evicts a charged bucket; new keys wait instead", () => {
  const t = fakeClock();
  const k = new KeyedBuckets({ capacity: 2, refillMs: 1000, clock: t.clock, maxKeys: 10 });
  assertEquals([k.take("victim"), k.take("victim")], [0, 0]);
  assertEquals(k.take("victim"), 1000);
  const attacker: number[] = [];
  for (let i = 0; i < 100; i++) attacker.push(k.take(`cycle-${i}`));
  assertEquals(k.take("victim") > 0, true, "the victim's bucket was reset");
  assertEquals(k.size <= 10, true);
  // Nine keys fit beside the victim; the rest are refused until a bucket is full again.
  assertEquals(attacker.filter((w) => w === 0).length, 9);
  assertEquals(attacker.slice(9).every((w) => w > 0), true);
  assertEquals(k.peek("unseen") > 0, true, "a key that cannot be tracked must not look free");
  t.advance(1000); // cycle-* buckets (capacity 2, one taken) are full again: forgettable
  assertEquals(k.take("newcomer"), 0);
  assertEquals(k.take("victim"), 0); // one token back after 1000 ms, as the bucket says
  assertEquals(k.take("victim") > 0, true);
});

Deno.test("KeyedBuckets.refund() gives one token back, never past the capacity", () => {
  const t = fakeClock();
  const k = new KeyedBuckets({ capacity: 1, refillMs: 1000, clock: t.clock });
  assertEquals(k.take("a"), 0);
  k.refund("a");
  assertEquals(k.take("a"), 0);
  assertEquals(k.take("a") > 0, true);
  k.refund("a");
  k.refund("a");
  assertEquals([k.take("a"), k.take("a") > 0], [0, true]);
});

Deno.test("TokenBucket's wait is exact after a partial refill: 499 ms into 500 leaves 1 ms, not 2", () => {
  const t = fakeClock();
  const b = new TokenBucket({ capacity: 1, refillMs: 500, clock: t.clock });
  assertEquals([b.take(), b.take()], [0, 500]);
  t.advance(499);
  assertEquals([b.peek(), b.take()], [1, 1]);
  t.advance(1);
  assertEquals(b.take(), 0);
});
