// `ca store-copy --to postgres://…`: moves a CA's SQLite ledger into an empty PostgreSQL
// database, so a CA that began on the default store can run as replicas. One transaction:
// either every row lands or none does; the SQLite file is only read.
import { CaError } from "../errors.ts";
import { sqliteLedger } from "../ledger.ts";
import type { LedgerStore } from "./interface.ts";
import { PgLedger } from "./postgres.ts";
import { parseStore } from "./url.ts";

/** Parents before children (issuers before certs and CRLs); leases are not copied: they belong to running servers. */
const TABLES: Array<{ name: string; order: string }> = [
  { name: "meta", order: "key" },
  { name: "issuers", order: "generation, kind DESC, created_at" },
  { name: "certs", order: "rowid" },
  { name: "enrol_tokens", order: "created_at" },
  { name: "bundles", order: "first_served_at" },
  { name: "bundle_holders", order: "name" },
  { name: "rotations", order: "id" },
  { name: "signed_crls", order: "issuer_id" },
];

export interface CopyReport {
  to: string;
  rows: Record<string, number>;
}

export function copyToPostgres(source: LedgerStore, to: string): CopyReport {
  const setting = parseStore(to);
  if (setting.kind !== "postgres")
    throw new CaError("BAD_INPUT", `--to must be a postgres:// URL (e.g. postgres://ca@db.internal/mesh_ca)`);
  const db = sqliteLedger(source).db;
  // Refuses a database that already holds a CA, before anything is written.
  const target = PgLedger.open(setting.config, setting.shown, { create: true });
  const rows: Record<string, number> = {};
  try {
    target.write(() => {
      for (const t of TABLES) {
        const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t.name);
        const all = exists
          ? (db.prepare(`SELECT * FROM ${t.name} ORDER BY ${t.order}`).all() as Record<string, unknown>[])
          : [];
        // The schema row was written by open(); every other row is copied as it is.
        const copied = t.name === "meta" ? all.filter((r) => r.key !== "schema") : all;
        target.importRows(t.name, copied);
        rows[t.name] = copied.length;
      }
    });
  } catch (err) {
    target.dropEverything();
    target.close();
    throw err;
  }
  target.close();
  return { to: setting.shown, rows };
}
