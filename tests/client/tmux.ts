// Owns driving a program in a real terminal for tests: a private tmux server with a fixed-size
// window, keys sent as a person types them, and the screen read back as text.

/** True when tmux can be run here. */
export const HAVE_TMUX: boolean = (() => {
  try {
    return new Deno.Command("tmux", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

if (!HAVE_TMUX) {
  console.warn("tmux not found: skipping the terminal screen tests (apt-get install tmux)");
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** One tmux session on its own server socket; `await using` kills the server. */
export class TmuxSession implements AsyncDisposable {
  readonly socket: string;
  readonly rows: number;

  private constructor(socket: string, rows: number) {
    this.socket = socket;
    this.rows = rows;
  }

  /**
   * Runs `argv` in a detached `cols`×`rows` window. When the program exits the window stays,
   * showing `[exited N]`, so a test can read the final screen.
   */
  static async start(
    argv: string[],
    opts: { cols?: number; rows?: number; env?: Record<string, string>; cwd?: string } = {},
  ): Promise<TmuxSession> {
    const socket = `chat-test-${crypto.randomUUID().slice(0, 8)}`;
    const rows = opts.rows ?? 24;
    const shell = `${argv.map(shellQuote).join(" ")}; echo "[exited $?]"; sleep 600`;
    const env = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    const s = new TmuxSession(socket, rows);
    await s.#tmux([
      "-f",
      "/dev/null",
      "new-session",
      "-d",
      "-x",
      String(opts.cols ?? 100),
      "-y",
      String(rows),
      ...(opts.cwd ? ["-c", opts.cwd] : []),
      ...env,
      shell,
    ]);
    return s;
  }

  async #tmux(args: string[]): Promise<string> {
    const out = await new Deno.Command("tmux", {
      args: ["-L", this.socket, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`tmux ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
    }
    return new TextDecoder().decode(out.stdout);
  }

  /** Presses keys by tmux name (`Enter`, `Tab`, `C-u`, `BSpace`, …). */
  async keys(...keys: string[]): Promise<void> {
    await this.#tmux(["send-keys", "-t", "0", ...keys]);
  }

  /** Types text literally. */
  async type(text: string): Promise<void> {
    await this.#tmux(["send-keys", "-t", "0", "-l", text]);
  }

  /** The visible screen, one string per row (trailing spaces trimmed); `joined` unwraps lines. */
  async screen(opts: { joined?: boolean } = {}): Promise<string[]> {
    const text = await this.#tmux([
      "capture-pane",
      "-p",
      "-t",
      "0",
      ...(opts.joined ? ["-J"] : []),
    ]);
    const lines = text.split("\n").map((l) => l.trimEnd());
    if (lines.at(-1) === "") lines.pop();
    while (!opts.joined && lines.length < this.rows) lines.push("");
    return lines;
  }

  /** Waits until the screen satisfies `pred`; returns it. Fails with the last screen shown. */
  async waitFor(
    pred: (lines: string[]) => boolean,
    what: string,
    opts: { timeoutMs?: number; joined?: boolean } = {},
  ): Promise<string[]> {
    const deadline = Date.now() + (opts.timeoutMs ?? 20000);
    let lines: string[] = [];
    while (Date.now() < deadline) {
      lines = await this.screen({ joined: opts.joined });
      if (pred(lines)) return lines;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; screen:\n${lines.join("\n")}`);
  }

  /** Waits until some row contains `text`. */
  waitForText(
    text: string,
    opts: { timeoutMs?: number; joined?: boolean } = {},
  ): Promise<string[]> {
    return this.waitFor((lines) => lines.some((l) => l.includes(text)), JSON.stringify(text), opts);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#tmux(["kill-server"]).catch(() => {});
  }
}
