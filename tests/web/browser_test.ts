// The web app in real Chromium against the real server over HTTPS and WSS on loopback.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import {
  HAVE_CHROMIUM,
  launchBrowser,
  logIn,
  pageBackToStart,
  shownBodies,
  waitForBody,
} from "./browser.ts";
import { ChatProcess, fingerprintOf, runChat } from "../client/helpers.ts";

// Functions passed to page.evaluate / waitForFunction run in the page: these are its globals
// (Deno's type check has no DOM library, and mixing one in breaks Deno's own stream types).
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
declare const requestAnimationFrame: any;

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
const isType = (t: string) => (f: ServerFrame) => f.type === t;

// Skipped without Chromium on a developer's machine; under CI=true they run (and fail) instead.
const browserTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_CHROMIUM && Deno.env.get("CI") !== "true", fn });

browserTest(
  "browser: two web users and a chat/1 user talk in #general; a DM arrives with an unread count",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    const alice = await b.user();
    const bob = await b.user();
    await logIn(alice, ts.port, "alice", { register: true });
    await logIn(bob, ts.port, "bob", { register: true });
    await using carol = await WireClient.login(ts.port, ts.certPem, "carol", { register: true });

    // Enter sends; the message is pending until its ack, then sent.
    await alice.fill("#compose", "hello from alice");
    await alice.press("#compose", "Enter");
    await waitForBody(alice, "hello from alice");
    await waitForBody(bob, "hello from alice");
    const got = await carol.expect(isType("msg")) as F<"msg">;
    assertEquals([got.from, got.body, got.room], ["alice", "hello from alice", "general"]);

    await carol.say("general", "hello from the terminal");
    await waitForBody(alice, "hello from the terminal");
    await waitForBody(bob, "hello from the terminal");
    assertEquals(await shownBodies(bob), ["hello from alice", "hello from the terminal"]);

    // Up recalls the last message sent.
    await alice.press("#compose", "ArrowUp");
    assertEquals(await alice.inputValue("#compose"), "hello from alice");
    await alice.fill("#compose", "");

    // Bob switches to a DM with alice by keyboard (Ctrl-K) and writes; alice sees an unread count.
    await bob.keyboard.press("Control+k");
    await bob.waitForSelector("#switcher[open]");
    await bob.keyboard.type("@alice");
    await bob.keyboard.press("Enter");
    await bob.waitForSelector("#title:text-is('alice')");
    await bob.keyboard.type("psst, alice");
    await bob.keyboard.press("Enter");
    await waitForBody(bob, "psst, alice");
    await alice.waitForSelector("#dm-list .conv[data-key='@bob'] .badge:text-is('1')");
    const dm = await carol.expectNone((f) => f.type === "msg" && f.body === "psst, alice");
    void dm;
    await alice.click("#dm-list .conv[data-key='@bob']");
    await waitForBody(alice, "psst, alice");
    // Opening the conversation reads it: the badge goes once the app has marked it read (it may
    // still be there right after the click).
    await alice.waitForSelector("#dm-list .conv[data-key='@bob'] .badge", { state: "detached" });

    // Presence: the room lists who is online.
    await alice.click("#room-list .conv[data-key='#general']");
    await alice.waitForFunction(() =>
      [...document.querySelectorAll("#people .person")].map((e: { textContent: string }) =>
        e.textContent
      ).join(",") ===
        "alice,bob,carol"
    );
  },
);

