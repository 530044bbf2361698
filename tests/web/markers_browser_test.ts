// Read markers, search and notifications in real Chromium (docs/PROTOCOL.md §7.1, §7.2;
// docs/WEB.md): unread counts agree between two tabs and a terminal-side client of the same user,
// search never shows what the user may not read, a message off screen notifies.
import { assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { convKey, type ReadFrame, UnreadCounts } from "../../src/protocol/unread.ts";
import { HAVE_CHROMIUM, launchBrowser, logIn, waitForBody } from "./browser.ts";
import type { Page } from "playwright-core";
import { HAVE_TMUX, TmuxSession } from "../client/tmux.ts";
import { chatCommand, fingerprintOf, REPO_ROOT } from "../client/helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

// Functions passed to page.evaluate / waitForFunction run in the page: these are its globals.
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
declare const window: any;

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

const browserTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_CHROMIUM && Deno.env.get("CI") !== "true", fn });

let refs = 0;
async function ask(c: WireClient, frame: Record<string, unknown>): Promise<ServerFrame> {
  const ref = `r${++refs}`;
  c.send({ ...frame, ref });
  return await c.expect((f) => "ref" in f && f.ref === ref);
}

async function waitBadge(page: Page, key: string, n: number): Promise<void> {
  await page.waitForFunction(
    ([k, want]) => {
      const el = document.querySelector(`.conv[data-key='${k}'] .badge`);
      return (el ? Number(el.textContent) : 0) === want;
    },
    [key, n] as const,
    { timeout: 10_000 },
  );
}

/**
 * The terminal side: a chat/1 connection of the same user that counts with the module
 * `chat connect` uses (src/protocol/unread.ts), from its login `ok`, deliveries and `read` frames.
 */
class CountingClient {
  counts = new UnreadCounts();
  constructor(readonly c: WireClient, me: string) {
    const ok = c.loginOk as F<"ok">;
    this.counts.reset(me, ok.markers, ok.latest);
  }
  /** Counts one frame (taken from the client by a test's `expect`). */
  take(f: ServerFrame): void {
    if (f.type === "msg") this.counts.message(f);
    if (f.type === "read") this.counts.marker(f);
  }
  /** Takes every frame that arrived so far. */
  async sync(): Promise<void> {
    await this.c.barrier();
    for (const f of this.c.frames.splice(0)) this.take(f);
  }
  async count(conv: { room?: string; with?: string }): Promise<number> {
    await this.sync();
    return this.counts.count(convKey(conv));
  }
}

browserTest(
  "browser: unread counts agree between two tabs and a terminal client of the same user, and come back after a reload",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await ask(bob, { type: "join", room: "ops" });
    const tab1 = await b.user();
    await logIn(tab1, ts.port, "alice", { register: true });
    await using term = await WireClient.login(ts.port, ts.certPem, "alice");
    assertEquals((await ask(term, { type: "join", room: "ops" })).type, "ok");
    const tab2 = await b.user();
    await logIn(tab2, ts.port, "alice");
    const t = new CountingClient(term, "alice");

    // Three messages in #ops while both tabs show #general.
    for (const body of ["o1", "o2", "o3"]) await bob.say("ops", body, `c-${body}`);
    await waitBadge(tab1, "#ops", 3);
    await waitBadge(tab2, "#ops", 3);
    assertEquals(await t.count({ room: "ops" }), 3);

    // Tab 1 opens #ops: the marker moves, the other tab and the terminal drop to 0.
    await tab1.click("#room-list .conv[data-key='#ops']");
    await waitForBody(tab1, "o3");
    await waitBadge(tab1, "#ops", 0);
    await waitBadge(tab2, "#ops", 0);
    t.take(await term.expect((f) => f.type === "read" && f.room === "ops"));
    assertEquals(await t.count({ room: "ops" }), 0);

    // A DM to alice: one unread everywhere; the terminal reads it, both tabs follow.
    const d = await ask(bob, { type: "send", cid: "d1", to: "alice", body: "psst" }) as F<"ack">;
    await waitBadge(tab1, "@bob", 1);
    await waitBadge(tab2, "@bob", 1);
    assertEquals(await t.count({ with: "bob" }), 1);
    t.counts.readUpTo(convKey({ with: "bob" }), d.id);
    const r = await ask(term, { type: "read", with: "bob", id: d.id }) as F<"ok">;
    t.counts.marker(r as ReadFrame & F<"ok">);
    await waitBadge(tab1, "@bob", 0);
    await waitBadge(tab2, "@bob", 0);
    assertEquals(await t.count({ with: "bob" }), 0);

    // Tab 1 shows #ops, so new messages there are read at once; #general fills up instead.
    await bob.say("general", "g1", "c-g1");
    await bob.say("general", "g2", "c-g2");
    await waitBadge(tab2, "#general", 0); // tab 2 has #general open: read on arrival
    await waitBadge(tab1, "#general", 0);
    assertEquals(await t.count({ room: "general" }), 0);

    // A reload starts from the server's markers, not from zero.
    await tab1.click("#room-list .conv[data-key='#general']");
    await tab2.click("#room-list .conv[data-key='#ops']");
    await bob.say("ops", "o4", "c-o4");
    await waitForBody(tab2, "o4");
    await bob.say("general", "g3", "c-g3");
    await waitForBody(tab1, "g3");
    await bob.say("ops", "o5", "c-o5");
    const o6 = await bob.say("ops", "o6", "c-o6") as F<"ack">;
    await waitForBody(tab2, "o6");
    // Tab 2 read o6: nothing unread anywhere, once its marker has reached the others.
    await waitBadge(tab1, "#ops", 0);
    await term.expect((f) => f.type === "read" && f.room === "ops" && f.id === o6.id, 10_000)
      .then((f) => term.frames.push(f)); // counted in arrival order by sync(), not ahead of o6
    assertEquals(await t.count({ room: "ops" }), 0);
    await tab2.goto("about:blank");
    await bob.say("ops", "o7", "c-o7");
    await waitBadge(tab1, "#ops", 1);
    await logIn(tab2, ts.port, "alice");
    await waitBadge(tab2, "#ops", 1);
    assertEquals(await t.count({ room: "ops" }), 1);
  },
);

