// Owns `chat connect`: its flags and help text; the client itself lives in src/client/.
import type { Command } from "commander";
import { type ConnectOptions, runConnect } from "../src/client/mod.ts";
import type { CliContext } from "./context.ts";

/** The flags are the run options less the positional address. */
type ConnectFlags = Omit<ConnectOptions, "address">;

/** Adds `chat connect`. */
export function registerConnect(program: Command, ctx: CliContext): void {
  program.command("connect")
    .description("Chat from a terminal, or send and listen from scripts")
    .argument(
      "[address]",
      "HOST[:PORT] of the server (default localhost:7443; IPv6 as [::1]:7443); several " +
        "servers of one cluster separated by commas",
    )
    .option(
      "--server <host:port>",
      "another server of the same cluster, tried in turn (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("-u, --user <name>", "user name (default: $CHAT_USER, else asked)")
    .option("--register", "create the account first")
    .option("--password-stdin", "read the password from the first line of stdin")
    .option("--invite <code>", "invite code, when the server requires one to register")
    .option("--ca <file>", "trust this CA certificate (PEM) besides the system roots")
    .option(
      "--trust-fingerprint <sha256:…>",
      "accept the server certificate with this SHA-256 fingerprint (and remember it)",
    )
    .option("--send <text>", "send one message, wait until the server stored it, and exit")
    .option("--room <room>", "room for --send, --listen and stdin lines (default general)")
    .option("--to <user>", "send a direct message to USER instead (or listen to that conversation)")
    .option("--listen", "print each message and presence event until interrupted")
    .option("--json", "print one JSON object per line (with --listen, --send or stdin lines)")
    .addHelpText(
      "after",
      "\nWithout --send or --listen: a chat screen when stdin is a terminal, else each line of" +
        "\nstdin is sent as a message. The password comes from --password-stdin, CHAT_PASSWORD," +
        "\nor a hidden prompt. Servers with a self-signed certificate are trusted on first use" +
        "\n(remembered in ~/.config/chat/known_servers; CHAT_CONFIG_DIR overrides the directory)." +
        "\nWith several servers (or a name with several addresses), each reconnect tries them in" +
        "\nturn, starting from the one that worked last." +
        "\nExamples:\n  chat connect chat.example.com\n" +
        "  chat connect node1.example.com,node2.example.com\n" +
        "  CHAT_PASSWORD=… chat connect -u bot --room ops --send 'deploy done'\n" +
        "  chat connect -u bot --listen --json | jq .body",
    )
    .action(async (address: string | undefined, flags: ConnectFlags) => {
      ctx.exitCode = await runConnect({ address, ...flags }, {
        stdout: ctx.stdout,
        stderr: ctx.stderr,
        env: (name) => Deno.env.get(name),
      });
    });
}
