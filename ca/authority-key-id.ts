// RFC 5280 4.2.1.1: the authority key identifier names the certificate that signed this one
// (its key identifier, or its issuer's name and serial). OpenSSL treats a certificate whose
// AKI does not describe a candidate issuer as not issued by it (X509_check_akid, called from
// X509_check_issued), and so a self-signed root whose AKI does not describe itself is not a
// trust anchor: `openssl verify` then looks for its issuer ("unable to get issuer certificate").
import { asn1Schema, asn1X509, type x509 } from "./x509.ts";

const id_ce_authorityKeyIdentifier = "2.5.29.35";
const id_ce_subjectKeyIdentifier = "2.5.29.14";

const hex = (b: ArrayBuffer | Uint8Array) =>
  Buffer.from(b instanceof Uint8Array ? b : new Uint8Array(b)).toString("hex");

/**
 * Whether `cert`'s AKI allows `issuer` as its issuer, as OpenSSL's X509_check_akid decides:
 * no AKI allows any; a key identifier must equal the issuer's SKI (when it has one); a serial
 * must equal the issuer's serial; issuer names must include the issuer's own issuer name.
 * An AKI that cannot be parsed allows none (fails closed).
 */
export function akiAllows(cert: x509.X509Certificate, issuer: x509.X509Certificate): boolean {
  const ext = cert.extensions.find((e) => e.type === id_ce_authorityKeyIdentifier);
  if (!ext) return true;
  const { AsnConvert } = asn1Schema;
  const { AuthorityKeyIdentifier, SubjectKeyIdentifier } = asn1X509;
  try {
    const aki = AsnConvert.parse(ext.value, AuthorityKeyIdentifier);
    if (aki.keyIdentifier) {
      const skiExt = issuer.extensions.find((e) => e.type === id_ce_subjectKeyIdentifier);
      if (skiExt) {
        const ski = AsnConvert.parse(skiExt.value, SubjectKeyIdentifier);
        if (hex(aki.keyIdentifier.buffer) !== hex(ski.buffer)) return false;
      }
    }
    if (
      aki.authorityCertSerialNumber &&
      hex(aki.authorityCertSerialNumber).replace(/^(00)+/, "") !==
        hex(issuerTbs(issuer).serialNumber).replace(/^(00)+/, "")
    )
      return false;
    if (aki.authorityCertIssuer) {
      const want = hex(AsnConvert.serialize(issuerTbs(issuer).issuer));
      const named = aki.authorityCertIssuer.some(
        (g) => g.directoryName && hex(AsnConvert.serialize(g.directoryName)) === want,
      );
      if (!named) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function issuerTbs(c: x509.X509Certificate) {
  return asn1Schema.AsnConvert.parse(c.rawData, asn1X509.Certificate).tbsCertificate;
}
