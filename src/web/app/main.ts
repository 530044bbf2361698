/// <reference lib="dom" />
// Owns the web app: login and sign-out, conversations (rooms and direct messages), history,
// presence, sending with visible pending and failed states, resume after reconnect (with the
// session token, never the password). All user text goes in as text.
import { Connection, type Frame, type LinkState } from "./connection.ts";
import { forget, loginFrame, remember } from "./credentials.ts";
import { deviceLabel } from "./device_label.ts";
import { byId, h, setText } from "./dom.ts";
import { UnreadCounts } from "../../protocol/unread.ts";
import { retryAfterBye, retryAfterError } from "../../error_catalogue.ts";

interface Msg {
  id: number;
  ts: number;
  from: string;
  body: string;
  /** A notice (PROTOCOL.md §5): shown apart from ordinary messages. */
  notice?: true;
}

/** A message of ours not yet acknowledged (pending) or refused (failed). */
interface Local {
  cid: string;
  body: string;
  state: "pending" | "failed";
  error: string;
}

interface Conv {
  /** `#room` or `@user`. */
  key: string;
  kind: "room" | "dm";
  name: string;
  msgs: Map<number, Msg>;
  pending: Local[];
  /** History reached the first message. */
  atStart: boolean;
  /** The newest page was asked for. */
  loaded: boolean;
  loading: boolean;
  online: Set<string>;
  /** Rendered elements, by `m:<id>` or `c:<cid>` (reused across renders). */
  els: Map<string, HTMLElement>;
}

/** Unread counts from the server's read markers (docs/PROTOCOL.md §7.1). */
const counts = new UnreadCounts();

/** The key of a conversation in `counts`. */
function ukey(c: Conv): string {
  return c.kind === "room" ? `#${c.name}` : `@${c.name.toLowerCase()}`;
}

function unreadOf(c: Conv): number {
  return counts.count(ukey(c));
}

/** The open conversation is on screen: move its marker to the newest message shown. */
function markRead(c: Conv): void {
  if (c.key !== state.active || !visible() || !state.loggedIn) return;
  let newest = 0;
  for (const id of c.msgs.keys()) newest = Math.max(newest, id);
  if (newest === 0 || !counts.readUpTo(ukey(c), newest)) return;
  renderLists();
  void conn.request({
    type: "read",
    ...(c.kind === "room" ? { room: c.name } : { with: c.name }),
    id: newest,
  }).then((r) => {
    if (r.type !== "ok") return;
    counts.marker(r as unknown as Parameters<UnreadCounts["marker"]>[0]);
    renderLists();
  });
}

const FIRST_PAGE = 50;
const OLDER_PAGE = 100;

const state = {
  me: "",
  registration: "open" as string,
  maxBodyBytes: 4000,
  convs: new Map<string, Conv>(),
  active: "",
  /** Resume points (docs/PROTOCOL.md §6): highest id delivered per room, and for DMs. */
  resume: { rooms: {} as Record<string, number>, dm: 0 },
  /** Sends in flight, by cid. */
  sending: new Map<string, { conv: Conv; local: Local }>(),
  /** Bodies this page sent, newest last (Up recalls them). */
  sent: [] as string[],
  recall: -1,
  cidPrefix: Math.random().toString(36).slice(2, 10),
  cidNext: 1,
  allRooms: [] as string[],
  loggedIn: false,
};

/**
 * The form's attempt, until its answer: the only place the password is, and only until then (a
 * success keeps the issued token instead, a failure keeps nothing).
 */
let pendingLogin:
  | { op: "login" | "register"; user: string; password: string; invite: string }
  | null = null;

/** Sign-out is waiting for its `ok`: the `bye` `quit` after it is expected, not news. */
let signingOut = false;

/** What a token refused at reconnect tells the user (the server does not say which it was). */
const SESSION_ENDED = "Signed out: your session ended (signed out elsewhere, revoked by an " +
  "administrator, or expired). Log in again.";

