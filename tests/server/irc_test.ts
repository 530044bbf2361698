// End-to-end IRC over TLS against a real server: registration, channels, DMs with chat/1 users,
// IRCv3 capabilities, chathistory, pacing and hostile input. Expectations follow
// modern.ircdocs.horse (numerics, formats) and ircv3.net (CAP 302, SASL 3.1, message-tags,
// server-time, echo-message, labeled-response, batch, chathistory, standard-replies).
import { assert, assertEquals, assertMatch, assertThrows } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { IrcClient } from "../harness/irc_client.ts";
import { globMatch } from "../../src/server/irc_protocol.ts";
import { WireClient } from "../harness/wire_client.ts";
import { FakeClock } from "../harness/fake_clock.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { resolveConfig } from "../../src/config/config.ts";
import { ChatError } from "../../src/errors.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";

const ALL_CAPS = [
  "server-time",
  "message-tags",
  "echo-message",
  "labeled-response",
  "batch",
  "account-tag",
  "away-notify",
  "multi-prefix",
  "standard-replies",
  "draft/chathistory",
];

async function server(
  opts: Parameters<typeof startTestServer>[0] = {},
): Promise<TestServer & { irc: number }> {
  const ts = await startTestServer({ ...opts, config: { ircPort: 0, ...opts.config } });
  return Object.assign(ts, { irc: ts.server.addrs[1].port });
}

/** An account made over chat/1 (registration is open in tests). */
async function account(ts: TestServer, name: string): Promise<void> {
  const c = await WireClient.login(ts.port, ts.certPem, name, { register: true });
  await c[Symbol.asyncDispose]();
}

Deno.test("IRC: SASL PLAIN registers: 900, 903, then 001-005 with our limits and 422", async () => {
  await using ts = await server();
  await account(ts, "alice");
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("CAP LS 302");
  const ls = await c.expectCommand("CAP");
  assertEquals(ls.params.slice(0, 2), ["*", "LS"]);
  assert(ls.params[2].split(" ").includes("sasl=PLAIN"), ls.params[2]);
  c.send("CAP REQ :sasl server-time");
  assertEquals((await c.expectCommand("CAP")).params, ["*", "ACK", "sasl server-time"]);
  c.send("NICK someone");
  c.send("USER alice 0 * :Alice");
  c.send("AUTHENTICATE PLAIN");
  assertEquals((await c.expectCommand("AUTHENTICATE")).params, ["+"]);
  c.send("AUTHENTICATE " + btoa("\0alice\0password-alice"));
  const loggedIn = await c.expectCommand("900");
  assertEquals(loggedIn.params[2], "alice");
  await c.expectCommand("903");
  c.send("CAP END");
  // The nick is the account's: 001 addresses the client as alice.
  assertEquals((await c.expectCommand("001")).params[0], "alice");
  for (const n of ["002", "003", "004"]) await c.expectCommand(n);
  const tokens = [
    ...(await c.expectCommand("005")).params,
    ...(await c.expectCommand("005")).params,
  ];
  for (const t of ["NICKLEN=32", "CHANNELLEN=33", "CHANTYPES=#", "CHATHISTORY=500", "UTF8ONLY"]) {
    assert(tokens.includes(t), `ISUPPORT lacks ${t}: ${tokens.join(" ")}`);
  }
  await c.expectCommand("422");
  // Already in general: JOIN, then NAMES listing alice.
  const join = await c.expectCommand("JOIN");
  assertEquals(join.params, ["#general"]);
  assertEquals(join.source, "alice!alice@chat");
  assert((await c.expectCommand("353")).params[3].split(" ").includes("alice"));
  await c.expectCommand("366");
});

Deno.test("IRC: SASL with a wrong password is 904 and the client may retry", async () => {
  await using ts = await server();
  await account(ts, "bob");
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("CAP REQ :sasl");
  await c.expectCommand("CAP");
  c.send("AUTHENTICATE PLAIN");
  await c.expectCommand("AUTHENTICATE");
  c.send("AUTHENTICATE " + btoa("\0bob\0wrong-password"));
  await c.expectCommand("904");
  c.send("AUTHENTICATE PLAIN");
  await c.expectCommand("AUTHENTICATE");
  c.send("AUTHENTICATE " + btoa("bob\0bob\0password-bob"));
  await c.expectCommand("903");
  c.send("AUTHENTICATE EXTERNAL");
  await c.expectCommand("907"); // ERR_SASLALREADY
});

Deno.test("IRC: PASS creates the account named by NICK when registration is open, then logs in", async () => {
  await using ts = await server();
  {
    await using c = await IrcClient.connect(ts.irc, ts.certPem);
    c.send("PASS first-password");
    c.send("NICK carol");
    c.send("USER carol 0 * :Carol");
    await c.expectCommand("001");
  }
  {
    await using c = await IrcClient.connect(ts.irc, ts.certPem);
    c.send("PASS first-password");
    c.send("NICK carol");
    c.send("USER carol 0 * :Carol");
    assertEquals((await c.expectCommand("001")).params[0], "carol");
  }
  {
    // The same name with another password: ERR_PASSWDMISMATCH, then ERROR and the end.
    await using c = await IrcClient.connect(ts.irc, ts.certPem);
    c.send("PASS another-password");
    c.send("NICK carol");
    c.send("USER carol 0 * :Carol");
    await c.expectCommand("464");
    await c.expectCommand("ERROR");
    await c.expectClosed();
  }
  // The chat/1 side logs in with the password the IRC client chose.
  await using _w = await WireClient.login(ts.port, ts.certPem, "carol", {
    password: "first-password",
  });
});

