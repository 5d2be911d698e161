// Certificate revocation lists: one per CA, re-signed from the ledger on every
// change, with a generous nextUpdate because a lapsed CRL locks everyone out,
// and a thisUpdate backdated like certificates' notBefore for peers whose clock is behind.
// The list is assembled in linear time: @peculiar/x509's CRL generator costs
// about a millisecond per entry, which would make revocation in a large CA slow. The
// entries' encoding and every reading of a CRL are in lib/crl.ts; the rest is encoded here
// from the CA's template (ca/leaf-der.ts) and signed with node:crypto, without @peculiar/x509,
// so that `ca serve` re-signs its CRLs without loading it.
import { bitString, integerHex, sequence, time, tlv } from "../lib/der.ts";
import { signWith, templateFor } from "./leaf-der.ts";
import { BACKDATE_MS, DAY_MS, type Signer } from "./profiles.ts";

const CRL_NUMBER_OID = new Uint8Array([0x06, 0x03, 0x55, 0x1d, 0x14]);

export const CRL_VALID_DAYS = 30;

/**
 * The signed CRL, DER-encoded (parsing it back would cost what building it saved).
 * `entries` are already-encoded revokedCertificates entries, concatenated.
 */
export async function buildCrl(opts: {
  issuer: Signer;
  entries: Uint8Array;
  number: number;
  now: Date;
}): Promise<Uint8Array> {
  const { now } = opts;
  const t = templateFor(opts.issuer);
  // Extension cRLNumber (2.5.29.20): OCTET STRING { INTEGER }; then the AKI when the CA has an SKI.
  const extensions = [sequence([CRL_NUMBER_OID, tlv(0x04, integerHex(opts.number.toString(16)))])];
  if (t.crlAki) extensions.push(t.crlAki);
  const tbsParts = [
    new Uint8Array([0x02, 0x01, 0x01]), // version v2
    t.algorithm,
    t.issuerName,
    // A CRL dated its signing second is "not yet valid" to a peer a minute behind, which
    // then refuses every client right after a revoke; nextUpdate stays as the ledger has it.
    time(new Date(now.getTime() - BACKDATE_MS)),
    time(new Date(now.getTime() + CRL_VALID_DAYS * DAY_MS)),
  ];
  if (opts.entries.length > 0) tbsParts.push(tlv(0x30, opts.entries));
  tbsParts.push(tlv(0xa0, sequence(extensions)));
  const tbs = sequence(tbsParts);
  return sequence([tbs, t.algorithm, bitString(await signWith(t, tbs))]);
}

/**
 * When a revoked serial may leave its CA's CRL. RFC 5280 3.3: "An entry MUST NOT be removed
 * from the CRL until it appears on one regularly scheduled CRL issued beyond the revoked
 * certificate's validity period." So a rebuild keeps every revoked certificate whose notAfter
 * is after the last CRL's signing time (`lastSignedAt`), and drops the ones that had expired
 * when that CRL was signed: those have already been listed on a CRL issued after they expired.
 * A first rebuild after expiry keeps the serial, the next one drops it.
 *
 * The CRLs carry no ExpiredCertsOnCRL extension (X.509 9.6.2.9; RFC 5280 does not profile
 * it): they make no promise to list expired certificates, which is what RFC 5280 assumes of a
 * CRL without it. A relying party must not trust an expired certificate whatever the CRL says,
 * and the mesh's verifiers check notAfter before revocation.
 */
export function dropCutoff(lastSignedAt: Date | null, now: Date): Date {
  return lastSignedAt && lastSignedAt < now ? lastSignedAt : now;
}

/** The signing time of the CRL the ledger last recorded for a CA (its nextUpdate less the validity). */
export function lastSignedAt(crlNextUpdate: string | null): Date | null {
  if (!crlNextUpdate) return null;
  return new Date(new Date(crlNextUpdate).getTime() - CRL_VALID_DAYS * 86_400_000);
}
