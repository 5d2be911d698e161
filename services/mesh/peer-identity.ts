// Who a verified peer is: its SPIFFE ID when it carries one (X.509-SVID), which must agree
// with its CN and DNS name, else its CN mapped to a mesh name; refused when the certificate
// could mean more than one thing (several CNs or URI SANs, a CN not among the SANs, a SPIFFE
// ID that names someone else or another trust domain, CA:TRUE).
import type { PeerCertificate } from "node:tls";
import { DEFAULT_TRUST_DOMAIN, dnsNameOfSpiffeId, sanEntries, svidIdOf } from "../../lib/spiffe.ts";
import { shortName } from "./names.ts";

export interface PeerIdentity {
  readonly name: string; // "order"
  readonly dns: string; // "order.internal"
  /** "spiffe://internal/order"; null for a certificate from a CA older than SPIFFE IDs. */
  readonly spiffeId: string | null;
  readonly serial: string;
}

/** Why a verified certificate is still no mesh identity (docs/mesh.md, handshake reasons). */
export type IdentityRefusal =
  | "bad_certificate"
  | "ambiguous_identity"
  | "spiffe_ambiguous" // more than one URI SAN (X509-SVID.md 5.2: must be rejected)
  | "spiffe_invalid" // its one URI SAN is not a SPIFFE ID of a workload
  | "spiffe_mismatch" // its SPIFFE ID and its DNS name / CN name different workloads
  | "spiffe_foreign_domain"; // its SPIFFE ID is in another trust domain than this service's

export type IdentityResult =
  | { readonly ok: true; readonly identity: PeerIdentity }
  | { readonly ok: false; readonly reason: IdentityRefusal; readonly detail: string };

/** What a peer presented, for logs: never the key, only public names and numbers. */
export interface PresentedCert {
  subject?: string;
  issuer?: string;
  serial?: string;
  validFrom?: string;
  validTo?: string;
}

/**
 * OpenSSL verifies signatures, dates and purpose; it does not care whether the name is
 * unambiguous. These are the extra checks a mesh needs before trusting a name.
 */
export function identityOf(cert: PeerCertificate, trustDomain: string = DEFAULT_TRUST_DOMAIN): IdentityResult {
  if (cert.ca) {
    return {
      ok: false,
      reason: "bad_certificate",
      detail: "presented a CA certificate (CA:TRUE) as a client certificate",
    };
  }
  const cn: unknown = cert.subject?.CN;
  if (Array.isArray(cn)) {
    return {
      ok: false,
      reason: "ambiguous_identity",
      detail: `the certificate has ${cn.length} common names (${cn.join(", ")}); a mesh identity needs exactly one`,
    };
  }
  if (typeof cn !== "string" || cn === "") {
    return { ok: false, reason: "ambiguous_identity", detail: "the certificate has no common name (CN)" };
  }
  const dns = sanDnsNames(cert.subjectaltname);
  if (!dns.includes(cn)) {
    return {
      ok: false,
      reason: "ambiguous_identity",
      detail: `CN ${cn} is not among the certificate's DNS SANs (${dns.join(", ") || "none"})`,
    };
  }
  const svid = svidIdOf(cert);
  let spiffeId: string | null = null;
  if (svid.kind === "ambiguous") return { ok: false, reason: "spiffe_ambiguous", detail: svid.why };
  if (svid.kind === "invalid") return { ok: false, reason: "spiffe_invalid", detail: svid.why };
  if (svid.kind === "one") {
    const id = svid.id;
    if (id.trustDomain !== trustDomain) {
      return {
        ok: false,
        reason: "spiffe_foreign_domain",
        detail: `its SPIFFE ID ${id.id} is in the trust domain ${id.trustDomain}, not in this mesh's, ${trustDomain}`,
      };
    }
    if (id.segments.length === 0) {
      return {
        ok: false,
        reason: "spiffe_invalid",
        detail: `its SPIFFE ID ${id.id} names the trust domain, not a workload (X509-SVID.md 3.1: a leaf's has a path)`,
      };
    }
    const named = dnsNameOfSpiffeId(id);
    if (named !== cn) {
      return {
        ok: false,
        reason: "spiffe_mismatch",
        detail: `its SPIFFE ID ${id.id} stands for ${named ?? "no single DNS name"}, but its CN and DNS name are ${cn}`,
      };
    }
    spiffeId = id.id;
  }
  const name = shortName(cn);
  if (name === null) {
    return { ok: false, reason: "ambiguous_identity", detail: `CN ${cn} is not a mesh name (<service>.internal)` };
  }
  return { ok: true, identity: { name, dns: cn, spiffeId, serial: normaliseSerial(cert.serialNumber) } };
}

/** The DNS SANs of Node's subjectaltname text ("DNS:a, DNS:b, URI:…"; odd values JSON-quoted). */
export function sanDnsNames(san: string | undefined): string[] {
  return sanEntries(san)
    .filter((e) => e.type === "DNS" && e.value !== "")
    .map((e) => e.value);
}

export function normaliseSerial(serial: string | undefined): string {
  return (serial ?? "").toLowerCase().replace(/^0+(?=.)/, "");
}

/** "CN=Mesh CA, O=Acme" from Node's subject objects (values may be arrays). */
export function formatName(n: object | undefined): string | undefined {
  if (!n) return undefined;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(n)) {
    for (const x of Array.isArray(v) ? v : [v]) parts.push(`${k}=${String(x)}`);
  }
  return parts.length ? parts.join(", ") : undefined;
}

export function presented(cert: PeerCertificate | null | undefined): PresentedCert | undefined {
  if (!cert?.raw) return undefined;
  return {
    subject: formatName(cert.subject),
    issuer: formatName(cert.issuer),
    serial: normaliseSerial(cert.serialNumber),
    validFrom: cert.valid_from,
    validTo: cert.valid_to,
  };
}
