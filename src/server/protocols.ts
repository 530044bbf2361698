// Owns the registry of wire protocols a listener can serve: one adapter factory per name.
import type { ServerLimits, SessionProtocolName } from "../config/config.ts";
import { IRC_MAX_LINE_BYTES } from "../protocol/irc_codec.ts";
import { IrcProtocol } from "./irc_protocol.ts";
import { NativeProtocol } from "./native_protocol.ts";
import { SeedProtocol } from "./seed_protocol.ts";
import type { ProtocolAdapter, Session } from "./session.ts";

/** Builds a protocol's adapter for one new session. */
export type ProtocolFactory = (s: Session) => ProtocolAdapter;

/** Adding a protocol: its adapter here, its name in config's PROTOCOL_NAMES, a listener's alpn. */
export const PROTOCOLS: Readonly<Record<SessionProtocolName, ProtocolFactory>> = Object.freeze({
  "chat/1": (s: Session) => new NativeProtocol(s),
  "seed": (s: Session) => new SeedProtocol(s),
  "irc": (s: Session) => new IrcProtocol(s),
});

/** How a protocol's lines are cut: the cap, and whether an overlong line ends the connection. */
export interface LineFraming {
  maxLineBytes: number;
  overlong: "fatal" | "skip";
}

/**
 * A protocol's framing. chat/1 and the seed protocol: `maxLineBytes`, fatal when over. IRC: 4096
 * tag bytes + 512 (IRCv3 message-tags), and an overlong line is answered ERR_INPUTTOOLONG.
 */
export function lineFraming(
  name: SessionProtocolName | undefined,
  limits: ServerLimits,
): LineFraming {
  if (name === "irc") return { maxLineBytes: IRC_MAX_LINE_BYTES, overlong: "skip" };
  return { maxLineBytes: limits.maxLineBytes, overlong: "fatal" };
}
