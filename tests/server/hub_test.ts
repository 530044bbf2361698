// Unit tests of the Hub without sockets: per-stream order by links, where live delivery starts,
// gaps read from the store, and batched fan-out (joined buffers, own frames cut out, hold).
import { assert, assertEquals } from "../harness/assert.ts";
import {
  type EventEncoder,
  Hub,
  type HubMember,
  type MsgEvent,
  PRESENCE_WAIT_MAX_MS,
  PRESENCE_WAIT_MS,
} from "../../src/server/hub.ts";
import { LocalFanout } from "../../src/server/fanout.ts";
import type { StreamKey } from "../../src/store/store.ts";
import { FakeClock } from "../harness/fake_clock.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Encodes a message as `<id>;` and presence as `p:<user>;`, so deliveries read back easily. */
const TEXT: EventEncoder = {
  encodeEvent: (ev) =>
    enc.encode(
      ev.kind === "msg"
        ? `${ev.msg.id};`
        : ev.kind === "tagmsg"
        ? `t:${ev.from};`
        : `p:${ev.user};`,
    ),
};

class Member implements HubMember {
  readonly encoder = TEXT;
  readonly userName: string;
  /** What each deliver call carried, decoded. */
  readonly calls: { stream: StreamKey | null; text: string; lastId: number }[] = [];
  sent = new Map<StreamKey, number>();
  holding = new Set<StreamKey>();
  kicked: string | null = null;
  constructor(readonly connId: number, readonly userId: number) {
    this.userName = `u${userId}`;
  }
  sentThrough(stream: StreamKey): number {
    return this.holding.has(stream) ? -1 : this.sent.get(stream) ?? 0;
  }
  deliver(stream: StreamKey | null, bytes: Uint8Array, lastId: number): void {
    this.calls.push({ stream, text: dec.decode(bytes), lastId });
    if (stream && !this.holding.has(stream)) {
      this.sent.set(stream, Math.max(lastId, this.sent.get(stream) ?? 0));
    }
  }
  kick(code: string): void {
    this.kicked = code;
  }
  /** Everything delivered, as one string. */
  get text(): string {
    return this.calls.map((c) => c.text).join("");
  }
}

function msg(id: number, prev: number, roomId = 1, conn = -1): MsgEvent {
  return {
    kind: "msg",
    msg: { id, ts: id, room: `room${roomId}`, from: "x", body: String(id) },
    roomId,
    links: [{ stream: `r:${roomId}`, prev }],
    origin: { node: "local", conn },
  };
}

function hubWith(
  heads: Record<string, number>,
  backfill: (s: StreamKey, after: number, before: number) => MsgEvent[] = () => [],
  clock?: FakeClock,
) {
  const fanout = new LocalFanout();
  const hub = new Hub(fanout, clock);
  hub.setSource({
    heads: (keys) => Promise.resolve(new Map(keys.map((k) => [k, heads[k] ?? 0]))),
    backfill: (s, a, b) => Promise.resolve(backfill(s, a, b)),
    changed: () => {},
    membership: () => {},
  });
  const join = async (m: Member, roomId = 1) => {
    hub.addSession(m);
    hub.subscribe(m, roomId, `room${roomId}`);
    return await hub.follow(`r:${roomId}`);
  };
  return { hub, fanout, join };
}

/** Lets queued microtasks (the hub's end-of-turn flush) run. */
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

Deno.test("hub: a stream is released in link order however its events arrive", async () => {
  const { fanout, join } = hubWith({ "r:1": 10 });
  const m = new Member(1, 1);
  assertEquals(await join(m), 10);
  for (const id of [13, 11, 14, 12]) fanout.publish(msg(id, id - 1));
  await turn();
  assertEquals(m.text, "11;12;13;14;");
});

Deno.test("hub: live delivery starts after the head read when the stream starts here", async () => {
  const { fanout, join } = hubWith({ "r:1": 20 });
  const m = new Member(1, 1);
  const started = join(m);
  // Published before the head is known: 19 and 20 are in every backlog, 21 is live.
  fanout.publish(msg(21, 20));
  fanout.publish(msg(20, 19));
  assertEquals(await started, 20);
  await turn();
  assertEquals(m.text, "21;");
});

