import { assert, assertEquals } from "../harness/assert.ts";
import { FakeClock, turn } from "../harness/fake_clock.ts";
import {
  LAZY_FLUSH_MAX_MS,
  LAZY_FLUSH_MS,
  PACE_BUSY_WAKES,
  PACE_MS,
  SendQueue,
  WRITES_PER_TURN,
} from "../../src/server/send_queue.ts";

/** A sink whose writes complete only when released, recording what it got. */
function gatedSink() {
  const writes: Uint8Array[] = [];
  let release: (() => void) | null = null;
  return {
    writes,
    open: () => {
      const r = release;
      release = null;
      r?.();
    },
    sink: {
      write(p: Uint8Array): Promise<number> {
        writes.push(p.slice());
        return new Promise((resolve) => release = () => resolve(p.length));
      },
    },
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array[]) => b.map((x) => new TextDecoder().decode(x));

Deno.test("SendQueue writes in order and coalesces what waited into one write", async () => {
  const g = gatedSink();
  const q = new SendQueue({
    sink: g.sink,
    maxBytes: 100,
    onOverflow: () => {},
    onError: () => {},
    timers: new FakeClock(),
  });
  q.enqueue(bytes("a"));
  q.enqueue(bytes("b"));
  q.enqueue(bytes("c"));
  await Promise.resolve();
  g.open();
  await q.flushed();
  // The writer wakes after the enqueuing turn: all three leave in one write.
  assertEquals(text(g.writes), ["abc"]);
  assertEquals(q.bytes, 0);
});

Deno.test("SendQueue over its bound calls onOverflow once and drops further output", () => {
  const g = gatedSink();
  let overflows = 0;
  const q = new SendQueue({
    sink: g.sink,
    maxBytes: 5,
    onOverflow: () => overflows++,
    onError: () => {},
  });
  assert(q.enqueue(bytes("1234")));
  assert(!q.enqueue(bytes("56")));
  assert(!q.enqueue(bytes("7")));
  assertEquals(overflows, 1);
  assert(q.overflowed);
  g.open();
});

Deno.test("SendQueue reports a failed write once and stops", async () => {
  let errors = 0;
  const q = new SendQueue({
    sink: { write: () => Promise.reject(new Error("reset")) },
    maxBytes: 100,
    onOverflow: () => {},
    onError: () => errors++,
  });
  q.enqueue(bytes("x"));
  await q.flushed();
  assertEquals(errors, 1);
  assertEquals(q.enqueue(bytes("y")), false);
});

Deno.test("SendQueue handles short writes without losing bytes", async () => {
  const got: string[] = [];
  const q = new SendQueue({
    sink: {
      write(p: Uint8Array) {
        got.push(new TextDecoder().decode(p.subarray(0, 2)));
        return Promise.resolve(Math.min(2, p.length));
      },
    },
    maxBytes: 100,
    onOverflow: () => {},
    onError: () => {},
  });
  q.enqueue(bytes("hello"));
  await q.flushed();
  assertEquals(got.join(""), "hello");
});

Deno.test("SendQueue holds lazy chunks until the next ordinary chunk, which takes them along in order", async () => {
  const g = gatedSink();
  const clock = new FakeClock();
  const q = new SendQueue({
    sink: g.sink,
    maxBytes: 100,
    onOverflow: () => {},
    onError: () => {},
    timers: clock,
  });
  q.enqueue(bytes("p1"), { lazy: true });
  q.enqueue(bytes("p2"), { lazy: true });
  await Promise.resolve();
  assertEquals(g.writes.length, 0, "lazy chunks do not wake the writer");
  q.enqueue(bytes("m"));
  await Promise.resolve();
  assertEquals(text(g.writes), ["p1p2m"]);
  assertEquals(clock.pending, 0, "the lazy timer was cancelled by the write");
  g.open();
  await q.flushed();
});

Deno.test("SendQueue writes lazy chunks on its own after LAZY_FLUSH_MS, and close() cancels the wait", async () => {
  const g = gatedSink();
  const clock = new FakeClock();
  const opts = { sink: g.sink, maxBytes: 100, onOverflow: () => {}, onError: () => {} };
  const q = new SendQueue({ ...opts, timers: clock });
  q.enqueue(bytes("p"), { lazy: true });
  await clock.advance(LAZY_FLUSH_MS - 1);
  assertEquals(g.writes.length, 0, "written before LAZY_FLUSH_MS");
  await clock.advance(1);
  assertEquals(text(g.writes), ["p"]);
  g.open();
  await q.flushed();
  const idle = new SendQueue({ ...opts, timers: clock });
  idle.enqueue(bytes("x"), { lazy: true });
  assertEquals(clock.pending, 1);
  idle.close();
  assertEquals(clock.pending, 0, "close() left the lazy timer set");
  await clock.advance(LAZY_FLUSH_MAX_MS);
  assertEquals(text(g.writes), ["p"], "a closed queue wrote");
  q.close();
});

Deno.test("SendQueue lazy wait grows by 1 ms per 20 open queues, up to LAZY_FLUSH_MAX_MS", async () => {
  const clock = new FakeClock();
  let written = 0;
  const open = (n: number) =>
    Array.from({ length: n }, () =>
      new SendQueue({
        sink: { write: (p) => (written++, Promise.resolve(p.length)) },
        maxBytes: 100,
        onOverflow: () => {},
        onError: () => {},
        timers: clock,
      }));
  const queues = open(4000); // 4000 / 20 = 200 ms
  queues[0].enqueue(bytes("p"), { lazy: true });
  await clock.advance(199);
  assertEquals(written, 0);
  await clock.advance(1);
  assertEquals(written, 1);
  queues.push(...open(40_000)); // 44,000 / 20 = 2,200 ms, capped
  queues[0].enqueue(bytes("p"), { lazy: true });
  await clock.advance(LAZY_FLUSH_MAX_MS - 1);
  assertEquals(written, 1);
  await clock.advance(1);
  assertEquals(written, 2);
  for (const q of queues) q.close();
});

Deno.test("SendQueue writes a large chunk as it is (no copy) and joins the small ones around it", async () => {
  const seen: Uint8Array[] = [];
  const q = new SendQueue({
    sink: { write: (p) => (seen.push(p), Promise.resolve(p.length)) },
    maxBytes: 1 << 20,
    onOverflow: () => {},
    onError: () => {},
  });
  const big = new Uint8Array(5_000).fill(0x62);
  q.enqueue(bytes("a"));
  q.enqueue(bytes("b"));
  q.enqueue(big);
  q.enqueue(bytes("c"));
  await q.flushed();
  assertEquals(seen.length, 3);
  assertEquals(text([seen[0]]), ["ab"]);
  assert(seen[1] === big, "the large chunk was copied");
  assertEquals(text([seen[2]]), ["c"]);
});

Deno.test("SendQueue tells its meter of every unsent byte, and of its opening and closing", async () => {
  const g = gatedSink();
  let backlog = 0;
  let queues = 0;
  const meter = {
    queues: (d: 1 | -1) => queues += d,
    report: (before: number, after: number) => backlog += after - before,
  };
  const q = new SendQueue({
    sink: g.sink,
    maxBytes: 100,
    onOverflow: () => {},
    onError: () => {},
    meter,
    timers: new FakeClock(),
  });
  assertEquals(queues, 1);
  q.enqueue(bytes("hello"));
  q.enqueue(bytes("world"));
  assertEquals(backlog, 10);
  await Promise.resolve();
  q.enqueue(bytes("!"));
  assertEquals(backlog, 11);
  g.open();
  await turn();
  assertEquals(backlog, 1, "the first write left");
  q.close();
  assertEquals([backlog, queues], [0, 0]);
  g.open();
});

/** A queue on `clock` recording each write as text. */
function recordingQueue(clock: FakeClock, seen: string[]): SendQueue {
  return new SendQueue({
    sink: { write: (p) => (seen.push(new TextDecoder().decode(p)), Promise.resolve(p.length)) },
    maxBytes: 1000,
    onOverflow: () => {},
    onError: () => {},
    timers: clock,
  });
}

/** Makes the server busy writing: `n` other queues on `clock` each ask for one write. */
async function writeLoad(clock: FakeClock, n: number): Promise<SendQueue[]> {
  const others = Array.from({ length: n }, () => recordingQueue(clock, []));
  for (const o of others) o.enqueue(bytes("x"));
  await turn();
  await turn();
  return others;
}

Deno.test("SendQueue paces a busy connection on a busy server: frames within PACE_MS of the last write wait for it and share one write", async () => {
  const clock = new FakeClock();
  const seen: string[] = [];
  const q = recordingQueue(clock, seen);
  const others = await writeLoad(clock, PACE_BUSY_WAKES);
  q.enqueue(bytes("1"));
  await turn();
  assertEquals(seen, ["1"], "an idle connection is written at once");
  await clock.advance(3);
  q.enqueue(bytes("2"));
  await turn();
  q.enqueue(bytes("3"));
  await turn();
  assertEquals(seen, ["1"], "a connection written 3 ms ago waits for its pace");
  await clock.advance(PACE_MS - 3 - 1);
  assertEquals(seen, ["1"], "written before PACE_MS had passed since the last write");
  await clock.advance(1);
  assertEquals(seen, ["1", "23"], "not written at PACE_MS, or not as one write");
  assertEquals(clock.pending, 0);
  await clock.advance(PACE_MS);
  q.enqueue(bytes("4"));
  await turn();
  assertEquals(seen, ["1", "23", "4"], "a connection idle for PACE_MS is written at once");
  q.enqueue(bytes("5"));
  await q.flushed();
  assertEquals(seen, ["1", "23", "4", "5"], "flushed() writes a paced chunk without waiting");
  assertEquals(clock.pending, 0, "flushed() left the pace timer set");
  q.close();
  for (const o of others) o.close();
});

Deno.test("SendQueue never paces at low load: a frame right after a write is written at once", async () => {
  const clock = new FakeClock();
  const seen: string[] = [];
  const q = recordingQueue(clock, seen);
  // Busy for this connection (a write every millisecond), but the server as a whole is not.
  for (let i = 0; i < 20; i++) {
    q.enqueue(bytes(String(i % 10)));
    await turn();
    assertEquals(seen.length, i + 1, `frame ${i} waited although the server is idle`);
    await clock.advance(1);
  }
  assertEquals(clock.pending, 0, "a pace timer was set at low load");
  // At PACE_BUSY_WAKES wake-ups in one window the server is not busy yet either.
  const others = await writeLoad(clock, PACE_BUSY_WAKES - 1);
  q.enqueue(bytes("a"));
  await turn();
  assertEquals(seen.at(-1), "a", "paced at PACE_BUSY_WAKES wake-ups in the window");
  q.close();
  for (const o of others) o.close();
});

Deno.test("SendQueue pacing follows the load: on while the last window was busy, off after a quiet one", async () => {
  const clock = new FakeClock();
  const seen: string[] = [];
  const q = recordingQueue(clock, seen);
  q.enqueue(bytes("1"));
  await turn();
  const others = await writeLoad(clock, PACE_BUSY_WAKES);
  // The next window: busy because the last one was.
  await clock.advance(PACE_MS);
  q.enqueue(bytes("2"));
  await turn();
  await clock.advance(1);
  q.enqueue(bytes("3"));
  await turn();
  assertEquals(
    seen,
    ["1", "2"],
    "a frame 1 ms after a write was not paced in the window after a busy one",
  );
  await clock.advance(PACE_MS);
  assertEquals(seen, ["1", "2", "3"]);
  // Two windows later with only this queue writing: not busy any more, written at once.
  await clock.advance(2 * PACE_MS);
  q.enqueue(bytes("4"));
  await turn();
  await clock.advance(1);
  q.enqueue(bytes("5"));
  await turn();
  assertEquals(seen, ["1", "2", "3", "4", "5"], "still paced after the load went away");
  q.close();
  for (const o of others) o.close();
});

Deno.test("SendQueue starts at most WRITES_PER_TURN writers per turn; the rest follow on the next turns", async () => {
  let written = 0;
  const timers = new FakeClock();
  const queues = Array.from({ length: WRITES_PER_TURN + 10 }, () =>
    new SendQueue({
      sink: { write: (p) => (written++, Promise.resolve(p.length)) },
      maxBytes: 100,
      onOverflow: () => {},
      onError: () => {},
      timers,
    }));
  for (const q of queues) q.enqueue(bytes("x"));
  assertEquals(written, 0);
  for (let i = 0; i < 10; i++) await Promise.resolve(); // microtasks of this turn only
  assertEquals(written, WRITES_PER_TURN);
  await turn();
  assertEquals(written, WRITES_PER_TURN + 10);
  for (const q of queues) q.close();
});
