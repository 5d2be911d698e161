// The issuance ledger: SQLite (WAL) through better-sqlite3. Unique constraints
// and transactions keep it consistent under concurrent commands and crashes.
import Database from "better-sqlite3";
import { CaError } from "./errors.ts";
import type {
  BatchOutcome,
  IssuanceRecord,
  IssuanceRefusal,
  LeaseRow,
  LedgerStore,
  RotationFields,
} from "./store/interface.ts";
import { allFromStored, fromStored, maybeFromStored, toStored } from "./store/stored.ts";
import type {
  BundleHolderRow,
  CertRow,
  CurrentCertFact,
  GenerationState,
  IssuerRow,
  LedgerEntry,
  RotationRow,
  TokenRow,
} from "./store/rows.ts";
export type {
  BundleHolderRow,
  CertRow,
  CertStatus,
  CurrentCertFact,
  GenerationState,
  IssuerKind,
  IssuerRow,
  LedgerEntry,
  RotationPhase,
  RotationRow,
  TokenRow,
} from "./store/rows.ts";

const ENTRY_COLUMNS =
  "serial, name, sans, issuer_id, key_type, not_before, not_after, status, revoked_at, reason, superseded_by, source, created_at";

/**
 * An issuer's row without its CRL entries (crlEntries reads those): every issuance reads its
 * issuer's row several times, and `SELECT *` copied the whole list of revoked entries into each
 * (about 40 bytes a revoked certificate) for a field no row type has.
 */
const ISSUER_COLUMNS =
  "id, kind, generation, parent, name, serial, key_type, not_before, not_after, state, crl_number, crl_next_update, created_at";

const SCHEMA_VERSION = "1";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS issuers (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
  generation INTEGER NOT NULL,
  parent TEXT REFERENCES issuers(id),
  name TEXT NOT NULL,
  serial TEXT NOT NULL UNIQUE,
  key_type TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'published', 'retired')),
  crl_number INTEGER NOT NULL DEFAULT 0,
  crl_next_update TEXT,
  -- The CRL's revokedCertificates entries, DER, concatenated: a revocation appends one
  -- entry instead of re-encoding them all (see crl.ts).
  crl_entries BLOB,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS issuers_one_root_per_generation ON issuers(generation) WHERE kind = 'root';
