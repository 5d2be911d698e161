// EST's answer (RFC 7030 4.1.3, 4.2.3): a certs-only CMS SignedData (RFC 5652) holding the
// certificates, no signer. Encoded here from the certificates' DER, a fixed frame around their
// bytes: through @peculiar/x509's object model it cost ~13% of the EST server's CPU per
// issuance (bench/est.ts profile, docs/bench.md). test/ca-est-pkcs7.test.ts checks it gives
// the same bytes as @peculiar/x509 and that openssl reads it.
import { concat, oidDer, sequence, tlv } from "../../lib/der.ts";

const SIGNED_DATA = oidDer("1.2.840.113549.1.7.2");
const DATA = oidDer("1.2.840.113549.1.7.1");
const VERSION_1 = new Uint8Array([0x02, 0x01, 0x01]);
const EMPTY_SET = new Uint8Array([0x31, 0x00]);
// eContent present and empty ([0] { OCTET STRING "" }), as @peculiar/x509 writes it: the same
// bytes keep the bundle's ETag (a hash of them) what it was before this encoder.
const ENCAP_DATA = sequence([DATA, tlv(0xa0, tlv(0x04, new Uint8Array(0)))]);

/** ContentInfo { signedData, [0] SignedData { 1, {}, { data, [0] "" }, [0] certificates, {} } }, certificates in the order given. */
export function certsOnlyDer(certs: readonly Uint8Array[]): Uint8Array {
  const signedData = sequence([VERSION_1, EMPTY_SET, ENCAP_DATA, tlv(0xa0, concat(certs)), EMPTY_SET]);
  return sequence([SIGNED_DATA, tlv(0xa0, signedData)]);
}
