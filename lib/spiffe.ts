// SPIFFE IDs (spiffe/spiffe standards/SPIFFE-ID.md) and the one an X.509-SVID carries
// (X509-SVID.md: exactly one URI SAN). Side-effect free: the CA formats the IDs it signs,
// the mesh runtime and the sidecar read them from peer certificates, with these same rules.

/** The trust domain of a CA that was never given one, and the mesh's DNS domain (`order.internal`). */
export const DEFAULT_TRUST_DOMAIN = "internal";

/** SPIFFE-ID.md 2.1/2.2: the trust domain is lower case [a-z0-9.-_]; a path segment is [a-zA-Z0-9.-_]. */
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
/** SPIFFE-ID.md 2.3: at most 2048 bytes in all; a trust domain at most 255. */
const MAX_ID = 2048;
const MAX_TRUST_DOMAIN = 255;

export interface SpiffeId {
  readonly trustDomain: string;
  /** The path segments, without slashes; empty for the trust domain's own ID. */
  readonly segments: readonly string[];
  /** The canonical text, `spiffe://<trust domain>/<segments joined by />`. */
  readonly id: string;
}

export type SpiffeParse =
  | { readonly ok: true; readonly value: SpiffeId }
  | { readonly ok: false; readonly why: string };

/** Why `td` is not a trust domain name, or null when it is one. */
export function trustDomainProblem(td: string): string | null {
  if (typeof td !== "string" || td.length === 0) return "the trust domain is empty";
  if (td.length > MAX_TRUST_DOMAIN) return `the trust domain is ${td.length} characters: at most ${MAX_TRUST_DOMAIN}`;
  if (!TRUST_DOMAIN.test(td))
    return `the trust domain ${JSON.stringify(td.slice(0, 80))} may use only lower-case letters, digits, dots, hyphens and underscores (no port, no user info, no upper case)`;
  return null;
}

/**
 * Parses a SPIFFE ID strictly, as SPIFFE-ID.md 2 and 4 require: scheme `spiffe` (lower case),
 * a trust domain of [a-z0-9.-_], no port, user info, query or fragment, path segments of
 * [a-zA-Z0-9.-_] that are neither empty, "." nor "..", no trailing slash, no percent-encoding.
 */
