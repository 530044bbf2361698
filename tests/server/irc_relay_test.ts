// End-to-end over TLS: what one IRC user sends reaches others as the specs show it. NOTICE stays
// a NOTICE (RFC 2812 §3.3.2, live and in CHATHISTORY; `notice` on chat/1), PART and QUIT carry
// their reasons (modern.ircdocs.horse PART, QUIT), client-only tags and TAGMSG are relayed to
// message-tags clients only (ircv3.net message-tags), and hostile tags never get through.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { IrcClient } from "../harness/irc_client.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { parseIrcText } from "../../src/protocol/irc_codec.ts";
import { ircEncoder, TAG_MSGID } from "../../src/server/irc_encoder.ts";

type Msg = Extract<ServerFrame, { type: "msg" }>;

async function server(): Promise<TestServer & { irc: number }> {
  const ts = await startTestServer({ config: { ircPort: 0 } });
  return Object.assign(ts, { irc: ts.server.addrs[1].port });
}

async function account(ts: TestServer, name: string): Promise<void> {
  const c = await WireClient.login(ts.port, ts.certPem, name, { register: true });
  await c[Symbol.asyncDispose]();
}

/** Registers `names` and connects each over IRC with its caps; all in #general. */
async function users(ts: TestServer & { irc: number }, spec: Record<string, string[]>) {
  const out: Record<string, IrcClient> = {};
  for (const name of Object.keys(spec)) await account(ts, name);
  for (const [name, caps] of Object.entries(spec)) {
    out[name] = await IrcClient.sasl(ts.irc, ts.certPem, name, { caps });
  }
  for (const c of Object.values(out)) await c.barrier();
  return out;
}

async function closeAll(cs: Record<string, IrcClient>): Promise<void> {
  for (const c of Object.values(cs)) await c[Symbol.asyncDispose]();
}

/** The raw line of the next message matching `pred` (the raw list keeps arrival order). */
function rawOf(c: IrcClient, pred: (line: string) => boolean): string {
  const line = c.raw.find(pred);
  if (line === undefined) throw new Error(`no such line in:\n${c.raw.join("\n")}`);
  return line;
}

