// Service leaves (RFC 5280), encoded by hand from a template made once per issuing CA and
// signed with node:crypto. Through @peculiar/x509's generator a leaf cost ~1 ms of asn1-schema
// objects, several parses of the issuer and a WebCrypto round trip (docs/bench.md, "Where the
// CA's time goes"); here it is a few hundred bytes of concatenation and one signature.
// The profile is createLeaf's in profiles.ts, byte for byte (test/ca-leaf-der.test.ts holds
// the two to the same bytes, and to openssl): change one, change both.
import { createHash, KeyObject, sign } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import {
  bitString,
  children,
  DerError,
  integerHex,
  readOne,
  readTime,
  sequence,
  time,
  tlv,
  type Tlv,
} from "../lib/der.ts";
import type { KeyType } from "./keys.ts";
import type { LeafNames, Signer, Validity } from "./profiles.ts";

type Bytes = Uint8Array<ArrayBuffer>;
const hex = (h: string): Bytes => new Uint8Array(Buffer.from(h, "hex"));

// AlgorithmIdentifier of the issuer's signature, as @peculiar/x509 writes them (RSA with its NULL).
const SIGNATURE_ALGORITHM: Record<KeyType, Bytes> = {
  "ec-p256": hex("300a06082a8648ce3d040302"), // ecdsa-with-SHA256
  "ec-p384": hex("300a06082a8648ce3d040303"), // ecdsa-with-SHA384
  "rsa-2048": hex("300d06092a864886f70d01010b0500"), // sha256WithRSAEncryption
  "rsa-3072": hex("300d06092a864886f70d01010b0500"),
  ed25519: hex("300506032b6570"),
};
const DIGEST: Record<KeyType, string | null> = {
  "ec-p256": "sha256",
  "ec-p384": "sha384",
  "rsa-2048": "sha256",
  "rsa-3072": "sha256",
  ed25519: null, // EdDSA hashes inside the signature
};

const VERSION_3 = hex("a003020102");
const CN_OID = hex("0603550403");
// Extensions whose bytes never change: basicConstraints (critical, CA false), keyUsage
// (critical; digitalSignature, and keyEncipherment for RSA keys), extKeyUsage serverAuth + clientAuth.
const BASIC_CONSTRAINTS = hex("300c0603551d130101ff04023000");
const KEY_USAGE_SIGN = hex("300e0603551d0f0101ff040403020780");
const KEY_USAGE_SIGN_ENCIPHER = hex("300e0603551d0f0101ff0404030205a0");
const EXT_KEY_USAGE = hex("301d0603551d250416301406082b0601050507030106082b06010505070302");
const SAN_OID = hex("0603551d11");
const SKI_OID = hex("0603551d0e");
const AKI_OID = hex("0603551d23");
const CDP_OID = hex("0603551d1f");
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/; // X.520 PrintableString; anything else is UTF8String

/** What a leaf of one issuing CA shares with every other: computed once per CA generation. */
export interface LeafTemplate {
  readonly issuerName: Bytes;
  readonly algorithm: Bytes;
  /** The authorityKeyIdentifier extension, whole. */
  readonly aki: Bytes;
  readonly key: KeyObject;
  readonly digest: string | null;
  /** The CA's notAfter: no leaf outlives it. */
  readonly notAfter: Date;
  /** The AKI for the CA's CRLs: only from an SKI the CA's certificate carries (as before). */
  readonly crlAki?: Bytes;
}

const templates = new WeakMap<Signer, LeafTemplate>();

/** A signer's template, made once per Signer object (authority.ts keeps one per CA). */
export function templateFor(signer: Signer): LeafTemplate {
  let t = templates.get(signer);
  if (!t) {
    t = leafTemplate(signer.certDer ?? new Uint8Array(signer.cert.rawData), signer.key, signer.keyType);
    templates.set(signer, t);
  }
  return t;
}

/** A signature over `data` by the template's CA key, DER-encoded as X.509 wants it, on the thread pool. */
export function signWith(t: LeafTemplate, data: Uint8Array): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) =>
    sign(t.digest, data, { key: t.key, dsaEncoding: "der" }, (err, sig) => (err ? reject(err) : resolve(sig))),
  );
}

