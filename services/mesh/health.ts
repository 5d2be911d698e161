// What a service's /healthz and /readyz say (lib/admin-http.ts serves them): healthy only while
// it listens with an identity a peer would accept, ready when it can also accept its peers. A
// service serving an expired, not yet valid or revoked certificate is up but useless: every
// peer refuses it, so an orchestrator must not count it as healthy.
import { X509Certificate } from "node:crypto";
import type { Health } from "../../lib/admin-http.ts";
import { crlDeadlines } from "./crl-dates.ts";
import type { TlsMaterial } from "./material.ts";
import { normaliseSerial } from "./peer-identity.ts";

const leaves = new WeakMap<TlsMaterial, X509Certificate>();

/** Whether the certificate in force is one a peer accepts now (by date, and by the CRLs this service holds). */
export function identityHealth(m: TlsMaterial, now: Date): Health {
  let leaf = leaves.get(m);
  if (!leaf) {
    leaf = new X509Certificate(m.cert);
    leaves.set(m, leaf);
  }
  const serial = normaliseSerial(leaf.serialNumber);
  const name = m.leaf.subject;
  const from = new Date(leaf.validFrom);
  const to = new Date(leaf.validTo);
  if (now < from)
    return {
      ok: false,
      reason: `its certificate (${name}, serial ${serial}) is not valid yet: valid from ${from.toISOString()} (is this machine's clock behind?)`,
    };
  if (now >= to)
    return {
      ok: false,
      reason: `its certificate (${name}, serial ${serial}) expired at ${to.toISOString()}: every peer refuses it; it needs a new identity`,
    };
  if (m.trust.revoked.has(serial))
    return {
      ok: false,
      reason: `its certificate (${name}, serial ${serial}) is revoked by the CRLs it holds: every peer refuses it; it needs a new identity`,
    };
  return { ok: true };
}

/** /healthz: listening, with a valid identity. */
export function serviceHealth(s: { listening: boolean; material: TlsMaterial }, now = new Date()): Health {
  if (!s.listening) return { ok: false, reason: "its mTLS port no longer listens" };
  return identityHealth(s.material, now);
}

/** /readyz: healthy, and no CRL it holds has lapsed (a lapsed CRL makes it refuse every peer that CA issued). */
export function serviceReadiness(s: { listening: boolean; material: TlsMaterial }, now = new Date()): Health {
  const h = serviceHealth(s, now);
  if (!h.ok) return h;
  const lapsed = crlDeadlines(s.material.crl, now).filter((d) => d.state === "lapsed");
  if (lapsed.length > 0)
    return {
      ok: false,
      reason: `the CRL of ${lapsed.map((d) => d.issuer).join(", ")} lapsed at ${lapsed[0]!.nextUpdate}: it refuses every peer that CA issued`,
    };
  return { ok: true };
}