Deno.test("IRC: a NOTICE reaches IRC users as NOTICE, chat/1 users with notice: true, and history keeps it", async () => {
  await using ts = await server();
  const cs = await users(ts, {
    alice: ["echo-message", "message-tags"],
    bob: ["message-tags", "draft/chathistory", "batch"],
  });
  const { alice, bob } = cs;
  try {
    await using w = await WireClient.login(ts.port, ts.certPem, "carol", { register: true });
    alice.send("NOTICE #general :the build is green");
    // RFC 2812 §3.3.2: `:alice!alice@chat NOTICE #general :the build is green`.
    const echo = await alice.expectCommand("NOTICE");
    assertEquals(echo.params, ["#general", "the build is green"]);
    const got = await bob.expect((m) => m.params[1] === "the build is green");
    assertEquals(got.command, "NOTICE");
    assertEquals(got.source, "alice!alice@chat");
    assertEquals(got.params, ["#general", "the build is green"]);
    assertEquals(got.tags?.msgid, echo.tags?.msgid);
    const frame = await w.expect((f) => f.type === "msg") as Msg;
    assertEquals([frame.from, frame.body, frame.notice], ["alice", "the build is green", true]);
    // An ordinary message carries no `notice` field (old clients see what they saw).
    alice.send("PRIVMSG #general :and a message");
    const plain = await w.expect((f) => f.type === "msg") as Msg;
    assertEquals(plain.notice, undefined);
    assertEquals((await bob.expect((m) => m.params[1] === "and a message")).command, "PRIVMSG");
    // A NOTICE to a nick is a NOTICE too.
    alice.send("NOTICE bob :psst");
    const dm = await bob.expect((m) => m.params[1] === "psst");
    assertEquals([dm.command, dm.source, dm.params[0]], ["NOTICE", "alice!alice@chat", "bob"]);
    // Replayed as NOTICE by CHATHISTORY, and with notice: true by chat/1 history.
    bob.send("CHATHISTORY LATEST #general * 10");
    await bob.expectCommand("BATCH");
    const h1 = await bob.expect((m) => m.params[1] === "the build is green");
    const h2 = await bob.expect((m) => m.params[1] === "and a message");
    assertEquals([h1.command, h2.command], ["NOTICE", "PRIVMSG"]);
    w.send({ type: "history", room: "general", limit: 10 });
    const page = await w.expect((f) => f.type === "history") as Extract<
      ServerFrame,
      { type: "history" }
    >;
    const notes = page.messages.filter((m) => m.notice).map((m) => m.body);
    assertEquals(notes, ["the build is green"]);
    // chat/1 sends a notice with `notice: true`; IRC users get a NOTICE.
    w.send({ type: "send", cid: "n1", room: "general", body: "deploy at 5", notice: true });
    await w.expect((f) => f.type === "ack");
    const fromWeb = await bob.expect((m) => m.params[1] === "deploy at 5");
    assertEquals([fromWeb.command, fromWeb.source], ["NOTICE", "carol!carol@chat"]);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: a NOTICE never gets an automatic reply, not even an error numeric", async () => {
  await using ts = await server();
  const cs = await users(ts, { dora: [] });
  try {
    const { dora } = cs;
    dora.send("NOTICE nobody-here :hello?");
    dora.send("NOTICE #nochan :hello?");
    dora.send("NOTICE #general");
    dora.send("NOTICE");
    const seen = await dora.barrier();
    assertEquals(seen.map((m) => m.command), []);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: PART with a reason shows `PART #chan :reason` to the parter and the channel; chat/1 presence carries it", async () => {
  await using ts = await server();
  const cs = await users(ts, { erin: [], fred: [] });
  const { erin, fred } = cs;
  try {
    await using w = await WireClient.login(ts.port, ts.certPem, "gus", { register: true });
    for (const c of [erin, fred]) {
      c.send("JOIN #ops");
      await c.expect((m) => m.command === "366");
    }
    w.send({ type: "join", room: "ops" });
    await w.expect((f) => f.type === "ok");
    await erin.barrier();
    erin.send("PART #ops :bye everyone");
    // modern.ircdocs.horse PART: `:dan-!d@localhost PART #test :bye everyone` (our host: chat).
    const own = await erin.expectCommand("PART");
    assertEquals([own.source, ...own.params], ["erin!erin@chat", "#ops", "bye everyone"]);
    const other = await fred.expect((m) => m.command === "PART");
    assertEquals([other.source, ...other.params], ["erin!erin@chat", "#ops", "bye everyone"]);
    const pres = await w.expect((f) => f.type === "presence" && f.event === "leave") as Extract<
      ServerFrame,
      { type: "presence" }
    >;
    assertEquals([pres.user, pres.reason], ["erin", "bye everyone"]);
    // Without a reason: `PART #ops`, and no `reason` on chat/1.
    fred.send("PART #ops");
    const bare = await fred.expectCommand("PART");
    assertEquals(bare.params, ["#ops"]);
    const p2 = await w.expect((f) => f.type === "presence" && f.event === "leave") as Extract<
      ServerFrame,
      { type: "presence" }
    >;
    assertEquals([p2.user, p2.reason], ["fred", undefined]);
    // chat/1's `part` may carry a reason; IRC users see it.
    erin.send("JOIN #ops");
    await erin.expect((m) => m.command === "366");
    // A reason that breaks the text rules is invalid_text, and nothing is parted.
    w.send({ type: "part", room: "ops", reason: "\x1b[2Jgotcha" });
    const bad = await w.expect((f) => f.type === "error");
    assertEquals(bad.type === "error" ? bad.code : "", "invalid_text");
    w.send({ type: "part", room: "ops", reason: "off to lunch" });
    await w.expect((f) => f.type === "ok" && f.op === "part");
    const fromWeb = await erin.expect((m) => m.command === "PART" && m.source === "gus!gus@chat");
    assertEquals(fromWeb.params, ["#ops", "off to lunch"]);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: QUIT :reason reaches the channel as `QUIT :Quit: reason`; without one, `QUIT :Quit`", async () => {
  await using ts = await server();
  const cs = await users(ts, { hana: [] });
  const { hana } = cs;
  try {
    await account(ts, "ivan");
    await account(ts, "jon");
    const ivan = await IrcClient.sasl(ts.irc, ts.certPem, "ivan");
    const jon = await IrcClient.sasl(ts.irc, ts.certPem, "jon");
    await hana.barrier();
    ivan.send("QUIT :ivan out");
    await ivan.expectClosed();
    await ivan[Symbol.asyncDispose]();
    const q = await hana.expect((m) => m.command === "QUIT" && m.source === "ivan!ivan@chat");
    assertEquals(q.params, ["Quit: ivan out"]);
    jon.send("QUIT");
    await jon.expectClosed();
    await jon[Symbol.asyncDispose]();
    const q2 = await hana.expect((m) => m.command === "QUIT" && m.source === "jon!jon@chat");
    assertEquals(q2.params, ["Quit"]);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: PART and QUIT reasons are cleaned, not refused: formatting and controls go, long ones are cut", async () => {
  await using ts = await server();
  const cs = await users(ts, { kim: [], lou: [] });
  const { kim, lou } = cs;
  try {
    for (const c of [kim, lou]) {
      c.send("JOIN #ops");
      await c.expect((m) => m.command === "366");
    }
    kim.send("PART #ops :\x02bold\x02 \x1b[31mred\u202e " + "é".repeat(230));
    const part = await lou.expect((m) => m.command === "PART");
    const reason = part.params[1];
    assert(reason.startsWith("bold  [31mred"), JSON.stringify(reason)); // ESC is a space
    // deno-lint-ignore no-control-regex
    assert(!/[\x00-\x1f\u202e]/.test(reason), JSON.stringify(reason));
    assert(new TextEncoder().encode(reason).length <= 300, `${reason.length}`);
    await kim.expectCommand("PART");
    lou.send("QUIT :\x03");
    await lou.expectClosed();
    const q = await kim.expect((m) => m.command === "QUIT");
    assertEquals(q.params, ["Quit"]); // nothing left of the reason
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: client-only tags on PRIVMSG and TAGMSG reach message-tags clients only; other tags are dropped", async () => {
  await using ts = await server();
  // As in irctest's testBasic: alice and bob have message-tags, carol nothing, dave server-time.
  const cs = await users(ts, {
    alice: ["message-tags"],
    bob: ["message-tags", "echo-message"],
    carol: [],
    dave: ["server-time"],
  });
  const { alice, bob, carol, dave } = cs;
  try {
    await using w = await WireClient.login(ts.port, ts.certPem, "erik", { register: true });
    alice.send("@+baz=bat;fizz=buzz PRIVMSG #general hi");
    const b = await bob.expect((m) => m.command === "PRIVMSG");
    assertEquals(b.params, ["#general", "hi"]);
    assertEquals(b.tags?.["+baz"], "bat");
    assert(b.tags?.msgid, "msgid");
    assert(!("fizz" in (b.tags ?? {})), "a tag without + is the server's, not relayed");
    await carol.expect((m) => m.command === "PRIVMSG");
    const carolLine = rawOf(carol, (l) => l.includes("PRIVMSG #general"));
    assert(carolLine.startsWith(":alice!alice@chat PRIVMSG"), carolLine); // no tags at all
    const d = await dave.expect((m) => m.command === "PRIVMSG");
    assert(d.tags?.time, "server-time");
    assert(!("+baz" in (d.tags ?? {})), "no client tags without message-tags");
    await w.expect((f) => f.type === "msg" && f.body === "hi");

    // TAGMSG with escaping: `+buzz=fizz\:buzz` is `fizz;buzz`; `cat` is dropped.
    bob.send(String.raw`@+buzz=fizz\:buzz;cat=dog;+steel=wootz TAGMSG #general`);
    const echo = await bob.expectCommand("TAGMSG"); // bob has echo-message
    const relay = await alice.expectCommand("TAGMSG");
    for (const m of [echo, relay]) {
      assertEquals(m.source, "bob!bob@chat");
      assertEquals(m.params, ["#general"]);
      assertEquals(m.tags?.["+buzz"], "fizz;buzz");
      assertEquals(m.tags?.["+steel"], "wootz");
      assert(!("cat" in (m.tags ?? {})), "cat dropped");
    }
    assert(relay.tags?.msgid, "a relayed TAGMSG has a msgid");
    assertEquals(echo.tags?.msgid, relay.tags?.msgid);
    // carol and dave (no message-tags) and chat/1 get nothing at all.
    for (const c of [carol, dave]) {
      assertEquals((await c.barrier()).filter((m) => m.command === "TAGMSG"), []);
    }
    await w.expectNone((f) => f.type !== "pong", "a TAGMSG on chat/1");
    // A chat/1 client cannot attach tags (an unknown field, dropped): IRC gets the message bare.
    w.send({
      type: "send",
      cid: "t1",
      room: "general",
      body: "from web",
      tags: { "+x": "1", "bad key": "a\r\nQUIT" },
    });
    await w.expect((f) => f.type === "ack");
    const bare = await alice.expect((m) => m.params[1] === "from web");
    assertEquals(Object.keys(bare.tags ?? {}).filter((k) => k[0] === "+"), []);
    // Nothing was stored but messages: history has no trace of the TAGMSG.
    w.send({ type: "history", room: "general", limit: 10 });
    const page = await w.expect((f) => f.type === "history") as Extract<
      ServerFrame,
      { type: "history" }
    >;
    assertEquals(page.messages.map((m) => m.body), ["hi", "from web"]);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: +draft/reply on a DM and TAGMSG to a nick reach the recipient with message-tags", async () => {
  await using ts = await server();
  const cs = await users(ts, {
    mia: ["message-tags", "echo-message"],
    ned: [],
    ola: ["message-tags"],
  });
  const { mia, ned, ola } = cs;
  try {
    ned.send("PRIVMSG mia :hey");
    const first = await mia.expectCommand("PRIVMSG");
    const id = first.tags!.msgid;
    mia.send(`@+draft/reply=${id} PRIVMSG ned :hey yourself`);
    const echo = await mia.expectCommand("PRIVMSG");
    assertEquals(echo.tags?.["+draft/reply"], id);
    const got = await ned.expect((m) => m.command === "PRIVMSG");
    assertEquals([got.params, got.tags], [["ned", "hey yourself"], undefined]);
    // TAGMSG to a nick: ola (message-tags) gets it; ned (none) would not.
    mia.send("@+typing=active TAGMSG ola");
    const t = await ola.expectCommand("TAGMSG");
    assertEquals([t.source, t.params, t.tags?.["+typing"]], ["mia!mia@chat", ["ola"], "active"]);
    assertEquals((await mia.expectCommand("TAGMSG")).params, ["ola"]); // the echo
    mia.send("@+typing=active TAGMSG ned");
    await mia.expectCommand("TAGMSG");
    assertEquals((await ned.barrier()).filter((m) => m.command === "TAGMSG"), []);
    // Unknown nick: 401; not in the channel: 404 (ERR_CANNOTSENDTOCHAN).
    mia.send("@+typing=active TAGMSG nobody-here");
    assertEquals((await mia.expectCommand("401")).params.slice(0, 2), ["mia", "nobody-here"]);
    mia.send("@+typing=active TAGMSG #elsewhere");
    await mia.expect((m) => m.command === "404" || m.command === "403");
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: hostile tags: over 4094 bytes is 417, control characters in values are dropped, a flood of tags is fine", async () => {
  await using ts = await server();
  const cs = await users(ts, {
    pat: ["message-tags", "echo-message", "labeled-response"],
    quinn: ["message-tags"],
  });
  const { pat, quinn } = cs;
  try {
    // Right at the limit (irctest testLengthLimits): 4096 bytes of tag section is relayed whole.
    const max = `@foo=bar;+baz=${"a".repeat(4081)} TAGMSG #general`;
    assertEquals(max.indexOf("TAGMSG"), 4096);
    pat.send(max);
    assertEquals((await pat.expectCommand("TAGMSG")).tags?.["+baz"], "a".repeat(4081));
    assertEquals((await quinn.expectCommand("TAGMSG")).tags?.["+baz"], "a".repeat(4081));
    // One byte more: ERR_INPUTTOOLONG, nothing relayed, the connection goes on.
    pat.send(`@foo=bar;+baz=${"a".repeat(4082)} TAGMSG #general`);
    await pat.expectCommand("417");
    assertEquals((await quinn.barrier()).filter((m) => m.command === "TAGMSG"), []);
    // Escaped CR, LF, NUL-like and ESC in values: those tags are dropped, the others go on.
    pat.send(String.raw`@+a=x\r\nPRIVMSG;+b=ok;+c=` + "\x1b[2J" + " TAGMSG #general");
    const t = await quinn.expectCommand("TAGMSG");
    assertEquals(
      Object.keys(t.tags ?? {}).filter((k) => k.startsWith("+")),
      ["+b"],
    );
    await pat.expectCommand("TAGMSG");
    // A TAGMSG whose tags are all dropped relays nothing; a labeled one gets ACK.
    pat.send(String.raw`@label=L1;+a=\n TAGMSG #general`);
    assertEquals((await pat.expectCommand("ACK")).tags?.label, "L1");
    // Many small tags within the limit, bad UTF-8 in a tag, a tag section without a command.
    const many = Array.from({ length: 400 }, (_, i) => `+t${i}=${i}`).join(";");
    assert(many.length < 4094);
    pat.send(`@${many} TAGMSG #general`);
    const flood = await quinn.expectCommand("TAGMSG");
    assertEquals(flood.tags?.["+t399"], "399");
    await pat.expectCommand("TAGMSG");
    pat.write(
      new Uint8Array([
        ...new TextEncoder().encode("@+x="),
        0xff,
        0xfe,
        0x20,
        ...new TextEncoder().encode("TAGMSG #general\r\n"),
      ]),
    );
    await pat.expect((m) => m.command === "FAIL" && m.params[1] === "INVALID_UTF8");
    pat.send("@+x=1");
    pat.send("@+x=1 TAGMSG");
    await pat.expectCommand("461");
    // Still alive and relaying.
    pat.send("PRIVMSG #general :still here");
    await quinn.expect((m) => m.params[1] === "still here");
    // The relayed line parses back to the same tags (escaping round-trips).
    const line = rawOf(quinn, (l) => l.includes("+b=ok"));
    assertEquals(parseIrcText(line).tags?.["+b"], "ok");
  } finally {
    await closeAll(cs);
  }
});

Deno.test("IRC: a message to oneself is delivered to the sending connection too, after its echo", async () => {
  await using ts = await server();
  const cs = await users(ts, { rita: ["labeled-response", "batch"] });
  const { rita } = cs;
  try {
    rita.send("PRIVMSG rita :note to self");
    const got = await rita.expectCommand("PRIVMSG");
    assertEquals([got.source, ...got.params], ["rita!rita@chat", "rita", "note to self"]);
    assertEquals((await rita.barrier()).filter((m) => m.command === "PRIVMSG"), []);
    // With echo-message: the echo (labeled), then the delivery (not labeled), and nothing more.
    rita.send("CAP REQ echo-message");
    await rita.expectCommand("CAP");
    rita.send("@label=S1 PRIVMSG rita :second note");
    const echo = await rita.expectCommand("PRIVMSG");
    const delivery = await rita.expectCommand("PRIVMSG");
    assertEquals([echo.params[1], echo.tags?.label], ["second note", "S1"]);
    assertEquals([delivery.params[1], delivery.tags?.label], ["second note", undefined]);
    assertEquals((await rita.barrier()).filter((m) => m.command === "PRIVMSG"), []);
    // TAGMSG to oneself the same way: the echo (labeled), then the delivery.
    rita.send("CAP REQ message-tags");
    await rita.expectCommand("CAP");
    rita.send("@label=S2;+draft/react=ok TAGMSG rita");
    const tEcho = await rita.expectCommand("TAGMSG");
    const tDelivery = await rita.expectCommand("TAGMSG");
    assertEquals([tEcho.tags?.label, tEcho.tags?.["+draft/react"]], ["S2", "ok"]);
    assertEquals([tDelivery.tags?.label, tDelivery.tags?.["+draft/react"]], [undefined, "ok"]);
    assertEquals(tEcho.tags?.msgid, tDelivery.tags?.msgid);
  } finally {
    await closeAll(cs);
  }
});

Deno.test("ircEncoder() shows nothing for an event no IRC line can carry, and does not throw", () => {
  const enc = ircEncoder(TAG_MSGID);
  const ev = {
    kind: "tagmsg" as const,
    from: "a",
    room: "r",
    tags: { "bad key": "x" },
    msgid: "t1",
    ts: 0,
  };
  assertEquals(enc.encodeEvent(ev), null);
  assertEquals(
    new TextDecoder().decode(enc.encodeEvent({ ...ev, tags: { "+ok": "a;b" } })!),
    "@+ok=a\\:b;msgid=t1 :a!a@chat TAGMSG #r\r\n",
  );
});
