// The issuance ledger in PostgreSQL, for several `ca serve` replicas acting as one CA
// (docs/est.md, "Running several CA replicas"). The same tables and rules as the SQLite
// ledger (ca/ledger.ts); writers take one advisory lock, so they are serialised as SQLite's
// are and a read-check-write (a token spent, a name superseded) cannot interleave.
import { CaError } from "../errors.ts";
import type {
  BundleHolderRow,
  CertRow,
  CurrentCertFact,
  GenerationState,
  IssuerRow,
  LedgerEntry,
  RotationRow,
  TokenRow,
} from "../ledger.ts";
import type {
  BatchOutcome,
  IssuanceRecord,
  IssuanceRefusal,
  LeaseRow,
  LedgerStore,
  RotationFields,
} from "./interface.ts";
import { allFromStored, fromStored, maybeFromStored, toStored } from "./stored.ts";
import { PgError, SyncPg, type PgConfig, type QueryResult } from "./pg-sync.ts";

const SCHEMA_VERSION = "1";
/** The advisory lock every write transaction takes ("mesh" in ASCII). */
const WRITE_LOCK = 0x6d657368;
const SCHEMA_LOCK = WRITE_LOCK + 1;
/** Notified by every statement that changes the issuers or the settings (the triggers below). */
const CHANGED_CHANNEL = "mesh_ca_changed";
/**
 * The cache of issuers and settings is read again after this long even if nothing was heard:
 * a bound on staleness should notifications not arrive (a pooler in transaction mode drops LISTEN).
 */
const SNAPSHOT_MAX_AGE_MS = 1_000;

// Text compares byte-wise, as in SQLite: list order and ISO-date comparisons do not
// depend on the database's locale.
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
  crl_entries BYTEA,
  created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS issuers_one_root_per_generation ON issuers(generation) WHERE kind = 'root';
