// RFC 5280 path validation. X509ChainBuilder plus verify() checks only
// signatures and dates; this also checks every issuer is a CA allowed to sign
// certificates, path lengths, EKU, name constraints and revocation, and names
// the check that failed.
import { id_ce_nameConstraints, NameConstraints } from "@peculiar/asn1-x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { normalSerial, x509 } from "./x509.ts";

export type Check =
  | "parse" | "trust" | "signature" | "validity" | "basic-constraints" | "key-usage"
  | "path-length" | "extended-key-usage" | "name-constraints" | "critical-extension" | "crl" | "revocation";

export type Purpose = "server" | "client" | "mesh";

export interface VerifyInput {
  /** The certificate, optionally followed by the chain it is served with. */
  certs: x509.X509Certificate[];
  trusted: x509.X509Certificate[];
  /** Extra intermediates that may complete the path (the CA's own issuing CAs). */
  intermediates?: x509.X509Certificate[];
  /** When given, every certificate below the anchor needs a current CRL from its issuer. */
  crls?: x509.X509Crl[];
  at: Date;
  purpose: Purpose;
}

export interface VerifyResult {
  ok: boolean;
  /** Leaf first, trust anchor last (as far as it was built). */
  chain: x509.X509Certificate[];
  failed?: { check: Check; message: string };
}

const KNOWN_EXTENSIONS = new Set([
  "2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17", "2.5.29.14", "2.5.29.35", id_ce_nameConstraints,
]);

const cn = (c: x509.X509Certificate) => c.subjectName.getField("CN")[0] ?? c.subject;
const day = (d: Date) => d.toISOString().replace("T", " ").slice(0, 16) + " UTC";

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/** Builds leaf → … → anchor, choosing issuers whose signature verifies. */
async function buildPath(input: VerifyInput): Promise<{ chain: x509.X509Certificate[]; anchored: boolean }> {
  const pool = [...input.certs.slice(1), ...(input.intermediates ?? [])];
  const chain = [input.certs[0]!];
  for (let depth = 0; depth < 8; depth++) {
    const current = chain.at(-1)!;
    for (const anchor of input.trusted) {
      if (current.equal(anchor) || (await signedBy(current, anchor))) {
        if (!current.equal(anchor)) chain.push(anchor);
        return { chain, anchored: true };
      }
    }
    let next: x509.X509Certificate | undefined;
    for (const candidate of pool) {
      if (!chain.some((c) => c.equal(candidate)) && (await signedBy(current, candidate))) { next = candidate; break; }
    }
    if (!next) return { chain, anchored: false };
    chain.push(next);
  }
  return { chain, anchored: false };
}

function dnsNames(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return san ? san.names.items.filter((n) => n.type === "dns").map((n) => n.value) : [];
}

export function permittedDns(ca: x509.X509Certificate): string[] | undefined {
  const ext = ca.getExtension(id_ce_nameConstraints);
  if (!ext) return undefined;
  const nc = AsnConvert.parse(ext.value, NameConstraints);
  return nc.permittedSubtrees?.map((s) => s.base.dNSName).filter((d): d is string => !!d);
}

/** RFC 5280 4.2.1.10 for DNS: a constraint matches the name itself and every name under it. */
export function withinDns(name: string, constraint: string): boolean {
  if (constraint.startsWith(".")) return name.endsWith(constraint);
  return name === constraint || name.endsWith("." + constraint);
}