export function parseSpiffeId(text: string): SpiffeParse {
  const bad = (why: string): SpiffeParse => ({ ok: false, why });
  if (typeof text !== "string" || text.length === 0) return bad("it is empty");
  if (Buffer.byteLength(text) > MAX_ID) return bad(`it is longer than ${MAX_ID} bytes`);
  if (!text.startsWith("spiffe://")) return bad('its scheme is not "spiffe://" (lower case)');
  const rest = text.slice("spiffe://".length);
  if (/[?#]/.test(rest)) return bad("it has a query or a fragment");
  const slash = rest.indexOf("/");
  const td = slash === -1 ? rest : rest.slice(0, slash);
  if (td.includes("@")) return bad("its authority has user info");
  if (td.includes(":")) return bad("its trust domain has a port");
  const tdWhy = trustDomainProblem(td);
  if (tdWhy) return bad(tdWhy);
  const segments: string[] = [];
  if (slash !== -1) {
    const path = rest.slice(slash + 1);
    if (path === "" || path.endsWith("/")) return bad("it ends with a slash");
    for (const s of path.split("/")) {
      if (s === "") return bad("its path has an empty segment (// or a trailing slash)");
      if (s === "." || s === "..") return bad(`its path has a "${s}" segment`);
      if (!SEGMENT.test(s))
        return bad(
          `its path segment ${JSON.stringify(s.slice(0, 80))} may use only letters, digits, dots, hyphens and underscores`,
        );
      segments.push(s);
    }
  }
  return {
    ok: true,
    value: Object.freeze({ trustDomain: td, segments: Object.freeze(segments), id: formatParts(td, segments) }),
  };
}

function formatParts(td: string, segments: readonly string[]): string {
  return `spiffe://${td}${segments.map((s) => `/${s}`).join("")}`;
}

/**
 * The SPIFFE ID the CA gives a leaf named `dnsName`: the name relative to the trust domain when
 * it lies under it (`order.internal` in `internal` -> spiffe://internal/order), the whole name
 * otherwise (`api.example.com` in `internal` -> spiffe://internal/api.example.com). Null for a
 * wildcard, which names no one workload and so is no SVID.
 */
export function spiffeIdForName(trustDomain: string, dnsName: string): string | null {
  if (dnsName.startsWith("*.")) return null;
  const suffix = `.${trustDomain}`;
  const path = dnsName.endsWith(suffix) && dnsName.length > suffix.length ? dnsName.slice(0, -suffix.length) : dnsName;
  const parsed = parseSpiffeId(formatParts(trustDomain, [path]));
  return parsed.ok ? parsed.value.id : null;
}

/**
 * The DNS name a leaf SPIFFE ID stands for, the inverse of spiffeIdForName: a one-segment path
 * with a dot is that DNS name, one without is `<segment>.<trust domain>`. Null for any other path.
 */
export function dnsNameOfSpiffeId(id: SpiffeId): string | null {
  if (id.segments.length !== 1) return null;
  // No case folding: SPIFFE paths are case-sensitive, and the CA only ever signs lower case, so
  // spiffe://internal/Order is not order.internal's ID (it is a mismatch, refused).
  const seg = id.segments[0]!;
  return seg.includes(".") ? seg : `${seg}.${id.trustDomain}`;
}

/** One subjectAltName entry as Node renders it ("DNS:a, URI:spiffe://x/y, IP Address:…"). */
export interface SanEntry {
  readonly type: string;
  readonly value: string;
}

/**
 * Parses Node's `subjectaltname` text (PeerCertificate) or `subjectAltName` (X509Certificate).
 * Values with commas, quotes or other odd characters come JSON-quoted (Node >= 17.3); an entry
 * that cannot be parsed becomes one with an empty value, so it still counts and never matches.
 */
export function sanEntries(san: string | undefined): SanEntry[] {
  const out: SanEntry[] = [];
  let i = 0;
  while (san && i < san.length) {
    const colon = san.indexOf(":", i);
    if (colon === -1) break;
    const type = san.slice(i, colon);
    let value: string;
    let end: number;
    if (san[colon + 1] === '"') {
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === "\\" ? 2 : 1;
      end = j + 1;
      try {
        value = JSON.parse(san.slice(colon + 1, end)) as string;
      } catch {
        value = "";
      }
    } else {
      const comma = san.indexOf(", ", colon);
      end = comma === -1 ? san.length : comma;
      value = san.slice(colon + 1, end);
    }
    out.push({ type, value });
    const next = end + (san.startsWith(", ", end) ? 2 : 0);
    if (next <= i || (next === end && end < san.length)) break;
    i = next;
  }
  return out;
}

export type SvidIdResult =
  | { readonly kind: "none" }
  | { readonly kind: "one"; readonly id: SpiffeId }
  | { readonly kind: "ambiguous"; readonly why: string }
  | { readonly kind: "invalid"; readonly why: string };

/** What a certificate says about its SPIFFE ID: Node's PeerCertificate or X509Certificate. */
export type CertLike = { readonly subjectaltname?: string } | { readonly subjectAltName?: string | undefined };

/**
 * The SPIFFE ID of a certificate, by X509-SVID.md 2 and 5.2: its one URI SAN. No URI SAN: none.
 * More than one URI SAN (SPIFFE or not): ambiguous, to be refused. One URI SAN that is not a
 * valid SPIFFE ID: invalid. This looks at names only; the caller has verified the chain.
 */
export function svidIdOf(cert: CertLike): SvidIdResult {
  const san =
    "subjectaltname" in cert ? cert.subjectaltname : "subjectAltName" in cert ? cert.subjectAltName : undefined;
  const uris = sanEntries(san).filter((e) => e.type === "URI");
  if (uris.length === 0) return { kind: "none" };
  if (uris.length > 1) {
    return {
      kind: "ambiguous",
      why: `the certificate has ${uris.length} URI SANs (${uris.map((u) => JSON.stringify(u.value.slice(0, 100))).join(", ")}); an X.509-SVID has exactly one`,
    };
  }
  const parsed = parseSpiffeId(uris[0]!.value);
  if (!parsed.ok)
    return {
      kind: "invalid",
      why: `its URI SAN ${JSON.stringify(uris[0]!.value.slice(0, 100))} is not a SPIFFE ID: ${parsed.why}`,
    };
  return { kind: "one", id: parsed.value };
}

/** The SPIFFE ID text of a certificate, or null when it carries none or not exactly one valid one. */
export function spiffeIdOf(cert: CertLike): string | null {
  const r = svidIdOf(cert);
  return r.kind === "one" ? r.id.id : null;
}