Deno.test("IRC: without SASL or PASS registration ends with 464 and ERROR", async () => {
  await using ts = await server({ config: { registration: "closed" } });
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("NICK dave");
  c.send("USER dave 0 * :Dave");
  await c.expectCommand("464");
  await c.expectCommand("ERROR");
  await c.expectClosed();
});

Deno.test("IRC: commands before registration get 451; CAP REQ with an unknown cap is NAKed whole", async () => {
  await using ts = await server();
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("JOIN #general");
  assertEquals((await c.expectCommand("451")).params[0], "*");
  c.send("CAP REQ :server-time no-such-cap");
  assertEquals((await c.expectCommand("CAP")).params, ["*", "NAK", "server-time no-such-cap"]);
  c.send("CAP LIST");
  assertEquals((await c.expectCommand("CAP")).params, ["*", "LIST", ""]);
  c.send("CAP FOO");
  await c.expectCommand("410");
});

Deno.test("IRC: an empty realname in USER and a PING without a token are ERR_NEEDMOREPARAMS", async () => {
  await using ts = await server();
  await account(ts, "rita");
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  // modern.ircdocs.horse USER: "If the <realname> is empty, the server SHOULD reject the
  // command with ERR_NEEDMOREPARAMS": 461 <client> <command> :<text>.
  c.send("PASS password-rita");
  c.send("NICK rita");
  c.send("USER rita 0 * :");
  assertEquals((await c.expectCommand("461")).params.slice(0, 2), ["rita", "USER"]);
  c.send("PING");
  assertEquals((await c.expectCommand("461")).params.slice(0, 2), ["rita", "PING"]);
  c.send("USER rita 0 * :Rita");
  await c.expectCommand("001");
  c.send("PING");
  assertEquals((await c.expectCommand("461")).params.slice(0, 2), ["rita", "PING"]);
  // PING with an empty token is still a token: PONG <server> :<the same, empty> .
  c.send("PING :");
  assertEquals((await c.expectCommand("PONG")).params.at(-1), "");
  assertEquals((await c.barrier()).filter((m) => m.command === "461"), []);
});

Deno.test("IRC: NAMES and WHO of a channel that does not exist or one is not in end the list at once", async () => {
  await using ts = await server();
  await account(ts, "sara");
  await account(ts, "tom");
  await using other = await IrcClient.sasl(ts.irc, ts.certPem, "tom");
  other.send("JOIN #secretplans");
  await other.expectCommand("366");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "sara");
  // modern.ircdocs.horse NAMES: "If the channel name is invalid or the channel does not exist,
  // one RPL_ENDOFNAMES numeric containing the given channel name should be returned"; WHO: the
  // list of matches, none here, then RPL_ENDOFWHO.
  for (const chan of ["#nonexisting", "#secretplans"]) {
    c.send(`NAMES ${chan}`);
    assertEquals((await c.expectCommand("366")).params.slice(0, 2), ["sara", chan]);
    c.send(`WHO ${chan}`);
    assertEquals((await c.expectCommand("315")).params.slice(0, 2), ["sara", chan]);
  }
  const rest = await c.barrier();
  assertEquals(rest.filter((m) => ["353", "352", "403", "442"].includes(m.command)), []);
});

Deno.test("IRC and chat/1 talk in one room: tags on delivery, echo after commit, labels", async () => {
  await using ts = await server();
  await account(ts, "erin");
  await using w = await WireClient.login(ts.port, ts.certPem, "frank", { register: true });
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "erin", { caps: ALL_CAPS });
  await c.barrier();
  // chat/1 → IRC: PRIVMSG with server-time, msgid (our id) and account.
  const ack = await w.say("general", "hello from chat/1");
  assertEquals(ack.type, "ack");
  const got = await c.expectCommand("PRIVMSG");
  assertEquals(got.source, "frank!frank@chat");
  assertEquals(got.params, ["#general", "hello from chat/1"]);
  assertEquals(got.tags?.msgid, String((ack as { id: number }).id));
  assertEquals(got.tags?.account, "frank");
  assertEquals(Date.parse(got.tags!.time), (ack as { ts: number }).ts);
  // IRC → chat/1, with echo-message and a label: the echo carries the label and the msgid.
  c.send("@label=L1 PRIVMSG #general :hello from IRC");
  const echo = await c.expectCommand("PRIVMSG");
  assertEquals(echo.tags?.label, "L1");
  assertEquals(echo.source, "erin!erin@chat");
  assertEquals(echo.params, ["#general", "hello from IRC"]);
  const msg = await w.expect((f) => f.type === "msg" && f.body === "hello from IRC") as Extract<
    ServerFrame,
    { type: "msg" }
  >;
  assertEquals(String(msg.id), echo.tags?.msgid);
  assertEquals(msg.from, "erin");
  // A labeled command with no reply gets ACK; one with several is a labeled-response batch.
  c.send("@label=L2 PONG x");
  const ackLine = await c.expectCommand("ACK");
  assertEquals(ackLine.tags?.label, "L2");
  c.send("@label=L3 NAMES #general");
  const start = await c.expectCommand("BATCH");
  assertEquals(start.tags?.label, "L3");
  assertEquals(start.params.slice(1), ["labeled-response"]);
  const names = await c.expectCommand("353");
  assertEquals(names.tags?.batch, start.params[0].slice(1));
  assertEquals(names.params[3].split(" ").sort(), ["erin", "frank"]);
  await c.expectCommand("366");
  assertEquals((await c.expectCommand("BATCH")).params, ["-" + start.params[0].slice(1)]);
});

