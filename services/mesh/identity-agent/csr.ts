// A new P-256 key and a PKCS#10 request for CN = SAN DNS = the service's name, with node:crypto
// only (no certificate library loaded into a running service). The key never leaves this process
// except into the state folder.
import { generateKeyPairSync, sign } from "node:crypto";
import { bitString, oidDer, sequence, tlv } from "../../../lib/der.ts";

export interface KeyAndCsr {
  /** PKCS#8 PEM, for key.pem (0600). */
  keyPem: string;
  /** DER PKCS#10, for the EST body. */
  csr: Buffer;
}

export function newKeyAndCsr(dns: string): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const info = csrInfo(dns, publicKey.export({ type: "spki", format: "der" }));
  const signature = sign("sha256", info, privateKey); // ECDSA, DER-encoded (r, s)
  return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), csr: csrDer(info, signature) };
}

const OID = {
  commonName: oidDer("2.5.4.3"),
  extensionRequest: oidDer("1.2.840.113549.1.9.14"),
  subjectAltName: oidDer("2.5.29.17"),
  ecdsaWithSha256: oidDer("1.2.840.10045.4.3.2"),
};

/** The CertificationRequestInfo (RFC 2986) for CN = SAN DNS = `dns`, with this SubjectPublicKeyInfo. */
export function csrInfo(dns: string, spki: Uint8Array): Uint8Array {
  const name = sequence([tlv(0x31, sequence([OID.commonName, tlv(0x0c, Buffer.from(dns, "utf8"))]))]);
  const san = sequence([OID.subjectAltName, tlv(0x04, sequence([tlv(0x82, Buffer.from(dns, "ascii"))]))]);
  const attributes = tlv(0xa0, sequence([OID.extensionRequest, tlv(0x31, sequence([san]))]));
  return sequence([new Uint8Array([0x02, 0x01, 0x00]), name, spki, attributes]);
}

/** A signed CertificationRequest: info, ecdsa-with-SHA256, and the DER signature over info. */
export function csrDer(info: Uint8Array, signature: Uint8Array): Buffer {
  const der = sequence([info, sequence([OID.ecdsaWithSha256]), bitString(signature)]);
  return Buffer.from(der.buffer, der.byteOffset, der.byteLength);
}
