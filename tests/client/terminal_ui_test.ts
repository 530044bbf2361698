// The interactive client as a person uses it: a real terminal (tmux, fixed size), keys typed,
// and assertions on what the screen shows. Skipped (with a warning) where tmux is missing.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer, type TestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { KnownServers, serverKey } from "../../src/client/known_servers.ts";
import { chatCommand, fingerprintOf, REPO_ROOT } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { HAVE_TMUX, TmuxSession } from "./tmux.ts";

const ROWS = 24;
const INPUT_ROW = ROWS - 1;
const STATUS_ROW = ROWS - 2;

/** Starts `chat connect` for `user` (already registered) in a 100×24 terminal. */
async function chatScreen(ts: TestServer, configDir: string, user: string): Promise<TmuxSession> {
  const fp = await fingerprintOf(ts.certPem);
  const tmux = await TmuxSession.start(
    chatCommand([`127.0.0.1:${ts.port}`, "--user", user, "--trust-fingerprint", fp]),
    {
      rows: ROWS,
      cwd: REPO_ROOT,
      env: { CHAT_CONFIG_DIR: configDir, CHAT_PASSWORD: `password-${user}`, NO_COLOR: "" },
    },
  );
  await tmux.waitForText(`as ${user} (`);
  return tmux;
}

function rowOf(lines: string[], text: string): number {
  return lines.findIndex((l) => l.includes(text));
}

Deno.test({
  name: "incoming messages appear above the input line while a half-typed line stays intact",
  ignore: !HAVE_TMUX,
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir();
    (await WireClient.login(ts.port, ts.certPem, "alice", { register: true })).close();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await using tmux = await chatScreen(ts, cfg.path, "alice");
    await tmux.type("half typed");
    await tmux.waitFor((l) => l[INPUT_ROW] === "[#general] half typed", "the typed text");
    for (const body of ["msg one", "msg two", "msg three"]) {
      const ack = await bob.say("general", body, body.replace(" ", "-"));
      assertEquals(ack.type, "ack");
    }
    const lines = await tmux.waitForText("<bob> msg three");
    assertEquals(lines[INPUT_ROW], "[#general] half typed");
    assert(
      lines[STATUS_ROW].includes("alice") && lines[STATUS_ROW].includes("[#general]"),
      lines[STATUS_ROW],
    );
    const rows = ["msg one", "msg two", "msg three"].map((b) => rowOf(lines, `<bob> ${b}`));
    assertEquals([...rows].sort((a, b) => a - b), rows, "messages out of order");
    assertEquals(rows[2], STATUS_ROW - 1, "the newest message is not just above the status bar");
    assertEquals(lines.filter((l) => l.includes("half typed")).length, 1, "the typed line leaked");
    await tmux.keys("Enter");
    const after = await tmux.waitForText("> <alice> half typed");
    assertEquals(after[INPUT_ROW], "[#general]");
    const m = await bob.expect((f) => f.type === "msg" && f.body === "half typed");
    assertEquals(m.type === "msg" && m.from, "alice");
  },
});

Deno.test({
  name: "/who, /help, an unknown command, tab completion, /me and /msg",
  ignore: !HAVE_TMUX,
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir();
    (await WireClient.login(ts.port, ts.certPem, "alice", { register: true })).close();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await using tmux = await chatScreen(ts, cfg.path, "alice");
    await tmux.type("/who");
    await tmux.keys("Enter");
    await tmux.waitForText("Online in #general (2): alice, bob");
    await tmux.type("/frobnicate");
    await tmux.keys("Enter");
    await tmux.waitForText("Unknown command /frobnicate. Type /help for the list.");
    await tmux.type("/he");
    await tmux.keys("Tab");
    await tmux.waitFor((l) => l[INPUT_ROW] === "[#general] /help", "/he completed to /help");
    await tmux.keys("Enter");
    const help = await tmux.waitForText("/passwd");
    for (
      const c of [
        "/join ROOM",
        "/part",
        "/rooms",
        "/msg USER TEXT",
        "/me TEXT",
        "/history [N]",
        "/quit",
      ]
    ) {
      assert(help.some((l) => l.includes(c)), `/help does not mention ${c}`);
    }
    await tmux.type("bo");
    await tmux.keys("Tab");
    await tmux.waitFor((l) => l[INPUT_ROW] === "[#general] bob:", "bo completed to bob:");
    await tmux.type("hi");
    await tmux.keys("Enter");
    await bob.expect((f) => f.type === "msg" && f.body === "bob: hi");
    await tmux.type("/me waves");
    await tmux.keys("Enter");
    await tmux.waitForText("> * alice waves");
    await bob.expect((f) => f.type === "msg" && f.body === "/me waves");
    await tmux.type("/msg bob psst");
    await tmux.keys("Enter");
    await tmux.waitForText("> -> *bob* psst");
    const dm = await bob.expect((f) => f.type === "msg" && f.body === "psst");
    assertEquals(dm.type === "msg" && [dm.to, dm.room], ["bob", undefined]);
    await bob.say("general", "/me dances", "me1");
    await tmux.waitForText("* bob dances");
  },
});

