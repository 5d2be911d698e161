// The certificates of a certs-only PKCS#7 (CMS SignedData without signers), as EST's cacerts,
// simpleenroll and simplereenroll answer (RFC 7030 4.1.3, 4.2.3). What the CA sends is
// hostile input to a service: bounded and checked here.
import { children, concat, DerError, readOne, sequence, tlv } from "./der.ts";

// OBJECT IDENTIFIER id-signedData (1.2.840.113549.1.7.2), tag and length included.
const SIGNED_DATA = Buffer.from("06092a864886f70d010702", "hex");

/** The certificates (DER, in order) of a certs-only PKCS#7; at most `max` of them. */
export function pkcs7Certificates(der: Uint8Array, max = 1_000): Buffer[] {
  const top = readOne(der);
  if (top.tag !== 0x30) throw new DerError("not a PKCS#7 ContentInfo");
  const parts = children(top, 3);
  const [type, content] = parts;
  if (parts.length !== 2 || !type || !content || !SIGNED_DATA.equals(type.raw) || content.tag !== 0xa0)
    throw new DerError("not a PKCS#7 SignedData");
  const signed = children(content, 1)[0];
  if (signed?.tag !== 0x30) throw new DerError("not a PKCS#7 SignedData");
  const certs = children(signed, 6).find((n) => n.tag === 0xa0);
  if (!certs) return [];
  return children(certs, max)
    .filter((n) => n.tag === 0x30)
    .map((n) => Buffer.from(n.raw));
}

// SignedData's fixed parts around the certificates, as @peculiar/x509's X509Certificates writes
// them (test/ca-leaf-der.test.ts holds the two to the same bytes): version 1, no digest
// algorithms, id-data content with an empty OCTET STRING, and (after the certificates) no signers.
const VERSION_NO_DIGESTS_DATA = Buffer.from("0201013100300f06092a864886f70d010701a0020400", "hex");
const NO_SIGNERS = Buffer.from("3100", "hex");

/** A certs-only PKCS#7 of the given DER certificates, in order (what EST's answers carry). */
export function certsOnlyDer(certs: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const signedData = sequence([VERSION_NO_DIGESTS_DATA, tlv(0xa0, concat(certs)), NO_SIGNERS]);
  return sequence([SIGNED_DATA, tlv(0xa0, signedData)]);
}