export async function verifyPath(input: VerifyInput): Promise<VerifyResult> {
  const { chain, anchored } = await buildPath(input);
  const fail = (check: Check, message: string): VerifyResult => ({ ok: false, chain, failed: { check, message } });
  const leaf = chain[0]!;
  if (!anchored) {
    const top = chain.at(-1)!;
    const trusted = input.trusted.map(cn).join(", ") || "none";
    return fail("trust", `${cn(top)} was issued by "${top.issuerName.getField("CN")[0] ?? top.issuer}", which is not a trusted CA (trusted: ${trusted})`);
  }
  for (const cert of chain) {
    if (input.at < cert.notBefore) return fail("validity", `${cn(cert)} is not valid until ${day(cert.notBefore)}`);
    if (input.at > cert.notAfter) return fail("validity", `${cn(cert)} expired on ${day(cert.notAfter)}`);
    const unknown = cert.extensions.find((e) => e.critical && !KNOWN_EXTENSIONS.has(e.type));
    if (unknown) return fail("critical-extension", `${cn(cert)} has a critical extension this verifier does not understand (${unknown.type})`);
  }
  // Every certificate above the leaf must be a CA allowed to sign certificates.
  for (let i = 1; i < chain.length; i++) {
    const ca = chain[i]!;
    const bc = ca.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca) return fail("basic-constraints", `${cn(ca)} signed ${cn(chain[i - 1]!)} but is not a CA (basicConstraints CA:TRUE is missing)`);
    const ku = ca.getExtension(x509.KeyUsagesExtension);
    if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) return fail("key-usage", `${cn(ca)} signed ${cn(chain[i - 1]!)} but its key usage does not allow signing certificates (keyCertSign)`);
    // Intermediates between this CA and the leaf, self-issued ones excepted.
    const below = chain.slice(1, i).filter((c) => c.subject !== c.issuer).length;
    if (bc.pathLength !== undefined && below > bc.pathLength) {
      return fail("path-length", `${cn(ca)} allows ${bc.pathLength} CA(s) below it (pathLen:${bc.pathLength}) but ${below} follow it`);
    }
    const permitted = permittedDns(ca);
    if (permitted) {
      const outside = dnsNames(leaf).find((n) => !permitted.some((p) => withinDns(n, p)));
      if (outside) return fail("name-constraints", `${outside} is outside the names ${cn(ca)} may certify (${permitted.join(", ")})`);
    }
  }
  if (!leaf.equal(chain.at(-1)!)) {
    const bc = leaf.getExtension(x509.BasicConstraintsExtension);
    if (bc?.ca) return fail("basic-constraints", `${cn(leaf)} is a CA certificate, not a service certificate`);
    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    if (ku && !(ku.usages & x509.KeyUsageFlags.digitalSignature)) return fail("key-usage", `${cn(leaf)} may not sign (digitalSignature is missing), so it cannot authenticate in TLS`);
    const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
    const need = input.purpose === "mesh" ? ["serverAuth", "clientAuth"] as const : input.purpose === "server" ? ["serverAuth"] as const : ["clientAuth"] as const;
    for (const usage of need) {
      if (eku && !eku.usages.includes(x509.ExtendedKeyUsage[usage])) {
        return fail("extended-key-usage", `${cn(leaf)} is not allowed for ${usage} (its extended key usage lacks it)`);
      }
    }
  }
  if (input.crls) {
    for (let i = 0; i < chain.length - 1; i++) {
      const cert = chain[i]!;
      const issuer = chain[i + 1]!;
      let crl: x509.X509Crl | undefined;
      for (const c of input.crls) {
        if (c.issuer === issuer.subject && (await c.verify({ publicKey: issuer.publicKey }).catch(() => false))) { crl = c; break; }
      }
      if (!crl) return fail("crl", `no CRL signed by ${cn(issuer)} was found, so the revocation of ${cn(cert)} cannot be checked (run: npm run ca -- crl)`);
      if (crl.thisUpdate > input.at) return fail("crl", `the CRL of ${cn(issuer)} is not valid until ${day(crl.thisUpdate)} (is this clock behind the CA's?)`);
      if (crl.nextUpdate && crl.nextUpdate < input.at) return fail("crl", `the CRL of ${cn(issuer)} lapsed on ${day(crl.nextUpdate)} (run: npm run ca -- crl)`);
      const entry = crl.findRevoked(normalSerial(cert.serialNumber)) ?? crl.findRevoked(cert);
      if (entry && entry.revocationDate <= input.at) {
        const reason = entry.reason !== undefined ? `, reason ${x509.X509CrlReason[entry.reason]}` : "";
        return fail("revocation", `${cn(cert)} (serial ${normalSerial(cert.serialNumber)}) was revoked on ${day(entry.revocationDate)}${reason}`);
      }
    }
  }
  return { ok: true, chain };
}

/** Splits a PEM file into certificates; anything unreadable is a "parse" failure for the caller. */
export function parseCertificates(pem: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new x509.X509Certificate(b));
}

export function parseCrls(pem: string): x509.X509Crl[] {
  const blocks = pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
  return blocks.map((b) => new x509.X509Crl(b));
}