CREATE TABLE IF NOT EXISTS certs (
  serial TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  sans TEXT NOT NULL,
  issuer_id TEXT NOT NULL REFERENCES issuers(id),
  key_type TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('valid', 'revoked', 'superseded')),
  revoked_at TEXT,
  reason TEXT,
  superseded_by TEXT,
  source TEXT NOT NULL,
  created_at TEXT NOT NULL,
  pem TEXT NOT NULL
);
-- At most one current certificate per name: two concurrent issues of one name cannot both land.
CREATE UNIQUE INDEX IF NOT EXISTS certs_one_current_per_name ON certs(name) WHERE status = 'valid';
CREATE INDEX IF NOT EXISTS certs_by_issuer_status ON certs(issuer_id, status, not_after);
CREATE INDEX IF NOT EXISTS certs_by_name ON certs(name, created_at);
`;

/**
 * Tables of the online CA (ca serve), added to existing ledgers on first writable open:
 * CREATE ... IF NOT EXISTS only, so older ledgers keep working and older code ignores them.
 */
const ONLINE_SCHEMA = `
-- One-time enrolment tokens: only the SHA-256 of the token is stored, never the token.
CREATE TABLE IF NOT EXISTS enrol_tokens (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at TEXT,
  used_by TEXT
);
CREATE INDEX IF NOT EXISTS enrol_tokens_by_name ON enrol_tokens(name);
-- Retention (pruneExpired) finds what expired without reading every row.
CREATE INDEX IF NOT EXISTS certs_by_not_after ON certs(not_after);
-- Every trust bundle the server has published: its ETag and the root generations in it.
CREATE TABLE IF NOT EXISTS bundles (
  etag TEXT PRIMARY KEY,
  generations TEXT NOT NULL,
  first_served_at TEXT NOT NULL
);
-- Which bundle each identity holds, as it said when polling cacerts over mTLS.
CREATE TABLE IF NOT EXISTS bundle_holders (
  name TEXT PRIMARY KEY,
  serial TEXT NOT NULL,
  held_etag TEXT,
  served_etag TEXT NOT NULL,
  seen_at TEXT NOT NULL,
  remote TEXT
);
`;

/**
 * What several CA servers on one ledger share (docs/est.md, "Running several CA replicas"):
 * the leases of the jobs only one of them runs, and the CRLs as signed, so each serves the same.
 */
const REPLICA_SCHEMA = `
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  acquired_at TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signed_crls (
  issuer_id TEXT PRIMARY KEY REFERENCES issuers(id),
  der BLOB NOT NULL
);
`;

/**
 * The CA rotation's state (ca rotate, docs/rotation.md), added like the online tables: a run
 * that stops half-way is resumed from here. At most one rotation is unfinished at a time.
 */
const ROTATION_SCHEMA = `
CREATE TABLE IF NOT EXISTS rotations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  from_generation INTEGER NOT NULL,
  to_generation INTEGER NOT NULL,
  phase TEXT NOT NULL CHECK (phase IN ('prepare', 'activate', 'retire', 'done')),
  -- 1: gate 3 also waits until each identity has presented its new certificate (rotate --in-use).
  in_use INTEGER NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL,
  published_at TEXT,
  activated_at TEXT,
  finished_at TEXT,
  updated_at TEXT NOT NULL,
  -- The process running it (host:pid) and when it last said so: a second run refuses while it lives.
  owner TEXT,
  heartbeat_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS rotations_one_unfinished ON rotations((1)) WHERE phase != 'done';