const conn = new Connection(`wss://${location.host}/ws`, {
  onHello: (hello) => void onHello(hello),
  onFrame,
  onState,
  shouldReconnect: () => state.loggedIn || pendingLogin !== null,
});

/** This browser's label on its session token, e.g. "web: Chromium on Linux". */
function thisDevice(): string {
  const hints = (navigator as Navigator & {
    userAgentData?: { brands?: { brand: string }[]; platform?: string };
  }).userAgentData;
  return deviceLabel({
    userAgent: navigator.userAgent,
    brands: hints?.brands,
    platform: hints?.platform,
  });
}

// --- conversations ---------------------------------------------------------------------------

function conv(kind: "room" | "dm", name: string): Conv {
  const key = (kind === "room" ? "#" : "@") + name;
  let c = state.convs.get(key);
  if (!c) {
    c = {
      key,
      kind,
      name,
      msgs: new Map(),
      pending: [],
      atStart: false,
      loaded: false,
      loading: false,
      online: new Set(),
      els: new Map(),
    };
    state.convs.set(key, c);
    renderLists();
  }
  return c;
}

function convOf(m: { room?: string; to?: string; from: string }): Conv {
  if (m.room !== undefined) return conv("room", m.room);
  const other = m.from.toLowerCase() === state.me.toLowerCase() ? m.to! : m.from;
  return conv("dm", other);
}

function activeConv(): Conv | undefined {
  return state.convs.get(state.active);
}

function visible(): boolean {
  return document.visibilityState === "visible";
}

/** Takes a delivered message (live or backlog): stored once by id, counted unread when unseen. */
function receive(f: Frame): void {
  const c = convOf(f as unknown as Msg & { room?: string; to?: string });
  if (f.room !== undefined) {
    state.resume.rooms[f.room] = Math.max(state.resume.rooms[f.room] ?? 0, f.id);
  } else {
    state.resume.dm = Math.max(state.resume.dm, f.id);
  }
  if (c.msgs.has(f.id)) return;
  c.msgs.set(f.id, messageOf(f as unknown as Msg));
  const mine = f.from.toLowerCase() === state.me.toLowerCase();
  if (counts.message(f as unknown as Msg & { room?: string; to?: string })) renderLists();
  if (!mine) {
    announce(c, f.from, f.body);
    notify(c, f.from, f.body);
  }
  if (c.key === state.active) {
    scheduleRender();
    markRead(c);
  }
}

// --- server frames ---------------------------------------------------------------------------

/** The server said hello on this connection (a login may be sent). */
let helloDone = false;

async function onHello(hello: Frame): Promise<void> {
  helloDone = true;
  state.registration = hello.registration;
  state.maxBodyBytes = hello.limits?.maxBodyBytes ?? state.maxBodyBytes;
  showRegistration();
  await sendLogin();
}

/**
 * Logs in on the open connection: the form's attempt (password, asking for a token for this
 * device), or again after a reconnect (the token, with resume).
 */
