// Owns opening a verified TLS connection with ALPN chat/1: the handshake, the certificate facts,
// the trust decision (before any byte is sent), and one-line errors.
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import tls from "node:tls";
import { ChatError } from "../errors.ts";
import { ALPN_CHAT1 } from "../protocol/frames.ts";
import { fingerprintSha256 } from "../tls/certificate.ts";
import { serverKey } from "./known_servers.ts";
import type { PeerFacts, TrustPolicy } from "./trust.ts";

/** Where to connect and whom to trust. */
export interface DialOptions {
  /** The server's name: checked against the certificate, sent as SNI, the known_servers key. */
  host: string;
  port: number;
  /** The IP address to connect to (one of those `host` resolves to) [host itself]. */
  address?: string;
  /** PEM of an extra trusted CA (`--ca FILE`); without it the system roots are used. */
  caPem?: string;
  policy: TrustPolicy;
  /** TCP connect plus TLS handshake must finish within this [10 s]. */
  timeoutMs?: number;
}

/** A verified connection and what was verified. */
export interface Dialed {
  socket: tls.TLSSocket;
  peer: PeerFacts;
}

/**
 * Connects, verifies and returns a TLS socket that negotiated chat/1.
 *
 * 1. A first handshake runs with `rejectUnauthorized: false` only so that a self-signed
 *    certificate can be inspected instead of aborting: the chain and name are still checked
 *    (`authorized`, plus `tls.checkServerIdentity`), and nothing is written to the socket.
 * 2. {@linkcode TrustPolicy} decides. A CA-verified certificate keeps this connection.
 * 3. A certificate trusted by pin or known_servers is not used on that connection: a second
 *    handshake runs with full verification on (`rejectUnauthorized: true`) and that exact
 *    certificate as the trust anchor, its fingerprint checked again in `checkServerIdentity`. So
 *    rustls itself verifies the chain and the handshake signature (the server proves it holds the
 *    certificate's key), whatever the first, inspect-only handshake did or did not check.
 * 4. When the user must be asked, the connection is closed first (answering may take longer
 *    than the server's login deadline) and the dial starts over against the remembered pin.
 */
export async function dialTls(opts: DialOptions): Promise<Dialed> {
  for (let round = 0;; round++) {
    const { socket, peer, der } = await handshake(opts);
    let accepted: boolean;
    try {
      accepted = await opts.policy.settle(peer, opts.policy.decide(peer));
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (accepted && peer.caVerified) return { socket, peer };
    socket.destroy();
    if (accepted) {
      // Trusted by pin or known_servers: connect again with exactly that certificate as the only
      // extra trust anchor and full verification on, so rustls checks the chain and the
      // handshake signature itself rather than us relying on deferred verification.
      const strict = await handshake(opts, {
        anchorPem: derToPem(der),
        fingerprint: peer.fingerprint,
      });
      return { socket: strict.socket, peer };
    }
    if (round > 0) {
      throw new ChatError("cert_unknown", `Cannot connect to ${peer.key}: certificate not trusted`);
    }
    await opts.policy.ask(peer);
  }
}

/** A pinned certificate to verify against strictly (see {@linkcode dialTls}). */
interface StrictPin {
  anchorPem: string;
  fingerprint: string;
}

/** SHA-256 of DER as uppercase colon hex, synchronously (for `checkServerIdentity`). */
function fingerprintSync(der: Uint8Array): string {
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}

function derToPem(der: Uint8Array): string {
  const b64 = btoa(Array.from(der, (b) => String.fromCharCode(b)).join(""));
  return `-----BEGIN CERTIFICATE-----\n${
    b64.match(/.{1,64}/g)!.join("\n")
  }\n-----END CERTIFICATE-----\n`;
}

function handshake(
  opts: DialOptions,
  strict?: StrictPin,
): Promise<Dialed & { der: Uint8Array }> {
  const key = serverKey(opts.host, opts.port);
  const ip = isIP(opts.host) !== 0;
  // Errors name the address too when it is not the name typed (one name, several nodes).
  const where = opts.address === undefined || opts.address === opts.host
    ? key
    : `${key} (${opts.address})`;
  return new Promise((resolve, reject) => {
    let done = false;
    const socket = tls.connect({
      host: opts.address ?? opts.host,
      port: opts.port,
      servername: ip ? undefined : opts.host,
      ALPNProtocols: [ALPN_CHAT1],
      ...(strict
        ? {
          ca: [strict.anchorPem],
          rejectUnauthorized: true,
          // The pin replaces the name check (as ssh's known_hosts does): same certificate or nothing.
          checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
            cert.raw && fingerprintSync(new Uint8Array(cert.raw)) === strict.fingerprint
              ? undefined
              : new Error("the certificate changed while connecting"),
        }
        : { ca: opts.caPem ? [opts.caPem] : undefined, rejectUnauthorized: false }),
    });
    const fail = (err: ChatError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new ChatError("connect_failed", `Cannot connect to ${where}: timed out`)),
      opts.timeoutMs ?? 10_000,
    );
    socket.once("error", (err) => fail(connectError(where, err)));
    socket.once(
      "close",
      () => fail(new ChatError("connect_failed", `Cannot connect to ${where}: closed`)),
    );
    socket.once("secureConnect", async () => {
      try {
        if (socket.alpnProtocol !== ALPN_CHAT1) {
          fail(
            new ChatError(
              "not_chat_server",
              `Cannot connect to ${key}: the server did not agree to speak ${ALPN_CHAT1} ` +
                `(ALPN ${JSON.stringify(socket.alpnProtocol || "none")}); is it a chat server?`,
            ),
          );
          return;
        }
        const cert = socket.getPeerCertificate(true);
        if (!cert?.raw || cert.raw.length === 0) {
          fail(new ChatError("cert_missing", `Cannot connect to ${key}: no server certificate`));
          return;
        }
        const fingerprint = await fingerprintSha256(new Uint8Array(cert.raw));
        let caVerified = socket.authorized === true;
        let reason = socket.authorizationError ? String(socket.authorizationError) : undefined;
        if (caVerified) {
          const nameErr = tls.checkServerIdentity(opts.host, cert);
          if (nameErr) {
            caVerified = false;
            reason = (nameErr as NodeJS.ErrnoException).code ?? "ERR_TLS_CERT_ALTNAME_INVALID";
          }
        }
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.removeAllListeners("error");
        socket.removeAllListeners("close");
        resolve({
          socket,
          peer: { key, fingerprint, caVerified, reason },
          der: new Uint8Array(cert.raw),
        });
      } catch (err) {
        fail(connectError(where, err));
      }
    });
  });
}

/** A one-line reason for a failed connection attempt, decided by the runtime's error code. */
function connectError(key: string, err: unknown): ChatError {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? "";
  if (code === "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL") {
    // The server offers ALPN protocols, none of them chat/1: not a chat server, so no retry.
    return new ChatError(
      "not_chat_server",
      `Cannot connect to ${key}: the server does not speak ${ALPN_CHAT1}; is it a chat server?`,
    );
  }
  let detail: string;
  if (code === "ECONNREFUSED") detail = "connection refused (is the server running?)";
  else if (code === "ENOTFOUND" || code === "EAI_AGAIN") detail = "unknown host";
  else if (code === "ETIMEDOUT") detail = "timed out";
  else if (code === "ECONNRESET" || code === "EPIPE") detail = "the connection was reset";
  else detail = String(e?.message ?? err).split("\n")[0];
  return new ChatError("connect_failed", `Cannot connect to ${key}: ${detail}`);
}
