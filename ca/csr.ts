// PKCS#10 certificate requests (RFC 2986), read with the project's DER reader: the subject's
// CNs, the requested SANs and the public key, and the self-signature checked with node:crypto.
// @peculiar/x509's Pkcs10CertificateRequest built an object model of every request (~0.3 ms
// and a WebCrypto import per CSR, docs/bench.md); the CA needs four facts of it. A CSR is
// hostile input: bounded element counts, nothing past its end, every tag checked.
import { createPublicKey, type KeyObject, verify } from "node:crypto";
import { children, DerError, hexOf, readOne, readTlv, type Tlv } from "../lib/der.ts";
import { CaError } from "./errors.ts";
import { keyTypeOf, type KeyType } from "./keys.ts";

/** One requested subjectAltName, named as @peculiar/x509's JSON names them (and the CA's messages show). */
export interface CsrName {
  type: "dns" | "ip" | "url" | "email" | "dn" | "id";
  value: string;
}

export interface ParsedCsr {
  /** The CN attributes of the subject, in order. */
  cns: string[];
  /** The subjectAltName of the extensionRequest, in order (empty when none). */
  sans: CsrName[];
  /** The SubjectPublicKeyInfo, DER, exactly as the request carries it. */
  spki: Uint8Array;
  signatureAlgorithm: string;
  info: Uint8Array;
  signature: Uint8Array;
}

/** Not a PKCS#10 request that can be read; callers word it for their user. */
export class CsrFormatError extends Error {}

const CN = "550403";
const EXTENSION_REQUEST = "2a864886f70d01090e"; // 1.2.840.113549.1.9.14
const SAN = "551d11";

// Signature algorithms a CSR may be signed with, by OID (hex): the digest (null for EdDSA).
const SIGNATURES: Record<string, string | null> = {
  "2a8648ce3d040302": "sha256", // ecdsa-with-SHA256
  "2a8648ce3d040303": "sha384",
  "2a8648ce3d040304": "sha512",
  "2a864886f70d01010b": "sha256", // sha256WithRSAEncryption
  "2a864886f70d01010c": "sha384",
  "2a864886f70d01010d": "sha512",
  "2b6570": null, // Ed25519
};

/** The fields of a DER CSR; throws CsrFormatError when it is not one. */
export function parseCsr(der: Uint8Array): ParsedCsr {
  try {
    const top = readOne(der);
    const [info, alg, sig, ...rest] = children(top, 4);
    if (top.tag !== 0x30 || info?.tag !== 0x30 || alg?.tag !== 0x30 || sig?.tag !== 0x03 || rest.length > 0)
      throw new DerError("not a CertificationRequest");
    const [version, subject, spki, attributes, ...more] = children(info, 5);
    if (version?.tag !== 0x02 || subject?.tag !== 0x30 || spki?.tag !== 0x30 || more.length > 0)
      throw new DerError("not a CertificationRequestInfo");
    if (attributes !== undefined && attributes.tag !== 0xa0) throw new DerError("bad attributes");
    const algOid = children(alg, 2)[0];
    if (algOid?.tag !== 0x06 || sig.end - sig.start < 1 || sig.buf[sig.start] !== 0)
      throw new DerError("bad signature");
    return {
      cns: cnsOf(subject),
      sans: attributes ? sansOf(attributes) : [],
      spki: new Uint8Array(spki.raw),
      signatureAlgorithm: hexOf(algOid),
      info: new Uint8Array(info.raw),
      signature: sig.buf.subarray(sig.start + 1, sig.end),
    };
  } catch (err) {
    if (err instanceof DerError || err instanceof RangeError) throw new CsrFormatError(err.message);
    throw err;
  }
}

/**
 * The request's key type, as the CA names it; CaError BAD_INPUT for a key or curve it does not
 * sign (checked before the signature: P-192 or secp256k1 would otherwise read as a bad signature).
 */
export function csrKey(csr: ParsedCsr): { key: KeyObject; keyType: KeyType } {
  let key: KeyObject;
  try {
    const p256 = p256Point(csr.spki);
    // The services' keys: imported from the point's coordinates, which skips OpenSSL 3's decoder
    // search (~130 µs of CPU per DER import, ~70 µs this way); OpenSSL checks the point is on the
    // curve either way. Any other key, or a P-256 one encoded otherwise, goes through the DER.
    if (p256) return { key: createPublicKey({ key: p256, format: "jwk" }), keyType: "ec-p256" };
    key = createPublicKey({ key: Buffer.from(csr.spki), format: "der", type: "spki" });
  } catch {
    throw new CsrFormatError("the public key is not readable");
  }
  return { key, keyType: keyTypeOf(key) };
}

