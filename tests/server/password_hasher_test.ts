import { assert, assertEquals, assertMatch, assertRejects } from "../harness/assert.ts";
import { PasswordHasher } from "../../src/server/password_hasher.ts";
import { ChatError } from "../../src/errors.ts";

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