async function sendLogin(): Promise<void> {
  let frame: Record<string, unknown> | null;
  const attempt = pendingLogin;
  if (attempt) {
    frame = {
      type: attempt.op,
      user: attempt.user,
      password: attempt.password,
      device: thisDevice(),
      ...(attempt.op === "register" && attempt.invite ? { invite: attempt.invite } : {}),
    };
  } else if (state.loggedIn) {
    frame = loginFrame(state.resume);
    if (!frame) {
      logOut("Signed out: the server gave this page no session token. Log in again.");
      return;
    }
  } else {
    return;
  }
  const ok = await conn.request(frame);
  if (ok.type !== "ok") {
    if (ok.code === "offline") return; // dropped meanwhile: the next hello tries again
    if (attempt) {
      if (pendingLogin === attempt) pendingLogin = null;
      setText(byId("login-error"), ok.message ?? "Cannot log in");
    } else if (retryAfterError(ok.code).kind === "never") {
      // auth_failed: the token is revoked, expired or unknown. Asking again would loop.
      logOut(SESSION_ENDED);
    } else {
      // throttled, busy, shutting down: the token may still be good; try again later.
      setStatus(ok.message ?? ok.code);
      conn.drop();
    }
    return;
  }
  conn.loggedIn();
  if (attempt) {
    if (pendingLogin === attempt) pendingLogin = null;
    if (typeof ok.token === "string") {
      remember({ user: ok.user, token: ok.token, expiresAt: ok.tokenExpiresAt });
    } else forget();
  }
  const first = !state.loggedIn;
  state.loggedIn = true;
  state.me = ok.user;
  // No saved position: live delivery starts at `latest`, older is history.
  for (const [room, id] of Object.entries(ok.latest?.rooms ?? {})) {
    state.resume.rooms[room] = Math.max(state.resume.rooms[room] ?? 0, id as number);
  }
  state.resume.dm = Math.max(state.resume.dm, ok.latest?.dm ?? 0);
  counts.reset(ok.user, ok.markers, ok.latest);
  for (const room of ok.rooms as string[]) conv("room", room);
  for (const peer of Object.keys(ok.markers?.dm ?? {})) conv("dm", peer);
  renderLists();
  if (first) {
    showChat();
    open(state.active || "#general");
  } else {
    const c = activeConv();
    if (c?.kind === "room") void refreshWho(c);
  }
  resendPending();
  void refreshRooms();
}

function onFrame(f: Frame): void {
  switch (f.type) {
    case "msg":
      receive(f);
      return;
    case "ack":
      return onAck(f);
    case "error":
      if (typeof f.ref === "string" && state.sending.has(f.ref)) return onSendError(f);
      setStatus(f.message ?? f.code);
      return;
    case "read":
      // Another session of ours read a conversation (§7.1).
      counts.marker(f as unknown as Parameters<UnreadCounts["marker"]>[0]);
      renderLists();
      return;
    case "presence": {
      const c = conv("room", f.room);
      if (f.event === "join") c.online.add(f.user);
      else c.online.delete(f.user);
      if (c.key === state.active) renderPeople();
      return;
    }
    case "bye":
      if (signingOut) return;
      // kicked (an administrator revoked the session), password_changed, quit: no reconnect.
      if (retryAfterBye(f.code).kind === "never") {
        logOut(`Signed out: ${f.message || f.code}.`.replace(/\.\.$/, "."));
      } else setStatus(f.message || "Disconnected");
      return;
  }
}

function onAck(f: Frame): void {
  const s = state.sending.get(f.cid);
  if (!s) return;
  state.sending.delete(f.cid);
  const { conv: c, local } = s;
  c.pending = c.pending.filter((l) => l !== local);
  c.msgs.set(f.id, { id: f.id, ts: f.ts, from: state.me, body: local.body });
  // The element stays the same node: it changes from pending to sent.
  const el = c.els.get(`c:${local.cid}`);
  if (el) {
    c.els.delete(`c:${local.cid}`);
    c.els.set(`m:${f.id}`, el);
    fillMessage(el, { id: f.id, ts: f.ts, from: state.me, body: local.body }, null);
  }
  if (c.key === state.active) scheduleRender();
}

function onSendError(f: Frame): void {
  const s = state.sending.get(f.ref)!;
  if (f.code === "shutting_down" || f.code === "offline") return; // resent after reconnect
  if (f.code === "rate_limited" && typeof f.retryAfterMs === "number") {
    setTimeout(() => resend(s.local.cid), f.retryAfterMs);
    return;
  }
  state.sending.delete(f.ref);
  s.local.state = "failed";
  s.local.error = f.message ?? f.code;
  if (s.conv.key === state.active) scheduleRender();
}

function onState(s: LinkState, detail: string): void {
  if (s !== "online") helloDone = false;
  const text =
    { connecting: "Connecting…", online: "Online", offline: "Reconnecting…", stopped: "" }[
      s
    ];
  setStatus(detail || text);
  document.body.dataset.link = s;
}

// --- requests --------------------------------------------------------------------------------

