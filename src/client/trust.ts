// Owns the decision whether to trust a server's certificate: CA verification, an explicit pin,
// the known_servers store (trust on first use), or asking the user — never silently nothing.
import { ChatError } from "../errors.ts";
import { type KnownServers, showFingerprint } from "./known_servers.ts";

/** What the TLS layer learned about the server before any application byte was sent. */
export interface PeerFacts {
  /** `host:port` as stored in known_servers. */
  key: string;
  /** SHA-256 of the leaf certificate, uppercase colon hex. */
  fingerprint: string;
  /** True when the chain verified against the system roots (or `--ca`) and the name matched. */
  caVerified: boolean;
  /** Why CA verification failed (e.g. `DEPTH_ZERO_SELF_SIGNED_CERT`), when it did. */
  reason?: string;
}

/** The outcome of {@linkcode decideTrust}. */
export type TrustDecision =
  | { kind: "accept"; how: "ca" | "pinned" | "known"; remember: boolean }
  | { kind: "ask" }
  | { kind: "refuse"; error: ChatError; banner?: string };

/** What the decision depends on besides the peer. */
export interface TrustInputs {
  /** `--trust-fingerprint`, canonical form. */
  pinned?: string;
  /** The fingerprint remembered for this server, if any. */
  known?: { fingerprint: string; line: number; path: string };
  /** `--ca FILE` was given (then an unverified chain is refused, not offered for TOFU). */
  caFile?: string;
}

/**
 * Decides, purely, whether to trust `peer`:
 * 1. `--trust-fingerprint` given: accept exactly that certificate, refuse any other.
 * 2. The chain verifies against the system roots or `--ca` and matches the name: accept.
 * 3. known_servers has the server: accept the same fingerprint; a different one is refused
 *    loudly (`cert_changed`), like ssh — it may be an attack, and only the user can decide.
 * 4. `--ca` was given: refuse (the user named the authority to trust; it did not sign this).
 * 5. Otherwise: ask the user (trust on first use), or refuse when no one can be asked.
 */
export function decideTrust(peer: PeerFacts, inputs: TrustInputs): TrustDecision {
  const shown = showFingerprint(peer.fingerprint);
  if (inputs.pinned !== undefined) {
    if (peer.fingerprint === inputs.pinned) {
      return {
        kind: "accept",
        how: "pinned",
        remember: inputs.known?.fingerprint !== peer.fingerprint && !peer.caVerified,
      };
    }
    return {
      kind: "refuse",
      error: new ChatError(
        "cert_mismatch",
        `Cannot connect to ${peer.key}: its certificate ${shown} is not the one given with ` +
          `--trust-fingerprint (${showFingerprint(inputs.pinned)})`,
      ),
    };
  }
  if (peer.caVerified) return { kind: "accept", how: "ca", remember: false };
  if (inputs.known) {
    if (inputs.known.fingerprint === peer.fingerprint) {
      return { kind: "accept", how: "known", remember: false };
    }
    return {
      kind: "refuse",
      banner: changedBanner(peer, inputs.known),
      error: new ChatError(
        "cert_changed",
        `Cannot connect to ${peer.key}: its certificate changed (now ${shown}, remembered ` +
          `${showFingerprint(inputs.known.fingerprint)}); see the warning above`,
      ),
    };
  }
  if (inputs.caFile !== undefined) {
    return {
      kind: "refuse",
      error: new ChatError(
        "cert_untrusted",
        `Cannot connect to ${peer.key}: its certificate is not valid for this name or not ` +
          `signed by the CA in ${inputs.caFile} (${peer.reason ?? "verification failed"})`,
      ),
    };
  }
  return { kind: "ask" };
}

/** The refusal when nobody can be asked (scripts, no terminal). */
export function unknownServerError(peer: PeerFacts): ChatError {
  const shown = showFingerprint(peer.fingerprint);
  return new ChatError(
    "cert_unknown",
    `Cannot connect to ${peer.key}: its certificate is not signed by a trusted authority ` +
      `(${describeReason(peer.reason)}) and the server is not in known_servers. Its fingerprint ` +
      `is ${shown}; if the server's operator confirms it (the server logs it at start), run ` +
      `again with --trust-fingerprint ${shown}, or connect from a terminal to be asked`,
  );
}