Deno.test("hub: a missing earlier message is read from the store after the gap wait", async () => {
  const asked: [number, number][] = [];
  const { fanout, join } = hubWith({ "r:1": 5 }, (_s, after, before) => {
    asked.push([after, before]);
    return [msg(6, 5)];
  });
  const m = new Member(1, 1);
  await join(m);
  fanout.publish(msg(7, 6)); // 6 committed but its event never comes (e.g. a failed sync)
  const deadline = Date.now() + 5000;
  while (m.text === "" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assertEquals(asked, [[5, 7]]);
  assertEquals(m.text, "6;7;");
});

Deno.test("hub: one turn's messages of a room go to a live member as one joined buffer", async () => {
  const { fanout, join } = hubWith({ "r:1": 0 });
  const live = new Member(1, 1);
  const sender = new Member(2, 2);
  const catching = new Member(3, 3);
  await join(live);
  await join(sender);
  await join(catching);
  catching.holding.add("r:1");
  fanout.publish(msg(1, 0));
  fanout.publish(msg(2, 1, 1, 2)); // sent by connection 2
  fanout.publish(msg(3, 2));
  await turn();
  assertEquals(live.calls, [{ stream: "r:1", text: "1;2;3;", lastId: 3 }]);
  // The sender gets the runs around its own frame, and counts the batch as seen.
  assertEquals(sender.text, "1;3;");
  assertEquals(sender.sentThrough("r:1"), 3);
  // A member catching up takes each message on its own, with its id, to hold.
  assertEquals(
    catching.calls.map((c) => [c.text, c.lastId]),
    [["1;", 1], ["", 2], ["3;", 3]]
      .map(([t, id]) => [t === "" ? "2;" : t, id]),
  );
});

Deno.test("hub: a member already sent part of a batch gets only the rest", async () => {
  const { fanout, join } = hubWith({ "r:1": 0 });
  const m = new Member(1, 1);
  await join(m);
  m.sent.set("r:1", 2); // 1 and 2 came in its backlog
  fanout.publish(msg(1, 0));
  fanout.publish(msg(2, 1));
  fanout.publish(msg(3, 2));
  await turn();
  assertEquals(m.text, "3;");
});

/** A presence event of user `userId` (named u<userId>) from connection `conn`. */
function presence(userId: number, conn: number, event: "join" | "leave" = "join", roomId = 1) {
  return {
    kind: "presence" as const,
    roomId,
    room: `room${roomId}`,
    userId,
    user: `u${userId}`,
    event,
    origin: { node: "local", conn },
  };
}

Deno.test("hub: presence waits for the shared timer, and a kick reaches every session of the user", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0 }, undefined, clock);
  const a = new Member(1, 1);
  const a2 = new Member(2, 1);
  const b = new Member(3, 2);
  await join(a);
  await join(a2);
  await join(b);
  fanout.publish(presence(2, 3));
  await turn();
  assertEquals(a.calls, [], "not before the presence timer");
  await clock.advance(PRESENCE_WAIT_MS);
  assertEquals(a.calls, [{ stream: null, text: "p:u2;", lastId: 0 }]);
  assertEquals(b.calls, [], "the origin connection is not told of itself");
  fanout.publish({ kind: "kick", userId: 1, code: "kicked", message: "bye" });
  assertEquals([a.kicked, a2.kicked, b.kicked], ["kicked", "kicked", null]);
  assert(hub.online(1).includes("u2"));
  hub.close();
});

Deno.test("hub: a storm of presence reaches every member as one shared buffer per interval", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0 }, undefined, clock);
  const a = new Member(1, 1);
  const b = new Member(2, 2);
  await join(a);
  await join(b);
  for (let u = 10; u < 15; u++) fanout.publish(presence(u, 100 + u));
  fanout.publish(presence(2, 2)); // b's own notice, in the middle of the batch
  fanout.publish(presence(15, 115));
  await clock.advance(PRESENCE_WAIT_MS);
  assertEquals(a.calls.length, 1, "one delivery for the whole batch");
  assertEquals(a.text, "p:u10;p:u11;p:u12;p:u13;p:u14;p:u2;p:u15;");
  assertEquals(b.text, "p:u10;p:u11;p:u12;p:u13;p:u14;p:u15;", "all but its own");
  assertEquals(b.calls.length, 2, "the runs around its own frame");
  const c = new Member(3, 3);
  await join(c);
  fanout.publish(presence(16, 116));
  await clock.advance(PRESENCE_WAIT_MS);
  assertEquals(c.text, "p:u16;", "only notices after it joined");
  hub.close();
});

Deno.test("hub: a member joining mid-batch is owed only the later notices", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0 }, undefined, clock);
  const a = new Member(1, 1);
  await join(a);
  fanout.publish(presence(10, 110));
  const late = new Member(2, 2);
  await join(late);
  fanout.publish(presence(11, 111));
  await clock.advance(PRESENCE_WAIT_MS);
  assertEquals(a.text, "p:u10;p:u11;");
  assertEquals(late.text, "p:u11;");
  hub.close();
});

Deno.test("hub: after stopPresence no notice is fanned out, waiting ones are dropped, messages still flow", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0 }, undefined, clock);
  const a = new Member(1, 1);
  await join(a);
  fanout.publish(presence(10, 110));
  hub.stopPresence();
  fanout.publish(presence(11, 111, "leave"));
  hub.presenceDue(a);
  await clock.advance(PRESENCE_WAIT_MAX_MS);
  assertEquals(a.calls, [], "neither the waiting join nor the later leave");
  fanout.publish(msg(1, 0));
  await turn();
  assertEquals(a.text, "1;", "only presence stops");
  hub.close();
});

Deno.test("hub: a member that closed is not handed what it was owed when it leaves", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0 }, undefined, clock);
  const a = new Member(1, 1);
  const gone = Object.assign(new Member(2, 2), { closed: false });
  await join(a);
  await join(gone);
  fanout.publish(presence(10, 110));
  gone.closed = true;
  hub.unsubscribe(gone, 1);
  hub.removeSession(gone);
  assertEquals(gone.calls, []);
  await clock.advance(PRESENCE_WAIT_MS);
  assertEquals(a.text, "p:u10;");
  assertEquals(gone.calls, []);
  hub.close();
});

Deno.test("hub: waiting presence goes out before a later message of the room and before other writes", async () => {
  const clock = new FakeClock();
  const { hub, fanout, join } = hubWith({ "r:1": 0, "r:2": 0 }, undefined, clock);
  const a = new Member(1, 1);
  const b = new Member(2, 2);
  await join(a);
  await join(b);
  await join(b, 2);
  fanout.publish(presence(10, 110));
  fanout.publish(msg(1, 0));
  await turn();
  assertEquals(a.text, "p:u10;1;", "the notice first, without waiting for the timer");
  fanout.publish(presence(11, 111));
  hub.presenceDue(b); // what the session does before writing anything else (a reply, say)
  assertEquals(b.text, "p:u10;1;p:u11;");
  await clock.advance(PRESENCE_WAIT_MAX_MS);
  assertEquals(b.text, "p:u10;1;p:u11;", "nothing twice");
  assertEquals(a.text, "p:u10;1;p:u11;");
  hub.close();
});
