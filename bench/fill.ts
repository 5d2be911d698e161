// Synthetic ledger rows for the scaling benchmark: a CA with 100,000 certificates
// in seconds, by inserting rows straight into its ledger instead of issuing them.
import { sqliteLedger, type CertificateAuthority, type CertRow } from "../ca/index.ts";

export interface LedgerShape {
  rows: number;
  /** How many of the rows are revoked and unexpired, i.e. entries of root-1's CRL. */
  revoked: number;
}

const INSERT = `INSERT INTO certs (serial, name, sans, issuer_id, key_type, not_before, not_after, status, revoked_at, reason, superseded_by, source, created_at, pem)
  VALUES (@serial, @name, @sans, @issuerId, @keyType, @notBefore, @notAfter, @status, @revokedAt, @reason, @supersededBy, @source, @createdAt, @pem)`;

const SPACING_MS = 30_000; // 100,000 rows span ~35 days: all still inside their 90 days
const LEAF_DAYS_MS = 90 * 86_400_000;

/**
 * Adds shape.rows certificates of root-1 to the ledger in one transaction,
 * shape.revoked of them revoked, spread evenly. `pem` is a real leaf PEM so
 * rows have their real size on disk. Only the rows are made: the certs/
 * folder gets no files for them.
 */
export function fillLedger(ca: CertificateAuthority, shape: LedgerShape, pem: string): void {
  // One prepared statement: Ledger.insertCert prepares anew on every call,
  // which is fine for one issuance and slow for 100,000.
  const insert = sqliteLedger(ca.ledger).db.prepare(INSERT);
  const step = shape.revoked > 0 ? Math.floor(shape.rows / shape.revoked) : Infinity;
  const start = Date.now() - shape.rows * SPACING_MS;
  ca.ledger.write(() => {
    for (let i = 0; i < shape.rows; i++) {
      const created = start + i * SPACING_MS;
      const revoked = i % step === 0 && i / step < shape.revoked;
      const name = `svc-${i}.fill.internal`;
      const row: CertRow = {
        // Real serials start with 4–7 (top bits 01): these never collide with them in practice.
        serial: `4${i.toString(16).padStart(31, "0")}`,
        name,
        sans: JSON.stringify({ name, dns: [], ip: [], uri: [] }),
        issuerId: "root-1",
        keyType: "ec-p256",
        notBefore: new Date(created - 5 * 60_000).toISOString(),
        notAfter: new Date(created + LEAF_DAYS_MS).toISOString(),
        status: revoked ? "revoked" : "valid",
        revokedAt: revoked ? new Date(created + 60_000).toISOString() : null,
        reason: revoked ? "keyCompromise" : null,
        supersededBy: null,
        source: "issue",
        createdAt: new Date(created).toISOString(),
        pem,
      };
      insert.run(row);
    }
  });
  // A ledger that grew over months has been checkpointed many times; leave
  // this one the same way rather than with one huge write-ahead log.
  sqliteLedger(ca.ledger).db.pragma("wal_checkpoint(TRUNCATE)");
}