Deno.test("IRC: direct messages both ways with a chat/1 user, and RPL_AWAY for an away nick", async () => {
  await using ts = await server();
  await account(ts, "gina");
  await using w = await WireClient.login(ts.port, ts.certPem, "hank", { register: true });
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "gina", { caps: ["server-time"] });
  w.send({ type: "send", cid: "d1", to: "gina", body: "psst" });
  await w.expect((f) => f.type === "ack");
  const dm = await c.expectCommand("PRIVMSG");
  assertEquals(dm.source, "hank!hank@chat");
  assertEquals(dm.params, ["gina", "psst"]);
  c.send("PRIVMSG hank :back at you");
  const got = await w.expect((f) => f.type === "msg") as Extract<ServerFrame, { type: "msg" }>;
  assertEquals([got.from, got.to, got.body], ["gina", "hank", "back at you"]);
  c.send("PRIVMSG nobody-here :hi");
  assertEquals((await c.expectCommand("401")).params.slice(0, 2), ["gina", "nobody-here"]);
  // AWAY: 306, then a PRIVMSG to the away user from another IRC client gets 301.
  c.send("AWAY :lunch");
  await c.expectCommand("306");
  await using d = await IrcClient.sasl(ts.irc, ts.certPem, "hank");
  d.send("PRIVMSG gina :are you there");
  const away = await d.expectCommand("301");
  assertEquals(away.params, ["hank", "gina", "lunch"]);
  c.send("AWAY");
  await c.expectCommand("305");
});

Deno.test("IRC: JOIN, PART, TOPIC, WHO, MODE, LIST and presence as JOIN/PART/QUIT", async () => {
  await using ts = await server();
  await account(ts, "ivy");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "ivy", { caps: ["away-notify"] });
  c.send("JOIN #ops,nochan");
  const join = await c.expectCommand("JOIN");
  assertEquals(join.params, ["#ops"]);
  await c.expectCommand("366");
  assertEquals((await c.expectCommand("403")).params.slice(0, 2), ["ivy", "nochan"]);
  c.send("TOPIC #ops");
  assertEquals((await c.expectCommand("331")).params.slice(0, 2), ["ivy", "#ops"]);
  c.send("TOPIC #ops :new topic"); // ivy created #ops: its owner may
  assertEquals((await c.expectCommand("TOPIC")).params, ["#ops", "new topic"]);
  c.send("MODE #ops");
  assertEquals((await c.expectCommand("324")).params.slice(0, 3), ["ivy", "#ops", "+nt"]);
  c.send("MODE #ops b");
  await c.expectCommand("368");
  c.send("MODE #ops +X");
  await c.expectCommand("472");
  c.send("MODE ivy");
  await c.expectCommand("221");
  c.send("MODE ivy +z");
  await c.expectCommand("501");
  // A chat/1 user joins: JOIN; WHO lists both; they leave by quitting: QUIT.
  const w = await WireClient.login(ts.port, ts.certPem, "jack", { register: true });
  w.send({ type: "join", room: "ops" });
  await w.expect((f) => f.type === "ok");
  const seen = await c.expect((m) =>
    m.command === "JOIN" && m.source === "jack!jack@chat" && m.params[0] === "#ops"
  );
  assertEquals(seen.params, ["#ops"]);
  c.send("WHO #ops");
  const who = [await c.expectCommand("352"), await c.expectCommand("352")];
  assertEquals(who.map((m) => m.params[5]).sort(), ["ivy", "jack"]);
  await c.expectCommand("315");
  c.send("LIST");
  await c.expect((m) => m.command === "322" && m.params[1] === "#ops");
  await c.expectCommand("323");
  w.send({ type: "part", room: "ops" });
  await w.expect((f) => f.type === "ok");
  assertEquals((await c.expect((m) => m.command === "PART")).params, ["#ops"]);
  await w[Symbol.asyncDispose]();
  const quit = await c.expectCommand("QUIT");
  assertEquals(quit.source, "jack!jack@chat");
  c.send("PART #ops");
  assertEquals((await c.expectCommand("PART")).params, ["#ops"]);
  c.send("PART #general");
  await c.expectCommand("FAIL").catch(() => c.expectCommand("NOTICE"));
  c.send("PRIVMSG #ops :not in it");
  await c.expectCommand("404");
  c.send("FROBNICATE");
  assertEquals((await c.expectCommand("421")).params.slice(0, 2), ["ivy", "FROBNICATE"]);
});

