// A P-256 or P-384 key pair for a leaf, its PKCS#8 and SubjectPublicKeyInfo written by hand.
// OpenSSL 3's encoders (what KeyObject.export and generateKeyPair's encodings go through) cost
// ~0.17 ms of CPU per key pair here, six times the key generation itself (docs/bench.md, "Where the
// CA's time goes"); for a named curve both structures are a fixed frame around the key's bytes
// (RFC 5915, RFC 5480, RFC 5208). test/ca-journal-commit.test.ts holds the result byte for byte to
// what OpenSSL writes for the same key.
import { createECDH } from "node:crypto";
import { bitString, concat, oidDer, sequence, tlv } from "../lib/der.ts";
import { derToPem } from "../lib/pem.ts";

export type EcCurve = "P-256" | "P-384";

const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
/** Per curve: OpenSSL's name, the scalar's length, and the AlgorithmIdentifier both structures carry. */
const CURVES: Record<EcCurve, { openssl: string; bytes: number; algorithm: Uint8Array }> = {
  "P-256": {
    openssl: "prime256v1",
    bytes: 32,
    algorithm: sequence([oidDer(EC_PUBLIC_KEY), oidDer("1.2.840.10045.3.1.7")]),
  },
  "P-384": { openssl: "secp384r1", bytes: 48, algorithm: sequence([oidDer(EC_PUBLIC_KEY), oidDer("1.3.132.0.34")]) },
};

/** A fresh key pair on `curve`: the SPKI DER for the certificate, the unencrypted PKCS#8 PEM for its file. */
export function ecKeyPair(curve: EcCurve): { spki: Buffer; pkcs8Pem: string } {
  const c = CURVES[curve];
  const ecdh = createECDH(c.openssl);
  const point = ecdh.generateKeys(); // uncompressed: 04 || X || Y
  const d = leftPad(ecdh.getPrivateKey(), c.bytes);
  const algorithm = c.algorithm;
  const spki = sequence([algorithm, bitString(point)]);
  // ECPrivateKey without its optional parameters: PKCS#8's algorithm names the curve (as OpenSSL writes it).
  const ecPrivateKey = sequence([tlv(0x02, Uint8Array.of(1)), tlv(0x04, d), tlv(0xa1, bitString(point))]);
  const pkcs8 = sequence([tlv(0x02, Uint8Array.of(0)), algorithm, tlv(0x04, ecPrivateKey)]);
  return { spki: Buffer.from(spki), pkcs8Pem: derToPem(pkcs8, "PRIVATE KEY") };
}

/** The private scalar as RFC 5915 wants it: exactly the order's length, leading zeros kept. */
function leftPad(bytes: Buffer, size: number): Uint8Array {
  if (bytes.length === size) return bytes;
  return concat([new Uint8Array(size - bytes.length), bytes]);
}
