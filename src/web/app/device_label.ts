// Owns the label a web session's token carries (`device`, docs/PROTOCOL.md §2.1): "web: <browser>
// on <system>", so `chat admin users sessions` tells a browser from a terminal at a glance.

/** What the page knows about its browser: `navigator.userAgent` and, where offered, UA hints. */
export interface BrowserInfo {
  userAgent: string;
  /** `navigator.userAgentData.brands` (Chromium-based browsers, secure contexts only). */
  brands?: readonly { brand: string }[];
  /** `navigator.userAgentData.platform` ("Linux", "Windows", "macOS", "Android"…). */
  platform?: string;
}

/** Brands that name a browser of their own (UA hints list "Chromium" beside them). */
const BRANDS: [RegExp, string][] = [
  [/^Microsoft Edge$/, "Edge"],
  [/^Google Chrome$/, "Chrome"],
  [/^Opera$/, "Opera"],
  [/^Brave$/, "Brave"],
  [/^Vivaldi$/, "Vivaldi"],
];

/** Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari". */
const UA_BROWSERS: [RegExp, string][] = [
  [/\bFirefox\//, "Firefox"],
  [/\bEdg(e|A|iOS)?\//, "Edge"],
  [/\b(OPR|Opera)\//, "Opera"],
  [/\bChromium\//, "Chromium"],
  [/\b(Chrome|CriOS|HeadlessChrome)\//, "Chrome"],
  [/\bVersion\/[\d.]+.*\bSafari\//, "Safari"],
];

const UA_SYSTEMS: [RegExp, string][] = [
  [/\b(iPhone|iPad|iPod)\b/, "iOS"],
  [/\bAndroid\b/, "Android"],
  [/\bCrOS\b/, "ChromeOS"],
  [/\bWindows\b/, "Windows"],
  [/\bMac OS X\b|\bMacintosh\b/, "macOS"],
  [/\bLinux\b|\bX11\b/, "Linux"],
];

/**
 * "web: Chromium on Linux". UA hints win where they exist: Debian's Chromium and Google Chrome send
 * the same `Chrome/` user-agent string, and only the brands tell them apart (a Chromium-based
 * browser whose brands name nothing else is "Chromium"). Unknown parts read "browser" and
 * "unknown system". At most 64 characters, no control characters (the server's rule for `device`).
 */
export function deviceLabel(info: BrowserInfo): string {
  const brandNames = (info.brands ?? []).map((b) => b.brand);
  let browser = "";
  for (const [re, name] of BRANDS) {
    if (brandNames.some((b) => re.test(b))) {
      browser = name;
      break;
    }
  }
  if (!browser && brandNames.includes("Chromium")) browser = "Chromium";
  if (!browser) browser = UA_BROWSERS.find(([re]) => re.test(info.userAgent))?.[1] ?? "browser";
  let system = info.platform && info.platform.trim() !== "" ? info.platform.trim() : "";
  if (system === "") {
    system = UA_SYSTEMS.find(([re]) => re.test(info.userAgent))?.[1] ?? "unknown system";
  }
  const label = `web: ${browser} on ${system}`.replace(/[\p{Cc}\p{Cf}]/gu, "");
  // Whole code points only: a cut surrogate pair is not well-formed, and the server refuses it.
  let out = "";
  for (const ch of label) {
    if (out.length + ch.length > 64) break;
    out += ch;
  }
  return out;
}
