// `chat admin certs` as a real process without a server: init (self-signed and private CA), show,
// import with its checks, rotate keeping the names.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { assert, assertEquals, assertMatch, assertNotEquals } from "../harness/assert.ts";
import { certificateInfo, generateSelfSigned } from "../../src/tls/certificate.ts";
import { admin, adminJson, adminOk } from "./helpers.ts";
import { tempDir } from "../harness/temp_dir.ts";

interface Shown {
  fingerprintSha256: string;
  sans: string[];
  subject: string;
  issuer: string;
  selfSigned: boolean;
}

async function fileFingerprint(path: string): Promise<string> {
  return (await certificateInfo(await Deno.readTextFile(path))).fingerprintSha256;
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

Deno.test("certs init writes a self-signed pair (key 0600) and show describes it", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  const made = await adminJson<Shown & { reloaded: boolean }>([
    "certs",
    "init",
    "--hostname",
    "chat.example.com",
    "--hostname",
    "10.0.0.5",
    "--days",
    "30",
    ...d,
  ]);
  assertEquals(made.reloaded, false);
  assertEquals(made.fingerprintSha256, await fileFingerprint(`${dir.path}/cert.pem`));
  assertEquals(made.sans, ["localhost", "127.0.0.1", "::1", "chat.example.com", "10.0.0.5"]);
  assertEquals(await mode(`${dir.path}/key.pem`), 0o600);
  const shown = await adminJson<Shown & { serving: string | null }>(["certs", "show", ...d]);
  assertEquals([shown.fingerprintSha256, shown.serving, shown.selfSigned], [
    made.fingerprintSha256,
    null,
    true,
  ]);
  const human = await adminOk(["certs", "show", ...d]);
  assertMatch(human, /subject:\s+CN=chat\.example\.com\n/);
  assertMatch(human, /valid until:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \((29|30) days left\)/);
  assertMatch(human, /sha-256:\s+([0-9A-F]{2}:){31}[0-9A-F]{2}\n/);

  const again = await admin(["certs", "init", ...d]);
  assertEquals(again.code, 1);
  assertMatch(
    again.stderr,
    /cert\.pem and .*key\.pem exist; use certs rotate, or --force to replace \[cert_exists\]/,
  );
  assertEquals(await fileFingerprint(`${dir.path}/cert.pem`), made.fingerprintSha256);
  const audit = await adminJson<{ action: string; target: string }[]>(["audit", ...d]);
  assertEquals(audit.map((e) => [e.action, e.target]), [["certs.init", made.fingerprintSha256]]);
});

Deno.test("certs import checks the pair and refuses a mismatch, a missing or a broken key", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  await adminOk(["certs", "init", ...d]);
  const original = await fileFingerprint(`${dir.path}/cert.pem`);
  const a = await generateSelfSigned({ hostnames: ["a.example"] });
  const b = await generateSelfSigned({ hostnames: ["b.example"] });
  const f = (name: string) => `${dir.path}/${name}`;
  await Deno.writeTextFile(f("a.crt"), a.certPem);
  await Deno.writeTextFile(f("a.key"), a.keyPem);
  await Deno.writeTextFile(f("b.key"), b.keyPem);
  await Deno.writeTextFile(
    f("junk.key"),
    "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
  );
  const cases: [string, string, RegExp][] = [
    [
      f("a.crt"),
      f("b.key"),
      /Cannot use certificate: the private key does not belong to CN=a\.example \[cert_key_mismatch\]/,
    ],
    [
      f("a.crt"),
      f("missing.key"),
      /Cannot import certificate: private key .*missing\.key does not exist \[cert_missing\]/,
    ],
    [f("a.key"), f("a.key"), /\[cert_invalid\]/],
    [f("a.crt"), f("junk.key"), /\[key_invalid\]/],
    [dir.path, f("a.key"), /Cannot import certificate: certificate .* is unreadable/],
  ];
  for (const [cert, key, want] of cases) {
    const r = await admin(["certs", "import", "--cert", cert, "--key", key, ...d]);
    assertEquals(r.code, 1, `${cert} ${key}`);
    assertMatch(r.stderr, want);
    assertEquals(await fileFingerprint(f("cert.pem")), original);
  }
  const ok = await adminJson<Shown>([
    "certs",
    "import",
    "--cert",
    f("a.crt"),
    "--key",
    f("a.key"),
    ...d,
  ]);
  assertEquals(ok.fingerprintSha256, (await certificateInfo(a.certPem)).fingerprintSha256);
  assertEquals(await Deno.readTextFile(f("key.pem")), a.keyPem);
  assertEquals(await mode(f("key.pem")), 0o600);
});

