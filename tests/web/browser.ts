// Owns driving Debian's Chromium for the web tests: playwright-core with the system binary (no
// browser download), a fresh profile per launch, one context per user, all closed on dispose.
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

// Functions passed to page.evaluate / waitForFunction run in the page: these are its globals
// (Deno's type check has no DOM library, and mixing one in breaks Deno's own stream types).
// deno-lint-ignore no-explicit-any
declare const document: any;

export const CHROMIUM = "/usr/bin/chromium";

/** True when the system Chromium is installed (`.ci/run` installs it). */
export const HAVE_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

/** A launched browser; `await using` closes every context and the browser process. */
export interface TestBrowser extends AsyncDisposable {
  browser: Browser;
  /** A new user: its own context (cookies, storage), the test server's certificate accepted. */
  user(opts?: { width?: number; height?: number; dark?: boolean }): Promise<Page>;
}

export async function launchBrowser(): Promise<TestBrowser> {
  // Playwright gives the browser a fresh temporary profile (user-data-dir) and removes it on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const contexts: BrowserContext[] = [];
  return {
    browser,
    async user(opts = {}) {
      const ctx = await browser.newContext({
        // The test server's certificate is a fresh self-signed one.
        ignoreHTTPSErrors: true,
        viewport: { width: opts.width ?? 1100, height: opts.height ?? 700 },
        colorScheme: opts.dark ? "dark" : "light",
      });
      contexts.push(ctx);
      return await ctx.newPage();
    },
    async [Symbol.asyncDispose]() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close();
    },
  };
}

/** Opens the app at `port` and logs in (or registers) through the form. */
export async function logIn(
  page: Page,
  port: number,
  user: string,
  opts: { register?: boolean } = {},
): Promise<void> {
  await page.goto(`https://127.0.0.1:${port}/`);
  await page.fill("#login-user", user);
  await page.fill("#login-password", "password-" + user);
  if (opts.register) await page.click("#register-submit");
  else await page.click("#login-submit");
  await page.waitForSelector("#chat-screen:not([hidden])");
  await page.waitForSelector("body[data-link=online]");
}

/** The bodies shown in the open conversation, in order. */
export function shownBodies(page: Page): Promise<string[]> {
  return page.$$eval("#message-list .msg .body", (els) => els.map((e) => e.textContent ?? ""));
}

/** Waits until the open conversation shows a message with exactly this body, sent (not pending). */
export async function waitForBody(page: Page, body: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction(
    (b) =>
      [...document.querySelectorAll("#message-list .msg[data-id] .body")].some((
        e: { textContent: string },
      ) => e.textContent === b),
    body,
    { timeout },
  );
}

/**
 * Pages back through the open conversation until "This is the start of …" shows, one "Load older
 * messages" at a time, activated from the keyboard: focusing the button scrolls it into view, and
 * the scroll itself may already load a page (the app pages on reaching the top), which moves the
 * button; a pointer click would race with that, Enter on the focused button does not.
 */
export async function pageBackToStart(page: Page): Promise<void> {
  while (!(await page.isVisible("#history-start"))) {
    const before = await page.$$eval("#message-list .msg", (e) => e.length);
    if (await page.isVisible("#older")) {
      await page.focus("#older");
      await page.keyboard.press("Enter");
    }
    await page.waitForFunction(
      (k) =>
        document.querySelectorAll("#message-list .msg").length > k ||
        !document.querySelector("#history-start")!.hasAttribute("hidden"),
      before,
    );
  }
}
