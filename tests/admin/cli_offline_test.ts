// `chat admin` as a real process on a real database with no server running: every command group,
// the audit trail it leaves, and wrong input that must change nothing.
import { argon2Verify } from "hash-wasm";
import { assert, assertEquals, assertMatch } from "../harness/assert.ts";
import type { UserDetail, UserView } from "../../src/admin/admin_service.ts";
import type { AuditEntry, StorageStats } from "../../src/store/store.ts";
import { admin, adminJson, adminOk, openStore } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

async function auditActions(dataDir: string): Promise<string[]> {
  const trail = await adminJson<AuditEntry[]>(["audit", "--data", dataDir]);
  return trail.map((e) => `${e.actor} ${e.action} ${e.target ?? "-"} ${e.remote}`);
}

Deno.test("users: add, list, show, passwd, disable, enable, role, remove — each audited", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  assertEquals(
    await adminOk(["users", "add", "Alice", ...d, "--password-stdin"], {
      stdin: "first-password\n",
    }),
    "Added user Alice (member).\n",
  );
  await adminOk(["users", "add", "bob", "--role", "admin", ...d, "--password-stdin"], {
    stdin: "bob-password",
  });
  const list = await adminJson<UserView[]>(["users", "list", ...d]);
  assertEquals(list.map((u) => [u.name, u.role, u.disabled]), [
    ["Alice", "member", false],
    ["bob", "admin", false],
  ]);
  assert(!JSON.stringify(list).includes("argon2"), "no hashes in output");
  const human = await adminOk(["users", "list", ...d]);
  assertMatch(human, /^NAME\s+ROLE\s+STATUS\s+CREATED\nAlice\s+member\s+active\s+\d{4}-/);

  const shown = await adminJson<UserDetail>(["users", "show", "alice", ...d]);
  assertEquals([shown.name, shown.online, shown.rooms], ["Alice", null, []]);

  {
    await using store = await openStore(dir.path);
    const hash = (await store.userByName("alice"))!.passwordHash;
    assertMatch(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert(await argon2Verify({ password: "first-password", hash }));
  }
  await adminOk(["users", "passwd", "alice", ...d, "--password-stdin"], {
    stdin: "second-password\r\n",
  });
  {
    await using store = await openStore(dir.path);
    const hash = (await store.userByName("alice"))!.passwordHash;
    assert(await argon2Verify({ password: "second-password", hash }));
    assert(!(await argon2Verify({ password: "first-password", hash })));
  }
  assertEquals(
    await adminOk(["users", "disable", "alice", ...d]),
    "Disabled alice (no server running: applies from its next start).\n",
  );
  assertEquals((await adminJson<UserDetail>(["users", "show", "alice", ...d])).disabled, true);
  assertEquals(await adminOk(["users", "enable", "alice", ...d]), "Enabled alice.\n");
  assertEquals(await adminOk(["users", "role", "alice", "admin", ...d]), "alice is now admin.\n");
  assertEquals((await adminJson<UserDetail>(["users", "show", "alice", ...d])).role, "admin");
  assertEquals(await adminOk(["users", "remove", "alice", "--yes", ...d]), "Removed Alice.\n");
  assertEquals((await adminJson<UserView[]>(["users", "list", ...d])).map((u) => u.name), ["bob"]);

  assertEquals(await auditActions(dir.path), [
    "admin:tester users.add Alice local",
    "admin:tester users.add bob local",
    "admin:tester users.passwd Alice local",
    "admin:tester users.disable Alice local",
    "admin:tester users.enable Alice local",
    "admin:tester users.role Alice local",
    "admin:tester users.remove Alice local",
  ]);
});

