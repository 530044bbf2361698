// Bus URLs (src/server/bus.ts): servers, TLS, credentials taken apart, and never shown.
import { assertEquals, assertThrows } from "../harness/assert.ts";
import { describeBus, parseBus } from "../../src/server/bus.ts";

Deno.test("parseBus() takes servers, TLS and credentials apart; the port defaults to 4222", () => {
  assertEquals(parseBus("nats://127.0.0.1:4222"), { servers: ["127.0.0.1:4222"], tls: false });
  assertEquals(parseBus("tls://a,b:5000/"), { servers: ["a:4222", "b:5000"], tls: true });
  assertEquals(parseBus("nats://chat:s%40cret@nats1:4222,nats2:4222"), {
    servers: ["nats1:4222", "nats2:4222"],
    tls: false,
    user: "chat",
    pass: "s@cret",
  });
  assertEquals(parseBus("nats://tok3n@h:1").token, "tok3n");
});

Deno.test("parseBus() refuses other schemes without repeating the URL", () => {
  const err = assertThrows(() => parseBus("http://u:hunter2@h:1")) as Error;
  assertEquals(err.message.includes("hunter2"), false);
});

Deno.test("describeBus() never shows a password or token", () => {
  assertEquals(describeBus("nats://chat:hunter2@n1:4222,n2"), "nats://chat:***@n1:4222,n2:4222");
  assertEquals(describeBus("tls://tok3n@n1:4222"), "tls://***@n1:4222");
});
