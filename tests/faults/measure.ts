// Measures the figures quoted in docs/RELIABILITY.md (not a test: timings are facts of one
// machine, never assertions). Each case runs `chat serve` as a child process and drives it from
// here over real TLS on loopback.
//
//   deno run -A tests/faults/measure.ts <case>...
//   cases: login-timing, login-flood, fast-sender, stalled-handshakes, never-reader, all
import { WireClient } from "../harness/wire_client.ts";
import {
  ChildServer,
  type F,
  fdCount,
  hello,
  isType,
  NodeClient,
  percentile,
  rssBytes,
  sleep,
} from "./helpers.ts";
import { connect as netConnect, type Socket } from "node:net";
import { tempDir } from "../harness/temp_dir.ts";

const ms = (x: number) => `${x.toFixed(1)} ms`;
const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;

function summary(name: string, xs: number[]): string {
  return `${name}: n=${xs.length} p50 ${ms(percentile(xs, 50))} p90 ${ms(percentile(xs, 90))} ` +
    `p99 ${ms(percentile(xs, 99))} max ${ms(Math.max(...xs))}`;
}

async function withServer<T>(
  env: Record<string, string>,
  fn: (srv: ChildServer) => Promise<T>,
): Promise<T> {
  await using tmp = await tempDir("chat-measure-");
  const dataDir = tmp.path;
  await using srv = await ChildServer.start({ dataDir, env });
  return await fn(srv);
}

/** Login failure time, unknown user vs wrong password, one attempt at a time. */
async function loginTiming(): Promise<void> {
  await withServer({
    CHAT_LIMIT_LOGIN_FAILURES_PER_ACCOUNT: "1000000",
    CHAT_LIMIT_LOGIN_FAILURES_PER_ADDRESS: "1000000",
    CHAT_LIMIT_PRE_AUTH_MAX_FRAMES: "1000000",
  }, async (srv) => {
    (await WireClient.login(srv.port, srv.certPem, "timed", { register: true })).close();
    await using c = await WireClient.connect(srv.port, srv.certPem);
    c.send({ type: "hello", version: 1 });
    await c.expect(isType("hello"));
    let n = 0;
    const attempt = async (user: string) => {
      const ref = `t${n++}`;
      const t0 = performance.now();
      c.send({ type: "login", user, password: "not-the-password", ref });
      const r = await c.expect((f) => f.type === "error" && f.ref === ref, 30_000) as F<"error">;
      if (r.code !== "auth_failed") throw new Error(r.code);
      return performance.now() - t0;
    };
    const first = await attempt("first-unknown");
    for (let i = 0; i < 10; i++) await attempt(i % 2 ? "timed" : "nobody");
    const unknown: number[] = [];
    const wrong: number[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 2) wrong.push(await attempt("timed"));
      else unknown.push(await attempt(`nobody${i}`));
    }
    console.log(`login-timing: first unknown-user attempt after start ${ms(first)}`);
    console.log("login-timing: " + summary("unknown user", unknown));
    console.log("login-timing: " + summary("wrong password", wrong));
    const diff = percentile(unknown, 50) - percentile(wrong, 50);
    console.log(`login-timing: median difference ${ms(diff)}`);
  });
}

/** A bystander's send→ack and send→delivery while `during` runs, against a baseline. */
async function bystander<T>(
  srv: ChildServer,
  during: () => Promise<T>,
): Promise<{ base: number[]; load: number[]; result: T }> {
  await using talker = await WireClient.login(srv.port, srv.certPem, "talker", { register: true });
  await using listener = await WireClient.login(srv.port, srv.certPem, "listener", {
    register: true,
  });
  const state = { phase: "base" as "base" | "load" | "stop" };
  const base: number[] = [];
  const load: number[] = [];
  let i = 0;
  const loop = (async () => {
    while (state.phase !== "stop") {
      const body = `probe ${i++}`;
      const t0 = performance.now();
      talker.send({ type: "send", cid: `p${i}`, room: "general", body, ref: `p${i}` });
      await listener.expect((f) => f.type === "msg" && f.body === body, 30_000);
      (state.phase === "base" ? base : load).push(performance.now() - t0);
      talker.frames.length = 0;
      // 150 ms apart: under the default rate limit of 10 messages a second.
      await sleep(150);
    }
  })();
  await sleep(3000);
  state.phase = "load";
  const result = await during();
  state.phase = "stop";
  await loop;
  return { base, load, result };
}