/**
 * The template of a CA: its subject (the leaves' issuer), its key identifier and its key as a
 * node:crypto KeyObject. `certDer` is the CA's certificate, `key` its private key.
 */
export function leafTemplate(certDer: Uint8Array, key: CryptoKey | KeyObject, keyType: KeyType): LeafTemplate {
  const tbs = tbsFields(certDer);
  const subject = tbs[5]!;
  const ski = extension(tbs, "551d0e");
  // RFC 5280 4.2.1.1: the issuer's own SKI when it has one, else method 1 over its key.
  const keyId = ski ? readOne(ski).body : sha1(subjectPublicKey(tbs[6]!));
  const aki = extensionDer(AKI_OID, false, sequence([tlv(0x80, keyId)]));
  return {
    issuerName: new Uint8Array(subject.raw),
    algorithm: SIGNATURE_ALGORITHM[keyType],
    aki,
    crlAki: ski ? aki : undefined,
    key: key instanceof KeyObject ? key : KeyObject.from(key as Parameters<typeof KeyObject.from>[0]),
    digest: DIGEST[keyType],
    notAfter: readTime(children(tbs[4]!, 2)[1]!),
  };
}

/**
 * The dNSName bases of a CA certificate's permitted subtrees (RFC 5280 4.2.1.10), as
 * name-constraints.ts permittedDns reads them through @peculiar/x509: undefined when it has no
 * nameConstraints or they permit nothing by name form; issuance refuses names outside them.
 */
export function permittedDnsOf(certDer: Uint8Array): string[] | undefined {
  const value = extension(tbsFields(certDer), "551d1e");
  if (!value) return undefined;
  const nc = readOne(value);
  const permitted = nc.tag === 0x30 ? children(nc, 2).find((t) => t.tag === 0xa0) : undefined;
  if (!permitted) return undefined;
  return children(permitted, 1024)
    .map((subtree) => children(subtree, 3)[0])
    .filter((base): base is Tlv => base?.tag === 0x82 && base.end > base.start)
    .map((base) => Buffer.from(base.body).toString("latin1"));
}

export interface LeafFields {
  names: LeafNames;
  /** The certified key, a DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  keyType: KeyType;
  validity: Validity;
  /** Hex, positive (profiles.ts randomSerial). */
  serial: string;
  cdp?: string[];
}

/** The leaf's TBSCertificate, DER. */
export function leafTbs(t: LeafTemplate, f: LeafFields): Bytes {
  const { names } = f;
  // X509-SVID.md 2: exactly one URI SAN, the SPIFFE ID; two would make a certificate every SPIFFE validator rejects.
  if (names.uri.length > 1)
    throw new Error(`a leaf carries at most one URI SAN (its SPIFFE ID), not ${names.uri.length}`);
  const spki = readOne(f.spki);
  if (spki.tag !== 0x30) throw new DerError("the public key is not a SubjectPublicKeyInfo");
  const extensions = [
    BASIC_CONSTRAINTS,
    f.keyType.startsWith("rsa") ? KEY_USAGE_SIGN_ENCIPHER : KEY_USAGE_SIGN,
    EXT_KEY_USAGE,
    extensionDer(SAN_OID, false, sanDer(names)),
    extensionDer(SKI_OID, false, tlv(0x04, sha1(subjectPublicKey(spki)))),
    t.aki,
  ];
  if (f.cdp && f.cdp.length > 0) extensions.push(extensionDer(CDP_OID, false, cdpDer(f.cdp)));
  return sequence([
    VERSION_3,
    integerHex(f.serial),
    t.algorithm,
    t.issuerName,
    sequence([time(f.validity.notBefore), time(f.validity.notAfter)]),
    sequence([tlv(0x31, sequence([CN_OID, directoryString(names.name)]))]),
    f.spki,
    tlv(0xa3, sequence(extensions)),
  ]);
}

/** The signed leaf, DER. The signature runs on libuv's thread pool: other requests go on meanwhile. */
export async function signLeafDer(t: LeafTemplate, f: LeafFields): Promise<Bytes> {
  const tbs = leafTbs(t, f);
  return sequence([tbs, t.algorithm, bitString(await signWith(t, tbs))]);
}

