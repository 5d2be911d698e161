// Who a verified peer is: its CN mapped to a mesh name, refused when the certificate
// could mean more than one thing (several CNs, a CN not among the SANs, CA:TRUE).
import type { PeerCertificate } from "node:tls";
import { shortName } from "./names.ts";

export interface PeerIdentity {
  readonly name: string; // "order"
  readonly dns: string; // "order.internal"
  readonly serial: string;
}

export type IdentityResult =
  | { readonly ok: true; readonly identity: PeerIdentity }
  | { readonly ok: false; readonly reason: "bad_certificate" | "ambiguous_identity"; readonly detail: string };

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
export function identityOf(cert: PeerCertificate): IdentityResult {
  if (cert.ca) {
    return { ok: false, reason: "bad_certificate", detail: "presented a CA certificate (CA:TRUE) as a client certificate" };
  }
  const cn: unknown = cert.subject?.CN;
  if (Array.isArray(cn)) {
    return { ok: false, reason: "ambiguous_identity", detail: `the certificate has ${cn.length} common names (${cn.join(", ")}); a mesh identity needs exactly one` };
  }
  if (typeof cn !== "string" || cn === "") {
    return { ok: false, reason: "ambiguous_identity", detail: "the certificate has no common name (CN)" };
  }
  const dns = sanDnsNames(cert.subjectaltname);
  if (!dns.includes(cn)) {
    return { ok: false, reason: "ambiguous_identity", detail: `CN ${cn} is not among the certificate's DNS SANs (${dns.join(", ") || "none"})` };
  }
  const name = shortName(cn);
  if (name === null) {
    return { ok: false, reason: "ambiguous_identity", detail: `CN ${cn} is not a mesh name (<service>.internal)` };
  }
  return { ok: true, identity: { name, dns: cn, serial: normaliseSerial(cert.serialNumber) } };
}

/** Node renders SANs as "DNS:a, DNS:b, URI:…"; values with odd characters come JSON-quoted. */
export function sanDnsNames(san: string | undefined): string[] {
  const out: string[] = [];
  let i = 0;
  while (san && i < san.length) {
    const colon = san.indexOf(":", i);
    if (colon === -1) break;
    const type = san.slice(i, colon);
    let value: string;
    let end: number;
    if (san[colon + 1] === '"') {
      // JSON string: find the closing quote that is not escaped.
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === "\\" ? 2 : 1;
      end = j + 1;
      try {
        value = JSON.parse(san.slice(colon + 1, end)) as string;
      } catch {
        value = ""; // an unparseable name can never equal a CN we accept
      }
    } else {
      const comma = san.indexOf(", ", colon);
      end = comma === -1 ? san.length : comma;
      value = san.slice(colon + 1, end);
    }
    if (type === "DNS" && value) out.push(value);
    i = end + (san.startsWith(", ", end) ? 2 : 0);
    if (i === end && end < san.length) break;
  }
  return out;
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
  if (!cert || !cert.raw) return undefined;
  return {
    subject: formatName(cert.subject),
    issuer: formatName(cert.issuer),
    serial: normaliseSerial(cert.serialNumber),
    validFrom: cert.valid_from,
    validTo: cert.valid_to,
  };
}
