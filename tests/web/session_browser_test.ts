// Web sessions in real Chromium (docs/PROTOCOL.md §2.1, docs/WEB.md "Credentials"): the page logs in
// with the password once and reconnects with a session token; the password is kept nowhere; Sign
// out, an administrator's revocation and an expired token each end the session visibly, and the
// page does not try again by itself.
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { tempDir } from "../harness/temp_dir.ts";
import { WireClient } from "../harness/wire_client.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import type { SessionsResult } from "../../src/admin/admin_service.ts";
import { adminJson, openStore } from "../admin/helpers.ts";
import { HAVE_CHROMIUM, launchBrowser, logIn, waitForBody } from "./browser.ts";
import type { Page } from "playwright-core";

// Functions passed to page.evaluate / waitForFunction run in the page: these are its globals.
// deno-lint-ignore no-explicit-any
declare const document: any;
// deno-lint-ignore no-explicit-any
declare const window: any;

type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

const browserTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_CHROMIUM && Deno.env.get("CI") !== "true", fn });

/** The message PROTOCOL.md §2.1 gives a refused token, and what the page shows for it. */
const SESSION_ENDED = /^Signed out: your session ended .*Log in again\.$/;

function hashJobs(ts: { server: { hasher: { stats: { completed: number; running: number } } } }) {
  const s = ts.server.hasher.stats;
  return s.completed + s.running;
}

/** Every chat/1 frame the page sends and receives on its WebSockets, as the network carries them. */
function recordFrames(page: Page): { sent: Record<string, unknown>[]; got: ServerFrame[] } {
  const out = { sent: [] as Record<string, unknown>[], got: [] as ServerFrame[] };
  page.on("websocket", (ws) => {
    ws.on("framesent", (f) => out.sent.push(JSON.parse(String(f.payload))));
    ws.on("framereceived", (f) => out.got.push(JSON.parse(String(f.payload))));
  });
  return out;
}

/**
 * Counts, inside the page, the WebSockets it opens and the frames it sends (the real WebSocket
 * still does the work), so a test reads them synchronously after moving the page's clock.
 */
async function countSockets(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const Real = window.WebSocket;
    window.sockets = { opened: 0, sent: [] as string[] };
    class Counted extends Real {
      constructor(url: string) {
        super(url);
        window.sockets.opened++;
      }
      send(data: string) {
        window.sockets.sent.push(String(data));
        super.send(data);
      }
    }
    window.WebSocket = Counted;
  });
}

async function socketCounts(page: Page): Promise<{ opened: number; logins: number }> {
  return await page.evaluate(() => ({
    opened: window.sockets.opened,
    logins: window.sockets.sent.filter((s: string) => JSON.parse(s).type === "login").length,
  }));
}

/** A chat/1 login with `token` on a fresh connection; resolves with the answer. */
async function tokenLogin(
  port: number,
  certPem: string,
  user: string,
  token: string,
): Promise<F<"ok"> | F<"error">> {
  await using c = await WireClient.connect(port, certPem);
  c.send({ type: "hello", version: 1 });
  await c.expect((f) => f.type === "hello");
  c.send({ type: "login", user, token, ref: "t" });
  return await c.expect((f) => f.type === "ok" || f.type === "error") as F<"ok"> | F<"error">;
}

/** The page's V8 heap after a full collection, as the text of a heap snapshot. */
async function heapText(page: Page): Promise<string> {
  const cdp = await page.context().newCDPSession(page);
  const chunks: string[] = [];
  cdp.on("HeapProfiler.addHeapSnapshotChunk", (e) => chunks.push(e.chunk));
  await cdp.send("HeapProfiler.enable");
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
  await cdp.detach();
  return chunks.join("");
}