browserTest(
  "browser: a web user and a real `chat connect` terminal user talk in #general and by direct message",
  async () => {
    await using ts = await startTestServer();
    await using cfg = await tempDir("chat-web-term-");
    (await WireClient.login(ts.port, ts.certPem, "tom", { register: true })).close();
    const fp = await fingerprintOf(ts.certPem);
    const env = { CHAT_CONFIG_DIR: cfg.path, CHAT_PASSWORD: "password-tom" };
    const base = [`127.0.0.1:${ts.port}`, "-u", "tom", "--trust-fingerprint", fp];
    await using b = await launchBrowser();
    const web = await b.user();
    await logIn(web, ts.port, "wendy", { register: true });
    // The terminal user listens to #general and, in a second process, to the DM with wendy.
    await using room = new ChatProcess([...base, "--listen", "--json"], env);
    await room.waitFor("stderr", (l) => l.includes("listening as tom"), "the room listener");
    await using dm = new ChatProcess([...base, "--to", "wendy", "--listen", "--json"], env);
    await dm.waitFor("stderr", (l) => l.includes("listening as tom"), "the DM listener");

    await web.fill("#compose", "hi terminal");
    await web.press("#compose", "Enter");
    await waitForBody(web, "hi terminal");
    const inRoom = JSON.parse(
      await room.waitFor("stdout", (l) => l.includes("hi terminal"), "the web message"),
    );
    assertEquals([inRoom.from, inRoom.room, inRoom.body], ["wendy", "general", "hi terminal"]);

    const sent = await runChat([...base, "--send", "hi browser"], { env });
    assertEquals(sent.code, 0, sent.stderr);
    await waitForBody(web, "hi browser");

    const direct = await runChat([...base, "--to", "wendy", "--send", "just for you"], { env });
    assertEquals(direct.code, 0, direct.stderr);
    await web.waitForSelector("#dm-list .conv[data-key='@tom'] .badge:text-is('1')");
    await web.click("#dm-list .conv[data-key='@tom']");
    await waitForBody(web, "just for you");
    await web.fill("#compose", "got it");
    await web.press("#compose", "Enter");
    const back = JSON.parse(await dm.waitFor("stdout", (l) => l.includes("got it"), "the reply"));
    assertEquals([back.from, back.to, back.body], ["wendy", "tom", "got it"]);
    assertEquals(await shownBodies(web), ["just for you", "got it"]);
  },
);

browserTest(
  "browser: a server restart mid-conversation loses nothing: pending sends go out once, backlogs resume",
  async () => {
    await using tmp = await tempDir("chat-web-restart-");
    const first = await startTestServer({ dataDir: tmp.path });
    const port = first.port;
    await using b = await launchBrowser();
    const alice = await b.user();
    const bob = await b.user();
    await logIn(alice, port, "alice", { register: true });
    await logIn(bob, port, "bob", { register: true });
    await alice.fill("#compose", "before the restart");
    await alice.press("#compose", "Enter");
    await waitForBody(bob, "before the restart");

    await first.stop();
    await alice.waitForSelector("body[data-link=offline], body[data-link=connecting]");
    // Written while the server is down: visibly pending, sent after the reconnect.
    await alice.fill("#compose", "during the restart");
    await alice.press("#compose", "Enter");
    await alice.waitForSelector("#message-list .msg.pending .body:text-is('during the restart')");

    await using second = await startTestServer({ dataDir: tmp.path, config: { port } });
    await using carol = await WireClient.login(port, second.certPem, "carol", { register: true });
    await carol.say("general", "after the restart");
    await waitForBody(alice, "during the restart", 20_000);
    await waitForBody(bob, "during the restart", 20_000);
    await waitForBody(bob, "after the restart", 20_000);
    await waitForBody(alice, "after the restart", 20_000);
    // Each message once, everywhere, in the store's (id) order: whether alice's resend or
    // carol's message committed first is a race the test does not fix.
    carol.send({ type: "history", room: "general", ref: "h" });
    const h = await carol.expect(isType("history")) as F<"history">;
    const stored = h.messages.map((m) => m.body);
    assertEquals(
      [...stored].sort(),
      ["after the restart", "before the restart", "during the restart"],
    );
    assertEquals(await shownBodies(alice), stored);
    assertEquals(await shownBodies(bob), stored);
  },
);

