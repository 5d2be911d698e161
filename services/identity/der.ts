// The few DER structures a service needs to enrol without the CA's libraries: a PKCS#10
// request to build and a certs-only PKCS#7 to take apart. Input from the CA is bounded and checked.

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

interface Node {
  tag: number;
  /** The whole element, header included. */
  raw: Buffer;
  value: Buffer;
}

/** One element at `off`; throws on anything truncated or with an over-long length. */
function readAt(buf: Buffer, off: number): Node & { end: number } {
  if (off + 2 > buf.length) throw new Error("DER truncated");
  const tag = buf[off]!;
  let len = buf[off + 1]!;
  let head = 2;
  if (len & 0x80) {
    const k = len & 0x7f;
    if (k === 0 || k > 4 || off + 2 + k > buf.length) throw new Error("DER length unsupported");
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + buf[off + 2 + i]!;
    head += k;
  }
  const end = off + head + len;
  if (end > buf.length) throw new Error("DER truncated");
  return { tag, raw: buf.subarray(off, end), value: buf.subarray(off + head, end), end };
}

function children(value: Buffer): Node[] {
  const out: Node[] = [];
  for (let off = 0; off < value.length; ) {
    const n = readAt(value, off);
    out.push(n);
    off = n.end;
  }
  return out;
}

const OID_SIGNED_DATA = Buffer.from("06092a864886f70d010702", "hex");

/** The certificates (DER, in order) of a certs-only PKCS#7 (RFC 7030 4.1.3, 4.2.3). */
export function pkcs7Certificates(der: Buffer): Buffer[] {
  const top = readAt(der, 0);
  if (top.tag !== 0x30 || top.end !== der.length) throw new Error("not a PKCS#7 ContentInfo");
  const [type, content] = children(top.value);
  if (!type || !content || !type.raw.equals(OID_SIGNED_DATA) || content.tag !== 0xa0) throw new Error("not a PKCS#7 SignedData");
  const signed = children(content.value)[0];
  if (!signed || signed.tag !== 0x30) throw new Error("not a PKCS#7 SignedData");
  const certs = children(signed.value).find((n) => n.tag === 0xa0);
  if (!certs) return [];
  return children(certs.value).filter((n) => n.tag === 0x30).map((n) => Buffer.from(n.raw));
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
