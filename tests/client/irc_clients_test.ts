// Real IRC clients (irssi and WeeChat from Debian) against our IRC listener, driven in tmux: they
// connect with SASL PLAIN, join, talk with a chat/1 user and read history through CHATHISTORY;
// they show another IRC user's NOTICE as a notice and a QUIT with its reason; the assertions are
// on what their screens show.
import { assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { HAVE_TMUX, TmuxSession } from "./tmux.ts";
import { IrcClient } from "../harness/irc_client.ts";

/** `weechat --version`'s major number, or 0. */
function weechatMajor(): number {
  try {
    const out = new Deno.Command("weechat", {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    return Number(/^(\d+)\./.exec(new TextDecoder().decode(out.stdout))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function have(cmd: string): boolean {
  try {
    return new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

async function setup(name: string) {
  const ts = await startTestServer({ config: { ircPort: 0 } });
  const irc = ts.server.addrs[1].port;
  await (await WireClient.login(ts.port, ts.certPem, name, { register: true }))[
    Symbol.asyncDispose
  ]();
  const peer = await WireClient.login(ts.port, ts.certPem, "victor", { register: true });
  await peer.say("general", "an older message");
  await (await WireClient.login(ts.port, ts.certPem, "ivo", { register: true }))[
    Symbol.asyncDispose
  ]();
  return { ts, irc, peer };
}

/** What the client shows for another IRC user's NOTICE and QUIT with a reason. */
interface Shown {
  notice: string;
  quit: string;
}

async function talk(
  t: TmuxSession,
  peer: WireClient,
  name: string,
  historyCommand: string,
  irc: { port: number; certPem: string; shown: Shown },
): Promise<void> {
  // chat/1 → the IRC client's screen.
  await peer.say("general", "hello from chat one");
  await t.waitForText("hello from chat one");
  // The IRC client → chat/1.
  await t.type("hi from " + name);
  await t.keys("Enter");
  const got = await peer.expect((f) => f.type === "msg" && f.from === name, 20_000) as Extract<
    ServerFrame,
    { type: "msg" }
  >;
  assertEquals(got.body, "hi from " + name);
  // Another IRC user's NOTICE is shown as a notice, and their QUIT with its reason.
  const ivo = await IrcClient.sasl(irc.port, irc.certPem, "ivo");
  ivo.send("NOTICE #general :heads up from ivo");
  await t.waitForText(irc.shown.notice);
  ivo.send("QUIT :gone fishing");
  await ivo.expectClosed();
  await ivo[Symbol.asyncDispose]();
  await t.waitForText(irc.shown.quit);
  // History the client was not there for, through CHATHISTORY.
  await t.type(historyCommand);
  await t.keys("Enter");
  await t.waitForText("an older message");
  // Quit, and wait for the program to end before its home directory is removed.
  await t.type("/quit");
  await t.keys("Enter");
  await t.waitForText("[exited");
}

Deno.test({
  name: "irssi connects with SASL, joins #general, talks with a chat/1 user, reads CHATHISTORY",
  ignore: !HAVE_TMUX || !have("irssi"),
  async fn() {
    const { ts, irc, peer } = await setup("uma");
    await using _ts = ts;
    await using _peer = peer;
    await using home = await tempDir("chat-irssi-");
    await Deno.writeTextFile(
      `${home.path}/config`,
      `servers = ( { address = "127.0.0.1"; chatnet = "chat"; port = "${irc}"; use_tls = "yes";
  tls_verify = "no"; autoconnect = "yes"; } );
chatnets = { chat = { type = "IRC"; sasl_mechanism = "PLAIN"; sasl_username = "uma";
  sasl_password = "password-uma"; }; };
channels = ( { name = "#general"; chatnet = "chat"; autojoin = "yes"; } );
settings = { core = { real_name = "Uma"; user_name = "uma"; nick = "uma"; };
  "fe-common/core" = { autocreate_own_query = "no"; }; };
`,
    );
    await using t = await TmuxSession.start(["irssi", "--home", home.path], {
      cols: 120,
      rows: 40,
    });
    await t.waitForText("MOTD File is missing", { timeoutMs: 30_000 });
    await t.keys("M-2"); // the #general window
    await t.waitForText("#general");
    await talk(t, peer, "uma", "/quote CHATHISTORY LATEST #general * 10", {
      port: irc,
      certPem: ts.certPem,
      // irssi's formats: a channel notice `-nick:#chan- text`, a quit `[Quit: reason]`.
      shown: { notice: "-ivo:#general- heads up from ivo", quit: "has quit [Quit: gone fishing]" },
    });
  },
});

Deno.test({
  name: "WeeChat connects with SASL, joins #general, talks with a chat/1 user, reads CHATHISTORY",
  ignore: !HAVE_TMUX || !have("weechat"),
  async fn() {
    const { ts, irc, peer } = await setup("wendy");
    await using _ts = ts;
    await using _peer = peer;
    await using home = await tempDir("chat-weechat-");
    const s = "irc.server.chat";
    // WeeChat 4.0 renamed its "ssl" options "tls" (weechat/weechat#1903); 3.8 (Debian 12) knows
    // only -ssl and ssl_verify, and with -tls it connects without TLS, so it never logs in.
    const tls = weechatMajor() >= 4 ? "tls" : "ssl";
    const commands = [
      `/server add chat 127.0.0.1/${irc} -${tls}`,
      `/set ${s}.${tls}_verify off`,
      `/set ${s}.sasl_mechanism plain`,
      `/set ${s}.sasl_username wendy`,
      `/set ${s}.sasl_password password-wendy`,
      `/set ${s}.nicks wendy`,
      `/set ${s}.autojoin #general`,
      `/connect chat`,
    ].join(";");
    await using t = await TmuxSession.start(
      ["weechat", "--dir", home.path, "--run-command", commands],
      { cols: 120, rows: 40 },
    );
    // Joined: the status bar names the channel with its modes and nick count (a channel not
    // joined shows as "(#general)"), and the buffer shows the join.
    await t.waitForText("#general(+nt){2}", { timeoutMs: 30_000 });
    await t.waitForText("wendy (wendy@chat) has joined #general");
    await talk(t, peer, "wendy", "/quote CHATHISTORY LATEST #general * 10", {
      port: irc,
      certPem: ts.certPem,
      shown: {
        notice: "Notice(ivo): heads up from ivo",
        quit: "has quit (Quit: gone fishing)",
      },
    });
  },
});
