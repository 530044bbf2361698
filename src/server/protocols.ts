// Owns the registry of wire protocols a listener can serve: one adapter factory per name.
import type { SessionProtocolName } from "../config/config.ts";
import { NativeProtocol } from "./native_protocol.ts";
import { SeedProtocol } from "./seed_protocol.ts";
import type { ProtocolAdapter, Session } from "./session.ts";

/** Builds a protocol's adapter for one new session. */
export type ProtocolFactory = (s: Session) => ProtocolAdapter;

/** Adding a protocol: its adapter here, its name in config's PROTOCOL_NAMES, a listener's alpn. */
export const PROTOCOLS: Readonly<Record<SessionProtocolName, ProtocolFactory>> = Object.freeze({
  "chat/1": (s: Session) => new NativeProtocol(s),
  "seed": (s: Session) => new SeedProtocol(s),
});
