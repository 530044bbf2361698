// Owns `chat bench`: flags and help text; the run is in src/bench.
import type { Command } from "commander";
import { benchCommand, type BenchFlags } from "../src/bench/mod.ts";
import type { CliContext } from "./context.ts";

const BENCH_HELP = `
Drives a chat server (or an IRC server) over real TLS and reports connect+login time,
deliveries per second, delivery latency percentiles, and lost, duplicated and reordered
deliveries (every body carries sender, sequence number and send time; all must be 0).

  chat bench --spawn -n 1000 -s 10 -m 100              fan-out against a throwaway server
  chat bench --spawn --server-cpus 0 --bench-cpus 1 …   server and load on separate cores
  chat bench HOST:PORT --ca ca.pem -n 100 -s 100        a running server, verified by a CA
  chat bench HOST:PORT --fingerprint sha256:AB:CD:…     … or by its certificate's pin
  chat bench 127.0.0.1:6697 --protocol irc --ca c.pem   an IRC server (NICK/USER/JOIN/PRIVMSG)
  chat bench --spawn-nodes 3 -n 1000 -s 10 -m 100      a throwaway cluster: PostgreSQL, NATS, 3 nodes
  chat bench A:7443,B:7443 --ca ca.pem                  a running cluster, clients spread over it

--spawn starts \`chat serve\` on 127.0.0.1 with a temporary data directory, limits raised for
the benchmark (message rate, connections and registrations per address), accounts seeded into
the database (real argon2id hashes; --seed-users cheap for far cheaper logins, and the report says
so), and FULL sync; it is removed afterwards.
--spawn-nodes N starts a throwaway PostgreSQL (or uses --store postgres://…), a nats-server and N
\`chat serve\` nodes on them, seeds the accounts once, and spreads the clients over the nodes
round-robin (client i on node i mod N), as HOST:PORT,HOST:PORT does for a running cluster. CPU is
summed over the nodes and also shown per part (each node, nats-server, PostgreSQL).
The certificate is always verified: there is no switch to turn that off.
With --idle-steps the server's RSS is read twice at each step: as soon as no byte arrived for
--settle-ms (the burst's garbage still counted) and after --memory-settle more of idleness (V8
returns heap pages grown by garbage only then); the slope is reported for both.
Exit code 1 when anything was lost, duplicated, reordered or refused.`;

/** Adds `chat bench`. */
export function registerBench(program: Command, ctx: CliContext): void {
  const collect = (v: string, prev: string[]) => [...prev, v];
  program.command("bench")
    .description("Load-test a chat (or IRC) server and check every delivery")
    .argument(
      "[target]",
      "HOST:PORT of a running server, or several of a cluster separated by commas (or use --spawn)",
    )
    .option("--spawn", "start a throwaway server on loopback for this run")
    .option("--spawn-nodes <n>", "start a throwaway cluster of N nodes (PostgreSQL and NATS)")
    .option("--store <url>", "with --spawn-nodes: use this postgres:// database instead")
    .option("--protocol <name>", "chat (chat/1), seed (text protocol) or irc", "chat")
    .option("-n, --clients <n>", "connections, one user each", "100")
    .option("--rooms <n>", "spread clients over this many rooms", "1")
    .option("-s, --senders <n>", "clients that send (the first ones)", "10")
    .option("-m, --messages <n>", "messages per sender", "100")
    .option("--rate <n>", "messages per second per sender (0: as fast as possible)", "0")
    .option("--payload <bytes>", "message body size", "64")
    .option("--ca <file>", "PEM CA certificate to verify the server with")
    .option("--fingerprint <sha256>", "trust exactly the certificate with this SHA-256")
    .option("--user-prefix <p>", "user names are <p><index>", "u")
    .option("--password <pw>", "password of every bench user", "bench-password")
    .option("--auth <mode>", "auto (register, log in when taken), login or register", "auto")
    .option("--login-concurrency <n>", "logins in flight at once", "32")
    .option(
      "--seed-users <cost>",
      "with --spawn: the accounts' argon2id cost, real (OWASP, as real users) or cheap (labelled)",
      "real",
    )
    .option("--server-cpus <list>", "with --spawn: pin the server (taskset -c), e.g. 0")
    .option("--bench-cpus <list>", "pin this process (taskset), e.g. 1")
    .option(
      "--server-pid <pid>",
      "read RSS and CPU of this server process (/proc; pids with commas)",
    )
    .option("--idle-steps <list>", "connect in stages, RSS after each, e.g. 1000,5000")
    .option(
      "--memory-settle <ms>",
      "with --idle-steps: idle time before each RSS reading (0: read at once)",
      "30000",
    )
    .option("--login-storm <rate>", "login attempts per second during the send phase (chat)")
    .option(
      "--probe-ms <ms>",
      "loop-lag probe: ping interval on an extra connection (0: off)",
      "20",
    )
    .option("--drain-timeout <ms>", "stop waiting after this long without progress", "10000")
    .option("--max-seconds <s>", "hard limit of the send phase", "600")
    .option("--login-timeout <ms>", "deadline of one login including retries", "120000")
    .option("--settle-ms <ms>", "after login, wait until this long without traffic", "500")
    .option("--sync <mode>", "with --spawn: FULL or NORMAL database sync", "FULL")
    .option(
      "--server-limit <name=value>",
      "with --spawn: set a server limit (repeatable)",
      collect,
      [],
    )
    .option(
      "--server-entry <path>",
      "with --spawn: the chat entry module to run (default: this one)",
    )
    .option("--server-deno-flags <flags>", "with --spawn: extra `deno run` flags, e.g. --cpu-prof")
    .option("--json", "print the result as JSON on stdout")
    .addHelpText("after", BENCH_HELP)
    .action(async (target: string | undefined, flags: Omit<BenchFlags, "target">) => {
      const code = await benchCommand({ ...flags, target }, {
        stdout: ctx.stdout,
        stderr: ctx.stderr,
        stderrIsTerminal: Deno.stderr.isTerminal(),
      });
      if (code !== 0) ctx.exitCode = code;
    });
}