async function loadOlder(c: Conv): Promise<void> {
  if (c.loading || c.atStart) return;
  c.loading = true;
  const ids = [...c.msgs.keys()];
  const before = ids.length > 0 && c.loaded ? Math.min(...ids) : undefined;
  const r = await conn.request({
    type: "history",
    ...(c.kind === "room" ? { room: c.name } : { with: c.name }),
    limit: c.loaded ? OLDER_PAGE : FIRST_PAGE,
    ...(before !== undefined ? { before } : {}),
  });
  c.loading = false;
  if (r.type !== "history") {
    if (r.code !== "offline") setStatus(r.message ?? r.code);
    return;
  }
  c.loaded = true;
  for (const m of r.messages as Msg[]) {
    if (!c.msgs.has(m.id)) c.msgs.set(m.id, messageOf(m));
  }
  if (!r.more) c.atStart = true;
  if (c.key === state.active) {
    render({ keepTop: true });
    markRead(c);
  }
}

async function refreshWho(c: Conv): Promise<void> {
  const r = await conn.request({ type: "who", room: c.name });
  if (r.type !== "who") return;
  c.online = new Set(r.users);
  if (c.key === state.active) renderPeople();
}

async function refreshRooms(): Promise<void> {
  const r = await conn.request({ type: "rooms" });
  if (r.type !== "rooms") return;
  state.allRooms = (r.rooms as { name: string; joined: boolean }[]).map((x) => x.name);
  for (const x of r.rooms as { name: string; joined: boolean }[]) {
    if (x.joined) conv("room", x.name);
  }
}

async function joinRoom(name: string): Promise<void> {
  const r = await conn.request({ type: "join", room: name });
  if (r.type !== "ok") {
    setStatus(r.message ?? r.code);
    return;
  }
  const c = conv("room", r.room);
  c.online = new Set(r.users ?? []);
  open(c.key);
}

function sendBody(c: Conv, body: string): void {
  const cid = `${state.cidPrefix}-${state.cidNext++}`;
  const local: Local = { cid, body, state: "pending", error: "" };
  c.pending.push(local);
  state.sending.set(cid, { conv: c, local });
  state.sent.push(body);
  state.recall = -1;
  transmit(c, local);
  render({ toBottom: true });
}

function transmit(c: Conv, local: Local): void {
  // The ref is the cid: the ack (or error) finds its message; a resend reuses both (§5).
  conn.send({
    type: "send",
    cid: local.cid,
    ref: local.cid,
    body: local.body,
    ...(c.kind === "room" ? { room: c.name } : { to: c.name }),
  });
}

function resend(cid: string): void {
  const s = state.sending.get(cid);
  if (s) transmit(s.conv, s.local);
}

/** After a reconnect: every unacknowledged send again, same cid, in the order first sent. */
function resendPending(): void {
  for (const { conv: c, local } of state.sending.values()) transmit(c, local);
}

function retry(c: Conv, local: Local): void {
  local.state = "pending";
  local.error = "";
  state.sending.set(local.cid, { conv: c, local });
  transmit(c, local);
  scheduleRender();
}

// --- rendering -------------------------------------------------------------------------------

let renderQueued = false;

function scheduleRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render({});
  });
}

/** What the app keeps of a `msg` frame or a history entry. */
function messageOf(m: Msg): Msg {
  const kept: Msg = { id: m.id, ts: m.ts, from: m.from, body: m.body };
  if (m.notice === true) kept.notice = true;
  return kept;
}

