// Owns the interactive client: turns keys into commands and messages, and connection events
// into screen lines; the slash commands live in one table checked in one place.
import { ChatError } from "../errors.ts";
import type { WireMessage } from "../protocol/frames.ts";
import { convKey, messageKey, UnreadCounts } from "../protocol/unread.ts";
import type { ChatConnection, ConnectionEvent } from "./connection.ts";
import type { Key } from "./keys.ts";
import { LineEditor } from "./line_editor.ts";
import {
  ACTION_PREFIX,
  formatMessage,
  formatSystem,
  MESSAGE_INDENT,
  sanitize,
  STYLE,
  type StyledLine,
} from "./render.ts";
import { Screen, type ScreenOutput } from "./screen.ts";

/** Where typed text goes: a room, or a user (direct messages). */
export type Target = { kind: "room"; name: string } | { kind: "dm"; user: string };

/** What the UI runs on. */
export interface TerminalUiDeps {
  conn: ChatConnection;
  /** Keys in, screen out. */
  term: ScreenOutput & { readKeys(): Promise<Key[] | null> };
  color: boolean;
  /** `host:port`, for messages. */
  server: string;
}

interface Command {
  /** Argument synopsis for /help. */
  args: string;
  help: string;
  /** Arguments required (the handler never checks again). */
  min: number;
  run: (ui: TerminalUi, args: string[], rest: string) => Promise<void> | void;
}

const DEFAULT_HISTORY = 20;
const STARTUP_HISTORY = 10;

/** The slash commands: one table, checked in `#command`. */
const COMMANDS: Record<string, Command> = {
  help: { args: "", help: "this list", min: 0, run: (ui) => ui.showHelp() },
  join: {
    args: "ROOM",
    help: "join a room (created when new) and talk there",
    min: 1,
    run: (ui, a) => ui.join(a[0]),
  },
  part: {
    args: "[ROOM]",
    help: "leave a room for good (default: the current one)",
    min: 0,
    run: (ui, a) => ui.part(a[0]),
  },
  rooms: { args: "", help: "list the rooms", min: 0, run: (ui) => ui.listRooms() },
  who: {
    args: "[ROOM]",
    help: "who is online in a room (default: the current one)",
    min: 0,
    run: (ui, a) => ui.who(a[0]),
  },
  msg: {
    args: "USER TEXT",
    help: "send a direct message",
    min: 2,
    run: (ui, a, rest) =>
      ui.say({ kind: "dm", user: a[0] }, rest.slice(rest.indexOf(a[0]) + a[0].length).trimStart()),
  },
  query: {
    args: "USER",
    help: "talk to USER directly from now on (/join ROOM to go back)",
    min: 1,
    run: (ui, a) => ui.query(a[0]),
  },
  me: {
    args: "TEXT",
    help: "describe an action: /me waves  →  * you waves",
    min: 1,
    run: (ui, _a, rest) => ui.say(ui.target, ACTION_PREFIX + rest),
  },
  history: {
    args: "[N]",
    help: `show the last N messages here (default ${DEFAULT_HISTORY})`,
    min: 0,
    run: (ui, a) => ui.history(a[0]),
  },
  passwd: { args: "", help: "change your password", min: 0, run: (ui) => ui.passwd() },
  quit: { args: "", help: "leave (also C-d on an empty line)", min: 0, run: (ui) => ui.quit() },
};

/** A bounded set of message ids already on screen. */
class Shown {
  #ids = new Set<number>();
  has(id: number): boolean {
    return this.#ids.has(id);
  }
  add(id: number): void {
    this.#ids.add(id);
    if (this.#ids.size > 10000) this.#ids.delete(this.#ids.values().next().value!);
  }
}

/**
 * The interactive chat screen. `run()` resolves when the user quits, and rejects with the
 * reason when the session ends for good (kicked, certificate changed, …).
 */
export class TerminalUi {
  #conn: ChatConnection;
  #term: TerminalUiDeps["term"];
  #server: string;
  #screen: Screen;
  #editor: LineEditor;
  #target: Target = { kind: "room", name: "general" };
  #online = new Map<string, Set<string>>();
  #users = new Set<string>();
  /** Unread counts from the server's read markers (docs/PROTOCOL.md §7.1). */
  #unread = new UnreadCounts();
  /** Newest message id shown per conversation key (what `read` moves the marker to). */
  #newest = new Map<string, number>();
  #shown = new Shown();
  #state = "connected";
  #quit = false;
  #secret: { labels: string[]; values: string[]; done: (values: string[] | null) => void } | null =
    null;
  #ended: ChatError | null = null;
  #wake: (() => void) | null = null;

