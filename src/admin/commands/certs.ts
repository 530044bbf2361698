// Owns `chat admin certs …`: creating, showing, importing and rotating the server certificate.
import { ChatError, ExitCode } from "../../errors.ts";
import {
  certificateInfo,
  type CertInfo,
  generateCaAndServer,
  generateSelfSigned,
  type KeyPairPem,
  validateKeyPair,
  writeKeyPairFiles,
} from "../../tls/certificate.ts";
import { certPaths, extraHostnames, fileExists, issueWithCa, readPemFile } from "../cert_files.ts";
import { fmtTime, keyValues } from "../format.ts";
import { AdminConnection, type AdminEnv, confirm, emit } from "./context.ts";

/** `--days`: validity in days, 1-3650. */
export function parseDays(text: string | undefined, action: string): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d{1,4}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 3650)) {
    throw new ChatError("bad_request", `Cannot ${action}: --days must be 1-3650 (got ${text})`);
  }
  return n;
}

function describe(info: CertInfo, now: number): [string, string][] {
  const left = Math.floor((info.notAfter.getTime() - now) / 86_400_000);
  return [
    ["subject", info.subject],
    ["issuer", info.selfSigned ? `${info.issuer} (self-signed)` : info.issuer],
    ["names", info.sans.join(", ") || "-"],
    ["valid from", fmtTime(info.notBefore.getTime())],
    [
      "valid until",
      `${fmtTime(info.notAfter.getTime())} (${left >= 0 ? `${left} days left` : "EXPIRED"})`,
    ],
    ["sha-256", info.fingerprintSha256],
  ];
}

function infoJson(info: CertInfo) {
  return {
    subject: info.subject,
    issuer: info.issuer,
    sans: info.sans,
    notBefore: info.notBefore.toISOString(),
    notAfter: info.notAfter.toISOString(),
    fingerprintSha256: info.fingerprintSha256,
    selfSigned: info.selfSigned,
  };
}

/**
 * Tells the server (or just the audit trail, when none runs) that the files changed, and checks
 * that a running server now serves them. Returns the exit code.
 */
async function applied(
  env: AdminEnv,
  conn: AdminConnection,
  action: "init" | "import" | "rotate",
  info: CertInfo,
  extra: Record<string, unknown> = {},
): Promise<number> {
  const r = await conn.call("certs.changed", { action, fingerprint: info.fingerprintSha256 });
  const mismatch = r.reloaded && r.serving !== info.fingerprintSha256;
  emit(env, { ...infoJson(info), ...extra, ...r }, () => {
    let text = keyValues(describe(info, env.clock()));
    if (!r.reloaded) {
      text += "No server is running: it uses this certificate from its next start.\n";
    } else if (!mismatch) text += "The running server now serves it to new connections.\n";
    return text;
  });
  if (mismatch) {
    env.io.err(
      `chat: the running server reloaded ${r.certPath} and serves ${r.serving}, not the new ` +
        "certificate: its configuration names other files (certFile/keyFile)\n",
    );
    return ExitCode.failure;
  }
  return ExitCode.ok;
}

async function writePair(env: AdminEnv, pair: KeyPairPem): Promise<void> {
  await writeKeyPairFiles(env.dataDir, pair);
}

export async function certsInit(
  env: AdminEnv,
  opts: { ca: boolean; hostname: string[]; days?: string; force: boolean },
): Promise<number> {
  const action = "create certificates";
  const days = parseDays(opts.days, action);
  const p = certPaths(env.dataDir);
  const existing = [p.certPath, p.keyPath, ...(opts.ca ? [p.caCertPath, p.caKeyPath] : [])];
  const present: string[] = [];
  for (const f of existing) if (await fileExists(f)) present.push(f);
  if (present.length && !opts.force) {
    throw new ChatError(
      "cert_exists",
      `Cannot ${action}: ${present.join(" and ")} exist; use certs rotate, or --force to replace`,
    );
  }
  if (present.length) {
    await confirm(env, action, `Replace ${present.join(", ")} with new keys?`);
  }
  const hostnames = opts.hostname.length ? opts.hostname : undefined;
  await using conn = await AdminConnection.open(env);
  if (opts.ca) {
    const all = await generateCaAndServer({ hostnames, days });
    await writeKeyPairFiles(p.caDir, { certPem: all.caCertPem, keyPem: all.caKeyPem }, {
      cert: "ca.pem",
      key: "ca-key.pem",
    });
    await writePair(env, all);
    const caInfo = await certificateInfo(all.caCertPem);
    if (!env.json) {
      env.io.out(
        `Created a private CA: ${p.caCertPath} (sha-256 ${caInfo.fingerprintSha256}).\n` +
          `Give ${p.caCertPath} to clients to trust. Keep ${p.caKeyPath} safe, ideally offline: ` +
          "it signs new server certificates (certs rotate --ca-key).\n",
      );
    }
    return await applied(env, conn, "init", await certificateInfo(all.certPem), {
      ca: {
        certPath: p.caCertPath,
        keyPath: p.caKeyPath,
        fingerprintSha256: caInfo.fingerprintSha256,
      },
    });
  }
  const pair = await generateSelfSigned({ hostnames, days });
  await writePair(env, pair);
  return await applied(env, conn, "init", await certificateInfo(pair.certPem));
}