browserTest("browser: back-paging reaches the first message of a long room, in order", async () => {
  await using ts = await startTestServer();
  await using seeder = await WireClient.login(ts.port, ts.certPem, "seeder", { register: true });
  const n = 230;
  const lines = [];
  for (let i = 0; i < n; i++) {
    lines.push(
      JSON.stringify({ type: "send", cid: `s${i}`, ref: `s${i}`, room: "general", body: `m${i}` }),
    );
  }
  await seeder.writeAll(lines.join("\n") + "\n");
  await seeder.expect((f) => f.type === "ack" && f.ref === `s${n - 1}`, 20_000);
  await using b = await launchBrowser();
  const page = await b.user();
  await logIn(page, ts.port, "reader", { register: true });
  await waitForBody(page, `m${n - 1}`);
  await pageBackToStart(page);
  const bodies = await shownBodies(page);
  assertEquals(bodies, Array.from({ length: n }, (_, i) => `m${i}`));
  assertEquals(await page.textContent("#history-start"), "This is the start of #general.");
});

const HOSTILE = [
  "<script>window.__pwned = 1</script>",
  '<img src=x onerror="window.__pwned = 1">',
  "<b>bold?</b> &amp; &lt;entity&gt;",
  "w".repeat(10_000),
  "مرحبا بالعالم — שלום עולם",
];

browserTest(
  "browser: hostile names and bodies render as inert text; a bidi override is refused and shown as not sent",
  async () => {
    // Bodies up to 12,000 bytes, so a 10,000-character word is a legal message.
    await using ts = await startTestServer({
      limits: { maxBodyBytes: 12_000, maxLineBytes: 16_384 },
    });
    await using b = await launchBrowser();
    const page = await b.user({ width: 360, height: 700 });
    // A name with markup is refused by the server; the refusal is shown as text.
    await page.goto(`https://127.0.0.1:${ts.port}/`);
    await page.fill("#login-user", "<img src=x onerror=alert(1)>");
    await page.fill("#login-password", "password-x");
    await page.click("#register-submit");
    await page.waitForFunction(() => document.querySelector("#login-error")!.textContent !== "");
    assertEquals(await page.locator("#login-error *").count(), 0, "markup in the refusal");
    await logIn(page, ts.port, "victim", { register: true });
    await using evil = await WireClient.login(ts.port, ts.certPem, "mallory", { register: true });
    for (const body of HOSTILE) assertEquals((await evil.say("general", body)).type, "ack");
    await waitForBody(page, HOSTILE[HOSTILE.length - 1]);
    assertEquals(await shownBodies(page), HOSTILE);
    const report = await page.evaluate(() => ({
      pwned: (globalThis as unknown as { __pwned?: number }).__pwned,
      elements:
        document.querySelectorAll("#message-list img, #message-list script, #message-list b")
          .length,
      // The 10,000-character word wraps inside the list instead of widening the page.
      overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
    }));
    assertEquals(report, { pwned: undefined, elements: 0, overflow: false });
    // U+202E (right-to-left override) is refused by the server: the message shows as not sent.
    await page.fill("#compose", "invoice \u202Efdp.exe");
    await page.press("#compose", "Enter");
    await page.waitForSelector("#message-list .msg.failed");
    assert((await page.textContent("#message-list .msg.failed .state"))!.startsWith("Not sent:"));
  },
);

browserTest("browser: the CSP blocks an injected inline script", async () => {
  await using ts = await startTestServer();
  await using b = await launchBrowser();
  const page = await b.user();
  await page.goto(`https://127.0.0.1:${ts.port}/`);
  const result = await page.evaluate(async () => {
    const violation = new Promise<string>((resolve) =>
      document.addEventListener(
        "securitypolicyviolation",
        (e: { violatedDirective: string }) => resolve(e.violatedDirective),
      )
    );
    const s = document.createElement("script");
    s.textContent = "window.__inline = 1";
    document.body.append(s);
    const directive = await violation;
    return { directive, ran: (globalThis as unknown as { __inline?: number }).__inline };
  });
  assertEquals(result.ran, undefined);
  assert(result.directive.startsWith("script-src"), result.directive);
});

