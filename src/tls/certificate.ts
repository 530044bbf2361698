// Owns TLS certificates: generating, describing, validating, writing and loading key pairs.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { ChatError, type ErrorCode } from "../errors.ts";

x509.cryptoProvider.set(crypto);

/** What the server and the admin CLI show about a certificate. */
export interface CertInfo {
  /** Subject distinguished name, e.g. `CN=localhost`. */
  subject: string;
  /** Issuer distinguished name; equals `subject` for a self-signed certificate. */
  issuer: string;
  /** Subject alternative names as bare values (`localhost`, `127.0.0.1`, `::1`), in cert order. */
  sans: string[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER certificate as uppercase colon hex, like node:tls `fingerprint256`. */
  fingerprintSha256: string;
  /** True when the issuer is the subject and the certificate's own key verifies its signature. */
  selfSigned: boolean;
}

/** A certificate (possibly a chain, leaf first) and its PKCS#8 private key, both PEM. */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

/** Options shared by the generators. */
export interface GenerateOptions {
  /**
   * Extra names the certificate is valid for, besides localhost, 127.0.0.1 and ::1. IP literals
   * become IP SANs, everything else DNS SANs. Default: `[Deno.hostname()]` when the `sys`
   * permission for it is granted, else none.
   */
  hostnames?: string[];
  /** Validity in days. Default 825 (the longest lifetime Apple platforms accept). */
  days?: number;
  /** The clock; validity starts one hour before it to tolerate skew. Default: `new Date()`. */
  now?: Date;
}

/** A private CA and a server certificate it signed. */
export interface CaAndServerPem extends KeyPairPem {
  caCertPem: string;
  caKeyPem: string;
}

/** The result of {@linkcode loadOrCreateServerCert}. */
export interface LoadedServerCert extends KeyPairPem {
  certPath: string;
  keyPath: string;
  /** True when this call generated (and wrote) a new self-signed pair. */
  created: boolean;
  info: CertInfo;
}

const DEFAULT_DAYS = 825;
const BACKDATE_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const EC_P256: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGN_SHA256: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const LOOPBACK_SANS: x509.JsonGeneralNames = [
  { type: "dns", value: "localhost" },
  { type: "ip", value: "127.0.0.1" },
  { type: "ip", value: "::1" },
];

/**
 * Generates an ECDSA P-256 key and a self-signed server certificate for it: SANs localhost,
 * 127.0.0.1, ::1 plus `hostnames`; CN the first hostname (or `localhost`); CA=false,
 * keyUsage digitalSignature, extendedKeyUsage serverAuth; 16-byte random serial.
 * `keyPem` is PKCS#8 (`BEGIN PRIVATE KEY`), which `Deno.listenTls` accepts.
 */
export async function generateSelfSigned(opts: GenerateOptions = {}): Promise<KeyPairPem> {
  const hostnames = resolveHostnames(opts.hostnames);
  const validity = validityOf(opts);
  const keys = await generateKeys();
  const name = commonName(hostnames[0] ?? "localhost");
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: name,
    issuer: name,
    ...validity,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      ...serverExtensions(hostnames),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportPkcs8(keys.privateKey) };
}

/**
 * Generates a private CA (CA=true, pathLength 0, keyCertSign + cRLSign) and a server certificate
 * it signs, with the same names, validity and key type as {@linkcode generateSelfSigned}. Clients
 * trust `caCertPem`; the server serves `certPem`/`keyPem`.
 */
export async function generateCaAndServer(opts: GenerateOptions = {}): Promise<CaAndServerPem> {
  const hostnames = resolveHostnames(opts.hostnames);
  const validity = validityOf(opts);
  const caKeys = await generateKeys();
  const caName = commonName(`chat local CA (${hostnames[0] ?? "localhost"})`);
  const caCert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: caName,
    issuer: caName,
    ...validity,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: commonName(hostnames[0] ?? "localhost"),
    issuer: caCert.subjectName,
    ...validity,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      ...serverExtensions(hostnames),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return {
    caCertPem: caCert.toString("pem"),
    caKeyPem: await exportPkcs8(caKeys.privateKey),
    certPem: cert.toString("pem"),
    keyPem: await exportPkcs8(keys.privateKey),
  };
}

/**
 * Describes the first (leaf) certificate of a PEM file or chain.
 * @throws {ChatError} `cert_invalid` when the PEM holds no parsable certificate.
 */
export async function certificateInfo(certPem: string): Promise<CertInfo> {
  return await describe(parseLeaf(certPem));
}