  constructor(deps: TerminalUiDeps) {
    this.#conn = deps.conn;
    this.#term = deps.term;
    this.#server = deps.server;
    this.#screen = new Screen(deps.term, { color: deps.color });
    this.#editor = new LineEditor({ complete: (r) => this.#complete(r.word, r.first, r.line) });
  }

  /** Where plain text goes now. */
  get target(): Target {
    return this.#target;
  }

  /** Runs until /quit (resolves) or the session ends (rejects). Restores the terminal. */
  async run(): Promise<void> {
    this.#screen.start();
    try {
      this.#refreshStatus();
      this.#refreshInput();
      this.#system(
        `Connected to ${this.#server} as ${this.#conn.user} (${this.#conn.server.name}). ` +
          `Type /help for commands.`,
      );
      await this.#startupContext();
      while (!this.#quit && !this.#ended) {
        const keys = await Promise.race([
          this.#term.readKeys(),
          new Promise<"woken">((r) => this.#wake = () => r("woken")),
        ]);
        this.#wake = null;
        if (keys === "woken") continue;
        if (keys === null) break;
        for (const key of keys) {
          await this.#key(key);
          if (this.#quit || this.#ended) break;
        }
      }
    } finally {
      this.#screen.stop();
    }
    if (this.#ended) throw this.#ended;
  }

  /** Draws everything again at the current window size (on SIGWINCH). */
  redraw(): void {
    this.#screen.redraw();
  }

  /** Ends `run()` soon (on SIGTERM/SIGHUP); the terminal is restored on the way out. */
  requestQuit(): void {
    this.#quit = true;
    this.#wake?.();
  }

  /** Feeds a connection event to the screen. */
  onEvent(ev: ConnectionEvent): void {
    switch (ev.type) {
      case "msg":
        this.#showMessage(ev.msg);
        return;
      case "markers":
        this.#unread.reset(ev.user, ev.markers, ev.latest);
        this.#refreshStatus();
        return;
      case "read":
        this.#unread.marker(ev.frame);
        this.#refreshStatus();
        return;
      case "presence": {
        const set = this.#onlineIn(ev.room);
        if (ev.event === "join") set.add(ev.user);
        else set.delete(ev.user);
        this.#users.add(ev.user);
        this.#system(`${ev.user} ${ev.event === "join" ? "joined" : "left"} #${ev.room}`);
        return;
      }
      case "resumed":
        if (ev.count > 0) {
          const where = ev.room !== undefined ? `#${ev.room}` : "direct messages";
          this.#system(
            `Caught up: ${ev.count} missed message${ev.count === 1 ? "" : "s"} in ${where}`,
          );
        }
        return;
      case "rooms":
        if (this.#target.kind === "room" && !ev.rooms.includes(this.#target.name)) {
          this.#switchTo({ kind: "room", name: "general" });
        }
        this.#refreshStatus();
        return;
      case "notice":
        this.#system(`Server: ${ev.message} (${ev.code})`, STYLE.error);
        return;
      case "down":
        this.#state = "disconnected";
        this.#system(`Disconnected: ${ev.message}`, STYLE.error);
        this.#refreshStatus();
        return;
      case "retry":
        this.#state = "reconnecting";
        // The reason may end in its own parenthesis ("… (is the server running?)"): no nesting.
        this.#system(
          `Reconnecting in ${
            (ev.delayMs / 1000).toFixed(1)
          } s, attempt ${ev.attempt}: ${ev.reason}`,
        );
        this.#refreshStatus();
        return;
      case "up":
        if (ev.reconnect) {
          this.#state = "connected";
          this.#system(`Reconnected to ${sanitize(ev.server ?? this.#server)}`, STYLE.notice);
          this.#refreshStatus();
          this.#refreshWho();
        }
        return;
      case "closed":
        if (ev.error) {
          this.#ended = ev.error;
          this.#wake?.();
        }
        return;
    }
  }

  // ---- commands (called from the table) ----