browserTest(
  "browser session: the password is used once and kept nowhere; a restart reconnects with the token (no hash); Sign out revokes it",
  async () => {
    await using tmp = await tempDir("chat-web-token-");
    const first = await startTestServer({ dataDir: tmp.path });
    const port = first.port;
    await using b = await launchBrowser();
    const page = await b.user();
    const frames = recordFrames(page);
    const password = "Quokka-7319-zebra-mallow";
    await page.goto(`https://127.0.0.1:${port}/`);
    await page.fill("#login-user", "alice");
    await page.fill("#login-password", password);
    await page.click("#register-submit");
    await page.waitForSelector("#chat-screen:not([hidden])");

    // The registration asked for a token for this browser, and the server issued one.
    const reg = frames.sent.find((f) => f.type === "register")!;
    assertEquals([reg.password, reg.device], [password, "web: Chromium on Linux"]);
    const ok = frames.got.find((f) => f.type === "ok" && f.op === "register") as F<"ok">;
    assertMatch(ok.token!, /^[0-9]+\.[A-Za-z0-9_-]{43}$/);
    const token = ok.token!;
    const listed = await adminJson<SessionsResult>([
      "users",
      "sessions",
      "alice",
      "--data",
      tmp.path,
    ]);
    assertEquals(listed.sessions.map((s) => s.device), ["web: Chromium on Linux"]);

    // Nowhere in the page: not the form, not storage, not a cookie, not the JavaScript heap (the
    // token is, which shows the search finds what the page does hold).
    assertEquals(await page.inputValue("#login-password"), "");
    const stored = await page.evaluate(() => ({
      local: JSON.stringify({ ...globalThis.localStorage }),
      session: JSON.stringify({ ...globalThis.sessionStorage }),
      cookie: document.cookie,
    }));
    assertEquals(stored, { local: "{}", session: "{}", cookie: "" });
    assertEquals(await page.context().cookies(), []);
    const heap = await heapText(page);
    assert(heap.includes(token), "the heap snapshot should hold the token the page keeps");
    assert(!heap.includes(password), "the password is still in the page's heap after login");

    // A restart: the page logs in again with the token and resume, and nothing is hashed.
    await first.stop();
    await page.waitForSelector("body[data-link=offline], body[data-link=connecting]");
    await using second = await startTestServer({ dataDir: tmp.path, config: { port } });
    await page.waitForSelector("body[data-link=online]", { timeout: 20_000 });
    await using bob = await WireClient.login(port, second.certPem, "bob", { register: true });
    const hashedBefore = hashJobs(second);
    await bob.say("general", "after the restart");
    await waitForBody(page, "after the restart");
    const relogin = frames.sent.filter((f) => f.type === "login");
    assertEquals(relogin.length, 1);
    assertEquals(relogin[0].token, token);
    assertEquals(relogin[0].password, undefined);
    assert(typeof relogin[0].resume === "object", "the reconnect resumes");
    assertEquals(hashJobs(second) - hashedBefore, 0, "the reconnect hashed a password");

    // Sign out: the server revokes the token, the page shows the login screen.
    await page.click("#logout");
    await page.waitForSelector("#login-screen:not([hidden])");
    assertEquals(await page.textContent("#login-error"), "Signed out.");
    assert(frames.sent.some((f) => f.type === "logout"), "sign-out sends logout");
    const refused = await tokenLogin(port, second.certPem, "alice", token);
    assertEquals([refused.type, (refused as F<"error">).code], ["error", "auth_failed"]);
    const after = await adminJson<SessionsResult>([
      "users",
      "sessions",
      "alice",
      "--data",
      tmp.path,
    ]);
    assertEquals(after.sessions, []);
  },
);

browserTest(
  "browser session: an administrator revoking the web session signs the page out with the reason, and it does not reconnect",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    const page = await b.user();
    await countSockets(page);
    // The page's timers run on a clock the test can move: "no reconnect" is checked by running
    // two minutes of the page's timers, not by waiting.
    await page.clock.install();
    await logIn(page, ts.port, "dana", { register: true });
    const { sessions } = await adminJson<SessionsResult>([
      "users",
      "sessions",
      "dana",
      "--data",
      ts.dataDir,
    ]);
    assertEquals(sessions.map((s) => s.device), ["web: Chromium on Linux"]);
    const before = await socketCounts(page);

    const r = await adminJson<SessionsResult>([
      "users",
      "sessions",
      "dana",
      "--revoke",
      String(sessions[0].id),
      "--data",
      ts.dataDir,
    ]);
    assertEquals([r.revoked, r.kicked], [[sessions[0].id], 1]);
    await page.waitForSelector("#login-screen:not([hidden])");
    assertEquals(
      await page.textContent("#login-error"),
      "Signed out: Your session was revoked by an administrator.",
    );
    await page.clock.runFor(120_000);
    const after = await socketCounts(page);
    // One new socket for the login form (its hello tells the registration policy), no login.
    assertEquals(after.opened - before.opened, 1);
    assertEquals(after.logins, before.logins);
    assertEquals(await page.isVisible("#login-screen"), true);
  },
);

