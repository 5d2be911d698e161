// The certificates of a certs-only PKCS#7 (CMS SignedData without signers), as EST's cacerts,
// simpleenroll and simplereenroll answer (RFC 7030 4.1.3, 4.2.3). What the CA sends is
// hostile input to a service: bounded and checked here.
import { children, DerError, readOne } from "./der.ts";

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
