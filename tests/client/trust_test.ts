// Unit tests of the TOFU store, the trust decision table, address parsing and backoff.
import { assert, assertEquals, assertThrows } from "../harness/assert.ts";
import { ChatError } from "../../src/errors.ts";
import {
  KnownServers,
  knownServersPath,
  parseFingerprint,
  serverKey,
} from "../../src/client/known_servers.ts";
import { decideTrust, type PeerFacts } from "../../src/client/trust.ts";
import { Backoff } from "../../src/client/backoff.ts";
import { parseAddress } from "../../src/client/mod.ts";
import { tempDir } from "../harness/temp_dir.ts";

const FP_A = Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, "0").toUpperCase())
  .join(":");
const FP_B = FP_A.replace(/^00/, "FF");
const peer = (over: Partial<PeerFacts> = {}): PeerFacts => ({
  key: "chat.example:7443",
  fingerprint: FP_A,
  caVerified: false,
  reason: "DEPTH_ZERO_SELF_SIGNED_CERT",
  ...over,
});

Deno.test("parseFingerprint() accepts the usual spellings and rejects the rest", () => {
  const bare = FP_A.replaceAll(":", "");
  for (
    const s of [`sha256:${FP_A}`, FP_A, bare.toLowerCase(), `SHA256:${bare}`, ` sha-256:${FP_A} `]
  ) {
    assertEquals(parseFingerprint(s), FP_A, s);
  }
  for (const s of ["", "sha256:", "sha256:abc", `sha1:${FP_A}`, FP_A + ":00", "zz".repeat(32)]) {
    assertEquals(parseFingerprint(s), null, s);
  }
});

Deno.test("serverKey() lowercases hosts and brackets IPv6 literals", () => {
  assertEquals(serverKey("Chat.Example", 7443), "chat.example:7443");
  assertEquals(serverKey("::1", 7443), "[::1]:7443");
});

Deno.test("knownServersPath() prefers CHAT_CONFIG_DIR, then XDG_CONFIG_HOME, then HOME", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  assertEquals(knownServersPath(env({ CHAT_CONFIG_DIR: "/c/", HOME: "/h" })), "/c/known_servers");
  assertEquals(
    knownServersPath(env({ XDG_CONFIG_HOME: "/x", HOME: "/h" })),
    "/x/chat/known_servers",
  );
  assertEquals(knownServersPath(env({ HOME: "/h" })), "/h/.config/chat/known_servers");
  assertThrows(() => knownServersPath(env({})), ChatError, "config directory");
});

Deno.test("KnownServers remembers, replaces and survives comments and junk lines", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/sub/known_servers`;
  const a = await KnownServers.load(path);
  assertEquals(a.size, 0);
  await a.add("one:1", FP_A);
  await a.add("two:2", FP_B);
  await a.add("one:1", FP_B);
  await Deno.writeTextFile(path, "garbage line\n# comment\n", { append: true });
  const b = await KnownServers.load(path);
  assertEquals(b.get("one:1")?.fingerprint, FP_B);
  assertEquals(b.get("two:2")?.fingerprint, FP_B);
  assertEquals(b.size, 2);
  const text = await Deno.readTextFile(path);
  assertEquals(text.split("\n").filter((l) => l.startsWith("one:1")).length, 1);
  assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
  assertEquals((await Deno.stat(`${dir.path}/sub`)).mode! & 0o777, 0o700);
});

Deno.test("decideTrust(): a CA-verified certificate is accepted without remembering it", () => {
  assertEquals(decideTrust(peer({ caVerified: true }), {}), {
    kind: "accept",
    how: "ca",
    remember: false,
  });
});

Deno.test("decideTrust(): an unknown self-signed certificate needs the user", () => {
  assertEquals(decideTrust(peer(), {}), { kind: "ask" });
});

Deno.test("decideTrust(): the remembered fingerprint is accepted, a changed one refused loudly", () => {
  const known = { fingerprint: FP_A, line: 3, path: "/k" };
  assertEquals(decideTrust(peer(), { known }), { kind: "accept", how: "known", remember: false });
  const d = decideTrust(peer({ fingerprint: FP_B }), { known });
  assert(d.kind === "refuse");
  assertEquals(d.error.code, "cert_changed");
  assert(
    d.banner?.includes("HAS CHANGED") && d.banner.includes("line 3 of") && d.banner.includes(FP_B),
  );
});

Deno.test("decideTrust(): --trust-fingerprint accepts exactly that certificate, even over a known one", () => {
  const known = { fingerprint: FP_B, line: 1, path: "/k" };
  assertEquals(decideTrust(peer(), { pinned: FP_A, known }), {
    kind: "accept",
    how: "pinned",
    remember: true,
  });
  const d = decideTrust(peer({ caVerified: true }), { pinned: FP_B });
  assert(d.kind === "refuse" && d.error.code === "cert_mismatch");
});

Deno.test("decideTrust(): with --ca an unverified chain is refused, never offered for TOFU", () => {
  const d = decideTrust(peer(), { caFile: "ca.pem" });
  assert(d.kind === "refuse" && d.error.code === "cert_untrusted");
});

Deno.test("parseAddress() handles names, ports and IPv6", () => {
  assertEquals(parseAddress(undefined), { host: "localhost", port: 7443 });
  assertEquals(parseAddress("chat.example"), { host: "chat.example", port: 7443 });
  assertEquals(parseAddress("chat.example:8000"), { host: "chat.example", port: 8000 });
  assertEquals(parseAddress("[::1]:7000"), { host: "::1", port: 7000 });
  assertEquals(parseAddress("[::1]"), { host: "::1", port: 7443 });
  assertEquals(parseAddress("fe80::1"), { host: "fe80::1", port: 7443 });
  for (const bad of ["host:0", "host:99999", "host:x", ":7443", "[::1]:"]) {
    assertThrows(() => parseAddress(bad), ChatError, "HOST[:PORT]");
  }
});

Deno.test("Backoff grows exponentially to a cap, with jitter between half and all", () => {
  const lo = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
  const hi = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
  assertEquals(Array.from({ length: 6 }, () => lo.next()), [50, 100, 200, 400, 500, 500]);
  assertEquals(Array.from({ length: 6 }, () => hi.next()), [100, 200, 400, 800, 1000, 1000]);
  lo.reset();
  assertEquals([lo.attempt, lo.next()], [0, 50]);
});
