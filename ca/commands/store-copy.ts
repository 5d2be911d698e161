// ca store-copy: the SQLite ledger of --dir into an empty PostgreSQL database, to run CA
// replicas on it (docs/est.md, "Running several CA replicas").
import type { Command } from "commander";
import { shown } from "../format.ts";
import { CA_READ, help } from "./exits.ts";
import { stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("store-copy")
        .description(
          "copy the SQLite ledger of --dir into an empty PostgreSQL database, to run CA replicas on it (docs/est.md)",
        ),
    ).requiredOption(
      "--to <url>",
      "the PostgreSQL database: postgres://user@host/db (the password from PGPASSWORD or ~/.pgpass)",
    ),
    [
      "store-copy --to postgres://ca@db.internal/mesh_ca   # then: export MESH_CA_STORE=postgres://ca@db.internal/mesh_ca",
    ],
    { 3: "refused: the database already holds a CA", 4: CA_READ },
  ).action((o) =>
    withCa({ ...o, store: "sqlite" }, async (ca) => {
      const { copyToPostgres } = await import("../store/copy.ts");
      const r = copyToPostgres(ca.ledger, o.to);
      console.log(`Copied the ledger of ${shown(ca.layout.dir)} into ${r.to}`);
      for (const [table, n] of Object.entries(r.rows)) console.log(`  ${table.padEnd(15)} ${n} row(s)`);
      console.log(
        `  ${shown(ca.layout.ledger)} is unchanged; from now on use --store ${r.to} (or MESH_CA_STORE), and stop using the SQLite file`,
      );
    }),
  );
}
