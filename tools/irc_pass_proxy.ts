// A loopback TCP relay for running a conformance suite (irctest) against our IRC listener: it
// sends `PASS <password>` ahead of each client's own first line, because the suite registers
// without credentials and our server has no anonymous users (docs/IRC.md, "Conformance").
//
//   deno run -A tools/irc_pass_proxy.ts LISTEN_PORT TARGET_PORT PASSWORD
//
// With `--registration open` the first connection under a nick creates that account with
// PASSWORD; later ones log in. Everything else passes through unchanged, both ways.
const [listenPort, targetPort, password] = Deno.args;
if (!listenPort || !targetPort || !password) {
  console.error("usage: irc_pass_proxy.ts LISTEN_PORT TARGET_PORT PASSWORD");
  Deno.exit(2);
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(listenPort) });
console.log(`relaying 127.0.0.1:${listenPort} → 127.0.0.1:${targetPort} with PASS`);

/** Copies until either side ends, then closes both (errors on a closed side are the end). */
async function relay(client: Deno.TcpConn): Promise<void> {
  let server: Deno.TcpConn;
  try {
    server = await Deno.connect({ hostname: "127.0.0.1", port: Number(targetPort) });
  } catch {
    client.close();
    return;
  }
  await server.write(new TextEncoder().encode(`PASS ${password}\r\n`));
  const closeBoth = () => {
    try {
      client.close();
    } catch { /* already closed */ }
    try {
      server.close();
    } catch { /* already closed */ }
  };
  await Promise.allSettled([
    client.readable.pipeTo(server.writable, { preventClose: true }).finally(closeBoth),
    server.readable.pipeTo(client.writable, { preventClose: true }).finally(closeBoth),
  ]);
}

for await (const conn of listener) relay(conn);
