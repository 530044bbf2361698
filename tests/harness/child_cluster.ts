// Owns clusters of `chat serve` child processes for tests: N nodes on one store URL and one bus,
// one certificate for all (as behind a balancer), each in its own data dir, removed after.
import { ChildServer } from "../faults/helpers.ts";
import { generateSelfSigned, writeKeyPairFiles } from "../../src/tls/certificate.ts";

/** Limits out of the way of storms: rates, registrations per address, a short shutdown grace. */
export const CLUSTER_ENV: Record<string, string> = {
  CHAT_LIMIT_MESSAGES_PER_SECOND: "100000",
  CHAT_LIMIT_MESSAGE_BURST: "100000",
  CHAT_LIMIT_REGISTRATIONS_PER_ADDRESS: "1000",
  CHAT_LIMIT_SHUTDOWN_GRACE_MS: "500",
};

/** Running child nodes; `await using` kills them and removes their dirs. */
export interface ChildCluster extends AsyncDisposable {
  nodes: ChildServer[];
  certPem: string;
}

/**
 * Starts `n` nodes named p0, p1, … on `store` (a postgres:// URL) and `bus` (a nats:// URL);
 * `args(i)` adds flags for node i (e.g. `--irc-port`).
 */
export async function startChildNodes(
  store: string,
  bus: string,
  n = 3,
  args: (i: number) => string[] = () => [],
): Promise<ChildCluster> {
  const pair = await generateSelfSigned();
  const dirs: string[] = [];
  const nodes: ChildServer[] = [];
  const dispose = async () => {
    for (const s of nodes) await s[Symbol.asyncDispose]();
    for (const d of dirs) await Deno.remove(d, { recursive: true });
  };
  try {
    for (let i = 0; i < n; i++) {
      const dir = await Deno.makeTempDir({ prefix: `chat-node${i}-` });
      dirs.push(dir);
      await Deno.chmod(dir, 0o700);
      await writeKeyPairFiles(dir, pair);
    }
    for (let i = 0; i < n; i++) {
      nodes.push(
        await ChildServer.start({
          dataDir: dirs[i],
          env: CLUSTER_ENV,
          args: ["--store", store, "--bus", bus, "--node-name", `p${i}`, ...args(i)],
        }),
      );
    }
  } catch (err) {
    await dispose();
    throw err;
  }
  return { nodes, certPem: pair.certPem, [Symbol.asyncDispose]: dispose };
}