Deno.test({
  name:
    "browser and terminal: the real `chat connect` screen and a browser tab of one user show the same unread count, and reading in the browser clears it in the terminal",
  ignore: (!HAVE_CHROMIUM || !HAVE_TMUX) && Deno.env.get("CI") !== "true",
  async fn() {
    await using ts = await startTestServer();
    await using cfg = await tempDir("chat-web-tui-");
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await ask(bob, { type: "join", room: "ops" });
    {
      await using first = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
      assertEquals((await ask(first, { type: "join", room: "ops" })).type, "ok");
    }
    await using b = await launchBrowser();
    const tab = await b.user();
    await logIn(tab, ts.port, "alice");
    // The terminal client, as a person runs it, in a 100x24 tmux screen showing #general.
    const fp = await fingerprintOf(ts.certPem);
    await using tui = await TmuxSession.start(
      chatCommand([`127.0.0.1:${ts.port}`, "--user", "alice", "--trust-fingerprint", fp]),
      {
        rows: 24,
        cwd: REPO_ROOT,
        env: { CHAT_CONFIG_DIR: cfg.path, CHAT_PASSWORD: "password-alice", NO_COLOR: "" },
      },
    );
    await tui.waitForText("as alice (");

    for (const body of ["o1", "o2", "o3"]) await bob.say("ops", body, `c-${body}`);
    await waitBadge(tab, "#ops", 3);
    await tui.waitForText("[unread: #ops(3)]");

    // Read in the browser: the terminal's status line drops the count.
    await tab.click("#room-list .conv[data-key='#ops']");
    await waitForBody(tab, "o3");
    await waitBadge(tab, "#ops", 0);
    await tui.waitFor(
      (lines) =>
        lines.some((l) => l.includes("as alice (")) && !lines.some((l) => l.includes("#ops(")),
      "the terminal's unread count for #ops to go",
    );
  },
});

browserTest(
  "browser: search shows the user's own rooms and DMs, never a private room of others or another user's DM",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await using cy = await WireClient.login(ts.port, ts.certPem, "cy", { register: true });
    const alice = await b.user();
    await logIn(alice, ts.port, "alice", { register: true });
    await ask(bob, { type: "join", room: "secret", private: true });
    await bob.say("secret", "walrus plans in secret", "s1");
    await ask(cy, { type: "send", cid: "d1", to: "bob", body: "walrus for bob only" });
    await bob.say("general", "the walrus meeting is at 3", "g1");
    await ask(bob, {
      type: "send",
      cid: "d2",
      to: "alice",
      body: "a walrus <img src=x onerror=alert(1)>",
    });

    await alice.fill("#search-input", "walrus");
    await alice.press("#search-input", "Enter");
    await alice.waitForSelector("#search-results:not([hidden])");
    const hits = await alice.$$eval(
      "#search-list li .body",
      (els) => els.map((e) => e.textContent),
    );
    assertEquals(hits, ["a walrus <img src=x onerror=alert(1)>", "the walrus meeting is at 3"]);
    assertEquals(await alice.locator("#search-list img").count(), 0, "an image from a result");
    assertEquals(await alice.textContent("#search-title"), "2 found");
    // A result opens its conversation.
    await alice.click("#search-list li:nth-child(1)");
    await alice.waitForSelector("#title:text-is('bob')");
    await waitForBody(alice, "a walrus <img src=x onerror=alert(1)>");
  },
);

browserTest(
  "browser: once notifications are allowed, a message in a room not on screen notifies and one on screen does not",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    await using bob = await WireClient.login(ts.port, ts.certPem, "bob", { register: true });
    await ask(bob, { type: "join", room: "ops" });
    {
      await using first = await WireClient.login(ts.port, ts.certPem, "alice", { register: true });
      assertEquals((await ask(first, { type: "join", room: "ops" })).type, "ok");
    }
    const alice = await b.user();
    await alice.context().grantPermissions(["notifications"], {
      origin: `https://127.0.0.1:${ts.port}`,
    });
    // Records what the page shows through the real Notification API (the constructor still runs).
    await alice.addInitScript(() => {
      const Real = window.Notification;
      window.shown = [];
      class Recorded extends Real {
        constructor(title: string, opts: { body?: string }) {
          super(title, opts);
          window.shown.push({ title, body: opts?.body });
        }
      }
      window.Notification = Recorded;
    });
    await logIn(alice, ts.port, "alice");
    await alice.waitForSelector("#room-list .conv[data-key='#ops']");
    // Asked on a user gesture: the button.
    await alice.click("#notify");
    await alice.waitForFunction(() => window.Notification.permission === "granted");

    await bob.say("general", "on screen", "c1");
    await waitForBody(alice, "on screen");
    await bob.say("ops", "deploy is done", "c2");
    await alice.waitForFunction(() => window.shown.length > 0, undefined, { timeout: 10_000 });
    assertEquals(await alice.evaluate(() => window.shown), [
      { title: "bob in #ops", body: "deploy is done" },
    ]);
  },
);