Deno.test({
  name:
    "first connection from a terminal: asked to trust the server, to register, passwords hidden",
  ignore: !HAVE_TMUX,
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir();
    const fp = await fingerprintOf(ts.certPem);
    await using tmux = await TmuxSession.start(chatCommand([`127.0.0.1:${ts.port}`]), {
      cols: 120,
      rows: ROWS,
      cwd: REPO_ROOT,
      env: { CHAT_CONFIG_DIR: cfg.path },
    });
    const ask = await tmux.waitForText("Trust this server and remember it (yes/no)?", {
      joined: true,
    });
    assert(ask.some((l) => l.includes(fp)), `the fingerprint is not shown:\n${ask.join("\n")}`);
    await tmux.type("yes");
    await tmux.keys("Enter");
    await tmux.waitForText("User:");
    await tmux.type("carol");
    await tmux.keys("Enter");
    await tmux.waitForText("Password for carol:");
    await tmux.type("s3cret-pass");
    await tmux.keys("Enter");
    const offer = await tmux.waitForText("Register carol as a new account", { joined: true });
    assert(!offer.some((l) => l.includes("s3cret")), "the password was echoed");
    await tmux.type("yes");
    await tmux.keys("Enter");
    await tmux.waitForText("Password again:");
    await tmux.type("s3cret-pass");
    await tmux.keys("Enter");
    await tmux.waitForText("as carol (");
    const known = await KnownServers.load(`${cfg.path}/known_servers`);
    assertEquals(
      known.get(serverKey("127.0.0.1", ts.port))?.fingerprint,
      fp.slice("sha256:".length),
    );
    // The account the terminal registered logs in (login() throws unless the server says ok).
    (await WireClient.login(ts.port, ts.certPem, "carol", { password: "s3cret-pass" })).close();
  },
});

Deno.test({
  name: "a server restart shows one-line notices, keeps the typed line, and resumes",
  ignore: !HAVE_TMUX,
  async fn() {
    const ts1 = await startTestServer({ keepData: true });
    const { port, dataDir } = ts1;
    await using cfg = await tempDir();
    (await WireClient.login(port, ts1.certPem, "alice", { register: true })).close();
    (await WireClient.login(port, ts1.certPem, "bob", { register: true })).close();
    await using tmux = await chatScreen(ts1, cfg.path, "alice");
    await tmux.type("draft");
    await ts1.stop();
    await tmux.waitForText("Disconnected: the server is restarting or shutting down");
    await using ts2 = await startTestServer({ dataDir, config: { port } });
    {
      await using bob = await WireClient.login(port, ts2.certPem, "bob");
      await bob.say("general", "while you were away", "w1");
    }
    const lines = await tmux.waitForText("<bob> while you were away");
    await tmux.waitForText("Reconnected to");
    assertEquals(lines[INPUT_ROW], "[#general] draft");
    assert(!lines.some((l) => /^\s+at /.test(l)), "a stack trace is on the screen");
    const screen = await tmux.screen();
    assertEquals(screen.filter((l) => l.includes("while you were away")).length, 1, "shown twice");
  },
});

Deno.test({
  name: "/quit leaves the chat screen, restores the terminal and exits 0",
  ignore: !HAVE_TMUX,
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir();
    (await WireClient.login(ts.port, ts.certPem, "alice", { register: true })).close();
    await using tmux = await chatScreen(ts, cfg.path, "alice");
    await tmux.type("/quit");
    await tmux.keys("Enter");
    const lines = await tmux.waitForText("[exited 0]");
    assert(
      !lines.some((l) => l.includes("[#general]")),
      `the chat screen is still shown:\n${lines.join("\n")}`,
    );
  },
});

Deno.test({
  name: "/join switches rooms, /rooms lists them, /history shows older messages, /part leaves",
  ignore: !HAVE_TMUX,
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir();
    (await WireClient.login(ts.port, ts.certPem, "alice", { register: true })).close();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    bob.send({ type: "join", room: "ops", ref: "j" });
    await bob.expect((f) => f.type === "ok");
    for (let i = 1; i <= 12; i++) await bob.say("ops", `ops note ${i}`, `n${i}`);
    await using tmux = await chatScreen(ts, cfg.path, "alice");
    await tmux.type("/join ops");
    await tmux.keys("Enter");
    const joined = await tmux.waitForText("Now talking in #ops; online: alice, bob");
    await tmux.waitFor((l) => l[INPUT_ROW] === "[#ops]", "the #ops prompt");
    assert(joined[STATUS_ROW].includes("[#ops]"), joined[STATUS_ROW]);
    await tmux.waitForText("<bob> ops note 12");
    await bob.say("general", "over here", "g1");
    await tmux.waitFor(
      (l) => l.some((x) => x.includes("#general <bob> over here")),
      "the room tag",
    );
    await tmux.type("/rooms");
    await tmux.keys("Enter");
    await tmux.waitFor(
      (l) =>
        l.some((x) => /\* #general\s+2 members, 2 online/.test(x)) &&
        l.some((x) => /\* #ops\s+2 members, 2 online/.test(x)),
      "the room list",
    );
    await tmux.type("/history 12");
    await tmux.keys("Enter");
    // The startup history showed notes 3-12; /history 12 reaches back to note 1.
    await tmux.waitFor((l) => l.some((x) => x.endsWith("<bob> ops note 1")), "note 1");
    await tmux.type("/part");
    await tmux.keys("Enter");
    await tmux.waitForText("You left #ops");
    await tmux.waitFor((l) => l[INPUT_ROW] === "[#general]", "back in #general");
    await tmux.type("/part general");
    await tmux.keys("Enter");
    await tmux.waitForText("Cannot part general");
  },
});