Deno.test("IRC: TOPIC sets the topic under the roomTopic policy: TOPIC to the channel, 332/333, 482 when refused", async () => {
  await using ts = await server(); // roomTopic: owner (the default)
  await account(ts, "tina");
  await account(ts, "ugo");
  await using owner = await IrcClient.sasl(ts.irc, ts.certPem, "tina", { caps: ["server-time"] });
  await using other = await IrcClient.sasl(ts.irc, ts.certPem, "ugo", { caps: ["server-time"] });
  owner.send("JOIN #plans"); // created by tina: she owns it
  await owner.expectCommand("366");
  other.send("JOIN #plans");
  await other.expectCommand("366");
  await owner.expect((m) => m.command === "JOIN" && m.source === "ugo!ugo@chat");
  const before = Math.floor(Date.now() / 1000);
  // The setter gets the TOPIC as confirmation, and so does every member (RFC 2812 §3.2.4).
  owner.send("TOPIC #plans :ship on Friday");
  const mine = await owner.expectCommand("TOPIC");
  assertEquals([mine.source, ...mine.params], ["tina!tina@chat", "#plans", "ship on Friday"]);
  const seen = await other.expectCommand("TOPIC");
  assertEquals([seen.source, ...seen.params], ["tina!tina@chat", "#plans", "ship on Friday"]);
  assert(seen.tags?.time, "server-time on the broadcast TOPIC");
  // A query: RPL_TOPIC, then RPL_TOPICWHOTIME <client> <channel> <nick> <setat>.
  other.send("TOPIC #plans");
  assertEquals((await other.expectCommand("332")).params, ["ugo", "#plans", "ship on Friday"]);
  const who = await other.expectCommand("333");
  assertEquals(who.params.slice(0, 3), ["ugo", "#plans", "tina"]);
  const setAt = Number(who.params[3]);
  assert(setAt >= before && setAt <= Date.now() / 1000 + 1, `setat ${who.params[3]}`);
  // A member who is not the owner: the policy refuses, ERR_CHANOPRIVSNEEDED; nothing changes.
  other.send("TOPIC #plans :my topic");
  assertEquals((await other.expectCommand("482")).params.slice(0, 2), ["ugo", "#plans"]);
  // The stored topic is what chat/1 reads, and what a JOIN shows (332 and 333).
  await using w = await WireClient.login(ts.port, ts.certPem, "vera", { register: true });
  w.send({ type: "rooms" });
  const rooms = await w.expect((f) => f.type === "rooms") as Extract<
    ServerFrame,
    { type: "rooms" }
  >;
  assertEquals(rooms.rooms.find((r) => r.name === "plans")?.topic, "ship on Friday");
  await using late = await IrcClient.sasl(ts.irc, ts.certPem, "vera");
  late.send("JOIN #plans");
  assertEquals((await late.expectCommand("332")).params[2], "ship on Friday");
  assertEquals((await late.expectCommand("333")).params[2], "tina");
  await late.expectCommand("366");
  assertEquals((await other.barrier()).filter((m) => m.command === "TOPIC"), []);
});

Deno.test("IRC: who set a topic and when is stored: 333 after 332 on JOIN, TOPIC and the burst after a restart", async () => {
  await using tmp = await tempDir("chat-irc-topic-");
  const clock = new FakeClock(Date.UTC(2026, 0, 2, 3, 4, 5, 678));
  const setAt = String(Math.floor(clock.now() / 1000)); // <setat>: seconds since the epoch
  const first = await server({ dataDir: tmp.path, clock });
  await account(first, "tina");
  await account(first, "ugo");
  {
    await using owner = await IrcClient.sasl(first.irc, first.certPem, "tina");
    owner.send("JOIN #plans");
    await owner.expectCommand("366");
    owner.send("TOPIC #plans :ship on Friday");
    await owner.expectCommand("TOPIC");
    await using member = await IrcClient.sasl(first.irc, first.certPem, "ugo");
    member.send("JOIN #plans");
    await member.expectCommand("366");
  }
  await first.stop();
  // A new process knows only what the store kept.
  await using ts = await server({ dataDir: tmp.path });
  await account(ts, "vera");
  await using late = await IrcClient.sasl(ts.irc, ts.certPem, "vera");
  late.send("JOIN #plans");
  // RPL_TOPIC <client> <channel> :<topic>, then RPL_TOPICWHOTIME <client> <channel> <nick> <setat>.
  assertEquals((await late.expectCommand("332")).params, ["vera", "#plans", "ship on Friday"]);
  assertEquals((await late.expectCommand("333")).params, ["vera", "#plans", "tina", setAt]);
  await late.expectCommand("366");
  late.send("TOPIC #plans");
  assertEquals((await late.expectCommand("332")).params, ["vera", "#plans", "ship on Friday"]);
  assertEquals((await late.expectCommand("333")).params, ["vera", "#plans", "tina", setAt]);
  // A member's registration burst shows the channel as a JOIN would: 332, 333, NAMES.
  await using again = await IrcClient.sasl(ts.irc, ts.certPem, "ugo");
  const burst = again.raw.filter((l) => / (332|333) ugo #plans /.test(l));
  assertEquals(burst.map((l) => l.split(" ").slice(1).join(" ")), [
    "332 ugo #plans :ship on Friday",
    `333 ugo #plans tina ${setAt}`,
  ]);
});

Deno.test("IRC: with roomTopic admin, TOPIC from a room's owner is 482", async () => {
  await using ts = await server({ config: { roomTopic: "admin" } });
  await account(ts, "wade");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "wade");
  c.send("JOIN #mine");
  await c.expectCommand("366");
  c.send("TOPIC #mine :nope");
  assertEquals((await c.expectCommand("482")).params.slice(0, 2), ["wade", "#mine"]);
  c.send("TOPIC #mine");
  await c.expectCommand("331");
});

Deno.test("IRC: with roomTopic anyone, a member sets the topic and a non-member gets 442", async () => {
  await using ts = await server({ config: { roomTopic: "anyone" } });
  await account(ts, "adam");
  await account(ts, "bea");
  await using owner = await IrcClient.sasl(ts.irc, ts.certPem, "adam");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "bea");
  owner.send("JOIN #open");
  await owner.expectCommand("366");
  c.send("TOPIC #open :from outside");
  assertEquals((await c.expectCommand("442")).params.slice(0, 2), ["bea", "#open"]);
  c.send("TOPIC #general :anyone may");
  assertEquals((await c.expectCommand("TOPIC")).params, ["#general", "anyone may"]);
  const seen = await owner.expectCommand("TOPIC");
  assertEquals([seen.source, ...seen.params], ["bea!bea@chat", "#general", "anyone may"]);
});

