import { assert, assertEquals } from "../harness/assert.ts";
import { FakeClock } from "../harness/fake_clock.ts";
import { Admission } from "../../src/server/admission.ts";

/** Asks admission for `n` sends of `bytes` each, recording the order in which they get in. */
function admitMany(a: Admission, n: number, order: number[], bytes = 10): void {
  for (let i = 0; i < n; i++) {
    const wait = a.admit(bytes);
    if (wait) wait.then(() => order.push(i));
    else order.push(i);
  }
}

Deno.test("Admission lets maxInflight sends in at once; the rest wait, first come first served, for a later turn", async () => {
  const clock = new FakeClock();
  const a = new Admission({ maxInflight: 3, timers: clock });
  const order: number[] = [];
  admitMany(a, 6, order);
  assertEquals(order, [0, 1, 2]);
  assertEquals(a.inflight, 3);
  a.done(10);
  a.done(10);
  await Promise.resolve();
  assertEquals(order, [0, 1, 2], "waiters are admitted on a fresh turn, not inside done()");
  await clock.advance(0);
  assertEquals(order, [0, 1, 2, 3, 4]);
  assertEquals(a.inflight, 3);
  a.done(10);
  await clock.advance(0);
  assertEquals(order, [0, 1, 2, 3, 4, 5]);
  assertEquals(a.waited, 3);
});

Deno.test("Admission bounds request bytes in flight by the smallest queue's cap; one send always fits", async () => {
  const clock = new FakeClock();
  const a = new Admission({ timers: clock });
  a.queues(1, 4000); // cap 1000
  const order: number[] = [];
  admitMany(a, 3, order, 400);
  assertEquals(order, [0, 1], "800 bytes in flight; 400 more would pass the cap of 1000");
  a.done(400);
  await clock.advance(0);
  assertEquals(order, [0, 1, 2]);
  a.done(400);
  a.done(400);
  assertEquals(a.inflight, 0);
  assert(
    a.admit(5000) === undefined,
    "with nothing in flight, a send larger than the cap is admitted",
  );
  a.done(5000);
});

Deno.test("Admission waits while receivers' queues are backed up, and opens when they drain", async () => {
  const clock = new FakeClock();
  const a = new Admission({ maxWaitMs: 60_000, timers: clock });
  const bound = 1024; // each queue counts with at most 256 bytes
  for (let i = 0; i < 8; i++) a.queues(1, bound);
  assertEquals(a.bound, 512, "a quarter of all caps together");
  a.report(0, 256, bound);
  a.report(0, 256, bound);
  assert(a.admit(10) === undefined, "at the bound: still admitted");
  a.done(10);
  a.report(0, 10, bound);
  const order: number[] = [];
  admitMany(a, 2, order);
  assertEquals(order, []);
  await clock.advance(59_999);
  assertEquals(order, [], "something got in while the backlog was over the bound");
  a.report(256, 0, bound); // one queue drained
  await clock.advance(0);
  assertEquals(order, [0, 1]);
  assertEquals(a.backlog, 266);
});

Deno.test("Admission: one slow reader alone never closes the gate (it counts at most its cap)", () => {
  const a = new Admission();
  const bound = 1024 * 1024;
  for (let i = 0; i < 2; i++) a.queues(1, bound);
  assertEquals(a.bound, bound / 4, "at least the largest cap");
  a.report(0, bound, bound); // a full queue counts a quarter of its bound
  assertEquals(a.backlog, a.bound);
  assert(a.admit(10) === undefined);
  a.done(10);
  // With many queues the bound grows with them, up to maxBacklog.
  for (let i = 0; i < 1000; i++) a.queues(1, bound);
  assertEquals(a.bound, a.maxBacklog);
});

Deno.test("Admission admits a waiter after maxWaitMs even if receivers never drain, not before", async () => {
  const clock = new FakeClock();
  const a = new Admission({ maxWaitMs: 50, timers: clock });
  const bound = 1024;
  for (let i = 0; i < 2; i++) a.queues(1, bound);
  a.report(0, 256, bound);
  a.report(0, 1, bound); // 257 counted, over the bound of 256: closed
  const order: number[] = [];
  admitMany(a, 2, order);
  await clock.advance(49);
  assertEquals(order, [], "admitted before its patience ran out");
  await clock.advance(1);
  assertEquals(order, [0, 1], "not admitted when maxWaitMs had passed");
  assertEquals(clock.pending, 0);
});
