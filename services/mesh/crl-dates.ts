// When the CRLs a service holds stop being valid: which of them lapse soon or have lapsed
// (issuer and dates read by lib/crl.ts: Node parses no CRLs).
// A lapsed CRL makes OpenSSL refuse every certificate its CA issued (CRL_HAS_EXPIRED).
import { crlDates, CRL_WARN_DAYS, type CrlDates } from "../../lib/crl.ts";
import { pemToDer } from "../../lib/pem.ts";

export interface CrlDeadline {
  readonly state: "expiring" | "lapsed";
  readonly issuer: string;
  readonly nextUpdate: string; // ISO 8601
  /** Days from `now` to nextUpdate, one decimal; negative once lapsed. */
  readonly daysLeft: number;
}

/**
 * The CRLs (PEM blocks) whose nextUpdate is within `warnDays` of `now`, or past it. A CRL
 * that does not parse is left out: loading the material has refused such files already.
 */
export function crlDeadlines(pems: readonly string[], now: Date, warnDays = CRL_WARN_DAYS): CrlDeadline[] {
  const out: CrlDeadline[] = [];
  for (const pem of pems) {
    let d: CrlDates;
    try {
      d = crlDates(pemToDer(pem));
    } catch {
      continue;
    }
    if (!d.nextUpdate) continue;
    const daysLeft = (d.nextUpdate.getTime() - now.getTime()) / 86_400_000;
    if (daysLeft > warnDays) continue;
    out.push({ state: daysLeft <= 0 ? "lapsed" : "expiring", issuer: d.issuer, nextUpdate: d.nextUpdate.toISOString(), daysLeft: Math.round(daysLeft * 10) / 10 });
  }
  return out;
}
