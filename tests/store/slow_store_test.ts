import { assert, assertEquals, assertRejects } from "../harness/assert.ts";
import { openStore, storeSpec } from "../../src/store/open_store.ts";
import { ChatError } from "../../src/errors.ts";
import { SlowStore } from "./slow_store.ts";

Deno.test("SlowStore forwards calls in call order and answers them out of order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "chat-slow-" });
  try {
    const s = new SlowStore(await openStore(storeSpec({ dataDir: dir })));
    const u = await s.createUser({ name: "u", passwordHash: "h", ts: 1 });
    const r = await s.ensureRoom("general", "room", 1);
    const answered: number[] = [];
    const acks = await Promise.all(
      Array.from(
        { length: 30 },
        (_, i) =>
          s.appendMessage({ roomId: r.id, senderId: u.id, body: "b", cid: `${i}`, ts: 1 })
            .then((a) => {
              answered.push(i);
              return a.message.id;
            }),
      ),
    );
    await s.close();
    assert(acks.every((id, i) => i === 0 || acks[i - 1] < id), `seed ${s.seed}: not call order`);
    assertEquals(new Set(answered).size, 30);
    assert(answered.some((call, k) => call !== k), `seed ${s.seed}: answers in call order`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SlowStore delivers a rejection late, as the engine's own error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "chat-slow-" });
  try {
    const s = new SlowStore(await openStore(storeSpec({ dataDir: dir })));
    await s.createUser({ name: "dup", passwordHash: "h", ts: 1 });
    const err = await assertRejects(
      () => s.createUser({ name: "DUP", passwordHash: "h", ts: 1 }),
      ChatError,
    );
    assertEquals(err.code, "user_exists");
    await s.close();
    await s.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
