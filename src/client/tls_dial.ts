// Owns opening a verified TLS connection with ALPN chat/1: the handshake, the certificate facts,
// the trust decision (before any byte is sent), and one-line errors.
import { isIP } from "node:net";
import tls from "node:tls";
import { ChatError } from "../errors.ts";
import { ALPN_CHAT1 } from "../protocol/frames.ts";
import { fingerprintSha256 } from "../tls/certificate.ts";
import { serverKey } from "./known_servers.ts";
import type { PeerFacts, TrustPolicy } from "./trust.ts";

/** Where to connect and whom to trust. */
export interface DialOptions {
  host: string;
  port: number;
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
 * The handshake runs with `rejectUnauthorized: false` only so that a self-signed certificate can
 * be inspected instead of aborting: the chain and name are still checked (`authorized`, plus
 * `tls.checkServerIdentity`), the handshake signature is always verified by rustls (so the
 * server proves it holds the key of the certificate it shows), and nothing is written to the
 * socket until {@linkcode TrustPolicy} accepted the certificate by CA, pin or known_servers.
 * When the user must be asked, the connection is closed first (answering may take longer than
 * the server's login deadline) and a new one is verified against the now-remembered pin.
 */
export async function dialTls(opts: DialOptions): Promise<Dialed> {
  for (let round = 0;; round++) {
    const { socket, peer } = await handshake(opts);
    let accepted: boolean;
    try {
      accepted = await opts.policy.settle(peer, opts.policy.decide(peer));
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (accepted) return { socket, peer };
    socket.destroy();
    if (round > 0) {
      throw new ChatError("cert_unknown", `Cannot connect to ${peer.key}: certificate not trusted`);
    }
    await opts.policy.ask(peer);
  }
}

function handshake(opts: DialOptions): Promise<Dialed> {
  const key = serverKey(opts.host, opts.port);
  const ip = isIP(opts.host) !== 0;
  return new Promise<Dialed>((resolve, reject) => {
    let done = false;
    const socket = tls.connect({
      host: opts.host,
      port: opts.port,
      servername: ip ? undefined : opts.host,
      ALPNProtocols: [ALPN_CHAT1],
      ca: opts.caPem ? [opts.caPem] : undefined,
      rejectUnauthorized: false,
    });
    const fail = (err: ChatError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new ChatError("connect_failed", `Cannot connect to ${key}: timed out`)),
      opts.timeoutMs ?? 10_000,
    );
    socket.once("error", (err) => fail(connectError(key, err)));
    socket.once(
      "close",
      () => fail(new ChatError("connect_failed", `Cannot connect to ${key}: closed`)),
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
        resolve({ socket, peer: { key, fingerprint, caVerified, reason } });
      } catch (err) {
        fail(connectError(key, err));
      }
    });
  });
}

/** A one-line reason for a failed connection attempt. */
function connectError(key: string, err: unknown): ChatError {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? "";
  const msg = String(e?.message ?? err);
  let detail: string;
  if (code === "ECONNREFUSED") detail = "connection refused (is the server running?)";
  else if (code === "ENOTFOUND" || code === "EAI_AGAIN") detail = "unknown host";
  else if (code === "ETIMEDOUT") detail = "timed out";
  else if (code === "ECONNRESET" || code === "EPIPE") detail = "the connection was reset";
  else if (/application.?protocol/i.test(msg)) {
    detail = `the server does not speak ${ALPN_CHAT1}`;
  } else detail = msg.split("\n")[0];
  return new ChatError("connect_failed", `Cannot connect to ${key}: ${detail}`);
}