  showHelp(): void {
    this.#system("Commands:");
    for (const [name, c] of Object.entries(COMMANDS)) {
      const synopsis = `/${name}${c.args ? " " + c.args : ""}`;
      this.#system(`  ${synopsis.padEnd(18)} ${c.help}`);
    }
    this.#system(
      "Anything else is sent to the current room; start with // to send a line beginning with /.",
    );
    this.#system(
      "Keys: Tab completes commands and names, Up/Down recall, PgUp/PgDn scroll, C-d quits.",
    );
  }

  async join(room: string): Promise<void> {
    const r = await this.#conn.join(room.replace(/^#/, ""));
    this.#online.set(r.room, new Set(r.users));
    for (const u of r.users) this.#users.add(u);
    this.#switchTo({ kind: "room", name: r.room });
    this.#system(`Now talking in #${r.room}; online: ${r.users.join(", ") || "nobody"}`);
    await this.#showHistory({ room: r.room }, STARTUP_HISTORY, false);
  }

  async part(room?: string): Promise<void> {
    const name = (room ?? (this.#target.kind === "room" ? this.#target.name : "")).replace(
      /^#/,
      "",
    );
    if (!name) throw new ChatError("usage", "Cannot part: name a room (/part ROOM)");
    const left = await this.#conn.part(name);
    this.#online.delete(left);
    this.#system(`You left #${left}`);
  }

  async listRooms(): Promise<void> {
    const rooms = await this.#conn.listRooms();
    this.#system(`${rooms.length} room${rooms.length === 1 ? "" : "s"}:`);
    for (const r of rooms) {
      const mark = r.joined ? "*" : " ";
      const topic = r.topic ? ` — ${r.topic}` : "";
      this.#system(` ${mark} #${r.name}  ${r.members} members, ${r.online} online${topic}`);
    }
    this.#system("(* = joined; /join ROOM to talk there)");
  }

  async who(room?: string): Promise<void> {
    const name = (room ?? (this.#target.kind === "room" ? this.#target.name : "general")).replace(
      /^#/,
      "",
    );
    const r = await this.#conn.who(name);
    this.#online.set(r.room, new Set(r.users));
    for (const u of r.users) this.#users.add(u);
    this.#system(`Online in #${r.room} (${r.users.length}): ${r.users.join(", ") || "nobody"}`);
  }

  query(user: string): void {
    this.#users.add(user);
    this.#switchTo({ kind: "dm", user });
    this.#system(`Now talking to ${user} directly; /join ROOM to go back to a room`);
  }

  async history(n?: string): Promise<void> {
    const limit = n === undefined ? DEFAULT_HISTORY : Number(n);
    const max = this.#conn.limits.historyMax;
    if (!Number.isInteger(limit) || limit < 1 || limit > max) {
      throw new ChatError(
        "usage",
        `Cannot show history: N must be a whole number from 1 to ${max}`,
      );
    }
    const q = this.#target.kind === "room"
      ? { room: this.#target.name }
      : { with: this.#target.user };
    await this.#showHistory(q, limit, true);
  }

  passwd(): void {
    this.#askSecret(["Old password: ", "New password: ", "New password again: "], async (v) => {
      if (v[1] !== v[2]) {
        this.#system("Cannot change the password: the new passwords differ", STYLE.error);
        return;
      }
      await this.#conn.passwd(v[0], v[1]);
      this.#system("Password changed", STYLE.notice);
    });
  }

  quit(): void {
    this.#quit = true;
  }

  /** Sends `text` to `target`; the line appears when the server has stored it. */
  say(target: Target, text: string): void {
    if (text.trim() === "") return;
    const dest = target.kind === "room" ? { room: target.name } : { to: target.user };
    this.#conn.send(dest, text).then(
      (ack) => {
        this.#showMessage({
          id: ack.id,
          ts: ack.ts,
          from: this.#conn.user,
          body: text,
          ...(ack.room !== undefined ? { room: ack.room } : { to: ack.to ?? dest.to }),
        });
        this.#refreshStatus();
      },
      (err) => {
        this.#system(errorText(err), STYLE.error);
        this.#refreshStatus();
      },
    );
    this.#refreshStatus();
  }

  // ---- input ----

  async #key(key: Key): Promise<void> {
    const act = this.#editor.handle(key);
    switch (act.type) {
      case "changed":
        this.#refreshInput();
        return;
      case "submit":
        this.#refreshInput();
        if (this.#secret) return this.#secretLine(act.line);
        await this.#submit(act.line);
        return;
      case "interrupt":
        if (this.#secret) {
          this.#secretLine(null);
        } else if (this.#editor.text !== "") {
          this.#editor.setText("");
          this.#refreshInput();
        } else {
          this.#quit = true;
        }
        return;
      case "eof":
        if (this.#secret) this.#secretLine(null);
        else this.#quit = true;
        return;
      case "redraw":
        this.#screen.redraw();
        return;
      case "page":
        this.#screen.page(act.direction);
        return;
      default:
        return;
    }
  }

  async #submit(line: string): Promise<void> {
    if (line.trim() === "") return;
    if (line.startsWith("/") && !line.startsWith("//")) {
      await this.#command(line.slice(1));
      return;
    }
    this.say(this.#target, line.startsWith("//") ? line.slice(1) : line);
  }

  async #command(text: string): Promise<void> {
    const rest0 = text.trimStart();
    const name = rest0.split(/\s+/, 1)[0].toLowerCase();
    const rest = rest0.slice(name.length).trim();
    const args = rest === "" ? [] : rest.split(/\s+/);
    const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!cmd) {
      const close = Object.keys(COMMANDS).filter((c) => name !== "" && c.startsWith(name));
      const hint = close.length > 0
        ? ` Did you mean ${close.map((c) => "/" + c).join(" or ")}?`
        : "";
      this.#system(
        `Unknown command /${sanitize(name).slice(0, 32)}.${hint} Type /help for the list.`,
        STYLE.error,
      );
      return;
    }
    if (args.length < cmd.min) {
      this.#system(`Usage: /${name} ${cmd.args} — ${cmd.help}`, STYLE.error);
      return;
    }
    try {
      await cmd.run(this, args, rest);
    } catch (err) {
      this.#system(errorText(err), STYLE.error);
    }
  }

  #askSecret(labels: string[], then: (values: string[]) => Promise<void>): void {
    this.#secret = {
      labels,
      values: [],
      done: (values) => {
        if (values) then(values).catch((err) => this.#system(errorText(err), STYLE.error));
        else this.#system("Cancelled");
      },
    };
    this.#editor.masked = true;
    this.#editor.setText("");
    this.#refreshInput();
  }

  #secretLine(line: string | null): void {
    const s = this.#secret!;
    if (line !== null) s.values.push(line);
    if (line === null || s.values.length === s.labels.length) {
      this.#secret = null;
      this.#editor.masked = false;
      this.#refreshInput();
      s.done(line === null ? null : s.values);
      return;
    }
    this.#refreshInput();
  }

  #complete(word: string, first: boolean, line: string): string[] {
    const lower = word.toLowerCase();
    if (first && word.startsWith("/")) {
      return Object.keys(COMMANDS).filter((c) => ("/" + c).startsWith(lower)).map((c) => `/${c} `);
    }
    const cmd = line.trimStart().split(/\s+/, 1)[0].toLowerCase();
    const words = line.trimStart().split(/\s+/);
    if ((cmd === "/join" || cmd === "/part" || cmd === "/who") && words.length <= 2) {
      return this.#conn.rooms.filter((r) => r.startsWith(lower.replace(/^#/, ""))).map((r) =>
        `${r} `
      );
    }
    const names = [...this.#users].filter((u) =>
      u.toLowerCase().startsWith(lower) && u.toLowerCase() !== this.#conn.user.toLowerCase()
    ).sort((a, b) => a.localeCompare(b));
    return names.map((n) => (first ? `${n}: ` : `${n} `));
  }

  // ---- output ----

  #showMessage(m: WireMessage): void {
    if (this.#shown.has(m.id)) return;
    this.#shown.add(m.id);
    this.#users.add(m.from);
    if (m.to !== undefined) this.#users.add(m.to);
    const here = this.#target.kind === "room"
      ? m.room === this.#target.name
      : m.to !== undefined && [m.from, m.to].some((u) =>
        u.toLowerCase() === (this.#target as { user: string }).user.toLowerCase()
      );
    const key = messageKey(m, this.#conn.user);
    this.#newest.set(key, Math.max(this.#newest.get(key) ?? 0, m.id));
    if (this.#unread.message(m)) this.#refreshStatus();
    if (here) this.#readHere();
    this.#line(formatMessage(m, { me: this.#conn.user, currentRoom: this.#currentRoom() }));
  }

  async #showHistory(
    q: { room: string; with?: undefined } | { with: string; room?: undefined },
    limit: number,
    explicit: boolean,
  ): Promise<void> {
    const page = await this.#conn.history(q, limit);
    const where = q.room !== undefined ? `#${q.room}` : `your messages with ${q.with}`;
    if (page.messages.length === 0) {
      if (explicit) this.#system(`No messages in ${where} yet`);
      return;
    }
    this.#system(
      `Last ${page.messages.length} message${page.messages.length === 1 ? "" : "s"} in ${where}${
        page.more ? " (more with /history N)" : ""
      }:`,
    );
    for (const m of page.messages) {
      const key = messageKey(m, this.#conn.user);
      this.#newest.set(key, Math.max(this.#newest.get(key) ?? 0, m.id));
      if (!explicit && this.#shown.has(m.id)) continue;
      this.#shown.add(m.id);
      this.#users.add(m.from);
      this.#line(formatMessage(m, { me: this.#conn.user, currentRoom: this.#currentRoom() }));
    }
    this.#system(`End of history of ${where}`);
    this.#readHere();
  }

  async #startupContext(): Promise<void> {
    try {
      const rooms = this.#conn.rooms;
      if (rooms.length > 1) this.#system(`Your rooms: ${rooms.map((r) => "#" + r).join(", ")}`);
      await this.#showHistory({ room: "general" }, STARTUP_HISTORY, false);
      await this.#refreshWho();
    } catch (err) {
      this.#system(errorText(err), STYLE.error);
    }
  }

  async #refreshWho(): Promise<void> {
    await Promise.all(this.#conn.rooms.map(async (room) => {
      try {
        const r = await this.#conn.who(room);
        this.#online.set(r.room, new Set(r.users));
        for (const u of r.users) this.#users.add(u);
      } catch { /* offline again; completion just knows fewer names */ }
    }));
  }

  #switchTo(t: Target): void {
    this.#target = t;
    this.#readHere();
    this.#refreshStatus();
    this.#refreshInput();
  }

  /** The conversation on screen is read up to its newest message shown: move the marker. */
  #readHere(): void {
    const t = this.#target;
    const q = t.kind === "room" ? { room: t.name } : { with: t.user };
    const key = convKey(q);
    const id = this.#newest.get(key) ?? 0;
    if (id === 0 || !this.#unread.readUpTo(key, id)) return;
    this.#refreshStatus();
    this.#conn.markRead(q, id).then((r) => {
      this.#unread.marker(r);
      this.#refreshStatus();
    }, () => {/* offline: the next login's markers tell the truth */});
  }

  #currentRoom(): string | undefined {
    return this.#target.kind === "room" ? this.#target.name : undefined;
  }

  #onlineIn(room: string): Set<string> {
    let s = this.#online.get(room);
    if (!s) this.#online.set(room, s = new Set());
    return s;
  }

  #system(text: string, sgr: string = STYLE.system): void {
    this.#line(formatSystem(text, Date.now(), sgr));
  }

  #line(line: StyledLine): void {
    this.#screen.addLine(line, MESSAGE_INDENT);
  }

  #refreshStatus(): void {
    const t = this.#target;
    const where = t.kind === "room" ? `#${t.name}` : `@${t.user}`;
    const status: StyledLine = [
      { text: ` ${this.#conn.user} ` },
      { text: `[${where}] ` },
      { text: `[${this.#state}]` },
    ];
    const unsent = this.#conn.unacknowledged;
    if (unsent > 0) status.push({ text: ` [sending ${unsent}]` });
    const unread = this.#unread.nonZero();
    if (unread.size > 0) {
      const act = [...unread].map(([k, n]) => `${k}(${n})`).join(" ");
      status.push({ text: ` [unread: ${act}]` });
    }
    this.#screen.setStatus(status);
  }

  #refreshInput(): void {
    let prompt: string;
    if (this.#secret) {
      prompt = this.#secret.labels[this.#secret.values.length];
    } else {
      const t = this.#target;
      prompt = sanitize(t.kind === "room" ? `[#${t.name}] ` : `[@${t.user}] `);
    }
    this.#screen.setInput(prompt, this.#editor.view(this.#screen.inputWidth));
  }
}

/** One line for an error: the message of a ChatError, else a generic text (no stack). */
function errorText(err: unknown): string {
  if (err instanceof ChatError) return sanitize(err.message);
  return `Unexpected error: ${sanitize(String((err as Error)?.message ?? err))}`;
}