// --- the parts ---------------------------------------------------------------------------

function extensionDer(oid: Uint8Array, critical: boolean, value: Uint8Array): Bytes {
  return sequence(critical ? [oid, hex("0101ff"), tlv(0x04, value)] : [oid, tlv(0x04, value)]);
}

function directoryString(s: string): Bytes {
  return tlv(PRINTABLE.test(s) ? 0x13 : 0x0c, new Uint8Array(Buffer.from(s, "utf8")));
}

/** GeneralNames: dNSName [2], iPAddress [7], uniformResourceIdentifier [6]; in createLeaf's order. */
function sanDer(names: LeafNames): Bytes {
  const ascii = (tag: number, s: string) => tlv(tag, new Uint8Array(Buffer.from(s, "latin1")));
  return sequence([
    ...[names.name, ...names.dns.filter((d) => d !== names.name)].map((d) => ascii(0x82, d)),
    ...names.ip.map((ip) => tlv(0x87, ipBytes(ip))),
    ...names.uri.map((u) => ascii(0x86, u)),
  ]);
}

/** CRLDistributionPoints: one DistributionPoint per URL, each a fullName of one URI. */
function cdpDer(urls: string[]): Bytes {
  return sequence(
    urls.map((u) => sequence([tlv(0xa0, tlv(0xa0, tlv(0x86, new Uint8Array(Buffer.from(u, "latin1")))))])),
  );
}

/** An IP address's 4 or 16 bytes (RFC 5280 4.2.1.6). Addresses were validated (names.ts validateIp). */
export function ipBytes(ip: string): Bytes {
  if (isIPv4(ip)) return new Uint8Array(ip.split(".").map(Number));
  if (!isIPv6(ip)) throw new Error(`${JSON.stringify(ip)} is not an IP address`);
  let text = ip.replace(/%.*$/, ""); // a zone names an interface of the sender, not part of the address
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split(".").map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [left, right] = text.split("::") as [string, string | undefined];
  const l = left ? left.split(":") : [];
  const r = right ? right.split(":") : [];
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill("0"), ...r];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

function sha1(b: Uint8Array): Bytes {
  return new Uint8Array(createHash("sha1").update(b).digest());
}

/** The subjectPublicKey BIT STRING's bits (its unused-bits octet dropped) of a SubjectPublicKeyInfo. */
function subjectPublicKey(spki: Tlv): Uint8Array {
  const bits = children(spki, 2)[1];
  if (bits?.tag !== 0x03 || bits.end - bits.start < 2) throw new DerError("the public key has no subjectPublicKey");
  return bits.buf.subarray(bits.start + 1, bits.end);
}

/** A certificate's serial (hex, as encoded) and its SubjectPublicKeyInfo (DER); DerError when unreadable. */
export function certSerialAndKey(certDer: Uint8Array): { serial: string; spki: Uint8Array } {
  const tbs = tbsFields(certDer);
  const [serial, spki] = [tbs[1], tbs[6]];
  if (serial?.tag !== 0x02 || spki?.tag !== 0x30) throw new DerError("not a certificate");
  return { serial: Buffer.from(serial.body).toString("hex"), spki: spki.raw };
}

/** A certificate's TBSCertificate fields, the optional version included (index 0 when present). */
function tbsFields(certDer: Uint8Array): Tlv[] {
  const cert = readOne(certDer);
  const tbs = children(cert, 3)[0];
  if (cert.tag !== 0x30 || tbs?.tag !== 0x30) throw new DerError("not a certificate");
  const fields = children(tbs, 10);
  if (fields[0]?.tag !== 0xa0) throw new DerError("not an X.509 v3 certificate");
  return fields;
}

/** The extnValue of one extension (by its OID's hex) of a certificate, if present. */
function extension(tbs: Tlv[], oidHex: string): Uint8Array | undefined {
  const exts = tbs.find((f) => f.tag === 0xa3);
  const list = exts && children(exts, 1)[0];
  if (!list) return undefined;
  for (const ext of children(list, 64)) {
    const parts = children(ext, 3);
    if (Buffer.from(parts[0]!.body).toString("hex") === oidHex) return parts[parts.length - 1]!.body;
  }
  return undefined;
}
