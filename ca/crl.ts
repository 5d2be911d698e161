// Certificate revocation lists: one per CA, re-signed from the ledger on every
// change, with a generous nextUpdate because a lapsed CRL locks everyone out.
import { AsnConvert } from "@peculiar/asn1-schema";
import { CRLNumber, id_ce_cRLNumber } from "@peculiar/asn1-x509";
import { signingAlgorithm } from "./keys.ts";
import { DAY_MS, type Signer } from "./profiles.ts";
import { x509 } from "./x509.ts";

export const CRL_VALID_DAYS = 30;
/** Commands warn when a CRL has less than this left before its nextUpdate. */
export const CRL_WARN_DAYS = 7;

export const REVOCATION_REASONS = [
  "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
  "cessationOfOperation", "certificateHold", "privilegeWithdrawn",
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface CrlEntry {
  serial: string;
  revokedAt: Date;
  reason: RevocationReason;
}

export async function buildCrl(opts: { issuer: Signer; entries: CrlEntry[]; number: number; now: Date }): Promise<x509.X509Crl> {
  const ski = opts.issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const extensions: x509.Extension[] = [
    new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(opts.number))),
  ];
  if (ski) extensions.push(new x509.AuthorityKeyIdentifierExtension(ski.keyId));
  return x509.X509CrlGenerator.create({
    issuer: opts.issuer.cert.subjectName,
    thisUpdate: opts.now,
    nextUpdate: new Date(opts.now.getTime() + CRL_VALID_DAYS * DAY_MS),
    signingKey: opts.issuer.key,
    signingAlgorithm: signingAlgorithm(opts.issuer.keyType),
    extensions,
    entries: opts.entries.map((e) => ({
      serialNumber: e.serial,
      revocationDate: e.revokedAt,
      // "unspecified" is left out, as RFC 5280 5.3.1 asks.
      reason: e.reason === "unspecified" ? undefined : x509.X509CrlReason[e.reason],
    })),
  });
}
