// The ledger's rows, whichever database holds them (ca/ledger.ts: SQLite, ca/store/postgres.ts:
// PostgreSQL): their own module, so that the store's interface and the SQLite ledger that
// implements it both import them without importing each other.

export type CertStatus = "valid" | "revoked" | "superseded";
export type IssuerKind = "root" | "intermediate";
export type GenerationState = "pending" | "published" | "retired";

export interface IssuerRow {
  id: string;
  kind: IssuerKind;
  generation: number;
  parent: string | null;
  name: string;
  serial: string;
  key_type: string;
  not_before: string;
  not_after: string;
  /** For roots: pending (not in the bundle yet), published, retired. Intermediates follow their root. */
  state: GenerationState;
  crl_number: number;
  crl_next_update: string | null;
  created_at: string;
}

export interface CertRow {
  serial: string;
  name: string;
  sans: string;
  issuer_id: string;
  key_type: string;
  not_before: string;
  not_after: string;
  status: CertStatus;
  revoked_at: string | null;
  reason: string | null;
  superseded_by: string | null;
  /** How it was made: CLI issue / sign / renew, or online: EST enrolment, EST renewal, the CA server's own TLS certificate. */
  source: "issue" | "csr" | "renew" | "est-enrol" | "est-renew" | "ca-server";
  created_at: string;
  pem: string;
}

export type LedgerEntry = Omit<CertRow, "pem">;

export type RotationPhase = "prepare" | "activate" | "retire" | "done";

export interface RotationRow {
  id: number;
  from_generation: number;
  to_generation: number;
  /** The gate it is at: prepare (waiting for every identity to hold the new root), activate, retire (waiting for the old generation to drain), done. */
  phase: RotationPhase;
  /** 1 when gate 3 also waits for each identity to present its new certificate (--in-use). */
  in_use: number;
  started_at: string;
  /** When the new generation was published; only bundle fetches from then on count. */
  published_at: string | null;
  activated_at: string | null;
  finished_at: string | null;
  updated_at: string;
  owner: string | null;
  heartbeat_at: string | null;
}

/** A current certificate as the rotation gates see it. */
export interface CurrentCertFact {
  name: string;
  serial: string;
  generation: number;
  not_after: string;
  source: CertRow["source"];
}

export interface TokenRow {
  hash: string;
  name: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  used_by: string | null;
}

export interface BundleHolderRow {
  name: string;
  serial: string;
  /** The ETag the caller sent in If-None-Match: the bundle it says it holds (null: none sent). */
  held_etag: string | null;
  /** The ETag of the bundle the server answered with (200) or confirmed (304). */
  served_etag: string;
  seen_at: string;
  remote: string | null;
}
