// An automated accessibility audit of the web app's main screens in real Chromium: axe-core (npm,
// pinned) run in the page on the login screen, a room, the switcher and the phone menu, at desktop
// and 360 px wide, light and dark. Violations of impact serious or critical fail the test.
import axe from "axe-core";
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { HAVE_CHROMIUM, launchBrowser, logIn, waitForBody } from "./browser.ts";
import type { Page } from "playwright-core";

// deno-lint-ignore no-explicit-any
declare const window: any;
// deno-lint-ignore no-explicit-any
declare const document: any;

const browserTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !HAVE_CHROMIUM && Deno.env.get("CI") !== "true", fn });

/** What fails the audit: axe's two highest impacts (moderate and minor are reported, not fatal). */
const FATAL = new Set(["serious", "critical"]);

interface Finding {
  id: string;
  impact: string;
  help: string;
  targets: string[];
}

/**
 * Runs axe-core in the page (through the DevTools protocol, which the page's CSP does not govern:
 * the app itself still runs under its CSP) and returns every violation with the elements it hit.
 */
async function audit(page: Page): Promise<Finding[]> {
  const loaded = await page.evaluate(() => typeof window.axe === "object");
  if (!loaded) await page.evaluate(axe.source);
  return await page.evaluate(async () => {
    const r = await window.axe.run(document, {
      resultTypes: ["violations"],
      // WCAG 2.1 A and AA, and axe's best practices.
      runOnly: {
        type: "tag",
        values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
      },
    });
    return r.violations.map((v: {
      id: string;
      impact: string;
      help: string;
      nodes: { target: string[] }[];
    }) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => n.target.join(" ")),
    }));
  });
}

/** The serious and critical findings of `screen`, printed with the rest for the log. */
async function fatalFindings(page: Page, screen: string): Promise<string[]> {
  const all = await audit(page);
  for (const f of all) {
    console.log(`${screen}: ${f.impact} ${f.id} (${f.help}): ${f.targets.join(", ")}`);
  }
  return all.filter((f) => FATAL.has(f.impact)).map((f) =>
    `${screen}: ${f.id} ${f.impact}: ${f.help} — ${f.targets.join(", ")}`
  );
}

const LAYOUTS = [
  { name: "desktop light", width: 1100, height: 700, dark: false },
  { name: "desktop dark", width: 1100, height: 700, dark: true },
  { name: "360 px light", width: 360, height: 700, dark: false },
  { name: "360 px dark", width: 360, height: 700, dark: true },
];

browserTest(
  "browser a11y: axe-core finds no serious or critical violation on the login screen, a room, the switcher and the phone menu, light and dark",
  async () => {
    await using ts = await startTestServer();
    await using omar = await WireClient.login(ts.port, ts.certPem, "omar", { register: true });
    await omar.say("general", "Morning! The build is on staging.");
    await omar.say("general", "مرحبا — a right-to-left line");
    (await WireClient.login(ts.port, ts.certPem, "lena", { register: true })).close();
    await using b = await launchBrowser();
    const problems: string[] = [];
    for (const l of LAYOUTS) {
      const page = await b.user(l);
      await page.goto(`https://127.0.0.1:${ts.port}/`);
      await page.waitForSelector("#register-submit:not([hidden])");
      problems.push(...await fatalFindings(page, `login, ${l.name}`));
      // A refused login shows its error: audited too (the error text has to be readable).
      await page.fill("#login-user", "lena");
      await page.fill("#login-password", "wrong-password");
      await page.click("#login-submit");
      await page.waitForFunction(() => document.querySelector("#login-error").textContent !== "");
      problems.push(...await fatalFindings(page, `login error, ${l.name}`));

      await logIn(page, ts.port, "lena");
      await waitForBody(page, "مرحبا — a right-to-left line");
      // A pending and a failed message are on screen as well (their state text and Retry button).
      await page.fill("#compose", "invoice \u202Efdp.exe");
      await page.press("#compose", "Enter");
      await page.waitForSelector("#message-list .msg.failed");
      problems.push(...await fatalFindings(page, `room, ${l.name}`));

      await page.keyboard.press("Control+k");
      await page.waitForSelector("#switcher[open]");
      await page.keyboard.type("gen");
      problems.push(...await fatalFindings(page, `switcher, ${l.name}`));
      await page.keyboard.press("Escape");
      await page.waitForSelector("#switcher:not([open])", { state: "attached" });

      if (l.width <= 360) {
        await page.click("#menu");
        await page.waitForSelector("body.menu-open");
        problems.push(...await fatalFindings(page, `menu, ${l.name}`));
      }
    }
    assertEquals(problems, []);
  },
);

browserTest(
  "browser a11y: Tab goes header, conversations, messages, composer, then the side panel; a message from someone else is announced in the live region",
  async () => {
    await using ts = await startTestServer();
    await using omar = await WireClient.login(ts.port, ts.certPem, "omar", { register: true });
    await using b = await launchBrowser();
    const page = await b.user();
    // Every request the page makes, to check that none leaves this origin.
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    await logIn(page, ts.port, "lena", { register: true });
    await omar.say("general", "Standup in five minutes");
    await waitForBody(page, "Standup in five minutes");
    // The live region (role log, aria-live polite) carries it for screen readers.
    const live = await page.evaluate(() => {
      const el = document.querySelector("#announce");
      return {
        role: el.getAttribute("role"),
        live: el.getAttribute("aria-live"),
        text: el.textContent,
      };
    });
    assertEquals(live, {
      role: "log",
      live: "polite",
      text: "omar in #general: Standup in five minutes",
    });

    // Tab 30 times: which part of the screen has the focus each time. Focus starts in the
    // composer, so the walk goes past the end of the page ("none") and round again from the top:
    // the order is read from there.
    const parts: string[] = [];
    for (let i = 0; i < 30; i++) {
      await page.keyboard.press("Tab");
      parts.push(
        await page.evaluate(() => {
          const el = document.activeElement;
          if (!el || el === document.body) return "none";
          if (el.closest("header")) return "header";
          if (el.closest("nav")) return "conversations";
          if (el.closest("#composer")) return "composer";
          if (el.closest("#messages")) return "messages";
          if (el.closest("aside")) return "side panel";
          return `other: ${el.tagName} ${el.id}`;
        }),
      );
    }
    const order = parts.filter((p, i) => i === 0 || parts[i - 1] !== p);
    const top = order.indexOf("none");
    assert(top >= 0, `Tab never left the page: ${order.join(", ")}`);
    assertEquals(order.slice(top + 1, top + 6), [
      "header",
      "conversations",
      "messages",
      "composer",
      "side panel",
    ]);
    // The audit itself can fail: a button without a name (axe's `button-name`, critical) is found.
    await page.evaluate(() =>
      document.querySelector("#composer").append(document.createElement("button"))
    );
    const control = await fatalFindings(page, "control");
    assert(control.some((f) => f.startsWith("control: button-name critical")), control.join("\n"));
    const origin = `https://127.0.0.1:${ts.port}/`;
    const wsOrigin = `wss://127.0.0.1:${ts.port}/`;
    assertEquals(
      requests.filter((u) => !u.startsWith(origin) && !u.startsWith(wsOrigin)),
      [],
    );
  },
);
