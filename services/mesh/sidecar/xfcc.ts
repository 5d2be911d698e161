// Who called, as the app behind a sidecar learns it: Envoy's x-forwarded-client-cert header
// (By, Hash, Subject, URI, DNS), set by the sidecar alone, and the SPIFFE IDs in it.
import { createHash, X509Certificate } from "node:crypto";
import type { ForwardPeer } from "../app.ts";
import { MESH_DOMAIN } from "../names.ts";
import { sanEntries } from "../../../lib/spiffe.ts";

export const XFCC = "x-forwarded-client-cert";

/** `spiffe://internal/<name>` unless the certificate carries a spiffe:// URI SAN of its own. */
export function spiffeIdOf(name: string, san: string | undefined): string {
  return sanValues(san, "URI").find((u) => u.startsWith("spiffe://")) ?? `spiffe://${MESH_DOMAIN}/${name}`;
}

/** This process's own SPIFFE ID (XFCC's By), from its certificate. */
export function ownSpiffeId(name: string, certPem: Buffer | string): string {
  let san: string | undefined;
  try {
    san = new X509Certificate(certPem).subjectAltName;
  } catch {
    san = undefined;
  }
  return spiffeIdOf(name, san);
}

/**
 * One XFCC element for the caller, as Envoy writes it with Subject, URI and DNS details:
 * `By=<own>;Hash=<sha256 of the DER>;Subject="…";URI=<caller>;DNS=<each DNS SAN>`.
 */
export function xfccElement(by: string, peer: ForwardPeer): string {
  const parts = [
    `By=${value(by)}`,
    `Hash=${createHash("sha256").update(peer.der).digest("hex")}`,
    `Subject=${quoted(peer.subject ?? "")}`,
    `URI=${value(spiffeIdOf(peer.identity.name, peer.san))}`,
  ];
  for (const d of sanValues(peer.san, "DNS")) parts.push(`DNS=${value(d)}`);
  return parts.join(";");
}

/**
 * Values with , ; = or a quote are double-quoted, inner quotes and backslashes escaped. A
 * control character (a certificate's subject or SAN may hold one) is written as `\xHH`: the
 * header must stay one line, and the sidecar hands Node this value in a list Node does not check.
 */
function value(v: string): string {
  return /[,;="\\\s\x00-\x1f\x7f]/.test(v) ? quoted(v) : v;
}

function quoted(v: string): string {
  const escaped = v.replace(/["\\]/g, (c) => `\\${c}`);
  return `"${escaped.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)}"`;
}

/** The SANs of one type from Node's rendering ("DNS:a, URI:spiffe://…"; odd values JSON-quoted). */
export function sanValues(san: string | undefined, type: "DNS" | "URI"): string[] {
  return sanEntries(san)
    .filter((e) => e.type === type && e.value)
    .map((e) => e.value);
}