Deno.test("IRC: a room joined or parted by another session of the same account shows JOIN with NAMES, then PART", async () => {
  await using ts = await server();
  await account(ts, "xena");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "xena", { caps: ["message-tags"] });
  await using same = await WireClient.login(ts.port, ts.certPem, "xena");
  await using peer = await WireClient.login(ts.port, ts.certPem, "yuri", { register: true });
  peer.send({ type: "join", room: "design" });
  await peer.expect((f) => f.type === "ok" && f.op === "join");
  // The chat/1 session joins: the IRC connection is moved into the room and told so.
  same.send({ type: "join", room: "design" });
  await same.expect((f) => f.type === "ok" && f.op === "join");
  const join = await c.expect((m) => m.command === "JOIN" && m.params[0] === "#design");
  assertEquals(join.source, "xena!xena@chat");
  const names = await c.expectCommand("353");
  assertEquals(names.params.slice(2, 3), ["#design"]);
  assertEquals(names.params[3].split(" ").sort(), ["xena", "yuri"]);
  assertEquals((await c.expectCommand("366")).params.slice(0, 2), ["xena", "#design"]);
  // It gets the room's messages, and it may talk there.
  await peer.say("design", "welcome aboard");
  const got = await c.expectCommand("PRIVMSG");
  assertEquals(got.params, ["#design", "welcome aboard"]);
  c.send("PRIVMSG #design :thanks");
  await peer.expect((f) => f.type === "msg" && f.body === "thanks");
  // Its JOIN of the channel it is in already says nothing more.
  c.send("JOIN #design");
  assertEquals((await c.barrier()).filter((m) => m.params[0] === "#design"), []);
  // The chat/1 session parts: the IRC connection leaves too.
  same.send({ type: "part", room: "design" });
  await same.expect((f) => f.type === "ok" && f.op === "part");
  const part = await c.expectCommand("PART");
  assertEquals([part.source, ...part.params], ["xena!xena@chat", "#design"]);
  c.send("PRIVMSG #design :still here?");
  await c.expectCommand("404");
});

Deno.test("IRC: messages between SASL success and the end of registration follow the burst, each once", async () => {
  await using ts = await server();
  await account(ts, "zoe");
  await using w = await WireClient.login(ts.port, ts.certPem, "abe", { register: true });
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("CAP LS 302");
  await c.expect((m) => m.command === "CAP" && m.params[1] === "LS");
  c.send("CAP REQ :sasl message-tags");
  await c.expect((m) => m.command === "CAP" && m.params[1] === "ACK");
  c.send("NICK zoe");
  c.send("USER zoe 0 * :Zoe");
  c.send("AUTHENTICATE PLAIN");
  await c.expectCommand("AUTHENTICATE");
  c.send("AUTHENTICATE " + btoa("\0zoe\0password-zoe"));
  await c.expectCommand("903");
  // zoe is online (SASL succeeded) but not registered (no CAP END yet): these are committed and
  // fanned out now (the ack comes after the fan-out).
  const room = await w.say("general", "said while zoe registers") as { id: number };
  w.send({ type: "send", cid: "d1", to: "zoe", body: "a direct one meanwhile" });
  const dm = await w.expect((f) => f.type === "ack") as { id: number };
  await c.barrier();
  assertEquals(c.raw.filter((l) => l.includes("PRIVMSG")), [], "nothing before 001");
  c.send("CAP END");
  await c.expectCommand("001");
  await c.expectCommand("366"); // the burst: JOIN #general, NAMES
  const first = await c.expectCommand("PRIVMSG");
  assertEquals([first.params, first.tags?.msgid], [
    ["#general", "said while zoe registers"],
    String(room.id),
  ]);
  const second = await c.expectCommand("PRIVMSG");
  assertEquals([second.params, second.tags?.msgid], [
    ["zoe", "a direct one meanwhile"],
    String(dm.id),
  ]);
  // Live from here, and nothing twice.
  await w.say("general", "after registration");
  assertEquals((await c.expectCommand("PRIVMSG")).params[1], "after registration");
  const rest = await c.barrier();
  assertEquals(rest.filter((m) => m.command === "PRIVMSG"), []);
  const lines = c.raw.map((l) => l.replace(/^@\S+ /, ""));
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  assert(at(/ 366 zoe #general /) < at(/PRIVMSG #general :said while/), lines.join("\n"));
});

Deno.test("IRC: CHATHISTORY LATEST, BEFORE, AFTER, AROUND, BETWEEN and TARGETS in batches", async () => {
  await using ts = await server();
  await account(ts, "kate");
  await using w = await WireClient.login(ts.port, ts.certPem, "liam", { register: true });
  const ids: number[] = [];
  for (let i = 1; i <= 10; i++) {
    const a = await w.say("general", `m${i}`);
    ids.push((a as { id: number }).id);
  }
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "kate", {
    caps: ["batch", "server-time", "message-tags", "draft/chathistory"],
  });
  await c.barrier();
  const history = async (cmd: string): Promise<string[]> => {
    c.send(cmd);
    const start = await c.expectCommand("BATCH");
    assertEquals(start.params.slice(1), ["chathistory", "#general"]);
    const id = start.params[0].slice(1);
    const bodies: string[] = [];
    for (;;) {
      const m = await c.expect((x) => x.tags?.batch === id || x.command === "BATCH");
      if (m.command === "BATCH") break;
      assertEquals(m.command, "PRIVMSG");
      assert(m.tags?.time && m.tags.msgid, "history lines carry time and msgid");
      bodies.push(m.params[1]);
    }
    return bodies;
  };
  assertEquals(await history("CHATHISTORY LATEST #general * 3"), ["m8", "m9", "m10"]);
  assertEquals(await history(`CHATHISTORY BEFORE #general msgid=${ids[4]} 2`), ["m3", "m4"]);
  assertEquals(await history(`CHATHISTORY AFTER #general msgid=${ids[7]} 5`), ["m9", "m10"]);
  assertEquals(await history(`CHATHISTORY LATEST #general msgid=${ids[6]} 10`), [
    "m8",
    "m9",
    "m10",
  ]);
  assertEquals(await history(`CHATHISTORY AROUND #general msgid=${ids[4]} 4`), [
    "m3",
    "m4",
    "m5",
    "m6",
  ]);
  assertEquals(await history(`CHATHISTORY BETWEEN #general msgid=${ids[1]} msgid=${ids[5]} 10`), [
    "m3",
    "m4",
    "m5",
  ]);
  assertEquals(await history(`CHATHISTORY BETWEEN #general msgid=${ids[5]} msgid=${ids[1]} 2`), [
    "m4",
    "m5",
  ]);
  const far = new Date(Date.now() + 3_600_000).toISOString();
  assertEquals(await history(`CHATHISTORY BEFORE #general timestamp=${far} 2`), ["m9", "m10"]);
  c.send(`CHATHISTORY TARGETS timestamp=2000-01-01T00:00:00.000Z timestamp=${far} 10`);
  const t = await c.expectCommand("BATCH");
  assertEquals(t.params.slice(1), ["draft/chathistory-targets"]);
  const target = await c.expect((m) => m.command === "CHATHISTORY");
  assertEquals(target.params.slice(0, 2), ["TARGETS", "#general"]);
  await c.expectCommand("BATCH");
  c.send("CHATHISTORY LATEST #nowhere * 10");
  const fail = await c.expectCommand("FAIL");
  assertEquals(fail.params.slice(0, 4), ["CHATHISTORY", "INVALID_TARGET", "LATEST", "#nowhere"]);
  c.send("CHATHISTORY SIDEWAYS #general * 10");
  assertEquals((await c.expectCommand("FAIL")).params.slice(0, 2), [
    "CHATHISTORY",
    "INVALID_PARAMS",
  ]);
});

Deno.test("IRC: 50 pasted lines are all delivered, paced to the rate, none refused", async () => {
  await using ts = await server({ limits: { messagesPerSecond: 100, messageBurst: 5 } });
  await account(ts, "mia");
  await using w = await WireClient.login(ts.port, ts.certPem, "noah", { register: true });
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "mia", {
    caps: ["echo-message", "server-time"],
  });
  let paste = "";
  for (let i = 1; i <= 50; i++) paste += `PRIVMSG #general :line ${i}\r\n`;
  await c.writeAll(paste);
  const times: number[] = [];
  for (let i = 1; i <= 50; i++) {
    const m = await c.expect((x) => x.command === "PRIVMSG" || x.command === "FAIL");
    assertEquals(m.params, ["#general", `line ${i}`]);
    times.push(Date.parse(m.tags!.time));
  }
  for (let i = 1; i <= 50; i++) {
    await w.expect((f) => f.type === "msg" && f.body === `line ${i}`);
  }
  // 45 lines past the burst at 100 per second: at least ~450 ms from first to last.
  assert(times[49] - times[0] >= 400, `not paced: ${times[49] - times[0]} ms`);
});

