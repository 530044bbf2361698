import { assert, assertEquals } from "../harness/assert.ts";
import { HeapCollector, v8FullCollection } from "../../src/server/heap_collector.ts";

/** A heap whose sizes the test sets; a collection brings both down to `live`. */
function fakeHeap(start: number) {
  const heap = { used: start, total: start, live: start, collected: 0 };
  const collect = () => {
    heap.collected++;
    heap.used = heap.total = heap.live;
  };
  return { heap, collect, read: () => ({ heapUsed: heap.used, heapTotal: heap.total }) };
}

Deno.test("HeapCollector looks at the heap in use every everyJobs jobs and collects on minGrowthBytes", () => {
  const { heap, collect, read } = fakeHeap(100);
  const c = new HeapCollector({ collect, heap: read, everyJobs: 10, minGrowthBytes: 50 });
  heap.total = 1000;
  for (let i = 0; i < 10; i++) c.jobDone();
  assertEquals(heap.collected, 0, "during a burst only the heap in use counts");
  heap.used = 200;
  for (let i = 0; i < 9; i++) c.jobDone();
  assertEquals(heap.collected, 0, "9 jobs: not looked at yet");
  c.jobDone();
  assertEquals(heap.collected, 1, "the 10th job: grown by 100, collected");
  heap.used = 140;
  for (let i = 0; i < 10; i++) c.jobDone();
  assertEquals(heap.collected, 1, "grown by 40 since the last collection: left alone");
  heap.used = 150;
  for (let i = 0; i < 10; i++) c.jobDone();
  assertEquals(heap.collected, 2, "grown by 50: collected");
  assertEquals(c.collections, 2);
});

Deno.test("HeapCollector collects after a burst when the heap held grew over the last live heap", () => {
  const { heap, collect, read } = fakeHeap(100);
  const c = new HeapCollector({ collect, heap: read, everyJobs: 10, minGrowthBytes: 50 });
  const burst = (jobs: number) => {
    for (let i = 0; i < jobs; i++) c.jobDone();
    c.burstEnded();
  };
  burst(10);
  assertEquals(heap.collected, 0, "nothing grew");
  heap.total = 160; // V8 collected by itself but still holds the pages
  burst(9);
  assertEquals(heap.collected, 0, "a burst of fewer than everyJobs jobs: left alone");
  burst(10);
  assertEquals(heap.collected, 1, "after a burst the heap held counts");
  heap.live = 120; // the burst left live data: the base moves up with it
  heap.total = 160;
  burst(12);
  assertEquals(heap.collected, 2);
  heap.total = 150;
  burst(10);
  assertEquals(heap.collected, 2, "30 over the live 120: left alone");
});

Deno.test("HeapCollector without a way to collect does nothing", () => {
  let looked = 0;
  const c = new HeapCollector({
    collect: null,
    heap: () => ({ heapUsed: ++looked * 1e9, heapTotal: looked * 1e9 }),
    everyJobs: 1,
  });
  c.jobDone();
  c.burstEnded();
  assertEquals(c.collections, 0);
  assertEquals(looked, 0, "the heap is not even read");
});

Deno.test("v8FullCollection collects without exposing gc to the server or to later workers", async () => {
  const collect = v8FullCollection();
  assert(collect !== null, "Deno 2.9 gives V8's gc to a new context");
  // A collection frees an object nothing holds: a WeakRef to it is cleared.
  let ref: WeakRef<object> | undefined;
  (() => {
    ref = new WeakRef({ garbage: new Array(1000).fill(0) });
  })();
  await new Promise((r) => setTimeout(r, 0)); // WeakRef targets are kept for the current job
  collect();
  assertEquals(ref!.deref(), undefined);
  assertEquals(typeof (globalThis as { gc?: unknown }).gc, "undefined");
  const worker = new Worker(
    "data:application/javascript," +
      encodeURIComponent("self.postMessage(typeof globalThis.gc); self.close();"),
    { type: "module" },
  );
  const seen = await new Promise<unknown>((r) => worker.onmessage = (e) => r(e.data));
  worker.terminate();
  assertEquals(seen, "undefined");
});
