// Owns the certificate files of a data dir for admin commands: where they live, reading them with
// clear errors, and issuing a new server certificate from an existing private CA.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import { ChatError } from "../errors.ts";
import type { CertInfo, KeyPairPem } from "../tls/certificate.ts";
import { validateKeyPair } from "../tls/certificate.ts";

x509.cryptoProvider.set(crypto);

/** Paths of the server pair and of the private CA (from `certs init --ca`). */
export interface CertPaths {
  certPath: string;
  keyPath: string;
  caDir: string;
  caCertPath: string;
  caKeyPath: string;
}

export function certPaths(dataDir: string): CertPaths {
  const caDir = join(dataDir, "ca");
  return {
    certPath: join(dataDir, "cert.pem"),
    keyPath: join(dataDir, "key.pem"),
    caDir,
    caCertPath: join(caDir, "ca.pem"),
    caKeyPath: join(caDir, "ca-key.pem"),
  };
}

/** True when `path` exists. */
export async function fileExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Reads a PEM file for `action`.
 * @throws {ChatError} `cert_missing` or `cert_unreadable` naming the file.
 */
export async function readPemFile(path: string, what: string, action: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ChatError("cert_missing", `Cannot ${action}: ${what} ${path} does not exist`);
    }
    throw new ChatError(
      "cert_unreadable",
      `Cannot ${action}: ${what} ${path} is unreadable (${(err as Error).message})`,
    );
  }
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1"]);

/** The names a certificate covers besides the loopback ones every generated certificate has. */
export function extraHostnames(info: CertInfo): string[] {
  return info.sans.filter((n) => !LOOPBACK.has(n.toLowerCase()));
}

const DAY_MS = 24 * 60 * 60 * 1000;
const KEY_ALGORITHMS: (EcKeyImportParams | RsaHashedImportParams)[] = [
  { name: "ECDSA", namedCurve: "P-256" },
  { name: "ECDSA", namedCurve: "P-384" },
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
];

async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    der = x509.PemConverter.decodeFirst(keyPem);
  } catch {
    throw new ChatError("key_invalid", "Cannot use the CA key: it is not PEM");
  }
  for (const alg of KEY_ALGORITHMS) {
    try {
      return await crypto.subtle.importKey("pkcs8", der, alg, false, ["sign"]);
    } catch { /* try the next type */ }
  }
  throw new ChatError(
    "key_invalid",
    "Cannot use the CA key: it is not a PKCS#8 ECDSA (P-256, P-384) or RSA key",
  );
}

function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) || 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function isIp(name: string): boolean {
  return /^(\d{1,3}\.){3}\d{1,3}$/.test(name) ||
    (name.includes(":") && /^[0-9a-f:.]+$/i.test(name));
}

/**
 * A new ECDSA P-256 server key and certificate signed by an existing CA: the same profile as
 * `generateCaAndServer` (SANs localhost, 127.0.0.1, ::1 plus `hostnames`; serverAuth; CA=false;
 * validity from one hour ago for `days`, default 825). Checks first that the CA key belongs to the
 * CA certificate and that the CA is valid now.
 */
export async function issueWithCa(
  ca: KeyPairPem,
  opts: { hostnames: string[]; days?: number; now?: Date },
): Promise<KeyPairPem> {
  const now = opts.now ?? new Date();
  await validateKeyPair(ca.certPem, ca.keyPem, now);
  const caCert = new x509.X509Certificate(ca.certPem);
  const basic = caCert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) {
    throw new ChatError(
      "cert_invalid",
      "Cannot issue a certificate: the CA certificate is not a CA",
    );
  }
  const signingKey = await importSigningKey(ca.keyPem);
  const keys = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  );
  const notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  const names: x509.JsonGeneralNames = [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ];
  for (const h of opts.hostnames) {
    if (!LOOPBACK.has(h.toLowerCase())) names.push({ type: isIp(h) ? "ip" : "dns", value: h });
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [opts.hostnames[0] ?? "localhost"] }],
    issuer: caCert.subjectName,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (opts.days ?? 825) * DAY_MS),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: signingKey.algorithm.name === "ECDSA"
      ? { name: "ECDSA", hash: "SHA-256" } as EcdsaParams
      : signingKey.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const keyDer = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certPem: cert.toString("pem"),
    keyPem: x509.PemConverter.encode(keyDer, "PRIVATE KEY"),
  };
}
