// Certificate profiles (RFC 5280) for roots, intermediates and service leaves.
// Subjects are structured values, never strings pasted into "CN=…".
import { randomBytes } from "node:crypto";
import { signingAlgorithm, type KeyType } from "./keys.ts";
import { asn1Schema, asn1X509, x509 } from "./x509.ts";

/** notBefore is backdated so a peer whose clock runs a little behind still accepts a fresh certificate. */
export const BACKDATE_MS = 5 * 60 * 1000;
export const DAY_MS = 86_400_000;
export const LEAF_MAX_DAYS = 825; // the limit Apple platforms apply to TLS server certificates
export const CA_MAX_DAYS = 7300;

/** The CA that signs: its certificate, its private key and that key's type. */
export interface Signer {
  cert: x509.X509Certificate;
  /** The certificate's DER, when the signer was loaded without parsing it (authority.ts signer). */
  certDer?: Uint8Array;
  key: CryptoKey;
  keyType: KeyType;
}

export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

export function validityFor(now: Date, days: number): Validity {
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

/** A validity of a given length in milliseconds (the online CA's lifetimes are hours, not days). */
export function validityForMs(now: Date, ms: number): Validity {
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + ms) };
}

/** A certificate cannot outlive its issuer: path validation would reject it. */
export function clampToIssuer(v: Validity, issuer: { notAfter: Date }, warnings: string[]): Validity {
  if (v.notAfter <= issuer.notAfter) return v;
  warnings.push(
    `the issuing CA expires on ${issuer.notAfter.toISOString().slice(0, 10)}, so this certificate does too`,
  );
  return { notBefore: v.notBefore, notAfter: issuer.notAfter };
}

/** 16 random bytes, positive (top bit clear) and never shorter than 16 bytes once DER-encoded. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString("hex");
}

const caKeyUsage = () => new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true);

async function authorityKeyId(issuer: x509.X509Certificate): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
  return x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey);
}

export async function createRoot(opts: {
  name: string;
  keys: CryptoKeyPair;
  keyType: KeyType;
  validity: Validity;
}): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [opts.name] }],
    ...opts.validity,
    keys: opts.keys,
    signingAlgorithm: signingAlgorithm(opts.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      caKeyUsage(),
      await x509.SubjectKeyIdentifierExtension.create(opts.keys.publicKey),
    ],
  });
}

function nameConstraints(permitDns: string[]): x509.Extension {
  const { AsnConvert } = asn1Schema;
  const { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } = asn1X509;
  const subtrees = new GeneralSubtrees(
    permitDns.map((d) => new GeneralSubtree({ base: new GeneralName({ dNSName: d }) })),
  );
  const der = AsnConvert.serialize(new NameConstraints({ permittedSubtrees: subtrees }));
  return new x509.Extension(id_ce_nameConstraints, true, der);
}

export async function createIntermediate(opts: {
  name: string;
  publicKey: CryptoKey;
  issuer: Signer;
  validity: Validity;
  permitDns?: string[];
}): Promise<x509.X509Certificate> {
  const extensions: x509.Extension[] = [
    // pathLen 0: an issuing CA signs leaves only, never another CA.
    new x509.BasicConstraintsExtension(true, 0, true),
    caKeyUsage(),
    await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
    await authorityKeyId(opts.issuer.cert),
  ];
  if (opts.permitDns && opts.permitDns.length > 0) extensions.push(nameConstraints(opts.permitDns));
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [opts.name] }],
    issuer: opts.issuer.cert.subjectName,
    ...opts.validity,
    publicKey: opts.publicKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: signingAlgorithm(opts.issuer.keyType),
    extensions,
  });
}

export interface LeafNames {
  /** The service name: CN and first DNS SAN. */
  name: string;
  dns: string[];
  ip: string[];
  uri: string[];
}

export async function createLeaf(opts: {
  names: LeafNames;
  publicKey: CryptoKey | x509.PublicKey;
  keyType: KeyType;
  issuer: Signer;
  validity: Validity;
  serial?: string;
  /** CRL distribution point URLs (RFC 5280 4.2.1.13); the online CA names where it serves the issuer's CRL. */
  cdp?: string[];
}): Promise<x509.X509Certificate> {
  const { names } = opts;
  // X509-SVID.md 2: exactly one URI SAN, the SPIFFE ID; two would make a certificate every SPIFFE validator rejects.
  if (names.uri.length > 1)
    throw new Error(`a leaf carries at most one URI SAN (its SPIFFE ID), not ${names.uri.length}`);
  const san: x509.JsonGeneralNames = [
    ...[names.name, ...names.dns.filter((d) => d !== names.name)].map((value) => ({ type: "dns" as const, value })),
    ...names.ip.map((value) => ({ type: "ip" as const, value })),
    ...names.uri.map((value) => ({ type: "url" as const, value })),
  ];
  let usage = x509.KeyUsageFlags.digitalSignature;
  // RSA key exchange (TLS 1.2 without ECDHE) encrypts with the leaf key.
  if (opts.keyType.startsWith("rsa")) usage |= x509.KeyUsageFlags.keyEncipherment;
  return x509.X509CertificateGenerator.create({
    serialNumber: opts.serial ?? randomSerial(),
    subject: [{ CN: [names.name] }],
    issuer: opts.issuer.cert.subjectName,
    ...opts.validity,
    publicKey: opts.publicKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: signingAlgorithm(opts.issuer.keyType),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usage, true),
      // A mesh service is both a server and a client.
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(san),
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await authorityKeyId(opts.issuer.cert),
      ...(opts.cdp && opts.cdp.length > 0 ? [new x509.CRLDistributionPointsExtension(opts.cdp)] : []),
    ],
  });
}