/** 5,000 failed logins from 4 loopback addresses at default limits. */
async function loginFlood(): Promise<void> {
  await withServer({}, async (srv) => {
    (await WireClient.login(srv.port, srv.certPem, "victim", { register: true })).close();
    const codes = new Map<string, number>();
    let seq = 0;
    const { base, load, result: secs } = await bystander(srv, async () => {
      const t0 = performance.now();
      const addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
      await Promise.all(addresses.map(async (localAddress, a) => {
        const worker = async () => {
          while (seq < 5000) {
            await using c = await NodeClient.connect(srv.port, srv.certPem, { localAddress });
            await hello(c);
            for (let k = 0; k < 19 && seq < 5000; k++) {
              const n = seq++;
              const user = a < 2 ? "victim" : `user${n % 50}`;
              c.send({ type: "login", user, password: `guess-${n}`, ref: `a${n}` });
              const r = await c.expect((f) => f.type === "error" && f.ref === `a${n}`, 30_000) as F<
                "error"
              >;
              codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
            }
          }
        };
        await Promise.all([worker(), worker(), worker(), worker()]);
      }));
      return (performance.now() - t0) / 1000;
    });
    console.log(
      `login-flood: 5,000 attempts from 4 addresses in ${secs.toFixed(1)} s: ${
        JSON.stringify(Object.fromEntries(codes))
      }`,
    );
    console.log("login-flood: bystander " + summary("before", base));
    console.log("login-flood: bystander " + summary("during", load));
    console.log(`login-flood: server RSS ${mib(rssBytes(srv.pid))}, fds ${fdCount(srv.pid)}`);
  });
}

/** One client sending as fast as it can, with the default rate limit and with none. */
async function fastSender(): Promise<void> {
  for (const limited of [true, false]) {
    const env: Record<string, string> = limited
      ? {}
      : { CHAT_LIMIT_MESSAGES_PER_SECOND: "1000000", CHAT_LIMIT_MESSAGE_BURST: "1000000" };
    await withServer(env, async (srv) => {
      await using flooder = await WireClient.login(srv.port, srv.certPem, "flooder", {
        register: true,
      });
      const { base, load, result } = await bystander(srv, async () => {
        const t0 = performance.now();
        let acked = 0;
        let limitedN = 0;
        let n = 0;
        while (performance.now() - t0 < 5000) {
          let batch = "";
          for (let k = 0; k < 200; k++, n++) {
            batch += JSON.stringify({
              type: "send",
              cid: `f${n}`,
              room: "general",
              body: `flood ${n}`,
              ref: `f${n}`,
            }) + "\n";
          }
          await flooder.writeAll(batch);
          const last = `f${n - 1}`;
          const lastReply = await flooder.expect((f) => "ref" in f && f.ref === last, 30_000);
          flooder.frames.push(lastReply);
          acked += flooder.frames.filter(isType("ack")).length;
          limitedN += flooder.frames.filter(isType("error")).length;
          flooder.frames.length = 0;
        }
        return { n, acked, limitedN, secs: (performance.now() - t0) / 1000 };
      });
      console.log(
        `fast-sender (${limited ? "default limit" : "no limit"}): ${result.n} sends in ${
          result.secs.toFixed(1)
        } s, ${result.acked} acked, ${result.limitedN} rate_limited`,
      );
      console.log("fast-sender: bystander " + summary("before", base));
      console.log("fast-sender: bystander " + summary("during", load));
    });
  }
}

function rawFrom(localAddress: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: "127.0.0.1", port, localAddress }, () => resolve(s));
    s.once("error", reject);
  });
}

