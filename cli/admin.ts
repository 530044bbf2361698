// Owns `chat admin`: the command tree, flags and help text; the work is in src/admin/commands.
import type { Command } from "commander";
import { auditList, stats } from "../src/admin/commands/audit.ts";
import {
  certsImport,
  certsInit,
  certsReload,
  certsRotate,
  certsShow,
} from "../src/admin/commands/certs.ts";
import { type AdminEnv, osActor } from "../src/admin/commands/context.ts";
import { historyExport, historyPrune, historySearch } from "../src/admin/commands/history.ts";
import { migrate } from "../src/admin/commands/migrate.ts";
import { invitesCreate, invitesList, invitesRevoke } from "../src/admin/commands/invites.ts";
import {
  roomsAccess,
  roomsArchive,
  roomsCreate,
  roomsList,
  roomsMember,
  roomsMembers,
  roomsTopic,
} from "../src/admin/commands/rooms.ts";
import {
  usersAdd,
  usersDisable,
  usersEnable,
  usersList,
  usersPasswd,
  usersRemove,
  usersRole,
  usersSessions,
  usersShow,
} from "../src/admin/commands/users.ts";
import { processIo } from "../src/admin/terminal.ts";
import type { CliContext } from "./context.ts";

interface CommonFlags {
  data?: string;
  store?: string;
  json?: boolean;
  yes?: boolean;
}

const ADMIN_HELP = `
Every command takes --data DIR (default $CHAT_DATA, else ./data) and --json, and
--store postgres://… (default $CHAT_STORE) to work on a cluster's PostgreSQL instead of the data
dir's SQLite file.

When a server runs on the data dir, changes go through its admin socket (<data>/admin.sock) and
take effect at once: disabled or removed users are disconnected, room changes reach the server's
cache, a new certificate is served to new connections. Listings, audit, export and search read
the database directly. When no server runs, everything works on the database directly.

Destructive commands (remove, revoke, archive, prune, rotate, init --force) ask first; --yes
skips the question, and without a terminal on stdin they refuse unless --yes is given.
Every change is written to the audit trail as admin:<os user> from "local".`;