`;

const ROTATION_FIELDS = new Set([
  "to_generation",
  "phase",
  "in_use",
  "published_at",
  "activated_at",
  "finished_at",
  "owner",
  "heartbeat_at",
]);

function corrupt(path: string, err: unknown): CaError {
  return new CaError(
    "CORRUPT",
    `the ledger ${path} is not readable (${(err as Error).message}); restore it from a backup — nothing was changed`,
    { cause: err },
  );
}

export class Ledger implements LedgerStore {
  readonly kind = "sqlite" as const;
  readonly db: Database.Database;
  readonly path: string;

  private readonly statements = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
  }

  /** Prepares each SQL text once per connection. */
  private sql(text: string): Database.Statement {
    let st = this.statements.get(text);
    if (!st) this.statements.set(text, (st = this.db.prepare(text)));
    return st;
  }

  /** Opens the ledger; `create` makes a new one (init only). */
  static open(path: string, opts: { create?: boolean; readonly?: boolean } = {}): Ledger {
    let db: Database.Database;
    try {
      db = new Database(path, { fileMustExist: !opts.create, readonly: !!opts.readonly && !opts.create });
      db.pragma("busy_timeout = 20000");
      if (opts.create) {
        db.pragma("journal_mode = WAL");
        db.exec(SCHEMA);
        db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)").run(SCHEMA_VERSION);
      }
      // FULL: a CA writes little, and a committed issuance must survive a crash.
      if (!opts.readonly) db.pragma("synchronous = FULL");
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined;
      if (!row) throw new Error("no schema version");
      if (row.value !== SCHEMA_VERSION)
        throw new Error(`schema version ${row.value}, this CA understands ${SCHEMA_VERSION}`);
      if (!opts.readonly || opts.create) db.exec(ONLINE_SCHEMA + ROTATION_SCHEMA + REPLICA_SCHEMA);
    } catch (err) {
      if (err instanceof CaError) throw err;
      throw corrupt(path, err);
    }
    return new Ledger(db, path);
  }

  close(): void {
    this.db.close();
  }

  /** Runs fn in a write transaction that takes the lock up front (no upgrade deadlocks). */
  write<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      if (err instanceof CaError) throw err;
      if ((err as { code?: string }).code === "SQLITE_CORRUPT" || (err as { code?: string }).code === "SQLITE_NOTADB")
        throw corrupt(this.path, err);
      throw err;
    }
  }

  writeBatch(fns: ReadonlyArray<() => void>): BatchOutcome[] {
    return this.write(() =>
      fns.map((fn): BatchOutcome => {
        try {
          // Nested in write(): a savepoint, so a function that throws undoes only its own statements.
          this.db.transaction(fn)();
          return { ok: true };
        } catch (error) {
          // The database failing (I/O, a full disk) fails the batch; a refused record fails only itself.
          const code = (error as { code?: unknown }).code;
          if (
            error instanceof Database.SqliteError &&
            typeof code === "string" &&
            !code.startsWith("SQLITE_CONSTRAINT")
          )
            throw error;
          return { ok: false, error };
        }
      }),
    );
  }

  /**
   * Like write(), for work that must await (signing a CRL) while holding the
   * lock. better-sqlite3 transactions are synchronous, so this one is by hand.
   */
  async writeAsync<T>(fn: () => Promise<T>): Promise<T> {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = await fn();
      this.db.exec("COMMIT");
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      throw err;
    }
  }

  getMeta(key: string): string | undefined {
    return (this.sql("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.sql("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(
      key,
      value,
    );
  }

  // --- issuers ---------------------------------------------------------------

  insertIssuer(row: IssuerRow): void {
    this.sql(`INSERT INTO issuers (id, kind, generation, parent, name, serial, key_type, not_before, not_after, state, crl_number, crl_next_update, created_at)
      VALUES (@id, @kind, @generation, @parent, @name, @serial, @key_type, @not_before, @not_after, @state, @crl_number, @crl_next_update, @created_at)`).run(
      toStored(row),
    );
  }

  issuers(): IssuerRow[] {
    return allFromStored<IssuerRow>(
      this.sql(`SELECT ${ISSUER_COLUMNS} FROM issuers ORDER BY generation, kind DESC, created_at`).all(),
    );
  }

  issuer(id: string): IssuerRow | undefined {
    return maybeFromStored<IssuerRow>(this.sql(`SELECT ${ISSUER_COLUMNS} FROM issuers WHERE id = ?`).get(id));
  }

  setIssuerState(generation: number, state: GenerationState): void {
    this.sql("UPDATE issuers SET state = ? WHERE generation = ?").run(state, generation);
  }

  crlEntries(id: string): Uint8Array | null {
    const row = this.sql("SELECT crl_entries FROM issuers WHERE id = ?").get(id) as
      | { crl_entries: Buffer | null }
      | undefined;
    return row?.crl_entries ?? null;
  }

  setCrlEntries(id: string, der: Uint8Array): void {
    this.sql("UPDATE issuers SET crl_entries = ? WHERE id = ?").run(
      Buffer.from(der.buffer, der.byteOffset, der.byteLength),
      id,
    );
  }

  /** Takes the next CRL number for an issuer (inside a write transaction). */
  nextCrlNumber(id: string, nextUpdate: string): number {
    this.sql("UPDATE issuers SET crl_number = crl_number + 1, crl_next_update = ? WHERE id = ?").run(nextUpdate, id);
    return (this.sql("SELECT crl_number FROM issuers WHERE id = ?").get(id) as { crl_number: number }).crl_number;
  }

  // --- certificates ----------------------------------------------------------

  insertCert(row: CertRow): void {
    this.sql(`INSERT INTO certs (serial, name, sans, issuer_id, key_type, not_before, not_after, status, revoked_at, reason, superseded_by, source, created_at, pem)
      VALUES (@serial, @name, @sans, @issuer_id, @key_type, @not_before, @not_after, @status, @revoked_at, @reason, @superseded_by, @source, @created_at, @pem)`).run(
      toStored(row),
    );
  }

  recordIssuance(r: IssuanceRecord): IssuanceRefusal | null {
    const { cert } = r;
    if (r.token && !this.consumeToken(r.token.hash, r.token.at, cert.serial)) return { why: "token_spent" };
    if (r.supersede !== undefined) {
      if (!this.markSuperseded(r.supersede, cert.serial)) return { why: "changed" };
    } else {
      const cur = this.current(cert.name);
      if (cur && new Date(cur.notAfter) > new Date(cert.createdAt)) return { why: "taken", serial: cur.serial };
      if (cur) this.markSuperseded(cur.serial, cert.serial); // an expired predecessor
    }
    this.insertCert(cert);
    return null;
  }

  /** The certificate currently in force for a name (status valid, possibly expired). */
  current(name: string): CertRow | undefined {
    return maybeFromStored<CertRow>(this.sql("SELECT * FROM certs WHERE name = ? AND status = 'valid'").get(name));
  }

  latest(name: string): CertRow | undefined {
    return maybeFromStored<CertRow>(
      this.sql("SELECT * FROM certs WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1").get(name),
    );
  }

  bySerial(serial: string): CertRow | undefined {
    return maybeFromStored<CertRow>(this.sql("SELECT * FROM certs WHERE serial = ?").get(serial));
  }

  /** Rows without their PEM, ordered by name; superseded ones only with `all`. */
  list(opts: { all?: boolean } = {}): LedgerEntry[] {
    const where = opts.all ? "" : "WHERE status != 'superseded'";
    return allFromStored<LedgerEntry>(
      this.sql(`SELECT ${ENTRY_COLUMNS} FROM certs ${where} ORDER BY name, created_at`).all(),
    );
  }

  markRevoked(serial: string, at: string, reason: string): boolean {
    return (
      this.sql(
        "UPDATE certs SET status = 'revoked', revoked_at = ?, reason = ? WHERE serial = ? AND status != 'revoked'",
      ).run(at, reason, serial).changes === 1
    );
  }

  markSuperseded(serial: string, by: string): boolean {
    return (
      this.sql("UPDATE certs SET status = 'superseded', superseded_by = ? WHERE serial = ? AND status = 'valid'").run(
        by,
        serial,
      ).changes === 1
    );
  }

  /** Revoked certificates of an issuer still inside their validity: what its CRL must list. */
  revokedUnexpired(issuerId: string, now: string): Pick<CertRow, "serial" | "revokedAt" | "reason">[] {
    return allFromStored(
      this.sql(
        "SELECT serial, revoked_at, reason FROM certs WHERE issuer_id = ? AND status = 'revoked' AND not_after > ?",
      ).all(issuerId, now),
    );
  }

  /** Valid, unexpired certificates issued by any CA of a generation. */
  validInGeneration(generation: number, now: string): number {
    return (
      this.sql(`SELECT count(*) AS n FROM certs c JOIN issuers i ON i.id = c.issuer_id
      WHERE i.generation = ? AND c.status = 'valid' AND c.not_after > ?`).get(generation, now) as { n: number }
    ).n;
  }

  // --- the online CA: tokens, bundles, who holds which ---------------------------

  /**
   * Changes whenever another connection (a CLI command) commits: the server polls it to
   * notice revocations and generation changes without a message from the CLI.
   */
  dataVersion(): number {
    return this.db.pragma("data_version", { simple: true }) as number;
  }

  insertToken(row: TokenRow): void {
    this.sql(
      "INSERT INTO enrol_tokens (hash, name, created_at, expires_at, used_at, used_by) VALUES (@hash, @name, @created_at, @expires_at, @used_at, @used_by)",
    ).run(toStored(row));
  }

  token(hash: string): TokenRow | undefined {
    return maybeFromStored<TokenRow>(this.sql("SELECT * FROM enrol_tokens WHERE hash = ?").get(hash));
  }

  /** Marks a token used, only if it still is unused and unexpired (inside the issuing transaction). */
  consumeToken(hash: string, now: string, serial: string): boolean {
    return (
      this.sql(
        "UPDATE enrol_tokens SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?",
      ).run(now, serial, hash, now).changes === 1
    );
  }

  recordBundle(etag: string, generations: number[], now: string): void {
    this.sql("INSERT OR IGNORE INTO bundles (etag, generations, first_served_at) VALUES (?, ?, ?)").run(
      etag,
      JSON.stringify(generations),
      now,
    );
  }

  bundleGenerations(etag: string): number[] | undefined {
    const row = this.sql("SELECT generations FROM bundles WHERE etag = ?").get(etag) as
      | { generations: string }
      | undefined;
    return row ? (JSON.parse(row.generations) as number[]) : undefined;
  }

  recordBundleHolder(row: BundleHolderRow): void {
    this.sql(`INSERT INTO bundle_holders (name, serial, held_etag, served_etag, seen_at, remote) VALUES (@name, @serial, @held_etag, @served_etag, @seen_at, @remote)
      ON CONFLICT(name) DO UPDATE SET serial = excluded.serial, held_etag = excluded.held_etag, served_etag = excluded.served_etag, seen_at = excluded.seen_at, remote = excluded.remote`).run(
      toStored(row),
    );
  }

  bundleHolders(): BundleHolderRow[] {
    return allFromStored<BundleHolderRow>(this.sql("SELECT * FROM bundle_holders ORDER BY name").all());
  }

  /** Every bundle the server has published: ETag → its root generations. */
  bundles(): Map<string, number[]> {
    const rows = this.sql("SELECT etag, generations FROM bundles").all() as { etag: string; generations: string }[];
    return new Map(rows.map((r) => [r.etag, JSON.parse(r.generations) as number[]]));
  }

  // --- rotations (ca/rotation.ts) -------------------------------------------------

  /** Valid, unexpired certificates with their root generation (what the rotation gates count). */
  currentCerts(now: string): CurrentCertFact[] {
    const rows =
      this.sql(`SELECT c.name, c.serial, i.generation, c.not_after, c.source FROM certs c JOIN issuers i ON i.id = c.issuer_id
      WHERE c.status = 'valid' AND c.not_after > ? ORDER BY c.name`).all(now);
    return allFromStored<CurrentCertFact>(rows);
  }

  /** The root generation of the CA that issued a certificate (any status), or undefined. */
  generationOf(serial: string): number | undefined {
    return (
      this.sql("SELECT i.generation FROM certs c JOIN issuers i ON i.id = c.issuer_id WHERE c.serial = ?").get(
        serial,
      ) as { generation: number } | undefined
    )?.generation;
  }

  /** The rotation not done yet, if any (at most one: a unique index says so). */
  unfinishedRotation(): RotationRow | undefined {
    return maybeFromStored<RotationRow>(this.sql("SELECT * FROM rotations WHERE phase != 'done'").get());
  }

  /** The latest rotation, finished or not (the dashboard shows a finished one for a while). */
  lastRotation(): RotationRow | undefined {
    return maybeFromStored<RotationRow>(this.sql("SELECT * FROM rotations ORDER BY id DESC LIMIT 1").get());
  }

  rotation(id: number): RotationRow | undefined {
    return maybeFromStored<RotationRow>(this.sql("SELECT * FROM rotations WHERE id = ?").get(id));
  }

  insertRotation(
    row: Pick<RotationRow, "fromGeneration" | "toGeneration" | "startedAt" | "owner"> & { inUse?: number },
  ): RotationRow {
    const r =
      this.sql(`INSERT INTO rotations (from_generation, to_generation, phase, in_use, started_at, updated_at, owner, heartbeat_at)
      VALUES (@from_generation, @to_generation, 'prepare', @in_use, @started_at, @started_at, @owner, @started_at)`).run(
        { in_use: 0, ...toStored(row) },
      );
    return this.rotation(Number(r.lastInsertRowid))!;
  }

  /** Moves a rotation on; `fields` are the timestamps this step sets. */
  updateRotation(id: number, fields: RotationFields, now: string): void {
    const stored = toStored(fields);
    const sets = Object.keys(stored)
      .filter((k) => ROTATION_FIELDS.has(k))
      .map((k) => `${k} = @${k}`);
    this.sql(`UPDATE rotations SET ${[...sets, "updated_at = @now"].join(", ")} WHERE id = @id`).run({
      ...stored,
      id,
      now,
    });
  }

  // --- replicas: leases, signed CRLs; retention -------------------------------------

  takeLease(name: string, holder: string, now: string, expiresAt: string): LeaseRow {
    this.sql(`INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (@name, @holder, @now, @expiresAt)
      ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
        acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
      WHERE leases.holder = excluded.holder OR leases.expires_at <= @now`).run({ name, holder, now, expiresAt });
    return fromStored<LeaseRow>(this.sql("SELECT * FROM leases WHERE name = ?").get(name));
  }

  releaseLease(name: string, holder: string): void {
    this.sql("DELETE FROM leases WHERE name = ? AND holder = ?").run(name, holder);
  }

  signedCrl(id: string): Uint8Array | null {
    const row = this.sql("SELECT der FROM signed_crls WHERE issuer_id = ?").get(id) as { der: Buffer } | undefined;
    return row ? new Uint8Array(row.der) : null;
  }

  setSignedCrl(id: string, der: Uint8Array): void {
    this.sql(
      "INSERT INTO signed_crls (issuer_id, der) VALUES (?, ?) ON CONFLICT(issuer_id) DO UPDATE SET der = excluded.der",
    ).run(id, Buffer.from(der));
  }

  cliIssuedSince(since: string): number {
    return (
      this.sql("SELECT count(*) AS n FROM certs WHERE source IN ('issue', 'csr', 'renew') AND created_at >= ?").get(
        since,
      ) as { n: number }
    ).n;
  }

  /**
   * Retention (ca prune, docs/ca.md): deletes the certificates whose notAfter is before
   * `cutoff` (any status: valid ones expired unrenewed, superseded, revoked) and the enrolment
   * tokens that expired before it; with `dryRun`, only counts them. The caller drops expired
   * serials from the CRLs first (ca/retention.ts). Inside a write transaction.
   */
  pruneExpired(cutoff: Date, opts: { dryRun?: boolean } = {}): { certs: number; tokens: number } {
    const at = cutoff.toISOString();
    if (opts.dryRun) {
      const n = (table: string, column: string) =>
        (this.sql(`SELECT count(*) AS n FROM ${table} WHERE ${column} < ?`).get(at) as { n: number }).n;
      return { certs: n("certs", "not_after"), tokens: n("enrol_tokens", "expires_at") };
    }
    const certs = this.sql("DELETE FROM certs WHERE not_after < ?").run(at).changes;
    const tokens = this.sql("DELETE FROM enrol_tokens WHERE expires_at < ?").run(at).changes;
    return { certs, tokens };
  }

  counts(now: string): Record<"VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED", number> {
    const r = this.sql(`SELECT
      sum(status = 'valid' AND not_after > @now) AS VALID,
      sum(status = 'valid' AND not_after <= @now) AS EXPIRED,
      sum(status = 'revoked') AS REVOKED,
      sum(status = 'superseded') AS SUPERSEDED FROM certs`).get({ now }) as Record<string, number | null>;
    return { VALID: r.VALID ?? 0, EXPIRED: r.EXPIRED ?? 0, REVOKED: r.REVOKED ?? 0, SUPERSEDED: r.SUPERSEDED ?? 0 };
  }
}

/** The status a person sees: expiry is derived from the clock, never stored. */
export function displayStatus(
  row: Pick<CertRow, "status" | "notAfter">,
  now: Date,
): "VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED" {
  if (row.status === "revoked") return "REVOKED";
  if (row.status === "superseded") return "SUPERSEDED";
  return new Date(row.notAfter) <= now ? "EXPIRED" : "VALID";
}

/** The SQLite ledger behind a store, for what only SQLite has (pragmas, bulk loading in the benchmark). */
export function sqliteLedger(store: LedgerStore): Ledger {
  if (!(store instanceof Ledger))
    throw new CaError("REFUSED", `this needs the SQLite ledger, and the CA's ledger is at ${store.path}`);
  return store;
}