browserTest(
  "browser session: a token refused at reconnect (expired) returns to the login screen with a clear message, once",
  async () => {
    // The server's clock is the test's: jumping it past the token's expiry also makes the page's
    // connection look silent, so the keepalive sweep closes it and the page reconnects.
    let skew = 0;
    await using ts = await startTestServer({ clock: () => Date.now() + skew });
    await using b = await launchBrowser();
    const page = await b.user();
    await countSockets(page);
    await page.clock.install();
    await logIn(page, ts.port, "erin", { register: true });
    const before = await socketCounts(page);
    skew = (ts.config.sessionTokenDays + 1) * 86_400_000;
    await page.waitForSelector("#login-screen:not([hidden])", { timeout: 20_000 });
    assertMatch((await page.textContent("#login-error"))!, SESSION_ENDED);
    await page.clock.runFor(120_000);
    const after = await socketCounts(page);
    // The reconnect presented the token once; refused, the page asked the user, not the server.
    assertEquals(after.logins - before.logins, 1);
    assertEquals(after.opened - before.opened, 2); // the reconnect, then the login form's socket
    assertEquals(await page.isVisible("#login-screen"), true);
  },
);

browserTest(
  "browser session: a reload cannot use the old token again: the page revokes it on the way out",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    const page = await b.user();
    const frames = recordFrames(page);
    await logIn(page, ts.port, "finn", { register: true });
    const ok = frames.got.find((f) => f.type === "ok" && f.op === "register") as F<"ok">;
    await page.reload();
    await page.waitForSelector("#login-screen:not([hidden])");
    // The logout the page sent on pagehide is handled by the server in its own time: wait for
    // the token to be gone from the store (outside any clock the test owns), with a deadline.
    const deadline = Date.now() + 10_000;
    await using store = await openStore(ts.dataDir);
    const user = await store.userByName("finn");
    while ((await store.listSessionTokens(user!.id)).length > 0) {
      assert(Date.now() < deadline, "the token of the reloaded page is still valid");
      await new Promise((r) => setTimeout(r, 20));
    }
    const refused = await tokenLogin(ts.port, ts.certPem, "finn", ok.token!);
    assertEquals([refused.type, (refused as F<"error">).code], ["error", "auth_failed"]);
  },
);

browserTest(
  "browser session: the form follows the registration policy: invite asks for a code (a wrong one is refused), closed offers no registration",
  async () => {
    await using ts = await startTestServer({ config: { registration: "invite" } });
    await using b = await launchBrowser();
    const page = await b.user();
    const frames = recordFrames(page);
    await page.goto(`https://127.0.0.1:${ts.port}/`);
    await page.waitForSelector("#invite-row:not([hidden])");
    await page.waitForSelector("#register-submit:not([hidden])");
    await page.fill("#login-user", "gina");
    await page.fill("#login-password", "password-gina");
    await page.fill("#login-invite", "not-a-real-invite-code");
    await page.click("#register-submit");
    await page.waitForFunction(() => document.querySelector("#login-error").textContent !== "");
    assertEquals(
      await page.textContent("#login-error"),
      "Cannot register: the invite is unknown, used up or expired",
    );
    const { code } = await adminJson<{ code: string }>(["invites", "create", "--data", ts.dataDir]);
    await page.fill("#login-password", "password-gina"); // emptied after each attempt
    await page.fill("#login-invite", code);
    await page.click("#register-submit");
    await page.waitForSelector("#chat-screen:not([hidden])");
    const ok = frames.got.find((f) => f.type === "ok" && f.op === "register") as F<"ok">;
    assertMatch(ok.token!, /^[0-9]+\.[A-Za-z0-9_-]{43}$/);

    await using closed = await startTestServer({ config: { registration: "closed" } });
    const other = await b.user();
    await other.goto(`https://127.0.0.1:${closed.port}/`);
    await other.waitForSelector("body[data-link=online]");
    assertEquals(await other.isVisible("#register-submit"), false);
    assertEquals(await other.isVisible("#invite-row"), false);
  },
);

browserTest(
  "browser session: a password change in another session signs the page out with the server's reason, and its token is refused",
  async () => {
    await using ts = await startTestServer();
    await using b = await launchBrowser();
    const page = await b.user();
    const frames = recordFrames(page);
    await logIn(page, ts.port, "hugo", { register: true });
    const ok = frames.got.find((f) => f.type === "ok" && f.op === "register") as F<"ok">;
    await using term = await WireClient.login(ts.port, ts.certPem, "hugo");
    term.send({ type: "passwd", old: "password-hugo", new: "a-brand-new-password", ref: "p" });
    assertEquals((await term.expect((f) => "ref" in f && f.ref === "p")).type, "ok");
    await page.waitForSelector("#login-screen:not([hidden])");
    assertEquals(
      await page.textContent("#login-error"),
      "Signed out: The password of this account was changed; log in with the new one.",
    );
    const refused = await tokenLogin(ts.port, ts.certPem, "hugo", ok.token!);
    assertEquals([refused.type, (refused as F<"error">).code], ["error", "auth_failed"]);
  },
);