CREATE TABLE IF NOT EXISTS certs (
  seq BIGSERIAL UNIQUE,
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
CREATE UNIQUE INDEX IF NOT EXISTS certs_one_current_per_name ON certs(name) WHERE status = 'valid';
CREATE INDEX IF NOT EXISTS certs_by_issuer_status ON certs(issuer_id, status, not_after);
CREATE INDEX IF NOT EXISTS certs_by_name ON certs(name, created_at);
CREATE INDEX IF NOT EXISTS certs_by_not_after ON certs(not_after);
CREATE TABLE IF NOT EXISTS enrol_tokens (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at TEXT,
  used_by TEXT
);
CREATE INDEX IF NOT EXISTS enrol_tokens_by_name ON enrol_tokens(name);
CREATE TABLE IF NOT EXISTS bundles (etag TEXT PRIMARY KEY, generations TEXT NOT NULL, first_served_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bundle_holders (
  name TEXT PRIMARY KEY, serial TEXT NOT NULL, held_etag TEXT, served_etag TEXT NOT NULL, seen_at TEXT NOT NULL, remote TEXT
);
CREATE TABLE IF NOT EXISTS rotations (
  id SERIAL PRIMARY KEY,
  from_generation INTEGER NOT NULL,
  to_generation INTEGER NOT NULL,
  phase TEXT NOT NULL CHECK (phase IN ('prepare', 'activate', 'retire', 'done')),
  in_use INTEGER NOT NULL DEFAULT 0,
  started_at TEXT NOT NULL,
  published_at TEXT,
  activated_at TEXT,
  finished_at TEXT,
  updated_at TEXT NOT NULL,
  owner TEXT,
  heartbeat_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS rotations_one_unfinished ON rotations((phase <> 'done')) WHERE phase <> 'done';
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, acquired_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signed_crls (issuer_id TEXT PRIMARY KEY REFERENCES issuers(id), der BYTEA NOT NULL);
-- SQLite's data_version for PostgreSQL: bumped by every statement that changes what a server
-- publishes (issuers, settings, CRLs); each replica polls it to notice the others' changes.
CREATE TABLE IF NOT EXISTS store_version (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO store_version (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION mesh_ca_bump_version() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN UPDATE store_version SET n = n + 1 WHERE id = 1; RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER issuers_changed AFTER INSERT OR UPDATE OR DELETE ON issuers FOR EACH STATEMENT EXECUTE FUNCTION mesh_ca_bump_version();
CREATE OR REPLACE TRIGGER meta_changed AFTER INSERT OR UPDATE OR DELETE ON meta FOR EACH STATEMENT EXECUTE FUNCTION mesh_ca_bump_version();
CREATE OR REPLACE TRIGGER signed_crls_changed AFTER INSERT OR UPDATE OR DELETE ON signed_crls FOR EACH STATEMENT EXECUTE FUNCTION mesh_ca_bump_version();
-- And told at once to every replica listening (the cache of issuers and settings, PgLedger.cached):
-- a function and triggers of their own, which an older replica's CREATE OR REPLACE of the above
-- leaves in place.
CREATE OR REPLACE FUNCTION mesh_ca_notify_changed() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_notify('${CHANGED_CHANNEL}', ''); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER issuers_notify AFTER INSERT OR UPDATE OR DELETE ON issuers FOR EACH STATEMENT EXECUTE FUNCTION mesh_ca_notify_changed();
CREATE OR REPLACE TRIGGER meta_notify AFTER INSERT OR UPDATE OR DELETE ON meta FOR EACH STATEMENT EXECUTE FUNCTION mesh_ca_notify_changed();
`.replace(/\bTEXT\b/g, 'TEXT COLLATE "C"');

const CERT_COLUMNS =
  "serial, name, sans, issuer_id, key_type, not_before, not_after, status, revoked_at, reason, superseded_by, source, created_at";
const INSERT_CERT = `INSERT INTO certs (${CERT_COLUMNS}, pem) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`;

function certParams(r: CertRow): unknown[] {
  return [
    r.serial,
    r.name,
    r.sans,
    r.issuerId,
    r.keyType,
    r.notBefore,
    r.notAfter,
    r.status,
    r.revokedAt,
    r.reason,
    r.supersededBy,
    r.source,
    r.createdAt,
    r.pem,
  ];
}

const ISSUER_COLUMNS =
  "id, kind, generation, parent, name, serial, key_type, not_before, not_after, state, crl_number, crl_next_update, created_at";
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

interface Snapshot {
  /** SyncPg.changes when it was read. */
  changes: number;
  /** performance.now() when it was read. */
  at: number;
  issuers: IssuerRow[];
  meta: Map<string, string>;
}

function unreachable(shown: string, err: unknown): CaError {
  const e = err as PgError;
  if (e.code === "3D000")
    return new CaError(
      "NOT_INITIALISED",
      `the database of --store ${shown} does not exist: create it (createdb), then run: npm run ca -- init --store ${shown}`,
    );
  if (e.code === "28P01" || e.code === "28000")
    return new CaError(
      "REFUSED",
      `PostgreSQL refused the login for --store ${shown} (${e.message}): set PGPASSWORD or ~/.pgpass, or fix the role`,
    );
  return new CaError("CORRUPT", `cannot use the ledger at ${shown}: ${e.message}`, { cause: err });
}

export class PgLedger implements LedgerStore {
  readonly kind = "postgres" as const;
  readonly path: string;
  private readonly pg: SyncPg;
  private depth = 0;
  /** The issuers and settings, as one statement read them (cached()). */
  private snapshot: Snapshot | null = null;

  private constructor(pg: SyncPg, shown: string) {
    this.pg = pg;
    this.path = shown;
  }

  /** Opens the ledger in a database; `create` (init) makes the tables and refuses a database that already holds a CA. */
  static open(config: PgConfig, shown: string, opts: { create?: boolean } = {}): PgLedger {
    const pg = new SyncPg(config, { listen: CHANGED_CHANNEL });
    try {
      pg.query("BEGIN");
      try {
        // Two replicas starting at once must not race on CREATE ... IF NOT EXISTS.
        pg.query(`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK})`);
        const has = pg.query("SELECT to_regclass('meta') IS NOT NULL AS has").rows[0]!.has as boolean;
        const version = has
          ? (pg.query("SELECT value FROM meta WHERE key = 'schema'").rows[0]?.value as string | undefined)
          : undefined;
        if (opts.create && version)
          throw new CaError(
            "ALREADY_EXISTS",
            `a CA already exists in ${shown}: refusing to overwrite it (use another database)`,
          );
        if (!opts.create && !version)
          throw new CaError(
            "NOT_INITIALISED",
            `the CA is not initialised in ${shown} (run: npm run ca -- init --name "Acme Corp CA" --store ${shown})`,
          );
        if (version && version !== SCHEMA_VERSION)
          throw new CaError(
            "CORRUPT",
            `the ledger at ${shown} has schema version ${version}, this CA understands ${SCHEMA_VERSION}`,
          );
        pg.query(SCHEMA);
        if (opts.create)
          pg.query("INSERT INTO meta (key, value) VALUES ('schema', $1) ON CONFLICT (key) DO NOTHING", [
            SCHEMA_VERSION,
          ]);
        pg.query("COMMIT");
      } catch (err) {
        try {
          pg.query("ROLLBACK");
        } catch {
          /* the connection is gone */
        }
        throw err;
      }
    } catch (err) {
      pg.close();
      if (err instanceof CaError) throw err;
      throw unreachable(shown, err);
    }
    return new PgLedger(pg, shown);
  }

  close(): void {
    this.pg.close();
  }

  private rows<T>(sql: string, params: unknown[] = []): T[] {
    return this.pg.query(sql, params).rows as T[];
  }

  private one<T>(sql: string, params: unknown[] = []): T | undefined {
    return this.pg.query(sql, params).rows[0] as T | undefined;
  }

  private run(sql: string, params: unknown[] = []): number {
    return this.pg.query(sql, params).rowCount;
  }

  /**
   * The issuers and the settings, read in one statement and kept while nothing changes them: an
   * issuance reads the signer, its issuer and its root (four round trips live). Any statement of
   * another connection that changes them notifies CHANGED_CHANNEL (the triggers), and the
   * notification reaches this connection's worker before the answer to any statement that began
   * after that commit (PostgreSQL sends it before ReadyForQuery); this store's own changes drop
   * the snapshot at once. So a cached read sees every change committed before this connection's
   * previous round trip began, as a live read would have seen them then. Inside a transaction
   * (null) the reads are live, under its locks and with its own uncommitted changes.
   */
  private cached(): Snapshot | null {
    if (this.depth > 0) return null;
    const s = this.snapshot;
    const changes = this.pg.changes;
    const now = performance.now();
    if (s && s.changes === changes && now - s.at < SNAPSHOT_MAX_AGE_MS) return s;
    const prefixed = ISSUER_COLUMNS.split(", ")
      .map((c) => `i.${c}`)
      .join(", ");
    const rows = this.rows<{ meta: Record<string, string> | null; id: string | null }>(
      `SELECT m.meta, ${prefixed} FROM (SELECT json_object_agg(key, value) AS meta FROM meta) m
      LEFT JOIN issuers i ON true ORDER BY i.generation, i.kind DESC, i.created_at`,
    );
    const issuers = allFromStored<IssuerRow>(rows.filter((r) => r.id !== null).map(({ meta: _, ...issuer }) => issuer));
    this.snapshot = { changes, at: now, issuers, meta: new Map(Object.entries(rows[0]?.meta ?? {})) };
    return this.snapshot;
  }

  /** This store changed the issuers or the settings: the snapshot is read again (after the transaction). */
  private changed(): void {
    this.snapshot = null;
  }

  private begin(shared = false): string | null {
    const outer = this.depth++ === 0;
    const sp = outer ? null : `sp${this.depth}`;
    try {
      // One round trip for both.
      this.pg.query(
        sp ? `SAVEPOINT ${sp}` : `BEGIN; SELECT pg_advisory_xact_lock${shared ? "_shared" : ""}(${WRITE_LOCK})`,
      );
    } catch (err) {
      // Not begun: the depth back, and a BEGIN that met a dead connection ended on the worker's
      // side too (it counts the connection lost inside a transaction until a ROLLBACK); without
      // this every later call failed, the store's depth stuck inside a transaction that was gone.
      this.depth--;
      if (outer) {
        try {
          this.pg.query("ROLLBACK");
        } catch {
          /* nothing more to end */
        }
      }
      throw err;
    }
    return sp;
  }

  private end(sp: string | null, ok: boolean): void {
    this.depth--;
    try {
      if (sp) this.pg.query(ok ? `RELEASE SAVEPOINT ${sp}` : `ROLLBACK TO SAVEPOINT ${sp}`);
      else this.pg.query(ok ? "COMMIT" : "ROLLBACK");
    } catch (err) {
      if (ok) throw err;
    }
  }

  write<T>(fn: () => T, opts: { shared?: boolean } = {}): T {
    const sp = this.begin(opts.shared);
    let result: T;
    try {
      result = fn();
    } catch (err) {
      this.end(sp, false);
      throw err;
    }
    this.end(sp, true);
    return result;
  }

  /**
   * Optimistic: no savepoint per function (two round trips each). A statement that fails aborts
   * the whole transaction in PostgreSQL, so on a refused record the batch is rolled back and run
   * again without it; refusals are rare (a token raced, a name renewed twice).
   */
  writeBatch(fns: ReadonlyArray<() => void>): BatchOutcome[] {
    const outcomes: Array<BatchOutcome | undefined> = new Array(fns.length);
    for (;;) {
      const sp = this.begin(true);
      let failed = -1;
      let failure: unknown;
      for (let i = 0; i < fns.length && failed < 0; i++) {
        if (outcomes[i]) continue; // refused in an earlier run
        try {
          fns[i]!();
        } catch (err) {
          failed = i;
          failure = err;
        }
      }
      if (failed < 0) {
        this.end(sp, true);
        return fns.map((_, i) => outcomes[i] ?? { ok: true });
      }
      this.end(sp, false);
      // The database failing (the connection, a timeout) fails the batch; a constraint (23xxx) or the CA's own refusal fails only that record.
      if (failure instanceof PgError && !failure.code.startsWith("23")) throw failure;
      outcomes[failed] = { ok: false, error: failure };
    }
  }

  async writeAsync<T>(fn: () => Promise<T>): Promise<T> {
    const sp = this.begin();
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      this.end(sp, false);
      throw err;
    }
    this.end(sp, true);
    return result;
  }

  getMeta(key: string): string | undefined {
    const cached = this.cached();
    if (cached) return cached.meta.get(key);
    return this.one<{ value: string }>("SELECT value FROM meta WHERE key = $1", [key])?.value;
  }

  setMeta(key: string, value: string): void {
    this.changed();
    this.run("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [
      key,
      value,
    ]);
  }

  // --- issuers ---------------------------------------------------------------

  insertIssuer(r: IssuerRow): void {
    this.changed();
    this.run(
      `INSERT INTO issuers (${ISSUER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
      [
        r.id,
        r.kind,
        r.generation,
        r.parent,
        r.name,
        r.serial,
        r.keyType,
        r.notBefore,
        r.notAfter,
        r.state,
        r.crlNumber,
        r.crlNextUpdate,
        r.createdAt,
      ],
    );
  }

  issuers(): IssuerRow[] {
    const cached = this.cached();
    if (cached) return cached.issuers.map((r) => ({ ...r }));
    return allFromStored(this.rows(`SELECT ${ISSUER_COLUMNS} FROM issuers ORDER BY generation, kind DESC, created_at`));
  }

  issuer(id: string): IssuerRow | undefined {
    const cached = this.cached();
    if (cached) {
      const row = cached.issuers.find((r) => r.id === id);
      return row && { ...row };
    }
    return maybeFromStored(this.one(`SELECT ${ISSUER_COLUMNS} FROM issuers WHERE id = $1`, [id]));
  }

  setIssuerState(generation: number, state: GenerationState): void {
    this.changed();
    this.run("UPDATE issuers SET state = $1 WHERE generation = $2", [state, generation]);
  }

  crlEntries(id: string): Uint8Array | null {
    return (
      this.one<{ crl_entries: Uint8Array | null }>("SELECT crl_entries FROM issuers WHERE id = $1", [id])
        ?.crl_entries ?? null
    );
  }

  setCrlEntries(id: string, der: Uint8Array): void {
    this.run("UPDATE issuers SET crl_entries = $1 WHERE id = $2", [Buffer.from(der), id]);
  }

  nextCrlNumber(id: string, nextUpdate: string): number {
    this.changed();
    return this.one<{ crl_number: number }>(
      "UPDATE issuers SET crl_number = crl_number + 1, crl_next_update = $1 WHERE id = $2 RETURNING crl_number",
      [nextUpdate, id],
    )!.crl_number;
  }

  signedCrl(id: string): Uint8Array | null {
    const der = this.one<{ der: Uint8Array }>("SELECT der FROM signed_crls WHERE issuer_id = $1", [id])?.der;
    return der ? new Uint8Array(der) : null;
  }

  setSignedCrl(id: string, der: Uint8Array): void {
    this.run(
      "INSERT INTO signed_crls (issuer_id, der) VALUES ($1, $2) ON CONFLICT (issuer_id) DO UPDATE SET der = excluded.der",
      [id, Buffer.from(der)],
    );
  }

  // --- certificates ----------------------------------------------------------

  insertCert(r: CertRow): void {
    this.run(INSERT_CERT, certParams(r));
  }

  recordIssuance(r: IssuanceRecord): IssuanceRefusal | null {
    const { cert } = r;
    // One round trip for all three; the results are read once all have run, and a refusal makes
    // the caller roll back whatever ran. A live certificate for the name fails the INSERT on the
    // one-current-per-name index (a unique violation, thrown), after an expired one was superseded.
    const statements = [
      ...(r.token
        ? [
            {
              sql: "UPDATE enrol_tokens SET used_at = $1, used_by = $2 WHERE hash = $3 AND used_at IS NULL AND expires_at > $1",
              params: [r.token.at, cert.serial, r.token.hash],
            },
          ]
        : []),
      r.supersede !== undefined
        ? {
            sql: "UPDATE certs SET status = 'superseded', superseded_by = $1 WHERE serial = $2 AND status = 'valid'",
            params: [cert.serial, r.supersede],
          }
        : {
            sql: "UPDATE certs SET status = 'superseded', superseded_by = $1 WHERE name = $2 AND status = 'valid' AND not_after <= $3",
            params: [cert.serial, cert.name, cert.createdAt],
          },
      { sql: INSERT_CERT, params: certParams(cert) },
    ];
    let results: QueryResult[];
    try {
      results = this.pg.queryMany(statements);
    } catch (err) {
      // A loser of a race on one token also meets the winner's certificate in the index: it is
      // told, as on SQLite, that the token was spent (its UPDATE ran before the INSERT failed).
      if (r.token && err instanceof PgError && err.results?.[0]?.rowCount === 0) return { why: "token_spent" };
      throw err;
    }
    if (r.token && results[0]!.rowCount !== 1) return { why: "token_spent" };
    if (r.supersede !== undefined && results[r.token ? 1 : 0]!.rowCount !== 1) return { why: "changed" };
    return null;
  }

  current(name: string): CertRow | undefined {
    return maybeFromStored(
      this.one(`SELECT ${CERT_COLUMNS}, pem FROM certs WHERE name = $1 AND status = 'valid'`, [name]),
    );
  }

  latest(name: string): CertRow | undefined {
    return maybeFromStored(
      this.one(`SELECT ${CERT_COLUMNS}, pem FROM certs WHERE name = $1 ORDER BY created_at DESC, seq DESC LIMIT 1`, [
        name,
      ]),
    );
  }

  bySerial(serial: string): CertRow | undefined {
    return maybeFromStored(this.one(`SELECT ${CERT_COLUMNS}, pem FROM certs WHERE serial = $1`, [serial]));
  }

  list(opts: { all?: boolean } = {}): LedgerEntry[] {
    return allFromStored(
      this.rows(
        `SELECT ${CERT_COLUMNS} FROM certs ${opts.all ? "" : "WHERE status <> 'superseded'"} ORDER BY name, created_at, seq`,
      ),
    );
  }

  markRevoked(serial: string, at: string, reason: string): boolean {
    return (
      this.run(
        "UPDATE certs SET status = 'revoked', revoked_at = $1, reason = $2 WHERE serial = $3 AND status <> 'revoked'",
        [at, reason, serial],
      ) === 1
    );
  }

  markSuperseded(serial: string, by: string): boolean {
    return (
      this.run("UPDATE certs SET status = 'superseded', superseded_by = $1 WHERE serial = $2 AND status = 'valid'", [
        by,
        serial,
      ]) === 1
    );
  }

  revokedUnexpired(issuerId: string, now: string): Pick<CertRow, "serial" | "revokedAt" | "reason">[] {
    return allFromStored(
      this.rows(
        "SELECT serial, revoked_at, reason FROM certs WHERE issuer_id = $1 AND status = 'revoked' AND not_after > $2",
        [issuerId, now],
      ),
    );
  }

  validInGeneration(generation: number, now: string): number {
    return this.one<{ n: number }>(
      `SELECT count(*)::int AS n FROM certs c JOIN issuers i ON i.id = c.issuer_id
      WHERE i.generation = $1 AND c.status = 'valid' AND c.not_after > $2`,
      [generation, now],
    )!.n;
  }

  counts(now: string): Record<"VALID" | "EXPIRED" | "REVOKED" | "SUPERSEDED", number> {
    return this.one(
      `SELECT
      count(*) FILTER (WHERE status = 'valid' AND not_after > $1)::int AS "VALID",
      count(*) FILTER (WHERE status = 'valid' AND not_after <= $1)::int AS "EXPIRED",
      count(*) FILTER (WHERE status = 'revoked')::int AS "REVOKED",
      count(*) FILTER (WHERE status = 'superseded')::int AS "SUPERSEDED" FROM certs`,
      [now],
    )!;
  }

  cliIssuedSince(since: string): number {
    return this.one<{ n: number }>(
      "SELECT count(*)::int AS n FROM certs WHERE source IN ('issue', 'csr', 'renew') AND created_at >= $1",
      [since],
    )!.n;
  }

  pruneExpired(cutoff: Date, opts: { dryRun?: boolean } = {}): { certs: number; tokens: number } {
    const at = cutoff.toISOString();
    if (opts.dryRun) {
      const n = (table: string, column: string) =>
        this.one<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${column} < $1`, [at])!.n;
      return { certs: n("certs", "not_after"), tokens: n("enrol_tokens", "expires_at") };
    }
    return {
      certs: this.run("DELETE FROM certs WHERE not_after < $1", [at]),
      tokens: this.run("DELETE FROM enrol_tokens WHERE expires_at < $1", [at]),
    };
  }

  dataVersion(): number {
    return Number(this.one<{ n: string }>("SELECT n FROM store_version WHERE id = 1")!.n);
  }

  // --- the online CA ------------------------------------------------------------------

  insertToken(r: TokenRow): void {
    this.run(
      "INSERT INTO enrol_tokens (hash, name, created_at, expires_at, used_at, used_by) VALUES ($1, $2, $3, $4, $5, $6)",
      [r.hash, r.name, r.createdAt, r.expiresAt, r.usedAt, r.usedBy],
    );
  }

  token(hash: string): TokenRow | undefined {
    return maybeFromStored(
      this.one("SELECT hash, name, created_at, expires_at, used_at, used_by FROM enrol_tokens WHERE hash = $1", [hash]),
    );
  }

  consumeToken(hash: string, now: string, serial: string): boolean {
    return (
      this.run(
        "UPDATE enrol_tokens SET used_at = $1, used_by = $2 WHERE hash = $3 AND used_at IS NULL AND expires_at > $1",
        [now, serial, hash],
      ) === 1
    );
  }

  recordBundle(etag: string, generations: number[], now: string): void {
    this.run(
      "INSERT INTO bundles (etag, generations, first_served_at) VALUES ($1, $2, $3) ON CONFLICT (etag) DO NOTHING",
      [etag, JSON.stringify(generations), now],
    );
  }

  bundleGenerations(etag: string): number[] | undefined {
    const row = this.one<{ generations: string }>("SELECT generations FROM bundles WHERE etag = $1", [etag]);
    return row ? (JSON.parse(row.generations) as number[]) : undefined;
  }

  recordBundleHolder(r: BundleHolderRow): void {
    this.run(
      `INSERT INTO bundle_holders (name, serial, held_etag, served_etag, seen_at, remote) VALUES ($1, $2, $3, $4, $5, $6)
      ON CONFLICT (name) DO UPDATE SET serial = excluded.serial, held_etag = excluded.held_etag, served_etag = excluded.served_etag, seen_at = excluded.seen_at, remote = excluded.remote`,
      [r.name, r.serial, r.heldEtag, r.servedEtag, r.seenAt, r.remote],
    );
  }

  bundleHolders(): BundleHolderRow[] {
    return allFromStored(
      this.rows("SELECT name, serial, held_etag, served_etag, seen_at, remote FROM bundle_holders ORDER BY name"),
    );
  }

  bundles(): Map<string, number[]> {
    const rows = this.rows<{ etag: string; generations: string }>("SELECT etag, generations FROM bundles");
    return new Map(rows.map((r) => [r.etag, JSON.parse(r.generations) as number[]]));
  }

  // --- rotations -------------------------------------------------------------------------

  currentCerts(now: string): CurrentCertFact[] {
    return allFromStored(
      this.rows(
        `SELECT c.name, c.serial, i.generation, c.not_after, c.source FROM certs c JOIN issuers i ON i.id = c.issuer_id
      WHERE c.status = 'valid' AND c.not_after > $1 ORDER BY c.name`,
        [now],
      ),
    );
  }

  generationOf(serial: string): number | undefined {
    return this.one<{ generation: number }>(
      "SELECT i.generation FROM certs c JOIN issuers i ON i.id = c.issuer_id WHERE c.serial = $1",
      [serial],
    )?.generation;
  }

  unfinishedRotation(): RotationRow | undefined {
    return maybeFromStored(this.one("SELECT * FROM rotations WHERE phase <> 'done'"));
  }

  rotation(id: number): RotationRow | undefined {
    return maybeFromStored(this.one("SELECT * FROM rotations WHERE id = $1", [id]));
  }

  insertRotation(
    r: Pick<RotationRow, "fromGeneration" | "toGeneration" | "startedAt" | "owner"> & { inUse?: number },
  ): RotationRow {
    return fromStored(
      this.one(
        `INSERT INTO rotations (from_generation, to_generation, phase, in_use, started_at, updated_at, owner, heartbeat_at)
      VALUES ($1, $2, 'prepare', $3, $4, $4, $5, $4) RETURNING *`,
        [r.fromGeneration, r.toGeneration, r.inUse ?? 0, r.startedAt, r.owner],
      ),
    );
  }

  updateRotation(id: number, fields: RotationFields, now: string): void {
    const stored: Record<string, unknown> = toStored(fields);
    const keys = Object.keys(stored).filter((k) => ROTATION_FIELDS.has(k));
    const values = keys.map((k) => stored[k]);
    const sets = keys.map((k, i) => `${k} = $${i + 1}`);
    this.run(
      `UPDATE rotations SET ${[...sets, `updated_at = $${keys.length + 1}`].join(", ")} WHERE id = $${keys.length + 2}`,
      [...values, now, id],
    );
  }

  // --- copying a SQLite ledger in (ca/store/copy.ts) -----------------------------------------

  /** Inserts rows as they are, in batches; inside write(). Column names come from the rows, checked against the table's. */
  importRows(table: string, rows: Record<string, unknown>[]): void {
    if (rows.length === 0) return;
    this.changed();
    const known = new Set(
      this.rows<{ column_name: string }>(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        [table],
      ).map((r) => r.column_name),
    );
    const columns = Object.keys(rows[0]!).filter((c) => known.has(c));
    for (let i = 0; i < rows.length; i += 200) {
      const batch = rows.slice(i, i + 200);
      const values: unknown[] = [];
      const tuples = batch.map(
        (r) =>
          `(${columns
            .map((c) => {
              const v = r[c];
              values.push(v instanceof Uint8Array ? Buffer.from(v) : v);
              return `$${values.length}`;
            })
            .join(", ")})`,
      );
      this.run(`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${tuples.join(", ")}`, values);
    }
    if (table === "rotations")
      this.run("SELECT setval(pg_get_serial_sequence('rotations', 'id'), (SELECT max(id) FROM rotations))");
  }

  /** After a failed copy: the database back to empty, so the copy can be run again. */
  dropEverything(): void {
    try {
      this.pg.query(`DROP TABLE IF EXISTS signed_crls, leases, rotations, bundle_holders, bundles, enrol_tokens, certs, issuers, meta, store_version CASCADE;
        DROP FUNCTION IF EXISTS mesh_ca_bump_version() CASCADE; DROP FUNCTION IF EXISTS mesh_ca_notify_changed() CASCADE`);
      this.snapshot = null;
    } catch {
      /* the connection is gone: nothing more to undo here */
    }
  }

  // --- replicas ----------------------------------------------------------------------------

  takeLease(name: string, holder: string, now: string, expiresAt: string): LeaseRow {
    this.run(
      `INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
        acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
      WHERE leases.holder = excluded.holder OR leases.expires_at <= $3`,
      [name, holder, now, expiresAt],
    );
    return fromStored(this.one("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1", [name]));
  }

  releaseLease(name: string, holder: string): void {
    this.run("DELETE FROM leases WHERE name = $1 AND holder = $2", [name, holder]);
  }
}