Deno.test("certs rotate asks first, makes a new key, and keeps the certificate's names", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  const first = await adminJson<Shown>(["certs", "init", "--hostname", "chat.example.com", ...d]);
  const refused = await admin(["certs", "rotate", ...d]);
  assertEquals(refused.code, 1);
  assertMatch(refused.stderr, /Cannot rotate certificate: it needs confirmation/);
  const keyBefore = await Deno.readTextFile(`${dir.path}/key.pem`);
  const rotated = await adminJson<Shown & { previous: string }>(["certs", "rotate", "--yes", ...d]);
  assertEquals(rotated.previous, first.fingerprintSha256);
  assertNotEquals(rotated.fingerprintSha256, first.fingerprintSha256);
  assertEquals(rotated.sans, first.sans);
  assertEquals(rotated.subject, "CN=chat.example.com");
  assertNotEquals(await Deno.readTextFile(`${dir.path}/key.pem`), keyBefore);
  assertEquals(await fileFingerprint(`${dir.path}/cert.pem`), rotated.fingerprintSha256);
});

Deno.test("certs init --ca makes a private CA; rotate signs the new certificate with it", async () => {
  await using dir = await tempDir();
  const d = ["--data", dir.path];
  await adminOk(["certs", "init", ...d]);
  const refused = await admin(["certs", "init", "--ca", "--force", ...d]);
  assertMatch(refused.stderr, /\[confirmation_required\]/);
  const made = await adminJson<Shown & { ca: { certPath: string; keyPath: string } }>([
    "certs",
    "init",
    "--ca",
    "--force",
    "--yes",
    "--hostname",
    "team.example",
    ...d,
  ]);
  assertEquals(made.selfSigned, false);
  assertEquals(await mode(made.ca.keyPath), 0o600);
  const caCert = new x509.X509Certificate(await Deno.readTextFile(made.ca.certPath));
  assertEquals(made.issuer, caCert.subject);
  const rotated = await adminJson<Shown>(["certs", "rotate", "--yes", ...d]);
  assertNotEquals(rotated.fingerprintSha256, made.fingerprintSha256);
  assertEquals([rotated.issuer, rotated.sans], [caCert.subject, made.sans]);
  const leaf = new x509.X509Certificate(await Deno.readTextFile(`${dir.path}/cert.pem`));
  assert(await leaf.verify({ publicKey: caCert, signatureOnly: true }), "signed by the CA");
  assert(!(await leaf.isSelfSigned()));

  // Without the CA key the new certificate cannot be signed: a clear refusal, nothing changed.
  await Deno.rename(made.ca.keyPath, `${dir.path}/elsewhere.pem`);
  const noKey = await admin(["certs", "rotate", "--yes", ...d]);
  assertEquals(noKey.code, 1);
  assertMatch(
    noKey.stderr,
    /was issued by .* and its CA key is not at .*ca-key\.pem; give --ca-cert and --ca-key/,
  );
  assertEquals(await fileFingerprint(`${dir.path}/cert.pem`), rotated.fingerprintSha256);
  const withKey = await adminJson<Shown>([
    "certs",
    "rotate",
    "--yes",
    "--ca-key",
    `${dir.path}/elsewhere.pem`,
    ...d,
  ]);
  assertEquals(withKey.issuer, caCert.subject);
});
