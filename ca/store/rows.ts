// The ledger's rows, whichever database holds them (ca/ledger.ts: SQLite, ca/store/postgres.ts:
// PostgreSQL): their own module, so that the store's interface and the SQLite ledger that
// implements it both import them without importing each other. Fields are camelCase, as
// everywhere in the code; the databases' snake_case column names stay inside the stores
// (ca/store/stored.ts converts at the boundary).

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
  keyType: string;
  notBefore: string;
  notAfter: string;
  /** For roots: pending (not in the bundle yet), published, retired. Intermediates follow their root. */
  state: GenerationState;
  crlNumber: number;
  crlNextUpdate: string | null;
  createdAt: string;
}

export interface CertRow {
  serial: string;
  name: string;
  sans: string;
  issuerId: string;
  keyType: string;
  notBefore: string;
  notAfter: string;
  status: CertStatus;
  revokedAt: string | null;
  reason: string | null;
  supersededBy: string | null;
  /** How it was made: CLI issue / sign / renew, or online: EST enrolment, EST renewal, the CA server's own TLS certificate. */
  source: "issue" | "csr" | "renew" | "est-enrol" | "est-renew" | "ca-server";
  createdAt: string;
  pem: string;
}

export type LedgerEntry = Omit<CertRow, "pem">;

export type RotationPhase = "prepare" | "activate" | "retire" | "done";

export interface RotationRow {
  id: number;
  fromGeneration: number;
  toGeneration: number;
  /** The gate it is at: prepare (waiting for every identity to hold the new root), activate, retire (waiting for the old generation to drain), done. */
  phase: RotationPhase;
  /** 1 when gate 3 also waits for each identity to present its new certificate (--in-use). */
  inUse: number;
  startedAt: string;
  /** When the new generation was published; only bundle fetches from then on count. */
  publishedAt: string | null;
  activatedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  owner: string | null;
  heartbeatAt: string | null;
}

/** A current certificate as the rotation gates see it. */
export interface CurrentCertFact {
  name: string;
  serial: string;
  generation: number;
  notAfter: string;
  source: CertRow["source"];
}

export interface TokenRow {
  hash: string;
  name: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  usedBy: string | null;
}

export interface BundleHolderRow {
  name: string;
  serial: string;
  /** The ETag the caller sent in If-None-Match: the bundle it says it holds (null: none sent). */
  heldEtag: string | null;
  /** The ETag of the bundle the server answered with (200) or confirmed (304). */
  servedEtag: string;
  seenAt: string;
  remote: string | null;
}