Deno.test("IRC: a sustained flood past messageFloodMs of waiting ends with ERROR", async () => {
  // Each line past the burst waits 50 ms (far longer than handling one takes); waiting adds up
  // at half speed: past 200 ms after about 8 lines.
  await using ts = await server({
    limits: { messagesPerSecond: 20, messageBurst: 2, messageFloodMs: 200 },
  });
  await account(ts, "olga");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "olga");
  let flood = "";
  for (let i = 1; i <= 40; i++) flood += `PRIVMSG #general :flood ${i}\r\n`;
  c.write(flood);
  const err = await c.expectCommand("ERROR", 10_000);
  assertMatch(err.params[0], /flood/i);
  await c.expectClosed();
});

Deno.test("IRC: hostile input gets a numeric or is ignored, and the connection goes on", async () => {
  await using ts = await server();
  await account(ts, "pete");
  await using w = await WireClient.login(ts.port, ts.certPem, "quinn", { register: true });
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "pete", {
    caps: ["standard-replies", "message-tags"],
  });
  // Overlong: 417, connection stays.
  c.send("PRIVMSG #general :" + "x".repeat(600));
  await c.expectCommand("417");
  c.send("@a=" + "y".repeat(5000) + " PING z");
  await c.expectCommand("417");
  // Bad UTF-8: FAIL * INVALID_UTF8.
  c.write(new Uint8Array([...new TextEncoder().encode("PRIVMSG #general :"), 0xff, 0xfe, 13, 10]));
  assertEquals((await c.expectCommand("FAIL")).params.slice(0, 2), ["*", "INVALID_UTF8"]);
  // NUL or a bare CR inside a line: not a message, ignored.
  c.write("NICK pe\0te\r\nPRIVMSG #general :a\rQUIT\r\n");
  // Terminal escapes in a nick or a target are not echoed raw.
  c.send("PRIVMSG \x1b[31mevil :hi");
  const nosuch = await c.expectCommand("401");
  assert(!nosuch.params[1].includes("\x1b"), JSON.stringify(nosuch.params));
  // CTCP other than ACTION is dropped; ACTION is stored as /me; formatting is stripped.
  c.send("PRIVMSG #general :\x01VERSION\x01");
  c.send("PRIVMSG #general :\x01DCC SEND x 2130706433 1 1\x01");
  c.send("PRIVMSG #general :\x01ACTION waves\x01");
  c.send("PRIVMSG #general :\x02bold\x02 \x0304red\x03");
  const action = await w.expect((f) => f.type === "msg") as Extract<ServerFrame, { type: "msg" }>;
  assertEquals(action.body, "/me waves");
  const plain = await w.expect((f) => f.type === "msg") as Extract<ServerFrame, { type: "msg" }>;
  assertEquals(plain.body, "bold red");
  // An unsafe body from chat/1 never exists (refused there), so IRC sees only checked text.
  await c.barrier();
  // A tag flood within the cap is parsed and ignored.
  const tags = Array.from({ length: 300 }, (_, i) => `+t${i}=v`).join(";");
  c.send(`@${tags} PING flood`);
  await c.expect((m) => m.command === "PONG" && m.params.at(-1) === "flood");
  // The other side of a /me: a chat/1 "/me" arrives on IRC as a CTCP ACTION.
  await w.say("general", "/me nods");
  assertEquals((await c.expectCommand("PRIVMSG")).params[1], "\x01ACTION nods\x01");
});