/** 500 sockets that never start TLS: fds and RSS before, after the deadline, after they close. */
async function stalledHandshakes(): Promise<void> {
  await withServer({
    CHAT_LIMIT_HANDSHAKE_TIMEOUT_MS: "1000",
    CHAT_LIMIT_MAX_CONNECTIONS_PER_ADDRESS: "100000",
  }, async (srv) => {
    await sleep(500);
    const fd0 = fdCount(srv.pid);
    const rss0 = rssBytes(srv.pid);
    const sockets: Socket[] = [];
    for (let i = 0; i < 500; i++) {
      const s = await rawFrom(`127.0.1.${1 + (i % 200)}`, srv.port);
      s.on("error", () => {});
      sockets.push(s);
    }
    await sleep(500);
    const fd1 = fdCount(srv.pid);
    await sleep(3000);
    const fd2 = fdCount(srv.pid);
    const rss2 = rssBytes(srv.pid);
    await using ok = await WireClient.login(srv.port, srv.certPem, "meanwhile", {
      register: true,
    });
    const t0 = performance.now();
    await ok.say("general", "not blocked");
    const sayMs = performance.now() - t0;
    for (const s of sockets) s.destroy();
    await sleep(2000);
    const fd3 = fdCount(srv.pid);
    console.log(
      `stalled-handshakes: 500 silent sockets: fds ${fd0} before, ${fd1} while open, ${fd2} ` +
        `1 s past the deadline, ${fd3} after the peers closed; RSS ${mib(rss0)} -> ${mib(rss2)}; ` +
        `a login and send meanwhile took ${ms(sayMs)} for the send`,
    );
  });
}

/** A client that never reads while others chat: server RSS and the cut. */
async function neverReader(): Promise<void> {
  await withServer({
    CHAT_LIMIT_MESSAGES_PER_SECOND: "1000000",
    CHAT_LIMIT_MESSAGE_BURST: "1000000",
  }, async (srv) => {
    const stalled = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: srv.port,
      caCerts: [srv.certPem],
      alpnProtocols: ["chat/1"],
    });
    await stalled.write(new TextEncoder().encode(
      '{"type":"hello","version":1}\n{"type":"register","user":"zed","password":"password-zed"}\n',
    ));
    await using reader = await WireClient.login(srv.port, srv.certPem, "yan", { register: true });
    await using sender = await WireClient.login(srv.port, srv.certPem, "xia", { register: true });
    await sleep(500);
    const rss0 = rssBytes(srv.pid);
    let peak = rss0;
    let sent = 0;
    let cutAt = -1;
    const body = "b".repeat(3000);
    const t0 = performance.now();
    while (sent < 6000) {
      for (let i = 0; i < 50; i++, sent++) {
        sender.send({ type: "send", cid: `f${sent}`, room: "general", body, ref: `f${sent}` });
      }
      await sender.expect((f) => f.type === "ack" && f.ref === `f${sent - 1}`, 30_000);
      sender.frames.length = 0;
      peak = Math.max(peak, rssBytes(srv.pid));
      if (cutAt < 0 && reader.frames.some((f) => f.type === "presence" && f.event === "leave")) {
        cutAt = sent;
      }
    }
    await sleep(1000);
    console.log(
      `never-reader: ${sent} x 3 KB messages in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s; ` +
        `the stalled client was cut after about ${cutAt} messages; server RSS ${
          mib(rss0)
        } -> peak ` +
        `${mib(peak)} -> ${mib(rssBytes(srv.pid))} after`,
    );
    stalled.close();
  });
}

const CASES: Record<string, () => Promise<void>> = {
  "login-timing": loginTiming,
  "login-flood": loginFlood,
  "fast-sender": fastSender,
  "stalled-handshakes": stalledHandshakes,
  "never-reader": neverReader,
};

if (import.meta.main) {
  const names = Deno.args.includes("all") || Deno.args.length === 0
    ? Object.keys(CASES)
    : Deno.args;
  for (const name of names) {
    const run = CASES[name];
    if (!run) throw new Error(`unknown case ${name}; known: ${Object.keys(CASES).join(", ")}`);
    await run();
  }
}
