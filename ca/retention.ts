// Retention: what the CA keeps about certificates that have expired. With 30-second
// certificates a week is ~125,000 ledger rows; nothing needs them once they are well expired.
// `ca prune` runs this once, `ca serve` every RETENTION_CHECK_MS.
import type { CertificateAuthority } from "./authority.ts";
import { entrySerials } from "../lib/crl.ts";
import { DAY_MS } from "./profiles.ts";

/** How long after its notAfter a certificate stays in the ledger (ca list, ca status) by default. */
export const DEFAULT_RETENTION_MS = 7 * DAY_MS;
/** How often `ca serve` prunes and drops expired serials from the CRLs. */
export const RETENTION_CHECK_MS = 10 * 60_000;

export interface PruneResult {
  /** Rows whose notAfter is before this were (or, with dryRun, would be) deleted. */
  cutoff: Date;
  dryRun: boolean;
  certs: number;
  tokens: number;
  /** The CAs whose CRL was re-signed because it listed expired serials. */
  crlsResigned: string[];
  /** Expired serials the CRLs listed before this run, and after it. */
  crlExpiredBefore: number;
  crlExpiredAfter: number;
}

/**
 * Serials each CA's current CRL still lists although their certificate has expired (or is no
 * longer in the ledger), by CA id. Retired CAs publish no CRL and are skipped.
 */
export async function expiredOnCrls(ca: CertificateAuthority): Promise<Map<string, string[]>> {
  const now = ca.now().toISOString();
  const out = new Map<string, string[]>();
  for (const issuer of ca.ledger.issuers()) {
    if (issuer.state === "retired") continue;
    const blob = ca.ledger.crlEntries(issuer.id);
    if (!blob || blob.length === 0) continue;
    const unexpired = new Set(ca.ledger.revokedUnexpired(issuer.id, now).map((r) => r.serial));
    const expired = entrySerials(blob).filter((s) => !unexpired.has(s));
    if (expired.length > 0) out.set(issuer.id, expired);
  }
  return out;
}

/**
 * Re-signs the CRLs that list expired serials. RFC 5280 3.3 lets a serial leave only after a
 * CRL signed past its expiry has listed it (see dropCutoff in crl.ts), so a serial that expired
 * since the last CRL stays on this one and leaves on the next run's.
 */
export async function dropExpiredFromCrls(ca: CertificateAuthority): Promise<string[]> {
  const due = [...(await expiredOnCrls(ca)).keys()];
  if (due.length > 0) await ca.publishCrls(due);
  return due;
}

/**
 * One retention run: first the CRLs (a CRL signed now lists every revoked serial about to leave
 * the ledger, so none leaves a CRL unlisted past its expiry), then the ledger rows and tokens
 * whose notAfter (expiry) is more than `olderThanMs` ago. dryRun changes nothing.
 */
export async function prune(
  ca: CertificateAuthority,
  opts: { olderThanMs?: number; dryRun?: boolean } = {},
): Promise<PruneResult> {
  const dryRun = !!opts.dryRun;
  const cutoff = new Date(ca.now().getTime() - (opts.olderThanMs ?? DEFAULT_RETENTION_MS));
  const count = (m: Map<string, string[]>) => [...m.values()].reduce((n, s) => n + s.length, 0);
  const crlExpiredBefore = count(await expiredOnCrls(ca));
  const crlsResigned = dryRun ? [] : await dropExpiredFromCrls(ca);
  const { certs, tokens } = ca.ledger.write(() => ca.ledger.pruneExpired(cutoff, { dryRun }));
  const crlExpiredAfter = dryRun ? crlExpiredBefore : count(await expiredOnCrls(ca));
  return { cutoff, dryRun, certs, tokens, crlsResigned, crlExpiredBefore, crlExpiredAfter };
}