browserTest(
  "browser: a room with 1,000 messages renders them at once (docs/PERFORMANCE.md, target < 100 ms)",
  async () => {
    await using ts = await startTestServer();
    await using seeder = await WireClient.login(ts.port, ts.certPem, "seeder", { register: true });
    await using member = await WireClient.login(ts.port, ts.certPem, "reader", { register: true });
    for (const c of [seeder, member]) {
      c.send({ type: "join", room: "big", ref: "j" });
      await c.expect((f) => f.type === "ok" && f.ref === "j");
    }
    const n = 1000;
    const lines = [];
    for (let i = 0; i < n; i++) {
      const body = `message ${i}: ` + "lorem ipsum dolor sit amet ".repeat(1 + (i % 4));
      lines.push(JSON.stringify({ type: "send", cid: `b${i}`, ref: `b${i}`, room: "big", body }));
    }
    await seeder.writeAll(lines.join("\n") + "\n");
    await seeder.expect((f) => f.type === "ack" && f.ref === `b${n - 1}`, 30_000);
    await using b = await launchBrowser();
    const page = await b.user();
    await logIn(page, ts.port, "reader");
    await page.click("#room-list .conv[data-key='#big']");
    await page.waitForSelector("#title:text-is('#big')");
    await pageBackToStart(page);
    assertEquals(await page.$$eval("#message-list .msg", (e) => e.length), n);
    // First render of the room in a fresh page's DOM: away to #general, then back, timed.
    await page.click("#room-list .conv[data-key='#general']");
    const times = await page.evaluate(async () => {
      const out: { render: number; frame: number }[] = [];
      for (let run = 0; run < 5; run++) {
        const away = document.querySelector("#room-list .conv[data-key='#general']")!;
        away.click();
        const t0 = performance.now();
        document.querySelector("#room-list .conv[data-key='#big']")!.click();
        void document.body.offsetHeight; // layout included
        const render = performance.now() - t0;
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
        out.push({ render, frame: performance.now() - t0 });
      }
      return out;
    });
    assertEquals(await page.$$eval("#message-list .msg", (e) => e.length), n);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const render = median(times.map((t) => t.render));
    const frame = median(times.map((t) => t.frame));
    console.log(
      `first render of 1,000 messages: ${render.toFixed(1)} ms (DOM and layout), ` +
        `${frame.toFixed(1)} ms to the next frame; runs ${JSON.stringify(times)}`,
    );
    // No assertion on the time: speed lives in docs/PERFORMANCE.md, not in a pass/fail test whose
    // verdict would depend on what else the shared machine runs. What must hold is above: every
    // one of the 1,000 messages is in the list after each switch.
    assert(times.length === 5 && times.every((t) => t.render > 0), JSON.stringify(times));
  },
);

browserTest(
  "browser: a notice (PROTOCOL.md §5) is shown as a notice, live and from history; a /me-looking notice is not an action",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    await using carol = await WireClient.login(ts.port, ts.certPem, "carol", { register: true });
    const alice = await b.user();
    await logIn(alice, ts.port, "alice", { register: true });

    const notice = (body: string) => {
      const cid = carol.nextCid();
      carol.send({ type: "send", cid, ref: cid, room: "general", body, notice: true });
      return carol.expect((f) => f.type === "ack" && "ref" in f && f.ref === cid);
    };
    await notice("deploy at 5");
    await notice("/me is a bot");
    assertEquals((await carol.say("general", "an ordinary line")).type, "ack");
    const shown = (page: typeof alice) =>
      page.$$eval(
        "#message-list .msg[data-id]",
        (
          els: {
            classList: { contains(c: string): boolean };
            querySelector(s: string): { textContent: string };
          }[],
        ) =>
          els.map((e) => ({
            from: e.querySelector(".from").textContent,
            body: e.querySelector(".body").textContent,
            notice: e.classList.contains("notice"),
            action: e.classList.contains("action"),
          })),
      );
    const expected = [
      { from: "carol (notice)", body: "deploy at 5", notice: true, action: false },
      { from: "carol (notice)", body: "/me is a bot", notice: true, action: false },
      { from: "carol", body: "an ordinary line", notice: false, action: false },
    ];
    await waitForBody(alice, "an ordinary line");
    assertEquals(await shown(alice), expected);

    // A user who logs in later reads them from history, still as notices.
    const bob = await b.user();
    await logIn(bob, ts.port, "bob", { register: true });
    await waitForBody(bob, "an ordinary line");
    assertEquals(await shown(bob), expected);
  },
);