/** SHA-256 of DER bytes as uppercase colon-separated hex (`AB:CD:…`, 32 pairs). */
export async function fingerprintSha256(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/**
 * Checks that `keyPem` is the private key of the leaf certificate in `certPem` and that the
 * certificate is valid at `now` (default: the current time).
 * Supported keys: PKCS#8 ECDSA (P-256/P-384/P-521), RSA and Ed25519.
 * @throws {ChatError} `cert_invalid`, `key_invalid`, `cert_key_mismatch`, `cert_expired` or
 * `cert_not_yet_valid`.
 */
export async function validateKeyPair(
  certPem: string,
  keyPem: string,
  now: Date = new Date(),
): Promise<void> {
  const cert = parseLeaf(certPem);
  const key = await importPrivateKey(keyPem);
  const keySpki = await publicSpkiOf(key.privateKey, key.algorithm);
  const certSpki = await normalizedCertSpki(cert, key.algorithm);
  if (certSpki === null || !bytesEqual(keySpki, certSpki)) {
    throw new ChatError(
      "cert_key_mismatch",
      `Cannot use certificate: the private key does not belong to ${cert.subject}`,
    );
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    throw new ChatError(
      "cert_expired",
      `Cannot use certificate: it expired on ${cert.notAfter.toISOString()}`,
    );
  }
  if (now.getTime() < cert.notBefore.getTime()) {
    throw new ChatError(
      "cert_not_yet_valid",
      `Cannot use certificate: it is not valid before ${cert.notBefore.toISOString()}`,
    );
  }
}

/**
 * Writes `pair` as `<dir>/cert.pem` (mode 0644) and `<dir>/key.pem` (mode 0600), or under the
 * given `names` (plain file names inside `dir`). Creates `dir` (mode 0700) when missing. Each file
 * is written to a temporary file in `dir` and renamed over the target, so a reader never sees half
 * a file; existing files are replaced. Returns the paths written.
 */
export async function writeKeyPairFiles(
  dir: string,
  pair: KeyPairPem,
  names: { cert?: string; key?: string } = {},
): Promise<{ certPath: string; keyPath: string }> {
  await ensureDir(dir);
  const certPath = await writeAtomic(dir, names.cert ?? "cert.pem", pair.certPem, 0o644);
  const keyPath = await writeAtomic(dir, names.key ?? "key.pem", pair.keyPem, 0o600);
  return { certPath, keyPath };
}

/** Options of {@linkcode loadOrCreateServerCert}. */
export interface LoadOrCreateOptions {
  /** Where the generated pair lives (`cert.pem`, `key.pem`). */
  dataDir: string;
  /** An operator-supplied certificate; with `keyPath`, nothing is ever generated. */
  certPath?: string;
  /** An operator-supplied private key (PKCS#8 PEM). */
  keyPath?: string;
  /** Names for a generated certificate; see {@linkcode GenerateOptions.hostnames}. */
  hostnames?: string[];
  /** The clock for validity checks and generation. Default: `new Date()`. */
  now?: Date;
}

/**
 * Loads the server's certificate and key, generating a self-signed pair in `dataDir` on first run.
 *
 * - With `certPath` or `keyPath`, the pair is operator-supplied: it is read and validated, never
 *   generated (a missing one of the two defaults to its file in `dataDir`).
 * - Otherwise `<dataDir>/cert.pem` and `<dataDir>/key.pem` are used; when neither exists a
 *   self-signed pair is generated and written (`created: true`); when only one exists, that is an
 *   error rather than a silent overwrite.
 * - On POSIX the key file must not be accessible by group or others.
 *
 * MUST NOT run concurrently for the same `dataDir` (two first runs could interleave their writes);
 * the server calls it once at startup while holding the data directory.
 *
 * @throws {ChatError} `cert_missing`, `cert_unreadable`, `key_permissions`, or any code of
 * {@linkcode validateKeyPair}.
 */
export async function loadOrCreateServerCert(opts: LoadOrCreateOptions): Promise<LoadedServerCert> {
  const now = opts.now ?? new Date();
  const explicit = opts.certPath !== undefined || opts.keyPath !== undefined;
  const certPath = opts.certPath ?? joinPath(opts.dataDir, "cert.pem");
  const keyPath = opts.keyPath ?? joinPath(opts.dataDir, "key.pem");

  let created = false;
  if (!explicit) {
    const [haveCert, haveKey] = await Promise.all([exists(certPath), exists(keyPath)]);
    if (!haveCert && !haveKey) {
      const pair = await generateSelfSigned({ hostnames: opts.hostnames, now });
      await writeKeyPairFiles(opts.dataDir, pair);
      created = true;
    } else if (!haveCert || !haveKey) {
      const missing = haveCert ? keyPath : certPath;
      const present = haveCert ? certPath : keyPath;
      throw new ChatError(
        "cert_missing",
        `Cannot read certificate: ${missing}: not found (${present} exists; ` +
          `remove it to generate a new pair)`,
      );
    }
  }

  const certPem = await readPem(certPath, "certificate");
  const keyPem = await readPem(keyPath, "private key");
  await checkKeyPermissions(keyPath);
  try {
    await validateKeyPair(certPem, keyPem, now);
  } catch (err) {
    if (!explicit && err instanceof ChatError && err.code === "cert_expired") {
      throw new ChatError(
        err.code,
        `${err.message}; delete ${certPath} and ${keyPath} to generate a new one`,
      );
    }
    throw err;
  }
  return { certPem, keyPem, certPath, keyPath, created, info: await certificateInfo(certPem) };
}

// ---- generation helpers ----

function resolveHostnames(given: string[] | undefined): string[] {
  const names = given ?? defaultHostnames();
  const seen = new Set<string>();
  const out: string[] = [];
  for (const raw of names) {
    const name = raw.trim();
    if (name === "" || seen.has(name.toLowerCase())) continue;
    seen.add(name.toLowerCase());
    out.push(name);
  }
  return out;
}

function defaultHostnames(): string[] {
  try {
    // Query first: calling Deno.hostname() without the permission would prompt on a terminal.
    const state = Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state;
    return state === "granted" ? [Deno.hostname()] : [];
  } catch {
    return [];
  }
}

function validityOf(opts: GenerateOptions): { notBefore: Date; notAfter: Date } {
  const days = opts.days ?? DEFAULT_DAYS;
  if (!(days > 0) || !Number.isFinite(days)) {
    throw new ChatError("cert_invalid", `Cannot create certificate: days must be > 0, got ${days}`);
  }
  const notBefore = new Date((opts.now ?? new Date()).getTime() - BACKDATE_MS);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * DAY_MS) };
}

