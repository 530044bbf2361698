// Minimal reproduction for docs/RELIABILITY.md ("Failing or open today", item 1): does a server
// free the file descriptor of a TCP connection that never starts TLS when it closes it?
//
//   deno run -A tools/silent_socket_fds.ts <mode> CERT.pem KEY.pem
//
// Modes: deno-listentls (Deno.listenTls, handshake() pending, close after 200 ms),
// deno-listentls-nohandshake (no handshake() call), deno-listentls-immediate (close at accept),
// node-tls-server (node:tls createServer with handshakeTimeout 200 ms), node-net-tlssocket
// (node:net server, new tls.TLSSocket(socket, {isServer}) and destroy both after 200 ms),
// deno-tcp (plain Deno.listen, close after 200 ms). Opens 50 silent client sockets in this same
// process (50 fds of their own) and prints the server-side fds still open 1 s after the close.
import net from "node:net";
import tls from "node:tls";

const [mode, certPath, keyPath] = Deno.args;
const cert = Deno.readTextFileSync(certPath);
const key = Deno.readTextFileSync(keyPath);
const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const N = 50;
let port = 0;

if (mode.startsWith("deno-listentls")) {
  const l = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
  port = (l.addr as Deno.NetAddr).port;
  (async () => {
    for (;;) {
      const c = await l.accept();
      if (mode === "deno-listentls-immediate") {
        c.close();
        continue;
      }
      if (mode === "deno-listentls") c.handshake().catch(() => {});
      setTimeout(() => c.close(), 200);
    }
  })();
} else if (mode === "node-tls-server") {
  const srv = tls.createServer({ cert, key, handshakeTimeout: 200 });
  srv.on("tlsClientError", () => {});
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  port = (srv.address() as net.AddressInfo).port;
} else if (mode === "node-net-tlssocket") {
  const secureContext = tls.createSecureContext({ cert, key });
  const srv = net.createServer((sock) => {
    const t = new tls.TLSSocket(sock, { isServer: true, secureContext });
    t.on("error", () => {});
    setTimeout(() => {
      t.destroy();
      sock.destroy();
    }, 200);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  port = (srv.address() as net.AddressInfo).port;
} else if (mode === "deno-tcp") {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  port = (l.addr as Deno.NetAddr).port;
  (async () => {
    for (;;) {
      const c = await l.accept();
      setTimeout(() => c.close(), 200);
    }
  })();
} else {
  throw new Error(`unknown mode ${mode}`);
}

await sleep(100);
const base = fds();
const socks: net.Socket[] = [];
for (let i = 0; i < N; i++) {
  socks.push(
    await new Promise<net.Socket>((r) => {
      const s = net.connect(port, "127.0.0.1", () => r(s));
      s.on("error", () => {});
    }),
  );
}
await sleep(1200);
// Client sockets the server's close reached (FIN) have closed themselves: count only the others.
const clients = socks.filter((s) => !s.destroyed).length;
const held = fds() - base - clients;
console.log(
  `${mode}: server-side fds still open 1 s after closing ${N} silent sockets: ${held}` +
    ` (client sockets still open: ${clients})`,
);
for (const s of socks) s.destroy();
await sleep(300);
console.log(`  after the peers closed: ${fds() - base}`);
Deno.exit(0);