function timeText(ts: number): string {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function messageElement(): HTMLElement {
  const el = h(
    "li",
    { class: "msg" },
    h("div", { class: "meta" }, h("span", { class: "from", dir: "auto" }), h("time", {})),
    h("p", { class: "body", dir: "auto" }),
    h("p", { class: "state" }),
  );
  return el;
}

/** Writes a message (or a local one) into its element; text only. */
function fillMessage(el: HTMLElement, m: Msg, local: Local | null): void {
  const from = el.querySelector(".from")!;
  const time = el.querySelector("time")!;
  const body = el.querySelector(".body")!;
  const st = el.querySelector(".state")!;
  const notice = m.notice === true;
  const action = !notice && m.body.startsWith("/me ");
  setText(from, action ? `* ${m.from}` : notice ? `${m.from} (notice)` : m.from);
  setText(body, action ? m.body.slice(4) : m.body);
  el.classList.toggle("action", action);
  el.classList.toggle("notice", notice);
  el.classList.toggle("mine", m.from.toLowerCase() === state.me.toLowerCase());
  el.classList.toggle("pending", local?.state === "pending");
  el.classList.toggle("failed", local?.state === "failed");
  if (local) {
    el.removeAttribute("data-id");
    el.dataset.cid = local.cid;
    setText(time, "");
    st.replaceChildren(
      local.state === "pending" ? "Sending…" : `Not sent: ${local.error}`,
    );
  } else {
    el.dataset.id = String(m.id);
    el.removeAttribute("data-cid");
    time.setAttribute("datetime", new Date(m.ts).toISOString());
    setText(time, timeText(m.ts));
    st.replaceChildren();
  }
}

function render(opts: { keepTop?: boolean; toBottom?: boolean }): void {
  const c = activeConv();
  if (!c) return;
  const box = byId("messages");
  const list = byId("message-list");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  const oldHeight = box.scrollHeight;
  const oldTop = box.scrollTop;
  const items: HTMLElement[] = [];
  const ids = [...c.msgs.keys()].sort((a, b) => a - b);
  for (const id of ids) {
    const key = `m:${id}`;
    let el = c.els.get(key);
    if (!el) {
      el = messageElement();
      fillMessage(el, c.msgs.get(id)!, null);
      c.els.set(key, el);
    }
    items.push(el);
  }
  for (const local of c.pending) {
    const key = `c:${local.cid}`;
    let el = c.els.get(key);
    if (!el) {
      el = messageElement();
      c.els.set(key, el);
    }
    fillMessage(el, { id: 0, ts: 0, from: state.me, body: local.body }, local);
    if (local.state === "failed") {
      const b = h("button", { type: "button", class: "retry secondary" }, "Retry");
      b.addEventListener("click", () => retry(c, local));
      el.querySelector(".state")!.append(" ", b);
    }
    items.push(el);
  }
  list.replaceChildren(...items);
  const start = byId("history-start");
  start.hidden = !c.atStart;
  setText(
    start,
    c.kind === "room"
      ? `This is the start of #${c.name}.`
      : `This is the start of your conversation with ${c.name}.`,
  );
  byId("older").hidden = c.atStart;
  if (opts.toBottom || (nearBottom && !opts.keepTop)) box.scrollTop = box.scrollHeight;
  else if (opts.keepTop) box.scrollTop = oldTop + (box.scrollHeight - oldHeight);
}

function renderLists(): void {
  const rooms: HTMLElement[] = [];
  const dms: HTMLElement[] = [];
  const sorted = [...state.convs.values()].sort((a, b) => a.name.localeCompare(b.name));
  let unread = 0;
  for (const c of sorted) {
    const n = unreadOf(c);
    unread += n;
    const b = h(
      "button",
      {
        type: "button",
        class: "conv",
        "data-key": c.key,
        "aria-current": c.key === state.active ? "page" : undefined,
      },
      h("span", { class: "name" }, c.kind === "room" ? `#${c.name}` : c.name),
      n > 0 ? h("span", { class: "badge", "aria-label": `${n} unread` }, String(n)) : null,
    );
    b.addEventListener("click", () => {
      open(c.key);
      closeMenu();
    });
    (c.kind === "room" ? rooms : dms).push(h("li", {}, b));
  }
  byId("room-list").replaceChildren(...rooms);
  byId("dm-list").replaceChildren(...dms);
  document.title = unread > 0 ? `(${unread}) chat` : "chat";
  // On a phone the list is behind the menu button: it carries the total.
  const menu = byId("menu");
  setText(menu, unread > 0 ? `☰ ${unread}` : "☰");
  menu.setAttribute("aria-label", unread > 0 ? `Conversations, ${unread} unread` : "Conversations");
}

function renderPeople(): void {
  const c = activeConv();
  const title = byId("people-title");
  const list = byId("people");
  if (!c || c.kind === "dm") {
    setText(title, "Direct message");
    list.replaceChildren(h("li", {}, c?.name ?? ""));
    return;
  }
  setText(title, `Online in #${c.name} (${c.online.size})`);
  const items = [...c.online].sort().map((u) => {
    const b = h("button", { type: "button", class: "person" }, u);
    b.addEventListener("click", () => open(conv("dm", u).key));
    return h("li", {}, b);
  });
  list.replaceChildren(...items);
}

function open(key: string): void {
  const c = state.convs.get(key) ?? (key.startsWith("@") ? conv("dm", key.slice(1)) : undefined);
  if (!c) return;
  state.active = c.key;
  setText(byId("title"), c.kind === "room" ? `#${c.name}` : c.name);
  setText(byId("compose-label"), c.kind === "room" ? `Message #${c.name}` : `Message ${c.name}`);
  byId<HTMLTextAreaElement>("compose").placeholder = c.kind === "room"
    ? `Message #${c.name}`
    : `Message ${c.name}`;
  renderLists();
  renderPeople();
  render({ toBottom: true });
  if (!c.loaded) void loadOlder(c);
  else markRead(c);
  if (c.kind === "room") void refreshWho(c);
}

const announced: string[] = [];

function announce(c: Conv, from: string, body: string): void {
  const where = c.kind === "room" ? ` in #${c.name}` : "";
  announced.push(`${from}${where}: ${body}`);
  if (announced.length > 5) announced.shift();
  byId("announce").replaceChildren(...announced.map((t) => h("p", {}, t)));
}

/** A system notification, once allowed, for a message not on screen (another conversation, or
 * the tab hidden). */
function notify(c: Conv, from: string, body: string): void {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (visible() && c.key === state.active) return;
  new Notification(c.kind === "room" ? `${from} in #${c.name}` : from, { body });
}

function setStatus(text: string): void {
  setText(byId("status"), text);
}

/** Search over history (§7.2): the rooms we are in and our DMs, newest first. */
async function runSearch(text: string): Promise<void> {
  const box = byId("search-results");
  if (text.trim() === "") {
    box.hidden = true;
    return;
  }
  const r = await conn.request({ type: "search", text, limit: 50 });
  if (r.type !== "search") {
    setStatus(r.message ?? r.code);
    return;
  }
  const hits = r.messages as (Msg & { room?: string; to?: string })[];
  setText(
    byId("search-title"),
    hits.length === 0 ? "No messages found" : `${hits.length}${r.more ? "+" : ""} found`,
  );
  byId("search-list").replaceChildren(...hits.map((m) => {
    const c = convOf(m);
    const li = h(
      "li",
      { "data-id": String(m.id), tabindex: "0" },
      h("div", { class: "where" }, `${c.kind === "room" ? `#${c.name}` : c.name} · ${m.from}`),
      h("div", { class: "body", dir: "auto" }, m.body),
    );
    li.addEventListener("click", () => open(c.key));
    return li;
  }));
  box.hidden = false;
}

// --- screens and input -------------------------------------------------------------------------

function showRegistration(): void {
  byId("register-submit").hidden = state.registration === "closed";
  byId("invite-row").hidden = state.registration !== "invite";
}

function showChat(): void {
  byId("login-screen").hidden = true;
  byId("chat-screen").hidden = false;
  byId("compose").focus();
}

/** Back to the login screen with `message`; the token is forgotten, no reconnect is tried. */
function logOut(message: string): void {
  conn.stop();
  signingOut = false;
  pendingLogin = null;
  forget();
  state.loggedIn = false;
  state.convs.clear();
  state.sending.clear();
  state.active = "";
  state.resume = { rooms: {}, dm: 0 };
  byId("chat-screen").hidden = true;
  byId("login-screen").hidden = false;
  setText(byId("login-error"), message);
  byId<HTMLInputElement>("login-password").value = "";
  byId("login-user").focus();
  // A fresh socket for the form (its hello says whether registration is offered).
  conn.start();
}

/**
 * "Sign out": `logout` revokes this page's token on the server, then the login screen. Offline,
 * the page forgets the token anyway (nothing else holds it) and says the server was not told.
 */
async function signOut(): Promise<void> {
  if (signingOut) return;
  let told = false;
  if (state.loggedIn && conn.open) {
    signingOut = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      conn.request({ type: "logout" }),
      new Promise<Frame>((resolve) => {
        timer = setTimeout(() => resolve({ type: "error", code: "offline" }), LOGOUT_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    told = r.type === "ok";
  }
  logOut(
    told
      ? "Signed out."
      : "Signed out on this page. The server could not be reached to revoke the session; " +
        "it expires by itself, or an administrator can revoke it.",
  );
}

/** How long sign-out waits for the server's `ok` before it signs out without it. */
const LOGOUT_WAIT_MS = 5000;

function submitLogin(op: "login" | "register"): void {
  const user = byId<HTMLInputElement>("login-user").value.trim();
  const field = byId<HTMLInputElement>("login-password");
  const password = field.value;
  const invite = byId<HTMLInputElement>("login-invite").value.trim();
  if (!user || !password) {
    setText(byId("login-error"), "Enter a user name and a password.");
    return;
  }
  // The field does not keep it either: after this attempt the password is nowhere in the page.
  field.value = "";
  setText(byId("login-error"), "");
  pendingLogin = { op, user, password, invite };
  if (helloDone) void sendLogin();
  else if (!conn.active) conn.start();
}

function closeMenu(): void {
  document.body.classList.remove("menu-open");
  byId("menu").setAttribute("aria-expanded", "false");
}

const utf8 = new TextEncoder();

function onComposerKey(e: KeyboardEvent): void {
  const ta = e.currentTarget as HTMLTextAreaElement;
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submitComposer();
  } else if (e.key === "ArrowUp" && (ta.value === "" || state.recall >= 0) && state.sent.length) {
    e.preventDefault();
    state.recall = state.recall < 0 ? state.sent.length - 1 : Math.max(0, state.recall - 1);
    ta.value = state.sent[state.recall];
  } else if (e.key === "ArrowDown" && state.recall >= 0) {
    e.preventDefault();
    state.recall++;
    if (state.recall >= state.sent.length) {
      state.recall = -1;
      ta.value = "";
    } else ta.value = state.sent[state.recall];
  }
}

function submitComposer(): void {
  const ta = byId<HTMLTextAreaElement>("compose");
  const body = ta.value;
  const c = activeConv();
  if (!c || body.trim() === "") return;
  if (utf8.encode(body).length > state.maxBodyBytes) {
    setStatus(`Cannot send: longer than ${state.maxBodyBytes} bytes`);
    return;
  }
  ta.value = "";
  sendBody(c, body);
}

// --- the switcher (Ctrl-K) ---------------------------------------------------------------------

interface Choice {
  label: string;
  run: () => void;
}

let choices: Choice[] = [];
let chosen = 0;

function switcherChoices(q: string): Choice[] {
  const query = q.trim().toLowerCase().replace(/^[#@]/, "");
  const out: Choice[] = [];
  const seen = new Set<string>();
  for (const c of state.convs.values()) {
    if (!c.name.toLowerCase().includes(query)) continue;
    seen.add(c.key.toLowerCase());
    out.push({ label: c.kind === "room" ? `#${c.name}` : c.name, run: () => open(c.key) });
  }
  for (const r of state.allRooms) {
    if (seen.has(`#${r}`) || !r.includes(query)) continue;
    seen.add(`#${r}`);
    out.push({ label: `Join #${r}`, run: () => void joinRoom(r) });
  }
  const people = new Set<string>();
  for (const c of state.convs.values()) for (const u of c.online) people.add(u);
  for (const u of people) {
    if (seen.has(`@${u.toLowerCase()}`) || !u.toLowerCase().includes(query)) continue;
    seen.add(`@${u.toLowerCase()}`);
    out.push({ label: `Message ${u}`, run: () => open(conv("dm", u).key) });
  }
  if (query && q.trim().startsWith("@") && !seen.has(`@${query}`)) {
    const name = q.trim().slice(1);
    out.push({ label: `Message ${name}`, run: () => open(conv("dm", name).key) });
  } else if (query && !seen.has(`#${query}`) && /^[a-z0-9][a-z0-9_-]{0,31}$/.test(query)) {
    out.push({ label: `Join or create #${query}`, run: () => void joinRoom(query) });
  }
  return out;
}

function renderSwitcher(): void {
  const q = byId<HTMLInputElement>("switcher-input").value;
  choices = switcherChoices(q);
  chosen = Math.min(chosen, Math.max(0, choices.length - 1));
  byId("switcher-list").replaceChildren(
    ...choices.map((ch, i) => {
      const li = h("li", {
        role: "option",
        id: `switch-${i}`,
        "aria-selected": i === chosen ? "true" : "false",
      }, ch.label);
      li.addEventListener("click", () => pick(i));
      return li;
    }),
  );
  byId("switcher-input").setAttribute("aria-activedescendant", `switch-${chosen}`);
}

function openSwitcher(): void {
  const d = byId<HTMLDialogElement>("switcher");
  if (d.open) return;
  byId<HTMLInputElement>("switcher-input").value = "";
  chosen = 0;
  renderSwitcher();
  d.showModal();
  byId("switcher-input").focus();
}

function pick(i: number): void {
  const ch = choices[i];
  byId<HTMLDialogElement>("switcher").close();
  ch?.run();
  byId("compose").focus();
}

// --- wiring ----------------------------------------------------------------------------------

function wire(): void {
  byId("login").addEventListener("submit", (e) => {
    e.preventDefault();
    submitLogin("login");
  });
  byId("register-submit").addEventListener("click", () => submitLogin("register"));
  byId("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    submitComposer();
  });
  byId("compose").addEventListener("keydown", onComposerKey);
  byId("older").addEventListener("click", () => {
    const c = activeConv();
    if (c) void loadOlder(c);
  });
  byId("messages").addEventListener("scroll", () => {
    const c = activeConv();
    if (c && byId("messages").scrollTop < 40 && c.loaded) void loadOlder(c);
  });
  byId("switch").addEventListener("click", openSwitcher);
  byId("switcher-input").addEventListener("input", () => {
    chosen = 0;
    renderSwitcher();
  });
  byId("switcher-input").addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const n = choices.length;
      if (n) chosen = (chosen + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      renderSwitcher();
    } else if (e.key === "Enter") {
      e.preventDefault();
      pick(chosen);
    }
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k" && state.loggedIn) {
      e.preventDefault();
      openSwitcher();
    }
  });
  byId("menu").addEventListener("click", () => {
    const open = document.body.classList.toggle("menu-open");
    byId("menu").setAttribute("aria-expanded", String(open));
  });
  byId("logout").addEventListener("click", () => void signOut());
  // The token lives in this page only, so a page that goes away (reload, tab closed) cannot use it
  // again: revoke it on the way out (best effort; one the server never hears of just expires).
  addEventListener("pagehide", (e) => {
    if (!e.persisted && state.loggedIn) conn.send({ type: "logout" });
  });
  const bell = byId("notify");
  if (!("Notification" in window)) bell.hidden = true;
  bell.addEventListener("click", () => void Notification.requestPermission());
  document.addEventListener("visibilitychange", () => {
    const c = activeConv();
    if (c) markRead(c);
  });
  byId("search").addEventListener("submit", (e) => {
    e.preventDefault();
    void runSearch(byId<HTMLInputElement>("search-input").value);
  });
}

wire();
// Connect at once: the server's hello says whether the form offers registration.
conn.start();
