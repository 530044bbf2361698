import { assertEquals, assertRejects } from "./assert.ts";
import { FakeClock } from "./fake_clock.ts";

Deno.test("FakeClock.now() moves only on advance(), which runs due timers in due order", async () => {
  const c = new FakeClock(1000);
  const ran: [string, number][] = [];
  c.setTimeout(() => ran.push(["b", c.now()]), 20);
  c.setTimeout(() => ran.push(["a", c.now()]), 10);
  c.setTimeout(() => ran.push(["b2", c.now()]), 20);
  await Promise.resolve();
  assertEquals([c.now(), ran, c.pending], [1000, [], 3]);
  await c.advance(19);
  assertEquals([c.now(), ran], [1019, [["a", 1010]]]);
  await c.advance(1);
  assertEquals(
    ran,
    [["a", 1010], ["b", 1020], ["b2", 1020]],
    "ties run in the order they were set",
  );
  assertEquals(c.pending, 0);
});

Deno.test("FakeClock.advance() runs timers set by timers when they fall due within the advance", async () => {
  const c = new FakeClock(0);
  const ran: number[] = [];
  c.setTimeout(() => {
    ran.push(c.now());
    c.setTimeout(() => ran.push(c.now()), 0);
    c.setTimeout(() => ran.push(c.now()), 50);
  }, 5);
  await c.advance(10);
  assertEquals(ran, [5, 5]);
  await c.advance(45);
  assertEquals(ran, [5, 5, 55]);
});

Deno.test("FakeClock.clearTimeout() cancels a timer; the microtasks a timer queues run before the next", async () => {
  const c = new FakeClock(0);
  const ran: string[] = [];
  const h = c.setTimeout(() => ran.push("cleared"), 1);
  c.setTimeout(() => void Promise.resolve().then(() => ran.push("microtask of t2")), 2);
  c.setTimeout(() => ran.push("t3"), 2);
  c.clearTimeout(h);
  await c.advance(2);
  assertEquals(ran, ["microtask of t2", "t3"]);
  await assertRejects(() => c.advance(-1), RangeError);
});