/** The text shown when asking the user to trust a server the first time. */
export function firstUseQuestion(peer: PeerFacts): string {
  return `The authenticity of chat server ${peer.key} cannot be established: its certificate ` +
    `is ${describeReason(peer.reason)}.\n` +
    `Certificate fingerprint: ${showFingerprint(peer.fingerprint)}\n` +
    `Compare it with the fingerprint the server's operator gives you (the server logs it at ` +
    `start).\n`;
}

function describeReason(reason: string | undefined): string {
  switch (reason) {
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
      return "self-signed";
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "not issued for this name";
    case "CERT_HAS_EXPIRED":
      return "expired";
    case "CERT_NOT_YET_VALID":
      return "not yet valid";
    default:
      return "not signed by a trusted authority";
  }
}

function changedBanner(
  peer: PeerFacts,
  known: { fingerprint: string; line: number; path: string },
): string {
  const bar = "@".repeat(59);
  return [
    bar,
    "@    WARNING: THE CHAT SERVER'S CERTIFICATE HAS CHANGED!   @",
    bar,
    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!",
    "Someone could be intercepting your connection right now (man-in-the-middle attack).",
    "It is also possible that the server's certificate was simply replaced.",
    `The certificate of ${peer.key} is now`,
    `  ${showFingerprint(peer.fingerprint)}`,
    "but you accepted",
    `  ${showFingerprint(known.fingerprint)}`,
    `Ask the server's operator. If the change is expected, remove line ${known.line} of`,
    `${known.path} and connect again.`,
    "Connection refused; nothing was sent to the server.",
    "",
  ].join("\n");
}

/** Asks the user a yes/no question about trusting a server; undefined when no one can answer. */
export type TrustPrompt = (question: string) => Promise<boolean>;

/**
 * The trust policy of one client: fixed inputs plus the store and (optionally) a prompt.
 * `check` resolves when the peer is trusted (remembering it when the user accepted it) and
 * throws the refusal otherwise; it MUST be called before any byte is sent to the server.
 */
export class TrustPolicy {
  #known: KnownServers;
  #pinned?: string;
  #caFile?: string;
  #prompt?: TrustPrompt;
  #warn: (text: string) => void;

  constructor(opts: {
    known: KnownServers;
    pinned?: string;
    caFile?: string;
    prompt?: TrustPrompt;
    warn: (text: string) => void;
  }) {
    this.#known = opts.known;
    this.#pinned = opts.pinned;
    this.#caFile = opts.caFile;
    this.#prompt = opts.prompt;
    this.#warn = opts.warn;
  }

  /** The pure decision for `peer` with the current store contents. */
  decide(peer: PeerFacts): TrustDecision {
    const k = this.#known.get(peer.key);
    return decideTrust(peer, {
      pinned: this.#pinned,
      caFile: this.#caFile,
      known: k ? { fingerprint: k.fingerprint, line: k.line, path: this.#known.path } : undefined,
    });
  }

  /**
   * Applies a decision that does not need the user: accepts (remembering pins), or throws the
   * refusal (after printing the banner). Returns false when the user must be asked.
   */
  async settle(peer: PeerFacts, d: TrustDecision): Promise<boolean> {
    if (d.kind === "accept") {
      if (d.remember) await this.#known.add(peer.key, peer.fingerprint);
      return true;
    }
    if (d.kind === "refuse") {
      if (d.banner) this.#warn(d.banner);
      throw d.error;
    }
    return false;
  }

  /**
   * Asks the user about `peer` (first use). Resolves after remembering it when accepted; throws
   * `cert_unknown` when there is no one to ask and `cert_rejected` when the user said no.
   */
  async ask(peer: PeerFacts): Promise<void> {
    if (!this.#prompt) throw unknownServerError(peer);
    const yes = await this.#prompt(firstUseQuestion(peer));
    if (!yes) {
      throw new ChatError(
        "cert_rejected",
        `Cannot connect to ${peer.key}: you did not accept its certificate`,
      );
    }
    await this.#known.add(peer.key, peer.fingerprint);
  }
}
