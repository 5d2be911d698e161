// TLS session resumption between mesh services, on the server's side: what binds a session to
// the material it was made under, and the re-check of a peer that resumed one. OpenSSL verifies
// nothing on resumption (no chain, no CRL; Node reports the session's old verdict as
// `authorized`), so a resumed session must never stand for more than a full handshake would.
import { createHash } from "node:crypto";
import type { CertFacts } from "./peer-certs.ts";
import type { HandshakeReason } from "./reasons.ts";
import { nowMs } from "../../lib/clock.ts";
import { chainOutOfDate, chainWithdrawn, REVOKED, type CurrentTrust } from "./revocations.ts";

/**
 * The session ID context of a service's TLS material: OpenSSL resumes a session (by ticket or
 * by ID) only into a context with the same one. Derived from the digests of the certificate and
 * key and of the bundle and CRLs, so a session made under other material is never resumed
 * even by a server that could still decrypt its ticket; the ticket keys are also replaced at
 * every change (MeshServer.setMaterial). 32 bytes is OpenSSL's maximum.
 */
export function sessionIdContext(m: { readonly certDigest: string; readonly trustDigest: string }): string {
  return createHash("sha256").update(`mesh-session\0${m.certDigest}\0${m.trustDigest}`).digest("hex").slice(0, 32);
}

/** A refusal of a resumed session, in the words and reasons of tls.handshake_failed. */
export interface ResumedRefusal {
  readonly reason: HandshakeReason & ("revoked" | "unknown_ca" | "session_unverifiable" | "expired" | "not_yet_valid");
  readonly sentence: string;
}

/**
 * Why a peer that resumed a session is refused under `trust`, or undefined. It is judged by the
 * chain OpenSSL verified when its certificate was first presented in a full handshake (Node
 * gives a resumed session's leaf without its chain); with no such record it is refused: it
 * must make a full handshake.
 */
export function resumedRefusal(facts: CertFacts, trust: CurrentTrust): ResumedRefusal | undefined {
  const name = facts.identity.ok ? facts.identity.identity.name : "the client";
  if (!facts.chain) {
    return {
      reason: "session_unverifiable",
      sentence: `${name} resumed a TLS session with a certificate (serial ${facts.serial}) whose verified chain this service does not hold, so its revocation cannot be checked; refused: its next connection makes a full handshake`,
    };
  }
  const dates = chainOutOfDate(facts.chain, nowMs());
  if (dates)
    return {
      reason: dates,
      sentence: `${name} resumed a TLS session, but its certificate (serial ${facts.serial}) or a CA above it ${dates === "expired" ? "has expired since" : "is not valid yet"} (by this host's clock); refused: renew it`,
    };
  const why = chainWithdrawn(facts.chain, trust);
  if (why === undefined) return undefined;
  if (why === REVOKED)
    return {
      reason: "revoked",
      sentence: `${name} resumed a TLS session, but its certificate (serial ${facts.serial}) or a CA above it has been revoked since; refused`,
    };
  return {
    reason: "unknown_ca",
    sentence: `${name} resumed a TLS session, but the CA its certificate (serial ${facts.serial}) chains to is no longer trusted; refused`,
  };
}
