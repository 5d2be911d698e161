// The serial numbers a set of CRLs revokes, read straight from their DER. A
// service needs them to close keep-alive connections of a peer revoked while
// connected (OpenSSL checks CRLs only during a handshake); Node parses no CRLs.
import type { DetailedPeerCertificate } from "node:tls";
import { revokedSerials } from "../../lib/crl.ts";
import { pemToDer } from "../../lib/pem.ts";
import { normaliseSerial } from "./peer-identity.ts";

/** Every serial revoked by the CRLs in PEM blocks. Throws on a CRL that does not parse. */
export function revokedSet(pems: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const pem of pems) for (const s of revokedSerials(pemToDer(pem))) out.add(s);
  return out;
}

/** What a connection's re-check needs from the current trust (see TrustInfo). */
export interface CurrentTrust {
  readonly fingerprints: ReadonlySet<string>;
  readonly revoked: ReadonlySet<string>;
}

/** withdrawn()'s answer for a revoked certificate in the chain. */
export const REVOKED = "its certificate was revoked";

/**
 * Why a peer verified at its handshake is no longer accepted under `trust`, or undefined.
 * `chain` is what getPeerCertificate(true) gives for the connection: the chain as
 * verified then, completed with the root from the socket's own context. Used by both
 * sides: the server for its callers, the client for its callees.
 */
export function withdrawn(chain: DetailedPeerCertificate, trust: CurrentTrust): string | undefined {
  return chainWithdrawn(chainOf(chain), trust);
}

/**
 * The chain OpenSSL verified at a full handshake: serials leaf to root, and the root's
 * fingerprint. A resumed session carries the leaf alone (Node gives no chain for it), so what
 * was recorded at the full handshake is what a resumption's re-check reads.
 */
export interface VerifiedChain {
  readonly serials: readonly string[];
  readonly anchor: string | undefined;
  /**
   * When the chain stops being valid (its earliest notAfter) and starts (its latest notBefore),
   * ms: a resumed session skipped OpenSSL's date checks too, and a session can outlive a
   * certificate of seconds. Absent on a chain recorded without them (then nothing is judged).
   */
  readonly validUntil?: number;
  readonly validFrom?: number;
}

/**
 * Whether a recorded chain is out of its dates now (this process's clock, lib/clock.ts), for a
 * resumed session; undefined while it is within them.
 */
export function chainOutOfDate(chain: VerifiedChain, now: number): "expired" | "not_yet_valid" | undefined {
  if (chain.validUntil !== undefined && now > chain.validUntil) return "expired";
  if (chain.validFrom !== undefined && now < chain.validFrom) return "not_yet_valid";
  return undefined;
}

/** withdrawn() for a chain recorded earlier (see VerifiedChain). */
export function chainWithdrawn(chain: VerifiedChain, trust: CurrentTrust): string | undefined {
  if (chain.anchor !== undefined && !trust.fingerprints.has(chain.anchor)) return "its CA is no longer trusted";
  if (chain.serials.some((x) => trust.revoked.has(x))) return REVOKED;
  return undefined;
}

/** Serials of the chain OpenSSL verified (leaf to root) and the root's fingerprint. */
export function chainOf(cert: DetailedPeerCertificate): VerifiedChain {
  const serials: string[] = [];
  let validUntil = Number.POSITIVE_INFINITY;
  let validFrom = Number.NEGATIVE_INFINITY;
  let c: DetailedPeerCertificate | undefined = cert;
  for (let depth = 0; c && depth < 8; depth++) {
    serials.push(normaliseSerial(c.serialNumber));
    // An unreadable date (NaN) fails closed: the chain counts as out of date.
    validUntil = Math.min(validUntil, Date.parse(c.valid_to) || Number.NEGATIVE_INFINITY);
    validFrom = Math.max(validFrom, Date.parse(c.valid_from) || Number.POSITIVE_INFINITY);
    if (!c.issuerCertificate || c.issuerCertificate === c || c.issuerCertificate.fingerprint256 === c.fingerprint256) {
      return { serials, anchor: c.fingerprint256, validUntil, validFrom };
    }
    c = c.issuerCertificate;
  }
  return { serials, anchor: undefined, validUntil, validFrom };
}