export async function certsShow(env: AdminEnv, opts: { cert?: string }): Promise<void> {
  const path = opts.cert ?? certPaths(env.dataDir).certPath;
  const info = await certificateInfo(await readPemFile(path, "certificate", "show certificate"));
  let serving: string | null = null;
  if (!opts.cert) {
    await using conn = await AdminConnection.open(env);
    if (conn.live) serving = (await conn.call("stats", {})).certificate.fingerprint;
  }
  emit(env, { path, ...infoJson(info), serving }, () => {
    let text = keyValues([["file", path], ...describe(info, env.clock())]);
    if (serving !== null) {
      text += serving === info.fingerprintSha256
        ? "The running server serves this certificate.\n"
        : `The running server serves another certificate: ${serving}\n`;
    }
    return text;
  });
}

export async function certsImport(
  env: AdminEnv,
  opts: { cert: string; key: string },
): Promise<number> {
  const action = "import certificate";
  const certPem = await readPemFile(opts.cert, "certificate", action);
  const keyPem = await readPemFile(opts.key, "private key", action);
  await validateKeyPair(certPem, keyPem);
  await using conn = await AdminConnection.open(env);
  await writePair(env, { certPem, keyPem });
  return await applied(env, conn, "import", await certificateInfo(certPem));
}

export async function certsRotate(
  env: AdminEnv,
  opts: { hostname: string[]; days?: string; caCert?: string; caKey?: string },
): Promise<number> {
  const action = "rotate certificate";
  const days = parseDays(opts.days, action);
  const p = certPaths(env.dataDir);
  const current = await certificateInfo(await readPemFile(p.certPath, "certificate", action));
  const hostnames = opts.hostname.length ? opts.hostname : extraHostnames(current);
  const useCa = opts.caKey !== undefined || opts.caCert !== undefined || !current.selfSigned;
  let pair: KeyPairPem;
  if (useCa) {
    const caCertPath = opts.caCert ?? p.caCertPath;
    const caKeyPath = opts.caKey ?? p.caKeyPath;
    if (!opts.caKey && !(await fileExists(caKeyPath))) {
      throw new ChatError(
        "cert_missing",
        `Cannot ${action}: ${p.certPath} was issued by ${current.issuer} and its CA key is not ` +
          `at ${caKeyPath}; give --ca-cert and --ca-key, or use certs import`,
      );
    }
    const ca = {
      certPem: await readPemFile(caCertPath, "CA certificate", action),
      keyPem: await readPemFile(caKeyPath, "CA key", action),
    };
    const caInfo = await certificateInfo(ca.certPem);
    if (caInfo.subject !== current.issuer) {
      throw new ChatError(
        "cert_invalid",
        `Cannot ${action}: ${caCertPath} (${caInfo.subject}) did not issue the current ` +
          `certificate (issuer ${current.issuer}); use certs init --ca --force for a new CA`,
      );
    }
    pair = await issueWithCa(ca, { hostnames, days });
  } else {
    pair = await generateSelfSigned({ hostnames, days });
  }
  await confirm(
    env,
    action,
    `Replace the certificate ${current.fingerprintSha256} with a new key? ` +
      (useCa
        ? "Clients that trust the CA accept the new one."
        : "Clients that pinned the old fingerprint must accept the new one."),
  );
  await using conn = await AdminConnection.open(env);
  await writePair(env, pair);
  return await applied(env, conn, "rotate", await certificateInfo(pair.certPem), {
    previous: current.fingerprintSha256,
  });
}

export async function certsReload(env: AdminEnv): Promise<void> {
  await using conn = await AdminConnection.open(env);
  if (!conn.live) {
    throw new ChatError("server_not_running", "Cannot reload certificate: no server is running");
  }
  const r = await conn.call("certs.changed", { action: "reload", fingerprint: null });
  emit(env, r, () => `The running server now serves ${r.certPath} (sha-256 ${r.serving}).\n`);
}
