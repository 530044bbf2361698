// GET /metrics on the web listener: off without a token, 401 without the right bearer token,
// Prometheus text with the live figures when scraped.
import { assert, assertEquals } from "../harness/assert.ts";
import { startTestServer } from "../harness/test_server.ts";
import { WireClient } from "../harness/wire_client.ts";
import { httpGet, WsClient } from "../harness/ws_client.ts";

const TOKEN = "metrics-token-0123456789";
const dec = new TextDecoder();

/** `name{labels}` → value, from Prometheus text. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

Deno.test("metrics: /metrics is 404 until a token is configured", async () => {
  await using ts = await startTestServer();
  const r = await httpGet(ts.port, ts.certPem, "/metrics", { Authorization: `Bearer ${TOKEN}` });
  assertEquals(r.status, 404);
});

Deno.test("metrics: a scrape with the bearer token reads sessions per transport, messages and the store", async () => {
  await using ts = await startTestServer({ config: { metricsToken: TOKEN } });
  for (const auth of [undefined, "Bearer wrong-token-0123456789", `Basic ${TOKEN}`]) {
    const r = await httpGet(ts.port, ts.certPem, "/metrics", auth ? { Authorization: auth } : {});
    assertEquals(r.status, 401, String(auth));
  }
  await using web = await WsClient.login(ts.port, ts.certPem, "wanda", { register: true });
  await using tls = await WireClient.login(ts.port, ts.certPem, "tom", { register: true });
  await web.say("general", "one");
  await tls.say("general", "two");
  await tls.barrier();
  const r = await httpGet(ts.port, ts.certPem, "/metrics", { Authorization: `Bearer ${TOKEN}` });
  assertEquals(r.status, 200);
  assertEquals(r.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const text = dec.decode(r.body);
  assert(text.includes("# TYPE chat_messages_stored_total counter"), text);
  const m = parse(text);
  assertEquals(m.get('chat_sessions{protocol="chat/1",transport="websocket"}'), 1);
  assertEquals(m.get('chat_sessions{protocol="chat/1",transport="tls"}'), 1);
  assertEquals(m.get("chat_online_sessions"), 2);
  assertEquals(m.get("chat_messages_stored_total"), 2);
  assertEquals(m.get("chat_deliveries_total"), 2);
  assertEquals(m.get("chat_store_messages"), 2);
  assert((m.get("chat_store_file_bytes") ?? 0) > 0, "no database size");
  assert(m.has("chat_event_loop_lag_max_ms") && m.has("chat_hash_queue"), text);
});
