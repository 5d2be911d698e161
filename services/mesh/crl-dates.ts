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
    out.push({
      state: daysLeft <= 0 ? "lapsed" : "expiring",
      issuer: d.issuer,
      nextUpdate: d.nextUpdate.toISOString(),
      daysLeft: Math.round(daysLeft * 10) / 10,
    });
  }
  return out;
}

/**
 * The issuers whose CRL in `next` is older (a lower cRLNumber) than the one in `held`: a set
 * fetched before a revocation and delivered after a newer one (two fetches racing, a CA
 * replica behind the others) must not undo it. An issuer present in one set only is no
 * evidence either way (a generation added or retired); CRLs that do not parse are left to
 * the material's own checks.
 */
export function olderCrls(next: readonly string[], held: readonly string[]): string[] {
  const numbers = (pems: readonly string[]) => {
    const m = new Map<string, bigint>();
    for (const pem of pems) {
      try {
        const d = crlDates(pemToDer(pem));
        if (d.number !== undefined) m.set(d.issuer, d.number);
      } catch {
        // see above
      }
    }
    return m;
  };
  const had = numbers(held);
  const out: string[] = [];
  for (const [issuer, n] of numbers(next)) {
    const h = had.get(issuer);
    if (h !== undefined && n < h) out.push(issuer);
  }
  return out;
}
