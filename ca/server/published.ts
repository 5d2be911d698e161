// What the CA server publishes, read from the state folder the CLI writes: the trust
// bundle (every published root) as EST's PKCS#7 with a strong ETag, and every current CRL.
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import type { CertificateAuthority } from "../authority.ts";
import { base64Lines, derToPem, firstPemDer } from "../../lib/pem.ts";
import { certsOnlyDer } from "../../lib/pkcs7.ts";
import { readStateFile } from "../store.ts";
import { crlToPem, type x509 } from "../x509.ts";

export interface Published {
  /** Strong ETag of the bundle: a quoted base64url SHA-256 of its PKCS#7 DER. */
  etag: string;
  /** The root generations in the bundle, oldest first. */
  generations: number[];
  /** The certs-only PKCS#7 of every published root, base64 in 64-character lines (RFC 7030 4.1.3). */
  cacertsBody: string;
  /** The same roots as PEM: what the server's TLS layer trusts for mTLS renewals. */
  rootsPem: string;
  /** Each current CRL (DER) by issuer id ("root-1", "int-2"). */
  crls: Map<string, Uint8Array>;
  /** Every current CRL as PEM, as crls.pem holds them. */
  crlsPem: string;
  /** ETag of the CRLs and the bundle together: what GET /.well-known/est/crls watches (crl-watch.ts). */
  trustEtag: string;
  /** The issuing CA that signs now, and its generation. */
  signerId: string;
  signerGeneration: number;
  signerPublished: boolean;
}

/** A certs-only PKCS#7 (CMS SignedData without signers) of the given certificates. */
export function certsOnly(certs: readonly (x509.X509Certificate | Uint8Array)[]): Uint8Array {
  return certsOnlyDer(certs.map((c) => (c instanceof Uint8Array ? c : new Uint8Array(c.rawData))));
}

export function loadPublished(ca: CertificateAuthority): Published {
  const issuers = ca.ledger.issuers();
  const roots = issuers
    .filter((r) => r.kind === "root" && r.state === "published")
    .sort((a, b) => a.generation - b.generation);
  const rootCerts = roots.map((r) => ca.issuerDer(r.id));
  const pkcs7 = certsOnly(rootCerts);
  const crls = new Map<string, Uint8Array>();
  const pems: string[] = [];
  for (const r of issuers.filter((i) => i.state !== "retired" && i.crlNextUpdate)) {
    // The ledger's copy is the newest whichever replica or host signed it; a ledger from
    // before replicas has only the file.
    const stored = ca.ledger.signedCrl(r.id);
    const pem = stored ? crlToPem(stored) : readStateFile(ca.layout.issuer(r.id).crl, "the CRL");
    pems.push(pem);
    crls.set(r.id, stored ?? new Uint8Array(firstPemDer(pem, "X509 CRL") ?? []));
  }
  const signerId = ca.signerId();
  const signerGeneration = ca.issuerRow(signerId).generation;
  const etag = `"${createHash("sha256").update(pkcs7).digest("base64url")}"`;
  return {
    etag,
    generations: roots.map((r) => r.generation),
    cacertsBody: base64Lines(pkcs7),
    rootsPem: rootCerts.map((der) => derToPem(der, "CERTIFICATE")).join(""),
    crls,
    crlsPem: pems.join(""),
    trustEtag: trustEtag(pems.join(""), etag),
    signerId,
    signerGeneration,
    signerPublished: roots.some((r) => r.generation === signerGeneration),
  };
}

/** The ETag of what GET /.well-known/est/crls watches: the CRLs and the bundle's ETag. */
export function trustEtag(crlsPem: string, bundleEtag: string): string {
  return `"${createHash("sha256").update(crlsPem).update("\n").update(bundleEtag).digest("base64url")}"`;
}

/**
 * What tells the server that the CLI changed something: the ledger's data_version (bumped
 * by every commit of another connection) and the published files' modification times.
 */
export function stateStamp(ca: CertificateAuthority): string {
  const mtime = (path: string) => {
    try {
      return statSync(path).mtimeMs;
    } catch {
      return 0;
    }
  };
  return `${ca.ledger.dataVersion()}:${mtime(ca.layout.bundle)}:${mtime(ca.layout.crls)}`;
}

/**
 * Whether If-None-Match names this ETag (RFC 9110 13.1.2: a list, "*", weak comparison).
 * Bounded: a header longer than a few ETags is not looked at.
 */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header || header.length > 1024) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}