Deno.test("wrong input gets a clear message, a non-zero exit, and changes nothing", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  await adminOk(["users", "add", "carol", ...d, "--password-stdin"], { stdin: "carol-password" });
  await adminOk(["rooms", "create", "ops", ...d]);
  const before = await auditActions(dir.path);
  const snapshot = async () => {
    await using store = await openStore(dir.path);
    return JSON.stringify([
      await store.listUsers(),
      await store.listRooms(),
      await store.listInvites(),
    ]);
  };
  const state = await snapshot();
  const cases: [string[], string, RegExp][] = [
    [
      ["users", "disable", "nobody"],
      "",
      /^chat: Cannot disable nobody: no such user \[no_such_user\]\n$/,
    ],
    [["users", "remove", "nobody", "--yes"], "", /Cannot remove nobody: no such user/],
    [
      ["users", "remove", "carol"],
      "",
      /Cannot remove carol: it needs confirmation and stdin is not a terminal; pass --yes \[confirmation_required\]/,
    ],
    [["users", "role", "carol", "root"], "", /role must be admin or member/],
    [
      ["users", "add", "carol", "--password-stdin"],
      "whatever-pass",
      /Cannot add user carol: the name is taken \[user_exists\]/,
    ],
    [
      ["users", "add", "dave", "--password-stdin"],
      "short",
      /Cannot use that password: it must be 8-1024 bytes \[weak_password\]/,
    ],
    [
      ["users", "add", "dave"],
      "",
      /stdin is not a terminal to ask for a password; pipe it in with --password-stdin/,
    ],
    [["users", "add", "9lives", "--password-stdin"], "long-enough-1", /\[invalid_username\]/],
    [["users", "passwd", "nobody", "--password-stdin"], "long-enough-1", /no such user/],
    [
      ["invites", "revoke", "7", "--yes"],
      "",
      /Cannot revoke invite 7: no such invite \[no_such_invite\]/,
    ],
    [["invites", "revoke", "seven", "--yes"], "", /\[bad_request\]/],
    [["invites", "create", "--uses", "0"], "", /--uses must be a positive integer/],
    [["invites", "create", "--expires", "tomorrow"], "", /--expires must be a duration/],
    [["rooms", "archive", "ops"], "", /\[confirmation_required\]/],
    [["rooms", "archive", "nowhere", "--yes"], "", /Cannot archive nowhere: no such room/],
    [["rooms", "archive", "general", "--yes"], "", /no such room|cannot_archive/],
    [["rooms", "create", "Not A Room"], "", /\[invalid_room\]/],
    [["rooms", "create", "ops"], "", /Cannot create room ops: it exists already \[room_exists\]/],
    [
      ["history", "prune", "--before", "last tuesday", "--yes"],
      "",
      /Cannot read --before "last tuesday": use YYYY-MM-DD/,
    ],
    [["history", "export", "--format", "xml"], "", /--format must be jsonl or csv/],
    [["history", "export", "--format", "csv", "--since", "2026-13-01"], "", /\[invalid_date\]/],
    [["history", "export", "--format", "csv", "--room", "nowhere"], "", /no room nowhere/],
    [["audit", "--limit", "-3"], "", /--limit must be a positive integer|error/],
    [
      ["certs", "reload"],
      "",
      /Cannot reload certificate: no server is running \[server_not_running\]/,
    ],
  ];
  for (const [args, stdin, want] of cases) {
    const r = await admin([...args, ...d], { stdin });
    assert(r.code !== 0, `${args.join(" ")} should fail: ${r.stdout}`);
    assertMatch(r.stderr, want, args.join(" "));
  }
  assertEquals(await snapshot(), state);
  assertEquals(await auditActions(dir.path), before);
});

Deno.test("a read of a data dir without a database fails and creates nothing", async () => {
  await using dir = await tempDir();
  const missing = `${dir.path}/typo`;
  for (const args of [["users", "list"], ["audit"], ["history", "search", "x"], ["stats"]]) {
    const r = await admin([...args, "--data", missing]);
    assertEquals(r.code, 1, args.join(" "));
    assertMatch(r.stderr, /there is no database \(check --data or CHAT_DATA\) \[no_database\]/);
  }
  assertEquals(await Deno.stat(missing).then(() => true, () => false), false);
});

