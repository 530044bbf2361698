import { assert, assertEquals, assertMatch, assertRejects } from "../harness/assert.ts";
import { argon2id, argon2Verify } from "hash-wasm";
import { ARGON2_PARAMS, PasswordHasher } from "../../src/server/password_hasher.ts";
import { ChatError } from "../../src/errors.ts";
import { FakeClock } from "../harness/fake_clock.ts";

Deno.test("PasswordHasher produces OWASP-strength argon2id PHC strings that verify", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 8 });
  try {
    const a = await h.hash("correct horse");
    const b = await h.hash("correct horse");
    assertMatch(a, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert(a !== b, "two hashes of one password must differ (random salt)");
    assertEquals(await h.verify("correct horse", a), true);
    assertEquals(await h.verify("wrong horse", a), false);
    assertEquals(await h.verify("x", "not a hash"), false);
  } finally {
    h.close();
  }
});

Deno.test("PasswordHasher rejects with busy when its queue is full", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 2 });
  try {
    const jobs = Array.from({ length: 6 }, () => h.hash("password").then(() => "ok", (e) => e));
    const results = await Promise.all(jobs);
    const busy = results.filter((r) => r instanceof ChatError && r.code === "busy");
    assertEquals(results.filter((r) => r === "ok").length, 3); // one running + two queued
    assertEquals(busy.length, 3);
    assert(busy.every((e) => (e as ChatError).retryAfterMs! > 0));
  } finally {
    h.close();
  }
});

Deno.test("PasswordHasher keeps the event loop free while hashing", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 8 });
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await Promise.all([h.hash("a-password"), h.hash("b-password"), h.hash("c-password")]);
    clearInterval(timer);
    // Hashing ran on a worker: timers kept firing meanwhile (on the main thread they could not).
    assert(ticks >= 3, `the main loop was stalled: only ${ticks} timer ticks`);
  } finally {
    h.close();
  }
});

Deno.test("PasswordHasher refuses work after close", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 1 });
  h.close();
  await assertRejects(() => h.hash("password"), ChatError, "stopping");
});

// Made with hash-wasm called directly (a fresh instance per call, as before reuse), salt
// "fixed-salt-0123456", password "correct horse battery staple".
const STORED_19456 =
  "$argon2id$v=19$m=19456,t=2,p=1$Zml4ZWQtc2FsdC0wMTIzNDU2$LiLa+hEYb1iIgMRqgLtNrZAuqRGpdMWFqBz68LUOKhE";
const STORED_8192 =
  "$argon2id$v=19$m=8192,t=2,p=1$Zml4ZWQtc2FsdC0wMTIzNDU2$B8UKeIdMC3Ukgd1uQE+32PF19RAzi+dfXQntKdye0sQ";

Deno.test("PasswordHasher on reused instances agrees with fresh hash-wasm calls both ways", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 16 });
  try {
    const pw = "correct horse battery staple";
    // Old way → new way: stored hashes, and one made now on the main thread.
    const fresh = await argon2id({
      password: pw,
      salt: crypto.getRandomValues(new Uint8Array(16)),
      ...ARGON2_PARAMS,
      hashLength: 32,
      outputType: "encoded",
    });
    // Several rounds on one worker, with a smaller m in between: each job runs on the memory the
    // previous ones left behind.
    for (let round = 0; round < 3; round++) {
      assertEquals(await h.verify(pw, STORED_19456), true);
      assertEquals(await h.verify(pw, STORED_8192), true);
      assertEquals(await h.verify(pw, fresh), true);
      assertEquals(await h.verify(pw + "!", STORED_19456), false);
      assertEquals(await h.verify(pw + "!", STORED_8192), false);
    }
    // New way → old way.
    const made = await h.hash(pw);
    assertEquals(await argon2Verify({ password: pw, hash: made }), true);
    assertEquals(await argon2Verify({ password: pw + "!", hash: made }), false);
  } finally {
    h.close();
  }
});

Deno.test("PasswordHasher workers reuse their WebAssembly instances (one argon2 memory each)", async () => {
  const h = new PasswordHasher({ workers: 1, queue: 16 });
  try {
    const first = await h.hash("first-password");
    const held = h.stats.wasmInstances;
    assert(held > 0, "the worker reported no instances: hash-wasm no longer goes through the pool");
    for (let i = 0; i < 5; i++) {
      assertEquals(await h.verify("first-password", first), true);
      await h.hash(`password-${i}`);
      assertEquals(await h.verify("x", "not a hash"), false);
    }
    assertEquals(h.stats.wasmInstances, held);
  } finally {
    h.close();
  }
});

Deno.test("PasswordHasher ends its workers after idleMs without work and starts one again", async () => {
  const clock = new FakeClock();
  const h = new PasswordHasher({ workers: 1, queue: 8, idleMs: 1000, timers: clock });
  try {
    const first = await h.hash("idle-password");
    assertEquals(h.stats.workers, 1);
    await clock.advance(600);
    assertEquals(await h.verify("idle-password", first), true, "work in the wait starts it over");
    await clock.advance(600);
    assertEquals(h.stats.workers, 1, "1,000 ms have not passed since the last job");
    await clock.advance(400);
    assertEquals(h.stats.workers, 0, "idle for 1,000 ms: ended");
    assertEquals(h.stats.wasmInstances, 0);
    assertEquals(await h.verify("idle-password", first), true, "a new worker checks old hashes");
    assertEquals(h.stats.workers, 1);
  } finally {
    h.close();
  }
  assertEquals(clock.pending, 0, "close() leaves no timer behind");
});

Deno.test("PasswordHasher tells onJobDone of each job and onIdle of the idle end, not of close", async () => {
  const clock = new FakeClock();
  const events: string[] = [];
  const h = new PasswordHasher({
    workers: 1,
    queue: 8,
    idleMs: 1000,
    timers: clock,
    onJobDone: () => events.push("job"),
    onIdle: () => events.push("idle"),
  });
  try {
    const first = await h.hash("told-password");
    assertEquals(await h.verify("told-password", first), true);
    assertEquals(events, ["job", "job"]);
    await clock.advance(1000);
    assertEquals(events, ["job", "job", "idle"]);
    assertEquals(await h.verify("wrong", first), false);
    assertEquals(events, ["job", "job", "idle", "job"]);
  } finally {
    h.close();
  }
  assertEquals(events, ["job", "job", "idle", "job"], "close() is not an idle end");
});