Deno.test("IRC: an administrator's kick ends the connection with ERROR and the reason", async () => {
  await using ts = await server();
  await account(ts, "rita"); // the first account: id 1
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "rita");
  ts.server.kickUser(1, "account disabled by an administrator");
  const err = await c.expectCommand("ERROR");
  assertMatch(err.params[0], /disabled by an administrator/);
  await c.expectClosed();
});

Deno.test("IRC: a long chat/1 message arrives in lines of at most 512 bytes", async () => {
  await using ts = await server();
  await account(ts, "sam");
  await using w = await WireClient.login(ts.port, ts.certPem, "tess", { register: true });
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "sam", { caps: ["message-tags"] });
  const body = "word ".repeat(700).trim();
  await w.say("general", body);
  let joined = "";
  while (joined.length < body.length) {
    const m = await c.expectCommand("PRIVMSG");
    joined += m.params[1];
  }
  assertEquals(joined, body);
  const lines = c.raw.filter((l) => l.includes(" PRIVMSG "));
  for (const l of lines) {
    const rest = l.startsWith("@") ? l.slice(l.indexOf(" ") + 1) : l;
    assert(new TextEncoder().encode(rest).length + 2 <= 512, `line of ${rest.length} bytes`);
  }
});

Deno.test("IRC: ircServerName is the source of numerics and PONG's server; it must be a host name with a dot", async () => {
  await using ts = await server({ config: { ircServerName: "irc.example.com" } });
  await account(ts, "nia");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "nia");
  c.send("PING tok");
  // modern.ircdocs.horse PING/PONG: PONG <server> <token>.
  const pong = await c.expectCommand("PONG");
  assertEquals([pong.source, ...pong.params], ["irc.example.com", "irc.example.com", "tok"]);
  c.send("MOTD");
  assertEquals((await c.expectCommand("422")).source, "irc.example.com");
  for (const bad of ["nodot", "has space.example", "bad..name", ""]) {
    assertThrows(() => resolveConfig({ ircServerName: bad }), ChatError, "ircServerName");
  }
});

Deno.test("IRC: userhost-in-names lists nick!user@host in NAMES; PREFIX is empty: nobody has a channel prefix", async () => {
  await using ts = await server();
  await account(ts, "olaf");
  await account(ts, "pia");
  await using pia = await IrcClient.sasl(ts.irc, ts.certPem, "pia");
  pia.send("JOIN #crew");
  await pia.expectCommand("366");
  await using c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send("CAP LS 302");
  const ls = await c.expectCommand("CAP");
  assert(ls.params[2].split(" ").includes("userhost-in-names"), ls.params[2]);
  c.send("CAP REQ :sasl userhost-in-names");
  assertEquals((await c.expectCommand("CAP")).params.slice(1), ["ACK", "sasl userhost-in-names"]);
  c.send("NICK olaf");
  c.send("USER olaf 0 * :Olaf");
  c.send("AUTHENTICATE PLAIN");
  await c.expect((m) => m.command === "AUTHENTICATE");
  c.send("AUTHENTICATE " + btoa("\0olaf\0password-olaf"));
  await c.expectCommand("903");
  c.send("CAP END");
  // modern.ircdocs.horse: "PREFIX=" with no value: no prefixes are supported.
  const isupport = await c.expect((m) => m.command === "005" && m.params.includes("PREFIX="));
  assert(!isupport.params.some((p) => p.startsWith("PREFIX=(")), isupport.params.join(" "));
  await c.barrier();
  c.send("JOIN #crew");
  // ircv3.net userhost-in-names: RPL_NAMREPLY carries nick!user@host for each name.
  const names = await c.expectCommand("353");
  assertEquals(names.params.slice(0, 3), ["olaf", "=", "#crew"]);
  assertEquals(names.params[3].split(" ").sort(), ["olaf!olaf@chat", "pia!pia@chat"]);
  c.send("NAMES #crew");
  const again = await c.expectCommand("353");
  assertEquals(again.params[3].split(" ").sort(), ["olaf!olaf@chat", "pia!pia@chat"]);
  // A client without the capability keeps bare nicks.
  pia.send("NAMES #crew");
  assertEquals(
    (await pia.expect((m) => m.command === "353" && m.params[3].includes("olaf"))).params[3]
      .split(" ").sort(),
    ["olaf", "pia"],
  );
});