Deno.test("invites: create prints the code once; list never shows it; revoke stops it", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  const created = await adminJson<{ code: string; invite: { id: number; usesLeft: number } }>([
    "invites",
    "create",
    "--uses",
    "3",
    "--expires",
    "2d",
    ...d,
  ]);
  assertMatch(created.code, /^[a-z2-7]{32}$/);
  assertEquals(created.invite.usesLeft, 3);
  const human = await adminOk([
    "invites",
    "create",
    "--uses",
    "unlimited",
    "--expires",
    "never",
    ...d,
  ]);
  assertMatch(human, /^Invite 2: [a-z2-7]{32}\nUses: unlimited; expires: -\.\n/);
  const listed = await adminOk(["invites", "list", ...d]);
  assert(!listed.includes(created.code));
  assertMatch(
    listed,
    /^ID\s+STATUS\s+USES LEFT\s+EXPIRES\s+CREATED\s+BY\n1\s+active\s+3\s+\d{4}-.*admin:tester\n2\s+active\s+unlimited\s+never/,
  );
  assertEquals(await adminOk(["invites", "revoke", "1", "--yes", ...d]), "Revoked invite 1.\n");
  const after = await adminJson<{ id: number; status: string }[]>(["invites", "list", ...d]);
  assertEquals(after.map((i) => [i.id, i.status]), [[1, "revoked"], [2, "active"]]);
  const trail = await auditActions(dir.path);
  assertEquals(trail, [
    "admin:tester invites.create invite 1 local",
    "admin:tester invites.create invite 2 local",
    "admin:tester invites.revoke invite 1 local",
  ]);
  assert(!JSON.stringify(await adminJson(["audit", ...d])).includes(created.code));
});

Deno.test("rooms: create with a topic, list, change the topic, archive and unarchive", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  assertEquals(
    await adminOk(["rooms", "create", "Ops", "--topic", "on call", ...d]),
    "Created room ops.\n",
  );
  await adminOk(["rooms", "create", "sales", ...d]);
  await adminOk(["rooms", "topic", "ops", "pager duty, week 12", ...d]);
  await adminOk(["rooms", "archive", "sales", "--yes", ...d]);
  type Room = { name: string; topic: string; archived: boolean };
  const active = await adminJson<Room[]>(["rooms", "list", ...d]);
  assertEquals(active.map((r) => [r.name, r.topic]), [["ops", "pager duty, week 12"]]);
  const all = await adminJson<Room[]>(["rooms", "list", "--all", ...d]);
  assertEquals(all.map((r) => [r.name, r.archived]), [["ops", false], ["sales", true]]);
  assertMatch(
    await adminOk(["rooms", "unarchive", "sales", ...d]),
    /^Unarchived sales \(no server running/,
  );
  assertEquals((await adminJson<Room[]>(["rooms", "list", ...d])).length, 2);
  assertEquals(await auditActions(dir.path), [
    "admin:tester rooms.create ops local",
    "admin:tester rooms.create sales local",
    "admin:tester rooms.topic ops local",
    "admin:tester rooms.archive sales local",
    "admin:tester rooms.unarchive sales local",
  ]);
});

Deno.test("audit filters by --since and --limit; stats without a server shows the database", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  {
    await using store = await openStore(dir.path);
    for (
      const [ts, action] of [[1000, "login"], [2000, "login_failed"], [
        Date.parse("2026-01-02T00:00:00Z"),
        "login",
      ]] as const
    ) {
      await store.audit({ ts, actor: "zoe", action, target: "zoe", remote: "192.0.2.7" });
    }
  }
  const since = await adminJson<AuditEntry[]>(["audit", "--since", "2026-01-01", ...d]);
  assertEquals(since.map((e) => [e.action, e.remote]), [["login", "192.0.2.7"]]);
  const last2 = await adminJson<AuditEntry[]>(["audit", "--limit", "2", ...d]);
  assertEquals(last2.map((e) => e.ts), [2000, Date.parse("2026-01-02T00:00:00Z")]);
  assertMatch(
    await adminOk(["audit", ...d]),
    /1970-01-01 00:00:01Z\s+zoe\s+login\s+zoe\s+192\.0\.2\.7/,
  );
  const stats = await adminJson<{ live: boolean; storage: StorageStats }>(["stats", ...d]);
  assertEquals([stats.live, stats.storage.users, stats.storage.engine.name], [false, 0, "sqlite"]);
  assert(stats.storage.engine.figures.fileBytes > 0);
  assertMatch(
    await adminOk(["stats", ...d]),
    /^No server is running on this data dir\.\nstored:\s+0 users, 0 rooms, 0 messages\nengine:\s+sqlite: file \d/,
  );
});
