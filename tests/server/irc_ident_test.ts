// End-to-end over TLS: what IRC shows about a user and the 512-byte line. USER's username and
// realname in WHO and WHOIS, USERHOST (modern.ircdocs.horse RPL_WHOREPLY 352, RPL_WHOISUSER 311,
// RPL_USERHOST 302), and a PRIVMSG that could not reach others as one line is ERR_INPUTTOOLONG.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { IrcClient } from "../harness/irc_client.ts";
import { WireClient } from "../harness/wire_client.ts";
import { identOf } from "../../src/server/irc_protocol.ts";

async function server(): Promise<TestServer & { irc: number }> {
  const ts = await startTestServer({ config: { ircPort: 0 } });
  return Object.assign(ts, { irc: ts.server.addrs[1].port });
}

/** Registers over PASS (open registration) with USER's username and realname. */
async function passClient(
  ts: TestServer & { irc: number },
  nick: string,
  user: string,
  real: string,
): Promise<IrcClient> {
  const c = await IrcClient.connect(ts.irc, ts.certPem);
  c.send(`PASS password-${nick}`);
  c.send(`NICK ${nick}`);
  c.send(`USER ${user} 0 * :${real}`);
  await c.expectCommand("422");
  await c.barrier();
  return c;
}

Deno.test("IRC: WHO and WHOIS show USER's username and realname; a chat/1 user shows the account name", async () => {
  await using ts = await server();
  await using _cool = await passClient(ts, "coolNick", "myusernam", "My UniqueReal Name");
  await using other = await passClient(ts, "otherNick", "other", "Other Person");
  await using _w = await WireClient.login(ts.port, ts.certPem, "webby", { register: true });
  await other.barrier();
  // modern.ircdocs.horse: "<client> <channel> <username> <host> <server> <nick> <flags>
  // :<hopcount> <realname>".
  other.send("WHO coolnick");
  const who = await other.expectCommand("352");
  assertEquals(who.params, [
    "otherNick",
    "*",
    "myusernam",
    "chat",
    "chat.server",
    "coolNick",
    "H",
    "0 My UniqueReal Name",
  ]);
  await other.expectCommand("315");
  // "<client> <nick> <username> <host> * :<realname>"
  other.send("WHOIS coolNick");
  const whois = await other.expectCommand("311");
  assertEquals(whois.params, [
    "otherNick",
    "coolNick",
    "myusernam",
    "chat",
    "*",
    "My UniqueReal Name",
  ]);
  await other.expectCommand("318");
  other.send("WHO webby");
  const web = await other.expectCommand("352");
  assertEquals([web.params[2], web.params[7]], ["webby", "0 webby"]);
  await other.expectCommand("315");
});

Deno.test("IRC: USERHOST answers 302 with nick=+user@host, - when away, at most 5, unknown nicks left out", async () => {
  await using ts = await server();
  await using bar = await passClient(ts, "bar", "baruser", "Bar");
  await using qux = await passClient(ts, "qux", "qux", "Qux");
  qux.send("USERHOST bar");
  // modern.ircdocs.horse RPL_USERHOST: "<client> :[<reply>{ <reply>}]",
  // reply = nickname [ "*" ] "=" ( "+" / "-" ) hostname
  assertEquals((await qux.expectCommand("302")).params, ["qux", "bar=+baruser@chat"]);
  bar.send("AWAY :not here");
  await bar.expectCommand("306");
  qux.send("USERHOST bar nobody-here qux");
  assertEquals((await qux.expectCommand("302")).params, [
    "qux",
    "bar=-baruser@chat qux=+qux@chat",
  ]);
  qux.send("USERHOST");
  assertEquals((await qux.expectCommand("461")).params.slice(0, 2), ["qux", "USERHOST"]);
  qux.send("USERHOST nobody-here");
  assertEquals((await qux.expectCommand("302")).params, ["qux", ""]);
});

Deno.test("identOf() keeps a safe username and realname", () => {
  assertEquals(identOf("my user!@", "\x02Bold\x02 name"), { user: "myuser", real: "Bold name" });
  assertEquals(identOf("~x", "a\x1bb\u202e"), { user: "x", real: "a b" });
  assertEquals(identOf("u".repeat(40), "r".repeat(200)).user.length, 32);
  assertEquals(identOf("u", "r".repeat(200)).real.length, 100);
});

Deno.test("IRC: a PRIVMSG that would reach others as more than 512 bytes is 417 and not sent; one that fits is sent whole", async () => {
  await using ts = await server();
  await using a = await passClient(ts, "nick1", "nick1", "One");
  await using b = await passClient(ts, "nick2", "nick2", "Two");
  // Others get ":nick1!nick1@chat PRIVMSG nick2 <text>\r\n" (no `:`: the text has no space),
  // 34 bytes around the text; the line at exactly 512 bytes is sent.
  const overhead = ":nick1!nick1@chat PRIVMSG nick2 ".length + 2;
  const fits = "a".repeat(512 - overhead);
  a.send(`PRIVMSG nick2 :${fits}`);
  const got = await b.expectCommand("PRIVMSG");
  assertEquals(got.params, ["nick2", fits]);
  a.send(`PRIVMSG nick2 :${fits}b`);
  await a.expectCommand("417");
  a.send("PRIVMSG :nick2 x :hi"); // the target is the trailing param: no text (ERR_NOTEXTTOSEND)
  await a.expectCommand("412");
  const emoji = "a".repeat(512 - overhead - 3) + "😃"; // one byte over, in the last character
  a.send(`PRIVMSG nick2 :${emoji}`);
  await a.expectCommand("417");
  const seen = await b.barrier();
  assertEquals(seen.filter((m) => m.command === "PRIVMSG"), []);
  // A NOTICE is never answered: a long one still arrives, split into lines that fit.
  a.send(`NOTICE nick2 :${fits}bb`); // NOTICE is one byte shorter than PRIVMSG
  const n1 = await b.expectCommand("NOTICE");
  const n2 = await b.expectCommand("NOTICE");
  assertEquals(n1.params[1] + n2.params[1], fits + "bb");
  assert(!(await a.barrier()).some((m) => m.command === "417"), "no reply to a NOTICE");
});
