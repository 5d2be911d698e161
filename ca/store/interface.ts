// What the CA asks of its ledger, whichever database holds it: SQLite in the state folder
// (ca/ledger.ts) or PostgreSQL shared by several replicas (ca/store/postgres.ts). Both are
// synchronous to their callers (see pg-sync.ts for why); rows are camelCase (rows.ts), the
// column names stay inside the stores (stored.ts).
import type {
  BundleHolderRow,
  CertRow,
  CurrentCertFact,
  GenerationState,
  IssuerRow,
  LedgerEntry,
  RotationRow,
  TokenRow,
} from "./rows.ts";

/** A job only one replica may run (re-signing CRLs…): who holds it, until when. */
export interface LeaseRow {
  name: string;
  holder: string;
  acquiredAt: string;
  expiresAt: string;
}

/** What became of one function of a writeBatch: it landed, or it threw and nothing of it landed. */
export type BatchOutcome = { ok: true } | { ok: false; error: unknown };

/** One issuance's ledger statements (recordIssuance), inside a write. */
export interface IssuanceRecord {
  cert: CertRow;
  /** The certificate it replaces, which must still be current; without it, a certificate still current for the name must have expired (it is superseded). */
  supersede?: string;
  /** The enrolment token spent with it (SHA-256 hex), which must be unused and unexpired at `at`. */
  token?: { hash: string; at: string };
}

/** Why an issuance's record was refused: the caller throws, and nothing of the record lands. */
export type IssuanceRefusal =
  | { why: "token_spent" } // the token was used (or expired) meanwhile
  | { why: "changed" } // the certificate to supersede is no longer current
  | { why: "taken"; serial: string }; // the name has a live certificate

export type RotationFields = Partial<
  Pick<
    RotationRow,
    "toGeneration" | "phase" | "inUse" | "publishedAt" | "activatedAt" | "finishedAt" | "owner" | "heartbeatAt"
  >
>;

export interface LedgerStore {
  readonly kind: "sqlite" | "postgres";
  /** Where it is, for messages: the file, or the URL without any secret. */
  readonly path: string;
  close(): void;
  /**
   * A write transaction; on PostgreSQL it also takes the CA's write lock, so writers are
   * serialised as on SQLite. `shared`: a write whose every check is a unique index or a
   * conditional UPDATE (recording an issuance): such writes run side by side on several
   * replicas and only exclude the exclusive ones (CRLs, generations, rotations).
   */
  write<T>(fn: () => T, opts?: { shared?: boolean }): T;
  /**
   * Group commit (ca/store/group-commit.ts): runs each function in one shared write transaction
   * and commits them together, one commit and one fsync for all. Each is alone in effect: one
   * that throws (a token already spent, a name taken) leaves nothing and the others still land.
   * A function may run more than once (PostgreSQL runs the batch again without a failed one),
   * so it must do nothing but ledger statements. Throws, with nothing committed, when the
   * transaction itself fails (the disk, the connection); when COMMIT itself fails on
   * PostgreSQL the outcome is unknown, as for any commit whose answer is lost.
   */
  writeBatch(fns: ReadonlyArray<() => void>): BatchOutcome[];
  /** The same, for work that awaits (signing a CRL) inside; the caller keeps other writers of this process out. */
  writeAsync<T>(fn: () => Promise<T>): Promise<T>;

  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;

  insertIssuer(row: IssuerRow): void;
  issuers(): IssuerRow[];
  issuer(id: string): IssuerRow | undefined;
  setIssuerState(generation: number, state: GenerationState): void;
  crlEntries(id: string): Uint8Array | null;
  setCrlEntries(id: string, der: Uint8Array): void;
  nextCrlNumber(id: string, nextUpdate: string): number;
  /** The last CRL signed for an issuer (DER), so every replica serves the same one. */
  signedCrl(id: string): Uint8Array | null;
  setSignedCrl(id: string, der: Uint8Array): void;

  insertCert(row: CertRow): void;
  /**
   * Records one issuance: spends its token, supersedes its predecessor, inserts it; null when
   * it landed. On PostgreSQL in one round trip (a live certificate for the name then shows as a
   * unique violation, thrown, rather than as "taken"). Inside a write, whose caller throws on a
   * refusal so that the transaction (or the batch) drops whatever of it ran.
   */
  recordIssuance(r: IssuanceRecord): IssuanceRefusal | null;
  current(name: string): CertRow | undefined;
  latest(name: string): CertRow | undefined;
  bySerial(serial: string): CertRow | undefined;
  list(opts?: { all?: boolean }): LedgerEntry[];
  markRevoked(serial: string, at: string, reason: string): boolean;
  markSuperseded(serial: string, by: string): boolean;
  revokedUnexpired(issuerId: string, now: string): Pick<CertRow, "serial" | "revokedAt" | "reason">[];
  validInGeneration(generation: number, now: string): number;
  counts(now: string): Record<"VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED", number>;
  /** Certificates the CLI issued (issue, csr, renew) since a time: a metric of the CA server. */
  cliIssuedSince(since: string): number;
  /**
   * Retention (ca prune, docs/ca.md): deletes the certificates that expired before `cutoff`,
   * whatever their status (the caller has taken them off every CRL first, ca/retention.ts), and
   * the enrolment tokens that expired before it; with `dryRun`, only counts them.
   */
  pruneExpired(cutoff: Date, opts?: { dryRun?: boolean }): { certs: number; tokens: number };

  /** Changes when another connection (the CLI, another replica) changed the issuers or the settings. */
  dataVersion(): number;

  insertToken(row: TokenRow): void;
  token(hash: string): TokenRow | undefined;
  consumeToken(hash: string, now: string, serial: string): boolean;
  recordBundle(etag: string, generations: number[], now: string): void;
  bundleGenerations(etag: string): number[] | undefined;
  recordBundleHolder(row: BundleHolderRow): void;
  bundleHolders(): BundleHolderRow[];
  bundles(): Map<string, number[]>;

  currentCerts(now: string): CurrentCertFact[];
  generationOf(serial: string): number | undefined;
  unfinishedRotation(): RotationRow | undefined;
  rotation(id: number): RotationRow | undefined;
  insertRotation(
    row: Pick<RotationRow, "fromGeneration" | "toGeneration" | "startedAt" | "owner"> & { inUse?: number },
  ): RotationRow;
  updateRotation(id: number, fields: RotationFields, now: string): void;

  /**
   * Takes or renews a lease: granted when nobody holds it, `holder` already does, or the
   * holder's lease has run out. Returns the lease as it stands afterwards (the holder may be another).
   */
  takeLease(name: string, holder: string, now: string, expiresAt: string): LeaseRow;
  /** Gives a lease up (only if `holder` holds it), so another replica takes it at once. */
  releaseLease(name: string, holder: string): void;
}

/** A unique constraint refused a write (two issuances of one name, one serial twice). */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === "SQLITE_CONSTRAINT_UNIQUE" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "23505";
}
