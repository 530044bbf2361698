// Owns the fault suite's shared tools: child servers, clients from chosen loopback addresses,
// polling with deadlines, process figures (fds, RSS), and the database read back after a fault.
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { DatabaseSync } from "node:sqlite";
import { concatBytes } from "../../src/protocol/concat_bytes.ts";
import { LineSplitter } from "../../src/protocol/line_decoder.ts";
import type { ServerFrame } from "../../src/protocol/frames.ts";
import { FrameInbox } from "../harness/frame_inbox.ts";

export type F<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

/** A predicate for frames of one type that also narrows the type. */
export const isType = <T extends ServerFrame["type"]>(t: T) => (f: ServerFrame): f is F<T> =>
  f.type === t;

/** The directory of the project (child servers run from it so deno.json applies). */
export const ROOT = new URL("../../", import.meta.url).pathname;

const enc = new TextEncoder();
const dec = new TextDecoder();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `stepMs` until true; throws naming `what` after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  stepMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting: ${what}`);
    await sleep(stepMs);
  }
}

/** Open file descriptors of a process (Linux /proc). */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident set size of a process in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Nearest-rank percentile of `values` (p in 0..100). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))];
}

/** Opens a database file the way an operator would afterwards (read-only). */
export function openDb(path: string): DatabaseSync {
  return new DatabaseSync(path, { readOnly: true });
}

/** Collects a child's output stream as text while it runs. */
function collect(stream: ReadableStream<Uint8Array>, sink: { text: string }): Promise<void> {
  return (async () => {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        sink.text += value;
      }
    } catch { /* the child went away */ }
  })();
}

/** Output and exit status of a finished CLI run. */
export interface CliResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `chat <args>` as a child process (the real deno binary, so signals reach the server itself)
 * and waits for it to exit; killed after `timeoutMs`.
 */
export async function runChat(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    cwd: ROOT,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    return {
      code: out.code,
      signal: out.signal,
      stdout: dec.decode(out.stdout),
      stderr: dec.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `chat serve` in a child process on 127.0.0.1. `await using` stops it with SIGKILL if it is
 * still running (tests that want a graceful stop send SIGTERM themselves).
 */
export class ChildServer implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly dataDir: string;
  readonly port: number;
  readonly certPem: string;
  readonly status: Promise<Deno.CommandStatus>;
  #out: { text: string };
  #err: { text: string };
  #done: Promise<void>;
  #exited = false;

  private constructor(
    init: {
      child: Deno.ChildProcess;
      dataDir: string;
      port: number;
      certPem: string;
      out: { text: string };
      err: { text: string };
      done: Promise<void>;
    },
  ) {
    this.child = init.child;
    this.dataDir = init.dataDir;
    this.port = init.port;
    this.certPem = init.certPem;
    this.#out = init.out;
    this.#err = init.err;
    this.#done = init.done;
    this.status = init.child.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  /** Starts `chat serve --host 127.0.0.1 --port <port|0> --data <dataDir>` and waits until it listens. */
  static async start(
    opts: {
      dataDir: string;
      port?: number;
      env?: Record<string, string>;
      args?: string[];
      /** `ulimit -n` for the server process (it is started through sh, which execs it). */
      maxFiles?: number;
      /** Flags for `deno run` itself, before `main.ts` (e.g. `--cpu-prof`). */
      denoFlags?: string[];
    },
  ): Promise<ChildServer> {
    const argv = [
      Deno.execPath(),
      "run",
      "-A",
      ...(opts.denoFlags ?? []),
      "main.ts",
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(opts.port ?? 0),
      "--data",
      opts.dataDir,
      ...(opts.args ?? []),
    ];
    const [cmd, args] = opts.maxFiles === undefined
      ? [argv[0], argv.slice(1)]
      : ["sh", ["-c", `ulimit -n ${opts.maxFiles} && exec "$@"`, "sh", ...argv]];
    const child = new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      env: { CHAT_LOG_LEVEL: "warning", ...opts.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = { text: "" };
    const err = { text: "" };
    const done = Promise.all([collect(child.stdout, out), collect(child.stderr, err)]).then(
      () => {},
    );
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    try {
      await waitFor(
        () => exited || /chat: listening on port \d+/.test(out.text),
        "the child server to listen",
        30_000,
        25,
      );
    } catch (e) {
      child.kill("SIGKILL");
      await status;
      await done;
      throw e;
    }
    if (exited) {
      await done;
      throw new Error(`the child server exited at start: ${err.text}${out.text}`);
    }
    void status;
    const port = Number(out.text.match(/chat: listening on port (\d+)/)![1]);
    const certPem = await Deno.readTextFile(`${opts.dataDir}/cert.pem`);
    return new ChildServer({ child, dataDir: opts.dataDir, port, certPem, out, err, done });
  }

  get pid(): number {
    return this.child.pid;
  }

  get stdout(): string {
    return this.#out.text;
  }

  get stderr(): string {
    return this.#err.text;
  }

  get exited(): boolean {
    return this.#exited;
  }

  kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
  }

  /** Waits for the exit (after a signal) and for the output streams to end. */
  async wait(): Promise<Deno.CommandStatus> {
    const s = await this.status;
    await this.#done;
    return s;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGKILL");
    await this.wait();
  }
}

/**
 * A chat/1 (or raw) client over node:tls, which can pick its local address: the server then sees
 * it coming from 127.0.0.x (Deno.connectTls cannot bind a local address).
 */
export class NodeClient extends FrameInbox implements AsyncDisposable {
  readonly socket: TLSSocket;
  readonly lines: string[] = [];
  readonly closed: Promise<void>;

  private constructor(socket: TLSSocket) {
    super(10_000, "f");
    this.socket = socket;
    const splitter = new LineSplitter(1 << 24);
    let closedResolve!: () => void;
    this.closed = new Promise((r) => closedResolve = r);
    socket.on("data", (chunk: Uint8Array) => {
      for (const line of splitter.push(chunk)) {
        const text = dec.decode(line);
        this.lines.push(text);
        let f: ServerFrame;
        try {
          f = JSON.parse(text);
        } catch {
          continue;
        }
        this.receive(f);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => closedResolve());
  }

  static connect(
    port: number,
    certPem: string,
    opts: { localAddress?: string; alpn?: string[] } = {},
  ): Promise<NodeClient> {
    return new Promise((resolve, reject) => {
      // node:tls passes localAddress on to net.connect; its type declarations omit it.
      const options: ConnectionOptions & { localAddress?: string } = {
        host: "127.0.0.1",
        port,
        localAddress: opts.localAddress,
        ca: certPem,
        servername: "localhost",
        ALPNProtocols: opts.alpn ?? ["chat/1"],
      };
      const socket = tlsConnect(options);
      const onError = (err: Error) => reject(err);
      socket.once("error", onError);
      socket.once("secureConnect", () => {
        socket.off("error", onError);
        resolve(new NodeClient(socket));
      });
    });
  }

  override send(frame: Record<string, unknown>): void {
    this.writeRaw(JSON.stringify(frame) + "\n");
  }

  writeRaw(data: string | Uint8Array): void {
    if (!this.socket.destroyed) {
      this.socket.write(typeof data === "string" ? enc.encode(data) : data);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.closed;
  }
}

/** Plain TCP connection to the TLS port (for plaintext and stalled-handshake cases). */
export async function tcpConnect(port: number): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

/** Reads from a raw connection until EOF/reset or `timeoutMs`; returns what arrived and why. */
export async function readUntilClosed(
  conn: Deno.Conn,
  timeoutMs = 10_000,
): Promise<{ bytes: Uint8Array; closed: boolean }> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(16384);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  let closed = false;
  try {
    for (;;) {
      const n = await Promise.race([conn.read(buf), timeout]);
      if (n === "timeout") break;
      if (n === null) {
        closed = true;
        break;
      }
      parts.push(buf.slice(0, n));
    }
  } catch {
    closed = true; // reset
  } finally {
    clearTimeout(timer);
  }
  return { bytes: concatBytes(parts), closed };
}

/** Says hello on a chat/1 client and waits for the server's hello. */
export async function hello(
  c: { send(f: Record<string, unknown>): void; expect: NodeClient["expect"] },
) {
  c.send({ type: "hello", version: 1 });
  await c.expect(isType("hello"));
}

/** Mounts a tmpfs of `size` (e.g. "4m") at a new temp dir; null when mounting is not permitted. */
export async function mountTmpfs(size: string): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "chat-tmpfs-" });
  try {
    const r = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir],
      stdout: "null",
      stderr: "null",
    }).output();
    if (r.success) return dir;
  } catch { /* no mount binary */ }
  await Deno.remove(dir);
  return null;
}

/** Unmounts and removes a directory made by mountTmpfs. */
export async function unmountTmpfs(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

let mountable: boolean | undefined;

/** True when this process may mount a tmpfs (root in a permissive container); checked once. */
export async function canMount(): Promise<boolean> {
  if (mountable !== undefined) return mountable;
  mountable = false;
  if (Deno.build.os !== "linux") return false;
  const d = await mountTmpfs("64k");
  if (d !== null) {
    await unmountTmpfs(d);
    mountable = true;
  }
  return mountable;
}
