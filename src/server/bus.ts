// Owns building the fan-out from the config: one node in-process, or NATS between nodes; and
// naming the bus without its credentials.
import type { ServerConfig } from "../config/config.ts";
import { ChatError } from "../errors.ts";
import { type Fanout, LocalFanout } from "./fanout.ts";
import { NatsFanout, type NatsFanoutOptions } from "./nats_fanout.ts";

/** A bus URL taken apart: `nats://[user[:pass]@]host[:port][,host[:port]…]`, `tls://` for TLS. */
export interface BusAddress {
  servers: string[];
  tls: boolean;
  user?: string;
  pass?: string;
  /** A user part without a password is a token. */
  token?: string;
}

/** Parses a bus URL; the error never repeats the URL (it may carry a password). */
export function parseBus(url: string): BusAddress {
  const m = /^(nats|tls):\/\/(?:([^@]*)@)?([^@/]+)\/?$/.exec(url.trim());
  if (!m) {
    throw new ChatError(
      "config_invalid",
      "Cannot use configuration: bus must be nats://[user:pass@]host:port[,host:port…] or tls://…",
    );
  }
  const [, scheme, cred, hosts] = m;
  const servers = hosts.split(",").map((h) => h.trim()).filter((h) => h !== "")
    .map((h) => /:\d+$/.test(h) || h.endsWith("]") ? h : `${h}:4222`);
  const out: BusAddress = { servers, tls: scheme === "tls" };
  if (cred !== undefined) {
    const i = cred.indexOf(":");
    if (i < 0) out.token = decodeURIComponent(cred);
    else {
      out.user = decodeURIComponent(cred.slice(0, i));
      out.pass = decodeURIComponent(cred.slice(i + 1));
    }
  }
  return out;
}

/** The bus for logs and `stats`: scheme and servers, never the credentials. */
export function describeBus(url: string): string {
  const a = parseBus(url);
  const who = a.user !== undefined ? `${a.user}:***@` : a.token !== undefined ? "***@" : "";
  return `${a.tls ? "tls" : "nats"}://${who}${a.servers.join(",")}`;
}

/** This node's name: the configured one, else `<hostname>-<pid>`. */
export function nodeName(config: ServerConfig): string {
  return config.nodeName ?? `${Deno.hostname()}-${Deno.pid}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

/** The fan-out the config asks for (LocalFanout when no bus is set). */
export function openFanout(
  config: ServerConfig,
  extra: Partial<NatsFanoutOptions> = {},
): Fanout {
  if (config.bus === null) return new LocalFanout();
  const a = parseBus(config.bus);
  const wantTls = a.tls || config.busCaFile !== null || config.busCertFile !== null;
  return new NatsFanout({
    servers: a.servers,
    node: nodeName(config),
    cluster: config.busCluster,
    user: a.user,
    pass: a.pass,
    token: a.token,
    tls: wantTls
      ? {
        ...(config.busCaFile ? { caFile: config.busCaFile } : {}),
        ...(config.busCertFile ? { certFile: config.busCertFile } : {}),
        ...(config.busKeyFile ? { keyFile: config.busKeyFile } : {}),
      }
      : null,
    ...extra,
  });
}