Deno.test("IRC: WHO <nick or mask> lists matching users who share a room, then 315", async () => {
  await using ts = await server();
  for (const name of ["kai", "kira", "lev"]) await account(ts, name);
  await using kai = await IrcClient.sasl(ts.irc, ts.certPem, "kai");
  await using kira = await IrcClient.sasl(ts.irc, ts.certPem, "kira");
  await using lev = await IrcClient.sasl(ts.irc, ts.certPem, "lev");
  for (const c of [kai, kira, lev]) {
    c.send("JOIN #crew");
    await c.expectCommand("366");
  }
  await kai.barrier();
  // modern.ircdocs.horse WHO: a mask matches nicknames, `*` and `?` wildcards, case-insensitive;
  // RPL_WHOREPLY <client> <channel> <username> <host> <server> <nick> <flags> :<hopcount> <realname>
  // (channel `*` when none is meant), then RPL_ENDOFWHO <client> <mask>.
  const who = async (mask: string) => {
    kai.send(`WHO ${mask}`);
    const end = await kai.expect((m) => m.command === "315");
    assertEquals(end.params.slice(0, 2), ["kai", mask]);
    const rest = await kai.barrier();
    return rest.filter((m) => m.command === "352");
  };
  const [lev1] = await who("LEV");
  assertEquals([lev1.params[0], lev1.params[1], lev1.params[5], lev1.params[6]], [
    "kai",
    "*",
    "lev",
    "H",
  ]);
  assertMatch(lev1.params[7], /^0 /);
  assertEquals((await who("k?r*")).map((m) => m.params[5]), ["kira"]);
  assertEquals((await who("k*")).map((m) => m.params[5]), ["kai", "kira"]);
  assertEquals(await who("nobody"), []);
  assertEquals(await who("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"), []);
});

Deno.test("globMatch() matches * and ? like IRC masks", () => {
  const cases: [string, string, boolean][] = [
    ["*", "", true],
    ["*", "anything", true],
    ["a?c", "abc", true],
    ["a?c", "ac", false],
    ["a*c", "abbbc", true],
    ["a*c", "abbb", false],
    ["*b*", "abc", true],
    ["ab", "abc", false],
    ["**a", "bba", true],
    ["*a*a*a*a*a*a*a*a*a*a*a*a*b", "a".repeat(32), false],
  ];
  for (const [mask, text, want] of cases) {
    assertEquals(globMatch(mask, text), want, `${mask} ~ ${text}`);
  }
});

Deno.test("IRC: a labeled JOIN of several channels answers in one labeled-response batch; a labeled JOIN with nothing to do is ACK", async () => {
  await using ts = await server();
  await account(ts, "gus");
  await using c = await IrcClient.sasl(ts.irc, ts.certPem, "gus", {
    caps: ["batch", "labeled-response"],
  });
  // ircv3.net labeled-response: a response of more than one message MUST be a batch of type
  // labeled-response whose BATCH start carries the label; every line in it has the batch tag.
  c.send("@label=l1 JOIN #valid,inv@lid,#second");
  const start = await c.expectCommand("BATCH");
  assertEquals([start.tags?.label, start.params[1]], ["l1", "labeled-response"]);
  const id = start.params[0].slice(1);
  assertMatch(start.params[0], /^\+[A-Za-z0-9-]+$/);
  const inside: { command: string; params: string[]; tags?: Record<string, string> }[] = [];
  for (;;) {
    const m = await c.expect(() => true);
    if (m.command === "BATCH") {
      assertEquals(m.params, ["-" + id]);
      break;
    }
    inside.push(m);
  }
  for (const m of inside) {
    assertEquals([m.command, m.tags?.batch, m.tags?.label], [m.command, id, undefined]);
  }
  assertEquals(
    inside.filter((m) => ["JOIN", "403", "366"].includes(m.command)).map((
      m,
    ) => [m.command, m.params.at(m.command === "JOIN" ? 0 : 1)]),
    [["JOIN", "#valid"], ["366", "#valid"], ["403", "inv@lid"], ["JOIN", "#second"], [
      "366",
      "#second",
    ]],
  );
  // "Servers MUST respond with a labeled ACK message when a client sends a labeled command that
  // normally produces no response": a JOIN of a channel it is in already.
  c.send("@label=l2 JOIN #valid");
  const ack = await c.expect((m) => m.tags?.label === "l2");
  assertEquals(ack.command, "ACK");
});

Deno.test("config: a plain listener (tls: false) is allowed only on loopback", () => {
  const ok = resolveConfig({
    listeners: [{ port: 1 }, { host: "127.0.0.1", port: 6667, alpn: { "": "irc" }, tls: false }],
  } as never);
  assertEquals(ok.listeners[1].tls, false);
  assertThrows(
    () =>
      resolveConfig({
        listeners: [{ port: 1 }, { host: "0.0.0.0", port: 6667, alpn: { "": "irc" }, tls: false }],
      } as never),
    ChatError,
    "loopback",
  );
  assertEquals(resolveConfig({ ircPort: 6697 } as never).listeners[1], {
    host: "",
    port: 6697,
    alpn: { "": "irc", "irc": "irc" },
  });
});

Deno.test("IRC over a plain loopback listener", async () => {
  await using ts = await startTestServer({
    config: {
      listeners: [{ host: "127.0.0.1", port: 0, alpn: { "chat/1": "chat/1" } }, {
        host: "127.0.0.1",
        port: 0,
        alpn: { "": "irc" },
        tls: false,
      }],
    } as never,
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: ts.server.addrs[1].port });
  await conn.write(new TextEncoder().encode("CAP LS 302\r\n"));
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  assertMatch(new TextDecoder().decode(buf.subarray(0, n!)), /CAP \* LS :.*sasl=PLAIN/);
  conn.close();
});
