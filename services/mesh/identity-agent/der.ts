// The few DER structures a service needs to enrol without the CA's libraries: a PKCS#10
// request to build and a certs-only PKCS#7 to take apart. Input from the CA is bounded and checked.
import { children, readTlv, type Tlv } from "../der.ts";

export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const OID_SIGNED_DATA = Buffer.from("06092a864886f70d010702", "hex");

/** The certificates (DER, in order) of a certs-only PKCS#7 (RFC 7030 4.1.3, 4.2.3). */
export function pkcs7Certificates(der: Buffer): Buffer[] {
  const top = readTlv(der, 0);
  if (top.tag !== 0x30 || top.end !== der.length) throw new Error("not a PKCS#7 ContentInfo");
  const raw = (t: Tlv) => der.subarray(t.at, t.end);
  const [type, content] = children(der, top);
  if (!type || !content || !raw(type).equals(OID_SIGNED_DATA) || content.tag !== 0xa0) throw new Error("not a PKCS#7 SignedData");
  const signed = children(der, content)[0];
  if (!signed || signed.tag !== 0x30) throw new Error("not a PKCS#7 SignedData");
  const certs = children(der, signed).find((n) => n.tag === 0xa0);
  if (!certs) return [];
  return children(der, certs).filter((n) => n.tag === 0x30).map((n) => Buffer.from(raw(n)));
}

const OID = {
  commonName: Buffer.from("0603550403", "hex"),
  extensionRequest: Buffer.from("06092a864886f70d01090e", "hex"),
  subjectAltName: Buffer.from("0603551d11", "hex"),
  ecdsaWithSha256: Buffer.from("06082a8648ce3d040302", "hex"),
};

/** The CertificationRequestInfo (RFC 2986) for CN = SAN DNS = `dns`, with this SubjectPublicKeyInfo. */
export function csrInfo(dns: string, spki: Buffer): Buffer {
  const name = tlv(0x30, tlv(0x31, tlv(0x30, OID.commonName, tlv(0x0c, Buffer.from(dns, "utf8")))));
  const san = tlv(0x30, OID.subjectAltName, tlv(0x04, tlv(0x30, tlv(0x82, Buffer.from(dns, "ascii")))));
  const attributes = tlv(0xa0, tlv(0x30, OID.extensionRequest, tlv(0x31, tlv(0x30, san))));
  return tlv(0x30, Buffer.from([0x02, 0x01, 0x00]), name, spki, attributes);
}

/** A signed CertificationRequest: info, ecdsa-with-SHA256, and the DER signature over info. */
export function csrDer(info: Buffer, signature: Buffer): Buffer {
  return tlv(0x30, info, tlv(0x30, OID.ecdsaWithSha256), tlv(0x03, Buffer.from([0]), signature));
}
