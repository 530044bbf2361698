// Owns `chat bench --fingerprint`: fetch a server's certificate once, check its pin, trust only it.
import tls from "node:tls";
import { ChatError } from "../errors.ts";
import { fingerprintSha256 } from "../tls/certificate.ts";

/** `sha256:AB:CD…`, `AB:CD…` or bare hex → 64 lowercase hex digits; null when not a SHA-256. */
export function normalizePin(text: string): string | null {
  const hex = text.trim().replace(/^sha-?256:/i, "").replace(/:/g, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}

function derToPem(der: Uint8Array): string {
  const b64 = btoa(String.fromCharCode(...der));
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, "$1\n").trimEnd()}\n` +
    "-----END CERTIFICATE-----\n";
}

/**
 * Connects once, reads the server's leaf certificate and returns it as PEM when its SHA-256
 * matches `pin`; every bench connection then trusts exactly that certificate (as its only trust
 * anchor, so TLS still checks the handshake signature and the host name against it).
 * The first handshake cannot verify before the pin is compared: no byte is sent on it.
 * @throws {ChatError} `cert_mismatch` when the fingerprint differs, `connect_failed` when the
 * server cannot be reached.
 */
export function fetchPinnedCert(
  host: string,
  port: number,
  pin: string,
  alpn: string[],
): Promise<string> {
  const want = normalizePin(pin);
  if (!want) {
    return Promise.reject(
      new ChatError("usage", "Cannot use --fingerprint: expected sha256: and 64 hex digits"),
    );
  }
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      rejectUnauthorized: false,
      ALPNProtocols: alpn.length ? alpn : undefined,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ChatError("connect_failed", `Cannot connect to ${host} port ${port}: timed out`));
    }, 10_000);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new ChatError("connect_failed", `Cannot connect to ${host} port ${port}: ${err}`));
    });
    socket.once("secureConnect", async () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(true)?.raw;
      socket.destroy();
      if (!raw) {
        reject(new ChatError("cert_missing", `Cannot connect to ${host}: no certificate`));
        return;
      }
      const der = new Uint8Array(raw);
      const got = (await fingerprintSha256(der)).replace(/:/g, "").toLowerCase();
      if (got !== want) {
        reject(
          new ChatError(
            "cert_mismatch",
            `Cannot trust ${host} port ${port}: its certificate has SHA-256 ${got}, not ${want}`,
          ),
        );
        return;
      }
      resolve(derToPem(der));
    });
  });
}