function serverExtensions(hostnames: string[]): x509.Extension[] {
  const sans = [...LOOPBACK_SANS];
  const present = new Set(sans.map((s) => s.value.toLowerCase()));
  for (const name of hostnames) {
    const bare = name.replace(/^\[(.*)\]$/, "$1");
    if (present.has(bare.toLowerCase())) continue;
    present.add(bare.toLowerCase());
    sans.push({ type: isIpLiteral(bare) ? "ip" : "dns", value: bare });
  }
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension(sans),
  ];
}

function isIpLiteral(name: string): boolean {
  return /^(\d{1,3}\.){3}\d{1,3}$/.test(name) ||
    (name.includes(":") && /^[0-9a-f:.]+$/i.test(name));
}

function commonName(cn: string): x509.JsonName {
  // JSON form, not "CN=…": a hostname is never parsed as RFC 2253 syntax.
  return [{ CN: [cn] }];
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  // Positive and exactly 16 bytes: clear the sign bit, keep the top byte non-zero.
  bytes[0] = (bytes[0] & 0x7f) || 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
}

async function exportPkcs8(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

// ---- parsing and key matching ----

function parseLeaf(certPem: string): x509.X509Certificate {
  const blocks = decodePem(certPem, "cert_invalid", "the certificate");
  const leaf = blocks.find((b) => b.type === "CERTIFICATE");
  if (!leaf) {
    throw new ChatError("cert_invalid", "Cannot use certificate: no CERTIFICATE block in the PEM");
  }
  try {
    return new x509.X509Certificate(leaf.rawData);
  } catch (err) {
    throw new ChatError("cert_invalid", `Cannot use certificate: ${detail(err)}`);
  }
}

function decodePem(pem: string, code: ErrorCode, what: string): x509.PemStruct[] {
  let blocks: x509.PemStruct[];
  try {
    blocks = x509.PemConverter.decodeWithHeaders(pem);
  } catch (err) {
    throw new ChatError(code, `Cannot use certificate: ${what} is not valid PEM (${detail(err)})`);
  }
  if (blocks.length === 0) {
    throw new ChatError(code, `Cannot use certificate: ${what} is not valid PEM`);
  }
  return blocks;
}

async function describe(cert: x509.X509Certificate): Promise<CertInfo> {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  let selfSigned = false;
  try {
    selfSigned = await cert.isSelfSigned();
  } catch {
    // An algorithm WebCrypto cannot verify: we cannot claim it is self-signed.
  }
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    sans: san?.names.items.map((n) => n.value) ?? [],
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprintSha256: await fingerprintSha256(new Uint8Array(cert.rawData)),
    selfSigned,
  };
}

type KeyAlgorithmParams = EcKeyImportParams | RsaHashedImportParams | Algorithm;