/** A P-256 SubjectPublicKeyInfo up to its uncompressed point's X (id-ecPublicKey, prime256v1, BIT STRING, 04). */
const P256_SPKI_HEAD = Buffer.from("3059301306072a8648ce3d020106082a8648ce3d03010703420004", "hex");

/** The JWK of a P-256 key encoded exactly as P256_SPKI_HEAD then X and Y (91 bytes), else undefined. */
function p256Point(spki: Uint8Array): { kty: "EC"; crv: "P-256"; x: string; y: string } | undefined {
  if (spki.length !== P256_SPKI_HEAD.length + 64) return undefined;
  const b = Buffer.from(spki.buffer, spki.byteOffset, spki.length);
  if (!b.subarray(0, P256_SPKI_HEAD.length).equals(P256_SPKI_HEAD)) return undefined;
  const at = P256_SPKI_HEAD.length;
  return { kty: "EC", crv: "P-256", x: b.toString("base64url", at, at + 32), y: b.toString("base64url", at + 32) };
}

/** Whether the request's self-signature verifies with its own key, by an algorithm this CA accepts. */
export function csrSignatureValid(csr: ParsedCsr, key: KeyObject): boolean {
  if (!(csr.signatureAlgorithm in SIGNATURES)) return false;
  try {
    return verify(SIGNATURES[csr.signatureAlgorithm]!, csr.info, { key, dsaEncoding: "der" }, csr.signature);
  } catch {
    return false; // a key that cannot make this kind of signature
  }
}

export { CaError };

function cnsOf(name: Tlv): string[] {
  const out: string[] = [];
  for (const rdn of children(name, 64)) {
    if (rdn.tag !== 0x31) throw new DerError("bad Name");
    for (const atv of children(rdn, 16)) {
      const [type, value] = children(atv, 2);
      if (atv.tag !== 0x30 || type?.tag !== 0x06 || !value) throw new DerError("bad Name");
      if (hexOf(type) === CN) out.push(directoryString(value));
    }
  }
  return out;
}

/** A DirectoryString's text (RFC 5280 4.1.2.4), as @peculiar/x509's getField gives it. */
function directoryString(v: Tlv): string {
  const b = Buffer.from(v.body);
  switch (v.tag) {
    case 0x0c: // UTF8String
      return b.toString("utf8");
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString
      return b.toString("latin1");
    case 0x1e: // BMPString: UCS-2, big-endian
      return b.swap16().toString("utf16le");
    default:
      return `#${b.toString("hex")}`;
  }
}

function sansOf(attributes: Tlv): CsrName[] {
  for (const attr of children(attributes, 32)) {
    const [type, values] = children(attr, 2);
    if (attr.tag !== 0x30 || type?.tag !== 0x06 || values?.tag !== 0x31) throw new DerError("bad attribute");
    if (hexOf(type) !== EXTENSION_REQUEST) continue;
    const exts = children(values, 1)[0];
    if (exts?.tag !== 0x30) throw new DerError("bad extensionRequest");
    for (const ext of children(exts, 64)) {
      const parts = children(ext, 3);
      const value = parts[parts.length - 1];
      if (ext.tag !== 0x30 || parts[0]?.tag !== 0x06 || value?.tag !== 0x04) throw new DerError("bad extension");
      if (hexOf(parts[0]) !== SAN) continue;
      const names = readOne(value.body);
      if (names.tag !== 0x30) throw new DerError("bad subjectAltName");
      return children(names, 256).map(generalName);
    }
  }
  return [];
}

function generalName(n: Tlv): CsrName {
  const text = () => Buffer.from(n.body).toString("latin1");
  switch (n.tag) {
    case 0x82:
      return { type: "dns", value: text() };
    case 0x86:
      return { type: "url", value: text() };
    case 0x81:
      return { type: "email", value: text() };
    case 0x87:
      return { type: "ip", value: ipText(n.body) };
    case 0xa4: {
      const name = readTlv(n.buf, n.start, n.end);
      return {
        type: "dn",
        value:
          cnsOf(name)
            .map((cn) => `CN=${cn}`)
            .join(", ") || hexOf(name),
      };
    }
    default:
      return { type: "id", value: hexOf(n) };
  }
}

/** An iPAddress's text: dotted IPv4, or IPv6 with its longest run of zero groups as "::". */
function ipText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length !== 16) return Buffer.from(b).toString("hex");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  let best = -1;
  let bestLen = 1; // RFC 5952 4.2.2: a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}
