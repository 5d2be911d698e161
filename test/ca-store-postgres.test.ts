// The CA's commands on a PostgreSQL store (--store / MESH_CA_STORE): the same answers as on
// SQLite, a password in the URL refused in one line, schema creation idempotent, and the
// store methods both backends share (retention, leases) behaving alike.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CertificateAuthority } from "../ca/authority.ts";
import { Ledger } from "../ca/ledger.ts";
import type { LedgerStore } from "../ca/store/interface.ts";
import { PgLedger } from "../ca/store/postgres.ts";
import { parseStore } from "../ca/store/url.ts";
import { ca as cli, cleanup, tempDir } from "./helpers/ca.ts";
import { createDb, type TestDb } from "./helpers/replicas.ts";

describe("the CA's commands on PostgreSQL", () => {
  let db: TestDb;
  let root: string;
  let dir: string;
  const run = (args: string[], env: Record<string, string> = {}) =>
    cli([...args, "--dir", dir], { env: { MESH_CA_STORE: db.url, ...env } });

  before(async () => {
    db = await createDb();
    root = tempDir("mesh-pgcli-");
    dir = join(root, "pki");
  });
  after(async () => {
    await db?.drop();
    if (root) cleanup(root);
  });

  it("init, issue, token, revoke, renew, list, status and a generation change, from MESH_CA_STORE", async () => {
    const init = await run(["init", "--name", "PG Corp CA"]);
    assert.equal(init.code, 0, init.stderr);
    const again = await run(["init", "--name", "PG Corp CA"]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already exists/);
    for (const n of ["a", "b", "c"]) assert.equal((await run(["issue", "--domain", `${n}.internal`])).code, 0);
    const token = await run(["token", "--domain", "d.internal"]);
    assert.equal(token.code, 0, token.stderr);
    assert.match(token.stdout, /^mt1\./);
    assert.equal((await run(["revoke", "--domain", "a.internal", "--reason", "keyCompromise"])).code, 0);
    assert.equal((await run(["renew", "--domain", "b.internal"])).code, 0);
    const list = JSON.parse((await run(["list", "--all", "--json"])).stdout) as Array<{
      domain: string;
      status: string;
    }>;
    assert.deepEqual(list.map((r) => `${r.domain}:${r.status}`).sort(), [
      "a.internal:REVOKED",
      "b.internal:SUPERSEDED",
      "b.internal:VALID",
      "c.internal:VALID",
    ]);
    const status = JSON.parse((await run(["status", "--json"])).stdout) as { counts: Record<string, number> };
    assert.deepEqual(status.counts, { VALID: 2, EXPIRED: 0, REVOKED: 1, SUPERSEDED: 1 });
    // The CRL carries the revocation, from the store as from the file.
    const ca = await CertificateAuthority.open({ dir, store: db.url });
    try {
      assert.ok(ca.ledger.signedCrl("root-1"));
      assert.equal(ca.ledger.kind, "postgres");
    } finally {
      ca.close();
    }
    assert.equal((await run(["generation", "add"])).code, 0);
    assert.equal((await run(["bundle"])).code, 0);
    assert.equal((await run(["generation", "use", "2"])).code, 0);
    const issued = await run(["issue", "--domain", "e.internal"]);
    assert.match(issued.stdout, /generation 2/);
    // Nothing was written to a SQLite ledger in the folder.
    const sqlite = await cli(["list", "--dir", dir], { env: { MESH_CA_STORE: "" } });
    assert.notEqual(sqlite.code, 0);
    assert.match(sqlite.stderr, /not initialised/);
  });

  it("rotate runs its gates on the store: new generation published and signing, gate 3 waits for what still chains to the old one", async () => {
    const r = await run(["rotate", "--timeout", "3s"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /gate 3 \(retire\) timed out/);
    const status = await run(["rotate", "--status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /generation 2 → 3, at gate 3\/3 \(retire\)/);
    assert.match(status.stdout, /e\.internal/);
  });

  it("refuses a password in the URL in one line, before touching anything", async () => {
    const r = await run(["list"], { MESH_CA_STORE: "postgres://ca:hunter2@127.0.0.1/mesh" });
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.match(r.stderr, /PGPASSWORD or ~\/\.pgpass/);
    assert.doesNotMatch(r.stderr, /hunter2/);
    const flag = await cli(["list", "--dir", dir, "--store", "postgres://ca:hunter2@127.0.0.1/mesh"]);
    assert.equal(flag.code, 2);
    assert.doesNotMatch(flag.stderr, /hunter2/);
  });

  it("says so when the database does not exist or holds no CA", async () => {
    const missing = await run(["list"], { MESH_CA_STORE: `${db.url.replace(db.name, `${db.name}_nope`)}` });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /does not exist: create it/);
    assert.equal(missing.stderr.trim().split("\n").length, 1);
    assert.throws(() => parseStore("mysql://x/y"), /not a store this CA knows/);
    assert.throws(() => parseStore("postgres://h/db?sslmode=disable"), /not supported/);
  });
});

describe("what both stores share", () => {
  let db: TestDb;
  let root: string;
  const stores: LedgerStore[] = [];
  before(async () => {
    db = await createDb();
    root = tempDir("mesh-stores-");
    const sqliteCa = await CertificateAuthority.init({ dir: join(root, "s", "pki"), name: "S CA", store: "sqlite" });
    const pgCa = await CertificateAuthority.init({ dir: join(root, "p", "pki"), name: "P CA", store: db.url });
    stores.push(sqliteCa.ledger, pgCa.ledger);
    // Opened twice: schema creation is idempotent.
    const setting = parseStore(db.url);
    if (setting.kind === "postgres") PgLedger.open(setting.config, setting.shown).close();
    Ledger.open(join(root, "s", "pki", "ca.db")).close();
  });
  after(async () => {
    for (const s of stores) s.close();
    await db?.drop();
    if (root) cleanup(root);
  });

  it("pruneExpired deletes what expired before the cut, whatever its status, on both", () => {
    for (const s of stores) {
      const row = (serial: string, notAfter: string, status: "valid" | "revoked" | "superseded") => ({
        serial,
        name: `${serial}.internal`,
        sans: "{}",
        issuerId: "root-1",
        keyType: "ec-p256",
        notBefore: "2020-01-01T00:00:00.000Z",
        notAfter,
        status,
        revokedAt: null,
        reason: null,
        supersededBy: null,
        source: "issue" as const,
        createdAt: "2020-01-01T00:00:00.000Z",
        pem: "x",
      });
      s.write(() => {
        s.insertCert(row("aa01", "2021-01-01T00:00:00.000Z", "valid"));
        s.insertCert(row("aa02", "2021-06-01T00:00:00.000Z", "revoked"));
        s.insertCert(row("aa03", "2030-01-01T00:00:00.000Z", "valid"));
      });
      assert.equal(s.write(() => s.pruneExpired(new Date("2022-01-01T00:00:00.000Z"))).certs, 2, s.kind);
      assert.equal(s.bySerial("aa01"), undefined);
      assert.ok(s.bySerial("aa03"), s.kind);
    }
  });

  it("a lease is held by one holder until it runs out, renewed by its holder, released", () => {
    for (const s of stores) {
      const t = (sec: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, sec)).toISOString();
      assert.equal(s.takeLease("job", "a", t(0), t(10)).holder, "a", s.kind);
      assert.equal(s.takeLease("job", "b", t(5), t(15)).holder, "a", `${s.kind}: b cannot take a live lease`);
      assert.equal(s.takeLease("job", "a", t(6), t(16)).expiresAt, t(16), `${s.kind}: renewed`);
      assert.equal(s.takeLease("job", "b", t(16), t(26)).holder, "b", `${s.kind}: taken once run out`);
      s.releaseLease("job", "a"); // not a's any more: nothing happens
      assert.equal(s.takeLease("job", "a", t(17), t(27)).holder, "b");
      s.releaseLease("job", "b");
      assert.equal(s.takeLease("job", "a", t(18), t(28)).holder, "a", `${s.kind}: free after release`);
    }
  });
});

describe("the synchronous PostgreSQL connection", () => {
  it("a connection lost inside a transaction commits nothing of it, not even on the fresh connection", async () => {
    const db = await createDb();
    const setting = parseStore(db.url);
    assert.equal(setting.kind, "postgres");
    const { SyncPg } = await import("../ca/store/pg-sync.ts");
    const a = new SyncPg(setting.kind === "postgres" ? setting.config : {});
    const b = new SyncPg(setting.kind === "postgres" ? setting.config : {});
    try {
      a.query("CREATE TABLE t (x int)");
      a.query("BEGIN");
      a.query("INSERT INTO t VALUES (1)");
      const pid = a.query("SELECT pg_backend_pid() AS p").rows[0]!.p as number;
      b.query("SELECT pg_terminate_backend($1)", [pid]);
      assert.throws(() => a.query("INSERT INTO t VALUES (2)"));
      // Without the guard this would run in autocommit on a new connection and stay.
      assert.throws(() => a.query("INSERT INTO t VALUES (3)"), /lost inside a transaction/);
      assert.throws(() => a.query("COMMIT"), /lost inside a transaction/);
      a.query("ROLLBACK");
      a.query("INSERT INTO t VALUES (4)");
      assert.deepEqual(b.query("SELECT x FROM t ORDER BY x").rows, [{ x: 4 }]);
    } finally {
      a.close();
      b.close();
      await db.drop();
    }
  });
});

describe("ca store-copy", () => {
  it("moves a SQLite CA's ledger into an empty database, row for row, and refuses one that holds a CA", async () => {
    const db = await createDb();
    const root = tempDir("mesh-storecopy-");
    const dir = join(root, "pki");
    const sqlite = (args: string[]) => cli([...args, "--dir", dir]);
    try {
      assert.equal((await sqlite(["init", "--name", "Copy CA", "--trust-domain", "acme.test"])).code, 0);
      for (const n of ["a", "b"]) assert.equal((await sqlite(["issue", "--domain", `${n}.internal`])).code, 0);
      assert.equal((await sqlite(["revoke", "--domain", "b.internal"])).code, 0);
      const token = (await sqlite(["token", "--domain", "c.internal"])).stdout.trim();
      const before = (await sqlite(["list", "--all", "--json"])).stdout;
      const copy = await sqlite(["store-copy", "--to", db.url]);
      assert.equal(copy.code, 0, copy.stderr);
      assert.match(copy.stdout, /^  certs +2 row\(s\)$/m);
      const after = await cli(["list", "--all", "--json", "--dir", dir, "--store", db.url]);
      assert.equal(after.stdout, before, "the same ledger on PostgreSQL");
      const ca = await CertificateAuthority.open({ dir, store: db.url });
      try {
        assert.equal(ca.trustDomain(), "acme.test");
        const { checkToken } = await import("../ca/tokens.ts");
        assert.equal(
          checkToken(ca.ledger, token, "c.internal", new Date()).ok,
          true,
          "a token made before the copy works after it",
        );
        assert.ok(ca.ledger.signedCrl("root-1"));
      } finally {
        ca.close();
      }
      const again = await sqlite(["store-copy", "--to", db.url]);
      assert.equal(again.code, 3);
      assert.match(again.stderr, /already exists/);
    } finally {
      await db.drop();
      cleanup(root);
    }
  });
});

describe("the PostgreSQL store's cache of issuers and settings", () => {
  let db: TestDb;
  let root: string;
  before(async () => {
    db = await createDb();
    root = tempDir("mesh-pgcache-");
  });
  after(async () => {
    await db?.drop();
    if (root) cleanup(root);
  });

  /** Round trips the calls in fn make, by any SyncPg of this process. */
  async function roundTrips(fn: () => void): Promise<number> {
    const { SyncPg } = await import("../ca/store/pg-sync.ts");
    const query = SyncPg.prototype.query;
    let n = 0;
    SyncPg.prototype.query = function (this: InstanceType<typeof SyncPg>, ...args: Parameters<typeof query>) {
      n++;
      return query.apply(this, args);
    };
    try {
      fn();
    } finally {
      SyncPg.prototype.query = query;
    }
    return n;
  }

  it("serves repeated reads without a round trip, and sees another replica's change after its next round trip", async () => {
    const ca = await CertificateAuthority.init({ dir: join(root, "pki"), name: "Cache CA", store: db.url });
    const setting = parseStore(db.url);
    assert.equal(setting.kind, "postgres");
    const other = PgLedger.open(setting.kind === "postgres" ? setting.config : {}, "other");
    try {
      const a = ca.ledger;
      assert.equal(other.getMeta("signer"), "root-1");
      assert.equal(other.issuer("root-1")?.state, "published");
      // The enrolment path's four reads (signer, its issuer, its root…): none goes to the database.
      assert.equal(
        await roundTrips(() => {
          other.getMeta("signer");
          other.issuer("root-1");
          other.issuers();
        }),
        0,
      );
      // Another connection (replica, CLI) changes the signer and an issuer's state.
      a.write(() => {
        a.setMeta("signer", "root-2");
        a.setIssuerState(1, "retired");
      });
      // Any round trip begun after that commit brings the notification with its answer.
      other.dataVersion();
      assert.equal(other.getMeta("signer"), "root-2");
      assert.equal(other.issuer("root-1")?.state, "retired");
      assert.equal(other.issuers()[0]?.state, "retired");
      // Its own change is seen at once; a rolled back one never.
      other.write(() => other.setMeta("signer", "root-3"));
      assert.equal(other.getMeta("signer"), "root-3");
      assert.throws(() =>
        other.write(() => {
          other.setMeta("signer", "root-4");
          assert.equal(other.getMeta("signer"), "root-4", "inside its transaction, its own change");
          throw new Error("rolled back");
        }),
      );
      assert.equal(other.getMeta("signer"), "root-3");
      // Inside a transaction the reads are live: another's commit is seen without any notification.
      other.write(() => {
        a.setMeta("signer", "root-5");
        assert.equal(other.getMeta("signer"), "root-5");
      });
    } finally {
      other.close();
      ca.close();
    }
  });

  it("a connection made afresh reads again: what changed while it was gone was never notified to it", async () => {
    const setting = parseStore(db.url);
    assert.equal(setting.kind, "postgres");
    const config = setting.kind === "postgres" ? setting.config : {};
    const a = PgLedger.open(config, "a");
    const b = PgLedger.open(config, "b");
    const { SyncPg } = await import("../ca/store/pg-sync.ts");
    const admin = new SyncPg(config);
    try {
      a.write(() => a.setMeta("signer", "before"));
      b.dataVersion();
      assert.equal(b.getMeta("signer"), "before");
      // b's connection dies; a changes the signer while b has no connection that listens.
      admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      const retried = <T>(f: () => T): T => {
        try {
          return f();
        } catch {
          return f(); // the first call may meet the dead connection
        }
      };
      retried(() => a.write(() => a.setMeta("signer", "while b was away")));
      retried(() => b.dataVersion());
      assert.equal(b.getMeta("signer"), "while b was away");
    } finally {
      admin.close();
      a.close();
      b.close();
    }
  });
});