/** Candidates tried in order; WebCrypto rejects a PKCS#8 key whose type or curve differs. */
const KEY_ALGORITHMS: KeyAlgorithmParams[] = [
  { name: "ECDSA", namedCurve: "P-256" },
  { name: "ECDSA", namedCurve: "P-384" },
  { name: "ECDSA", namedCurve: "P-521" },
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  { name: "Ed25519" },
];

async function importPrivateKey(
  keyPem: string,
): Promise<{ privateKey: CryptoKey; algorithm: KeyAlgorithmParams }> {
  const blocks = decodePem(keyPem, "key_invalid", "the private key");
  const block = blocks.find((b) => b.type.endsWith("PRIVATE KEY"));
  if (!block) {
    throw new ChatError(
      "key_invalid",
      "Cannot use certificate: no PRIVATE KEY block in the key PEM",
    );
  }
  if (block.type !== "PRIVATE KEY") {
    const hint = block.type === "ENCRYPTED PRIVATE KEY"
      ? "encrypted keys are not supported"
      : `${block.type} is not PKCS#8; convert it with ` +
        "`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pkcs8.pem`";
    throw new ChatError("key_invalid", `Cannot use certificate: ${hint}`);
  }
  for (const algorithm of KEY_ALGORITHMS) {
    try {
      const privateKey = await crypto.subtle.importKey(
        "pkcs8",
        block.rawData,
        algorithm,
        true,
        ["sign"],
      );
      return { privateKey, algorithm };
    } catch {
      // Not this type; try the next.
    }
  }
  throw new ChatError(
    "key_invalid",
    "Cannot use certificate: the private key is not a PKCS#8 ECDSA, RSA or Ed25519 key",
  );
}

const PRIVATE_JWK_FIELDS = ["d", "p", "q", "dp", "dq", "qi", "oth"] as const;

async function publicSpkiOf(key: CryptoKey, algorithm: KeyAlgorithmParams): Promise<Uint8Array> {
  const jwk = await crypto.subtle.exportKey("jwk", key);
  for (const field of PRIVATE_JWK_FIELDS) delete jwk[field];
  jwk.key_ops = ["verify"];
  const pub = await crypto.subtle.importKey("jwk", jwk, algorithm, true, ["verify"]);
  return new Uint8Array(await crypto.subtle.exportKey("spki", pub));
}

/** The certificate's SPKI re-encoded by WebCrypto, or null when it is not a key of `algorithm`. */
async function normalizedCertSpki(
  cert: x509.X509Certificate,
  algorithm: KeyAlgorithmParams,
): Promise<Uint8Array | null> {
  try {
    const pub = await crypto.subtle.importKey(
      "spki",
      cert.publicKey.rawData,
      algorithm,
      true,
      ["verify"],
    );
    return new Uint8Array(await crypto.subtle.exportKey("spki", pub));
  } catch {
    return null;
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ---- files ----

function joinPath(dir: string, name: string): string {
  const sep = Deno.build.os === "windows" ? /[\\/]$/ : /\/$/;
  return sep.test(dir) ? dir + name : `${dir}/${name}`;
}

async function ensureDir(dir: string): Promise<void> {
  try {
    await Deno.stat(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

async function writeAtomic(
  dir: string,
  name: string,
  data: string,
  mode: number,
): Promise<string> {
  const path = joinPath(dir, name);
  // Same directory as the target, so the rename cannot cross file systems.
  const tmp = joinPath(dir, `.${name}.${crypto.randomUUID()}.tmp`);
  try {
    // createNew + mode: the key is never readable by others, not even for an instant.
    await Deno.writeTextFile(tmp, data, { createNew: true, mode });
    // chmod too: the umask applies to `mode`, and callers rely on the exact mode.
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return path;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw new ChatError("cert_unreadable", `Cannot read certificate: ${path}: ${detail(err)}`);
  }
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ChatError("cert_missing", `Cannot read ${what}: ${path}: not found`);
    }
    throw new ChatError("cert_unreadable", `Cannot read ${what}: ${path}: ${detail(err)}`);
  }
}

async function checkKeyPermissions(keyPath: string): Promise<void> {
  if (Deno.build.os === "windows") return;
  const { mode } = await Deno.stat(keyPath);
  if (mode === null || (mode & 0o077) === 0) return;
  const octal = (mode & 0o777).toString(8).padStart(4, "0");
  throw new ChatError(
    "key_permissions",
    `Cannot use private key: ${keyPath} is accessible by group or others (mode ${octal}); ` +
      `run \`chmod 600 ${keyPath}\``,
  );
}

function detail(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
