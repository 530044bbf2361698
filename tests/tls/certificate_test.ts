// Tests src/tls/certificate.ts: generation, inspection, key-pair validation, files on disk.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { connect } from "node:tls";
import { ChatError } from "../../src/errors.ts";
import {
  certificateInfo,
  fingerprintSha256,
  generateCaAndServer,
  generateSelfSigned,
  loadOrCreateServerCert,
  validateKeyPair,
  writeKeyPairFiles,
} from "../../src/tls/certificate.ts";
import { tempDir } from "../harness/temp_dir.ts";

const FINGERPRINT = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;
const DAY_MS = 24 * 60 * 60 * 1000;
const posix = Deno.build.os !== "windows";

function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertEquals(actual: unknown, expected: unknown, msg?: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${msg ?? "not equal"}: got ${a}, expected ${e}`);
}

async function assertChatError(
  fn: () => Promise<unknown>,
  code: string,
  includes?: string,
): Promise<ChatError> {
  try {
    await fn();
  } catch (err) {
    assert(err instanceof ChatError, `expected ChatError, got ${err}`);
    assertEquals(err.code, code, `code of "${err.message}"`);
    assert(err.message.startsWith("Cannot "), `message "${err.message}"`);
    if (includes) assert(err.message.includes(includes), `"${err.message}" lacks "${includes}"`);
    return err;
  }
  throw new Error(`expected ChatError ${code}, nothing thrown`);
}

interface PeerView {
  fingerprint256?: string;
  authorized: boolean;
  error?: Error;
}

/** Serves `pair` over Deno TLS on 127.0.0.1:0; returns what a node:tls client trusting `ca` saw. */
async function handshake(pair: { certPem: string; keyPem: string }, ca: string): Promise<PeerView> {
  using listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: pair.certPem,
    key: pair.keyPem,
  });
  const serverSide = (async () => {
    const conn = await listener.accept();
    try {
      await conn.handshake();
      // Wait for the client to hang up so both sides close cleanly.
      await conn.read(new Uint8Array(1));
    } catch {
      // A client that rejects the certificate aborts the handshake.
    } finally {
      conn.close();
    }
  })();
  const seen = await new Promise<PeerView>((resolve) => {
    const socket = connect({
      host: "127.0.0.1",
      port: listener.addr.port,
      ca,
      servername: "localhost",
    });
    let view: PeerView = { authorized: false };
    socket.once("secureConnect", () => {
      view = {
        fingerprint256: socket.getPeerCertificate().fingerprint256,
        authorized: socket.authorized,
      };
      socket.end();
    });
    socket.once("error", (error) => {
      view = { authorized: false, error };
    });
    socket.once("close", () => resolve(view));
  });
  await serverSide;
  return seen;
}

Deno.test("generateSelfSigned() round-trips through certificateInfo()", async () => {
  const now = new Date("2030-01-01T00:00:00Z");
  const pair = await generateSelfSigned({ hostnames: ["chat.example", "10.1.2.3"], now });
  assert(pair.certPem.startsWith("-----BEGIN CERTIFICATE-----"));
  assert(pair.keyPem.startsWith("-----BEGIN PRIVATE KEY-----"));

  const info = await certificateInfo(pair.certPem);
  assertEquals(info.subject, "CN=chat.example");
  assertEquals(info.issuer, "CN=chat.example");
  assertEquals(info.sans, ["localhost", "127.0.0.1", "::1", "chat.example", "10.1.2.3"]);
  assertEquals(info.notBefore.getTime(), now.getTime() - 60 * 60 * 1000);
  assertEquals(info.notAfter.getTime(), info.notBefore.getTime() + 825 * DAY_MS);
  assert(FINGERPRINT.test(info.fingerprintSha256), info.fingerprintSha256);
  assertEquals(info.selfSigned, true);
  await validateKeyPair(pair.certPem, pair.keyPem, now);
});

Deno.test("generateSelfSigned() sets server extensions and a positive 16-byte serial", async () => {
  const pair = await generateSelfSigned({ hostnames: [] });
  const cert = new x509.X509Certificate(pair.certPem);
  assertEquals(cert.subject, "CN=localhost");
  assertEquals(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  assertEquals(
    cert.getExtension(x509.KeyUsagesExtension)?.usages,
    x509.KeyUsageFlags.digitalSignature,
  );
  assertEquals(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages, [
    x509.ExtendedKeyUsage.serverAuth,
  ]);
  assertEquals(cert.serialNumber.length, 32);
  assert(parseInt(cert.serialNumber.slice(0, 2), 16) < 0x80, cert.serialNumber);
  assertEquals((await certificateInfo(pair.certPem)).sans, ["localhost", "127.0.0.1", "::1"]);
});

Deno.test("certificateInfo() describes the leaf of a chain", async () => {
  const pair = await generateCaAndServer({ hostnames: ["chat.example"] });
  const info = await certificateInfo(pair.certPem + pair.caCertPem);
  assertEquals(info.subject, "CN=chat.example");
  assertEquals(info.selfSigned, false);
  assertEquals(info.sans, ["localhost", "127.0.0.1", "::1", "chat.example"]);
  const ca = await certificateInfo(pair.caCertPem);
  assertEquals(ca.selfSigned, true);
  assertEquals(info.issuer, ca.subject);
});

Deno.test("fingerprintSha256() formats uppercase colon hex like node:tls", async () => {
  const fp = await fingerprintSha256(new TextEncoder().encode("abc"));
  assertEquals(
    fp,
    "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD",
  );
  assert(FINGERPRINT.test(fp));
});

Deno.test("certificateInfo() fingerprint matches what a TLS client sees", async () => {
  const pair = await generateSelfSigned({ hostnames: [] });
  const info = await certificateInfo(pair.certPem);
  const seen = await handshake(pair, pair.certPem);
  assertEquals(seen.authorized, true, `error ${seen.error}`);
  assertEquals(seen.fingerprint256, info.fingerprintSha256);
});

Deno.test("a TLS client rejects a generated certificate it was not told to trust", async () => {
  const pair = await generateSelfSigned({ hostnames: [] });
  const stranger = await generateCaAndServer({ hostnames: [] });
  const seen = await handshake(pair, stranger.caCertPem);
  assertEquals(seen.authorized, false);
  assertEquals((seen.error as { code?: string } | undefined)?.code, "DEPTH_ZERO_SELF_SIGNED_CERT");
});

Deno.test("generateCaAndServer() yields a server cert that verifies against the CA", async () => {
  const pair = await generateCaAndServer({ hostnames: [] });
  await validateKeyPair(pair.certPem, pair.keyPem);
  await validateKeyPair(pair.caCertPem, pair.caKeyPem);
  const caCert = new x509.X509Certificate(pair.caCertPem);
  assertEquals(caCert.getExtension(x509.BasicConstraintsExtension)?.ca, true);
  assert(
    (caCert.getExtension(x509.KeyUsagesExtension)!.usages & x509.KeyUsageFlags.keyCertSign) !== 0,
  );
  const seen = await handshake(pair, pair.caCertPem);
  assertEquals(seen.authorized, true, `error ${seen.error}`);
  assertEquals(seen.fingerprint256, (await certificateInfo(pair.certPem)).fingerprintSha256);
});

Deno.test("validateKeyPair() accepts a non-P-256 key (RSA) that matches", async () => {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    hash: "SHA-256",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
  };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ name: "CN=rsa", keys });
  const keyPem = x509.PemConverter.encode(
    await crypto.subtle.exportKey("pkcs8", keys.privateKey),
    "PRIVATE KEY",
  );
  await validateKeyPair(cert.toString("pem"), keyPem);
  const other = await generateSelfSigned({ hostnames: [] });
  await assertChatError(
    () => validateKeyPair(cert.toString("pem"), other.keyPem),
    "cert_key_mismatch",
  );
  await assertChatError(() => validateKeyPair(other.certPem, keyPem), "cert_key_mismatch");
});

Deno.test("validateKeyPair() rejects bad input with a stable code", async (t) => {
  const now = new Date();
  const good = await generateSelfSigned({ hostnames: [] });
  const other = await generateSelfSigned({ hostnames: [] });
  const expired = await generateSelfSigned({
    hostnames: [],
    days: 1,
    now: new Date(now.getTime() - 10 * DAY_MS),
  });
  const future = await generateSelfSigned({
    hostnames: [],
    now: new Date(now.getTime() + 10 * DAY_MS),
  });
  const cases: { name: string; cert: string; key: string; code: string; includes?: string }[] = [
    {
      name: "a key from another certificate",
      cert: good.certPem,
      key: other.keyPem,
      code: "cert_key_mismatch",
    },
    {
      name: "an expired certificate",
      cert: expired.certPem,
      key: expired.keyPem,
      code: "cert_expired",
    },
    {
      name: "a not-yet-valid certificate",
      cert: future.certPem,
      key: future.keyPem,
      code: "cert_not_yet_valid",
    },
    {
      name: "garbage instead of a certificate",
      cert: "hello",
      key: good.keyPem,
      code: "cert_invalid",
    },
    {
      name: "a CERTIFICATE block that is not DER",
      cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
      key: good.keyPem,
      code: "cert_invalid",
    },
    {
      name: "a key PEM in place of the certificate",
      cert: good.keyPem,
      key: good.keyPem,
      code: "cert_invalid",
    },
    { name: "garbage instead of a key", cert: good.certPem, key: "hello", code: "key_invalid" },
    {
      name: "a certificate in place of the key",
      cert: good.certPem,
      key: good.certPem,
      code: "key_invalid",
    },
    {
      name: "a PKCS#8 block that is not a key",
      cert: good.certPem,
      key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
      code: "key_invalid",
    },
    {
      name: "a SEC1 key, with a conversion hint",
      cert: good.certPem,
      key: "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
      code: "key_invalid",
      includes: "openssl pkcs8",
    },
  ];
  for (const c of cases) {
    await t.step(`validateKeyPair() rejects ${c.name}`, async () => {
      const err = await assertChatError(
        () => validateKeyPair(c.cert, c.key, now),
        c.code,
        c.includes,
      );
      assert(err.message.startsWith("Cannot use certificate: "), err.message);
    });
  }
});

Deno.test("writeKeyPairFiles() creates a private dir and a 0600 key atomically", async () => {
  await using tmp = await tempDir();
  const dir = `${tmp.path}/nested/certs`;
  const pair = await generateSelfSigned({ hostnames: [] });
  const paths = await writeKeyPairFiles(dir, pair);
  assertEquals(paths, { certPath: `${dir}/cert.pem`, keyPath: `${dir}/key.pem` });
  assertEquals(await Deno.readTextFile(paths.certPath), pair.certPem);
  assertEquals(await Deno.readTextFile(paths.keyPath), pair.keyPem);
  if (posix) {
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assertEquals((await Deno.stat(paths.keyPath)).mode! & 0o777, 0o600);
  }
  const leftovers = [];
  for await (const e of Deno.readDir(dir)) leftovers.push(e.name);
  assertEquals(leftovers.sort(), ["cert.pem", "key.pem"]);

  // Replacing an existing, too-open key still leaves it at 0600, under custom names.
  const named = await writeKeyPairFiles(dir, pair, { cert: "server.crt", key: "server.key" });
  if (posix) await Deno.chmod(named.keyPath, 0o644);
  await writeKeyPairFiles(dir, pair, { cert: "server.crt", key: "server.key" });
  if (posix) assertEquals((await Deno.stat(named.keyPath)).mode! & 0o777, 0o600);
});

Deno.test("loadOrCreateServerCert() creates a pair once, then reuses it", async () => {
  await using tmp = await tempDir();
  const first = await loadOrCreateServerCert({ dataDir: tmp.path, hostnames: ["chat.example"] });
  assertEquals(first.created, true);
  assertEquals(first.certPath, `${tmp.path}/cert.pem`);
  assertEquals(first.keyPath, `${tmp.path}/key.pem`);
  assert(first.info.sans.includes("chat.example"));
  assertEquals(first.info.selfSigned, true);

  const second = await loadOrCreateServerCert({ dataDir: tmp.path });
  assertEquals(second.created, false);
  assertEquals(second.info.fingerprintSha256, first.info.fingerprintSha256);
  assertEquals(second.keyPem, first.keyPem);
});

Deno.test("loadOrCreateServerCert() uses explicit paths and never generates them", async () => {
  await using tmp = await tempDir();
  const pair = await generateCaAndServer({ hostnames: [] });
  const { certPath, keyPath } = await writeKeyPairFiles(tmp.path, pair, {
    cert: "server.crt",
    key: "server.key",
  });
  const loaded = await loadOrCreateServerCert({ dataDir: `${tmp.path}/data`, certPath, keyPath });
  assertEquals(loaded.created, false);
  assertEquals(loaded.certPem, pair.certPem);
  assertEquals(loaded.info.selfSigned, false);

  await assertChatError(
    () => loadOrCreateServerCert({ dataDir: tmp.path, certPath: `${tmp.path}/nope.crt`, keyPath }),
    "cert_missing",
    `Cannot read certificate: ${tmp.path}/nope.crt: not found`,
  );
  await assertChatError(
    () => loadOrCreateServerCert({ dataDir: tmp.path, certPath, keyPath: `${tmp.path}/nope.key` }),
    "cert_missing",
    "not found",
  );
  const stranger = await generateSelfSigned({ hostnames: [] });
  const mixed = await writeKeyPairFiles(tmp.path, {
    certPem: pair.certPem,
    keyPem: stranger.keyPem,
  });
  await assertChatError(
    () => loadOrCreateServerCert({ dataDir: tmp.path, ...mixed }),
    "cert_key_mismatch",
  );
});

Deno.test("loadOrCreateServerCert() refuses to replace half a pair", async () => {
  await using tmp = await tempDir();
  await loadOrCreateServerCert({ dataDir: tmp.path, hostnames: [] });
  await Deno.remove(`${tmp.path}/key.pem`);
  await assertChatError(
    () => loadOrCreateServerCert({ dataDir: tmp.path, hostnames: [] }),
    "cert_missing",
    `${tmp.path}/key.pem: not found`,
  );
});

Deno.test({
  name: "loadOrCreateServerCert() rejects a key readable by group or others",
  ignore: !posix,
  fn: async () => {
    await using tmp = await tempDir();
    const { keyPath } = await loadOrCreateServerCert({ dataDir: tmp.path, hostnames: [] });
    for (const mode of [0o644, 0o640, 0o604]) {
      await Deno.chmod(keyPath, mode);
      await assertChatError(
        () => loadOrCreateServerCert({ dataDir: tmp.path }),
        "key_permissions",
        `chmod 600 ${keyPath}`,
      );
    }
    await Deno.chmod(keyPath, 0o400);
    await loadOrCreateServerCert({ dataDir: tmp.path });
  },
});

Deno.test("loadOrCreateServerCert() tells how to replace an expired generated pair", async () => {
  await using tmp = await tempDir();
  const now = new Date();
  await loadOrCreateServerCert({
    dataDir: tmp.path,
    hostnames: [],
    now: new Date(now.getTime() - 900 * DAY_MS),
  });
  await assertChatError(
    () => loadOrCreateServerCert({ dataDir: tmp.path, now }),
    "cert_expired",
    `delete ${tmp.path}/cert.pem`,
  );
});
