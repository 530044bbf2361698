// Owns `chat serve`: flags, config layering and the process lifetime of a server.
import type { Command } from "commander";
import {
  configFromEnv,
  defaultConfigText,
  readConfigFile,
  resolveConfig,
} from "../src/config/config.ts";
import { setupLogging } from "../src/logging.ts";
import { startServer } from "../src/server/mod.ts";
import type { CliContext } from "./context.ts";

interface ServeFlags {
  host?: string;
  port?: string;
  ircPort?: string;
  data?: string;
  store?: string;
  cert?: string;
  key?: string;
  config?: string;
  registration?: string;
  logFormat?: string;
  logLevel?: string;
  printConfig?: boolean;
  bus?: string;
  nodeName?: string;
  busCa?: string;
  busCert?: string;
  busKey?: string;
}

/** Adds `chat serve`. */
export function registerServe(program: Command, ctx: CliContext): void {
  program.command("serve")
    .description("Run the chat server (TLS only; self-signed certificate on first start)")
    .option("--host <addr>", "listen address (default: all interfaces, IPv6 and IPv4)")
    .option("--port <n>", "TCP port (default 7443)")
    .option("--irc-port <n>", "also serve IRC over TLS on this port (off by default; docs/IRC.md)")
    .option(
      "--data <dir>",
      "data directory: database, generated key and certificate (default ./data)",
    )
    .option(
      "--store <url>",
      "postgres://user:pass@host/db shared by every node (default: SQLite in the data dir)",
    )
    .option("--cert <file>", "PEM certificate (chain) to serve instead of the generated one")
    .option("--key <file>", "PEM private key for --cert")
    .option("--config <file>", "JSON config file (default <data>/config.json when it exists)")
    .option("--registration <policy>", "open, invite or closed (default open)")
    .option("--log-format <fmt>", "text or json (default text)")
    .option("--log-level <level>", "debug, info, warning or error (default info)")
    .option(
      "--bus <url>",
      "bus between the nodes of a cluster: nats://[user:pass@]host:port[,host:port…] (tls:// for TLS)",
    )
    .option("--node-name <name>", "this node's name in the cluster (default <hostname>-<pid>)")
    .option("--bus-ca <file>", "PEM CA certificate(s) to trust for TLS to the bus")
    .option("--bus-cert <file>", "PEM client certificate for TLS to the bus")
    .option("--bus-key <file>", "PEM private key for --bus-cert")
    .option("--print-config", "print the default configuration and exit")
    .addHelpText(
      "after",
      "\nEnvironment: CHAT_HOST, CHAT_PORT, CHAT_IRC_PORT, CHAT_IRC_SERVER_NAME, CHAT_DATA, CHAT_STORE, CHAT_STORE_POOL_SIZE,\n" +
        "CHAT_STORE_CONNECT_TIMEOUT_MS, CHAT_CERT, CHAT_KEY, CHAT_REGISTRATION,\n" +
        "CHAT_LOG_FORMAT, CHAT_LOG_LEVEL, CHAT_BUS, CHAT_BUS_CLUSTER, CHAT_BUS_CA, CHAT_BUS_CERT,\n" +
        "CHAT_BUS_KEY, CHAT_NODE_NAME, CHAT_LIMIT_<NAME> (e.g. CHAT_LIMIT_MAX_CONNECTIONS).\n" +
        "Precedence: flags > environment > config file > defaults.",
    )
    .action(async (flags: ServeFlags) => {
      if (flags.printConfig) {
        ctx.stdout(defaultConfigText());
        return;
      }
      const env = configFromEnv((n) => Deno.env.get(n));
      const flagLayer = {
        host: flags.host,
        port: flags.port,
        ircPort: flags.ircPort,
        dataDir: flags.data,
        store: flags.store,
        certFile: flags.cert,
        keyFile: flags.key,
        registration: flags.registration,
        logFormat: flags.logFormat,
        logLevel: flags.logLevel,
        bus: flags.bus,
        nodeName: flags.nodeName,
        busCaFile: flags.busCa,
        busCertFile: flags.busCert,
        busKeyFile: flags.busKey,
      } as Record<string, unknown>;
      const dataDir = flags.data ?? env.dataDir ?? "./data";
      let fileLayer = {};
      const configPath = flags.config ?? `${dataDir}/config.json`;
      if (flags.config || (await exists(configPath))) fileLayer = await readConfigFile(configPath);
      const config = resolveConfig(fileLayer, env, flagLayer as never);
      await setupLogging({ format: config.logFormat, level: config.logLevel });
      const server = await startServer(config, { fallback: ctx.fallbackProtocol });
      if (config.ircPort !== null) {
        // The IRC listener is the last one (config.ts); said before the line tools wait for.
        const irc = server.addrs[config.listeners.length - 1];
        ctx.stdout(`chat: IRC on port ${irc.port}\n`);
      }
      ctx.stdout(`chat: listening on port ${server.addr.port}\n`);
      const url = Object.values(config.listeners[0].alpn).includes("https")
        ? webUrl(config.host, server.addr.port)
        : null;
      if (url) ctx.stdout(`chat: web app at ${url} (open it in a browser)\n`);
      const stopped = new Promise<void>((resolve) => {
        const stop = () => {
          Deno.removeSignalListener("SIGINT", stop);
          Deno.removeSignalListener("SIGTERM", stop);
          server.close().then(resolve);
        };
        Deno.addSignalListener("SIGINT", stop);
        Deno.addSignalListener("SIGTERM", stop);
      });
      await stopped;
    });
}

/** The address to open in a browser (the chat listener serves the web app). */
function webUrl(host: string, port: number): string {
  const h = host === "" || host === "::" || host === "0.0.0.0"
    ? "localhost"
    : host.includes(":")
    ? `[${host}]`
    : host;
  return `https://${h}:${port}/`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
