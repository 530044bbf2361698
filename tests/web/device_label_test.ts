// The device label of a web session (src/web/app/device_label.ts): a table of real user-agent
// strings and UA hints, each with the label an administrator should read.
import { assert, assertEquals } from "../harness/assert.ts";
import { type BrowserInfo, deviceLabel } from "../../src/web/app/device_label.ts";

const DEBIAN_CHROMIUM_UA =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const GREASE = { brand: "Not=A?Brand" };

const CASES: [string, BrowserInfo, string][] = [
  [
    "Debian's Chromium: UA hints say Chromium and nothing else",
    {
      userAgent: DEBIAN_CHROMIUM_UA,
      brands: [{ brand: "Chromium" }, GREASE],
      platform: "Linux",
    },
    "web: Chromium on Linux",
  ],
  [
    "Google Chrome sends the same UA string; its brands tell it apart",
    {
      userAgent: DEBIAN_CHROMIUM_UA.replace("X11; Linux x86_64", "Windows NT 10.0; Win64; x64"),
      brands: [GREASE, { brand: "Chromium" }, { brand: "Google Chrome" }],
      platform: "Windows",
    },
    "web: Chrome on Windows",
  ],
  [
    "Edge on macOS",
    {
      userAgent:
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
      brands: [{ brand: "Microsoft Edge" }, { brand: "Chromium" }, GREASE],
      platform: "macOS",
    },
    "web: Edge on macOS",
  ],
  [
    "Firefox on Linux (no UA hints)",
    { userAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" },
    "web: Firefox on Linux",
  ],
  [
    "Safari on an iPhone (no UA hints)",
    {
      userAgent:
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    },
    "web: Safari on iOS",
  ],
  [
    "Safari on a Mac (no UA hints)",
    {
      userAgent:
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    },
    "web: Safari on macOS",
  ],
  [
    "Chrome on Android, UA string only",
    {
      userAgent:
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    },
    "web: Chrome on Android",
  ],
  [
    "Firefox on Windows",
    {
      userAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    },
    "web: Firefox on Windows",
  ],
  ["nothing known", { userAgent: "" }, "web: browser on unknown system"],
];

for (const [what, info, want] of CASES) {
  Deno.test(`deviceLabel(): ${what}`, () => assertEquals(deviceLabel(info), want));
}

Deno.test("deviceLabel(): a hostile platform hint is cut to the server's device rule (1-64 characters, no control characters)", () => {
  const label = deviceLabel({
    userAgent: "",
    brands: [{ brand: "Chromium" }],
    platform: "Linux\u0000\u202E" + "😀".repeat(40),
  });
  assert(label.length <= 64, `${label.length} characters`);
  assert(label.isWellFormed(), "a surrogate pair was cut");
  assert(!/[\p{Cc}\p{Cf}]/u.test(label), JSON.stringify(label));
  assert(label.startsWith("web: Chromium on Linux😀"), label);
});
