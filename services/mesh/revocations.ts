// The serial numbers a set of CRLs revokes, read straight from their DER. A
// service needs them to close keep-alive connections of a peer revoked while
// connected (OpenSSL checks CRLs only during a handshake); Node parses no CRLs.
import type { DetailedPeerCertificate } from "node:tls";
import { normaliseSerial } from "./peer-identity.ts";
import { children, readTlv } from "./der.ts";

/**
 * Revoked serials of one DER CRL: CertificateList → tbsCertList → revokedCertificates
 * (the SEQUENCE after the issuer and the times; RFC 5280 5.1).
 */
export function revokedSerials(der: Uint8Array): string[] {
  const list = readTlv(der, 0);
  const tbs = children(der, list)[0];
  if (!tbs || tbs.tag !== 0x30) throw new Error("not a CRL");
  const fields = children(der, tbs);
  let i = fields[0]?.tag === 0x02 ? 1 : 0; // optional version
  i += 2; // signature algorithm, issuer
  i += 1; // thisUpdate
  if (fields[i] && (fields[i]!.tag === 0x17 || fields[i]!.tag === 0x18)) i++; // optional nextUpdate
  const revoked = fields[i];
  if (!revoked || revoked.tag !== 0x30) return [];
  return children(der, revoked).map((entry) => {
    const serial = children(der, entry)[0]!;
    return normaliseSerial(Buffer.from(der.subarray(serial.start, serial.end)).toString("hex"));
  });
}

/** Every serial revoked by the CRLs in PEM blocks. Throws on a CRL that does not parse. */
export function revokedSet(pems: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const pem of pems) {
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    for (const s of revokedSerials(der)) out.add(s);
  }
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
  const { serials, anchor } = verifiedChain(chain);
  if (anchor !== undefined && !trust.fingerprints.has(anchor)) return "its CA is no longer trusted";
  if (serials.some((x) => trust.revoked.has(x))) return REVOKED;
  return undefined;
}

/** Serials of the chain OpenSSL verified (leaf to root) and the root's fingerprint. */
function verifiedChain(cert: DetailedPeerCertificate): { serials: string[]; anchor: string | undefined } {
  const serials: string[] = [];
  let c: DetailedPeerCertificate | undefined = cert;
  for (let depth = 0; c && depth < 8; depth++) {
    serials.push(normaliseSerial(c.serialNumber));
    if (!c.issuerCertificate || c.issuerCertificate === c || c.issuerCertificate.fingerprint256 === c.fingerprint256) {
      return { serials, anchor: c.fingerprint256 };
    }
    c = c.issuerCertificate;
  }
  return { serials, anchor: undefined };
}
