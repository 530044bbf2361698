// Writes docs/screenshots/*.png: the main screens at desktop and phone width, light and dark, from
// a throwaway server with a short conversation. `deno task web:screenshots` (not a test).
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { launchBrowser, logIn, waitForBody } from "./browser.ts";

const OUT = new URL("../../docs/screenshots/", import.meta.url);
await Deno.mkdir(OUT, { recursive: true });
await using ts = await startTestServer();
await using b = await launchBrowser();
const maya = await WireClient.login(ts.port, ts.certPem, "maya", { register: true });
const omar = await WireClient.login(ts.port, ts.certPem, "omar", { register: true });
const lena = await WireClient.login(ts.port, ts.certPem, "lena", { register: true });
for (const c of [maya, omar, lena]) {
  c.send({ type: "join", room: "releases", ref: "j" });
  await c.expect((f) => f.type === "ok" && f.ref === "j");
}
await maya.say("general", "Morning! The 2.4 build is on staging.");
await omar.say("general", "Thanks, I'll run the smoke tests after standup.");
await maya.say("releases", "Release notes draft is in the wiki.");
await lena.say("general", "Great, ping me when it's green.");
const shots = [
  { name: "desktop-light", width: 1100, height: 640, dark: false },
  { name: "desktop-dark", width: 1100, height: 640, dark: true },
  { name: "phone-light", width: 360, height: 640, dark: false },
  { name: "phone-dark", width: 360, height: 640, dark: true },
];
for (const s of shots) {
  const page = await b.user(s);
  await logIn(page, ts.port, "lena");
  await waitForBody(page, "Thanks, I'll run the smoke tests after standup.");
  await waitForBody(page, "Great, ping me when it's green.");
  await omar.say("releases", "Tagging 2.4.0 at noon.");
  await page.waitForSelector("#room-list .badge", { state: "attached" });
  await page.screenshot({ path: new URL(`${s.name}.png`, OUT).pathname });
  console.log(`docs/screenshots/${s.name}.png`);
}
for (const c of [maya, omar, lena]) c.close();