/** Adds `chat admin` and its command groups. */
export function registerAdmin(program: Command, ctx: CliContext): void {
  const admin = program.command("admin")
    .description("Manage users, invites, rooms, certificates and history (live or offline)")
    .addHelpText("after", ADMIN_HELP);

  const envOf = (flags: CommonFlags): AdminEnv => ({
    dataDir: flags.data ?? Deno.env.get("CHAT_DATA") ?? "./data",
    store: flags.store ?? (Deno.env.get("CHAT_STORE") || undefined),
    json: flags.json === true,
    yes: flags.yes === true,
    actor: osActor(),
    io: processIo(ctx.stdout, ctx.stderr),
    clock: Date.now,
  });
  const leaf = (
    parent: Command,
    name: string,
    description: string,
    opts: { yes?: boolean } = {},
  ) => {
    const cmd = parent.command(name).description(description)
      .option("--data <dir>", "data directory (default $CHAT_DATA, else ./data)")
      .option("--store <url>", "postgres://… database of a cluster (default $CHAT_STORE)")
      .option("--json", "machine-readable output on stdout");
    if (opts.yes) cmd.option("-y, --yes", "do not ask for confirmation");
    return cmd;
  };
  const done = (code: number | void) => {
    if (typeof code === "number" && code !== 0) ctx.exitCode = code;
  };
  const collect = (v: string, prev: string[]) => [...prev, v];

  // users
  const users = admin.command("users").description("Accounts: add, list, passwords, roles");
  leaf(users, "add", "Create an account (asks for the password without echo)")
    .argument("<name>", "user name")
    .option("--password-stdin", "read the password from the first line of stdin")
    .option("--role <role>", "admin or member", "member")
    .action(async (name: string, f) =>
      done(
        await usersAdd(envOf(f), name, { passwordStdin: f.passwordStdin === true, role: f.role }),
      )
    );
  leaf(users, "list", "List accounts")
    .action(async (f) => done(await usersList(envOf(f))));
  leaf(users, "show", "Show one account, its rooms and live sessions")
    .argument("<name>", "user name")
    .action(async (name: string, f) => done(await usersShow(envOf(f), name)));
  leaf(users, "passwd", "Set a new password")
    .argument("<name>", "user name")
    .option("--password-stdin", "read the password from the first line of stdin")
    .option("--kick", "also close the user's open sessions")
    .action(async (name: string, f) =>
      done(
        await usersPasswd(envOf(f), name, {
          passwordStdin: f.passwordStdin === true,
          kick: f.kick === true,
        }),
      )
    );
  leaf(users, "sessions", "List the account's session tokens (devices); --revoke ends them")
    .argument("<name>", "user name")
    .option("--revoke <id|all>", "revoke one session token by id, or all, and close its sessions")
    .action(async (name: string, f) =>
      done(await usersSessions(envOf(f), name, { revoke: f.revoke as string | undefined }))
    );
  leaf(users, "disable", "Refuse logins and close open sessions")
    .argument("<name>", "user name")
    .action(async (name: string, f) => done(await usersDisable(envOf(f), name)));
  leaf(users, "enable", "Allow logins again")
    .argument("<name>", "user name")
    .action(async (name: string, f) => done(await usersEnable(envOf(f), name)));
  leaf(users, "remove", "Delete an account (its messages stay) and close its sessions", {
    yes: true,
  })
    .argument("<name>", "user name")
    .action(async (name: string, f) => done(await usersRemove(envOf(f), name)));
  leaf(users, "role", "Make a user admin or member")
    .argument("<name>", "user name")
    .argument("<role>", "admin or member")
    .action(async (name: string, role: string, f) => done(await usersRole(envOf(f), name, role)));

  // invites
  const invites = admin.command("invites").description("Invite codes for invite-only registration");
  leaf(invites, "create", "Create an invite code (printed once; only its SHA-256 is stored)")
    .option("--uses <n>", "how many registrations it allows, or unlimited", "1")
    .option("--expires <age>", "lifetime such as 12h, 7d, 2w, or never", "7d")
    .action(async (f) => done(await invitesCreate(envOf(f), { uses: f.uses, expires: f.expires })));
  leaf(invites, "list", "List invites (never their codes)")
    .action(async (f) => done(await invitesList(envOf(f))));
  leaf(invites, "revoke", "Make an invite code stop working", { yes: true })
    .argument("<id>", "invite id (from invites list)")
    .action(async (id: string, f) => done(await invitesRevoke(envOf(f), id)));

  // rooms
  const rooms = admin.command("rooms").description(
    "Rooms: create, topics, archive, private rooms and members",
  );
  leaf(rooms, "create", "Create a room")
    .argument("<name>", "room name")
    .option("--topic <text>", "its topic")
    .action(async (name: string, f) => done(await roomsCreate(envOf(f), name, { topic: f.topic })));
  leaf(rooms, "list", "List rooms")
    .option("--all", "include archived rooms")
    .action(async (f) => done(await roomsList(envOf(f), { all: f.all === true })));
  leaf(rooms, "topic", 'Set a room\'s topic ("" clears it)')
    .argument("<name>", "room name")
    .argument("<topic>", "new topic")
    .action(async (name: string, topic: string, f) =>
      done(await roomsTopic(envOf(f), name, topic))
    );
  leaf(rooms, "archive", "Close a room: no joins or messages; history stays", { yes: true })
    .argument("<name>", "room name")
    .action(async (name: string, f) =>
      done(await roomsArchive(envOf(f), name, { archived: true }))
    );
  leaf(rooms, "unarchive", "Open an archived room again")
    .argument("<name>", "room name")
    .action(async (name: string, f) =>
      done(await roomsArchive(envOf(f), name, { archived: false }))
    );
  leaf(rooms, "private", "Make a room members-only (unlisted to others)")
    .argument("<name>", "room name")
    .action(async (name: string, f) => done(await roomsAccess(envOf(f), name, { private: true })));
  leaf(rooms, "public", "Make a room open to everyone")
    .argument("<name>", "room name")
    .action(async (name: string, f) => done(await roomsAccess(envOf(f), name, { private: false })));
  leaf(rooms, "members", "List a room's members")
    .argument("<name>", "room name")
    .action(async (name: string, f) => done(await roomsMembers(envOf(f), name)));
  leaf(rooms, "add-member", "Add a user to a room (their sessions enter it live)")
    .argument("<name>", "room name")
    .argument("<user>", "user name")
    .action(async (name: string, user: string, f) =>
      done(await roomsMember(envOf(f), name, user, { add: true }))
    );
  leaf(rooms, "remove-member", "Remove a user from a room (their sessions leave it live)")
    .argument("<name>", "room name")
    .argument("<user>", "user name")
    .action(async (name: string, user: string, f) =>
      done(await roomsMember(envOf(f), name, user, { add: false }))
    );

  // certs
  const certs = admin.command("certs").description("The server's TLS certificate");
  leaf(
    certs,
    "init",
    "Create a self-signed certificate, or with --ca a private CA and one it signs",
    {
      yes: true,
    },
  )
    .option("--ca", "create a private CA (<data>/ca/) and a server certificate it signs")
    .option(
      "--hostname <name>",
      "a name clients use (repeatable; loopback names always)",
      collect,
      [],
    )
    .option("--days <n>", "validity in days (default 825)")
    .option("--force", "replace existing files (asks unless --yes)")
    .action(async (f) =>
      done(
        await certsInit(envOf(f), {
          ca: f.ca === true,
          hostname: f.hostname,
          days: f.days,
          force: f.force === true,
        }),
      )
    );
  leaf(certs, "show", "Subject, names, validity and SHA-256 fingerprint")
    .option("--cert <file>", "show this PEM file instead of <data>/cert.pem")
    .action(async (f) => done(await certsShow(envOf(f), { cert: f.cert })));
  leaf(certs, "import", "Use a certificate and key from elsewhere (checked to match)")
    .requiredOption("--cert <file>", "PEM certificate (chain, leaf first)")
    .requiredOption("--key <file>", "PEM PKCS#8 private key")
    .action(async (f) => done(await certsImport(envOf(f), { cert: f.cert, key: f.key })));
  leaf(certs, "rotate", "Replace the key and certificate with new ones (same names)", { yes: true })
    .option("--hostname <name>", "names for the new certificate (repeatable)", collect, [])
    .option("--days <n>", "validity in days (default 825)")
    .option("--ca-cert <file>", "CA certificate (default <data>/ca/ca.pem)")
    .option("--ca-key <file>", "CA key to sign with (default <data>/ca/ca-key.pem)")
    .action(async (f) =>
      done(
        await certsRotate(envOf(f), {
          hostname: f.hostname,
          days: f.days,
          caCert: f.caCert,
          caKey: f.caKey,
        }),
      )
    );
  leaf(certs, "reload", "Make the running server load its certificate files again")
    .action(async (f) => done(await certsReload(envOf(f))));

  // history
  const history = admin.command("history").description("Stored messages: export, search, prune");
  leaf(history, "export", "Write messages as JSON lines or CSV, with their SHA-256")
    .option("--room <name>", "only this room")
    .option("--since <when>", "from this time on (date, ISO time, or age such as 30d)")
    .option("--until <when>", "before this time")
    .requiredOption("--format <fmt>", "jsonl or csv")
    .option("--output <file>", "write here (mode 0600) instead of stdout")
    .option("--force", "replace an existing output file")
    .option("--gzip", "compress the output with gzip (size and SHA-256 are of the gzip bytes)")
    .action(async (f) =>
      done(
        await historyExport(envOf(f), {
          gzip: f.gzip === true,
          room: f.room,
          since: f.since,
          until: f.until,
          format: f.format,
          output: f.output,
          force: f.force === true,
        }),
      )
    );
  leaf(history, "search", "Full-text search (all words; word* matches a prefix)")
    .argument("<words...>", "words to find")
    .option("--room <name>", "only this room")
    .option("--since <when>", "only messages from this time on")
    .option("--limit <n>", "most results, newest first (default 50)")
    .action(async (words: string[], f) =>
      done(
        await historySearch(envOf(f), words.join(" "), {
          room: f.room,
          since: f.since,
          limit: f.limit,
        }),
      )
    );
  leaf(history, "prune", "Delete messages older than a date", { yes: true })
    .requiredOption("--before <when>", "date, ISO time, or age such as 90d")
    .option("--room <name>", "only this room")
    .action(async (f) => done(await historyPrune(envOf(f), { before: f.before, room: f.room })));

  // audit and stats
  leaf(admin, "audit", "Logins, failures and admin actions, oldest first")
    .option("--since <when>", "from this time on (date, ISO time, or age such as 7d)")
    .option("--limit <n>", "the most recent n entries (default 100)")
    .action(async (f) => done(await auditList(envOf(f), { since: f.since, limit: f.limit })));
  leaf(admin, "stats", "Connections, message rates, queues and database size")
    .option("--interval <ms>", "sampling time for rates (default 1000)")
    .action(async (f) => done(await stats(envOf(f), { interval: f.interval })));

  // moving between engines
  leaf(admin, "migrate", "Copy the data dir into PostgreSQL (--to) or back out (--from), verified")
    .option("--to <url>", "postgres://… (an empty database) to copy <data>/chat.db into")
    .option("--from <url>", "postgres://… to copy into a new <data>/chat.db")
    .addHelpText(
      "after",
      "\nIds are kept. Every table is read back from both sides and compared (rows and SHA-256);\n" +
        "the exit code is 1 when one differs. --to needs the server on the data dir stopped.",
    )
    .action(async (f) => done(await migrate(envOf(f), { to: f.to, from: f.from })));
}
