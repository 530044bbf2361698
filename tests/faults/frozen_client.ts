// A chat/1 client in its own process for the fault suite: logs in, answers pings, and can be
// frozen with SIGSTOP. Usage: frozen_client.ts <port> <cafile> <user> <password>
// Prints "READY" once logged in.
const [port, cafile, user, password] = Deno.args;
const conn = await Deno.connectTls({
  hostname: "127.0.0.1",
  port: Number(port),
  caCerts: [await Deno.readTextFile(cafile)],
  alpnProtocols: ["chat/1"],
});
const enc = new TextEncoder();
const send = (f: Record<string, unknown>) => conn.write(enc.encode(JSON.stringify(f) + "\n"));
await send({ type: "hello", version: 1 });
await send({ type: "login", user, password, ref: "login" });
const dec = new TextDecoder();
const buf = new Uint8Array(65536);
let pending = "";
for (;;) {
  const n = await conn.read(buf).catch(() => null);
  if (n === null) break;
  pending += dec.decode(buf.subarray(0, n), { stream: true });
  let nl: number;
  while ((nl = pending.indexOf("\n")) >= 0) {
    const frame = JSON.parse(pending.slice(0, nl));
    pending = pending.slice(nl + 1);
    if (frame.type === "ping") await send({ type: "pong" });
    if (frame.type === "ok" && frame.ref === "login") console.log("READY");
    if (frame.type === "error" && frame.ref === "login") {
      console.error(`login failed: ${frame.code}`);
      Deno.exit(1);
    }
  }
}
console.log("CLOSED");
