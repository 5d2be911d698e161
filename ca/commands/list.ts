// ca list: the ledger, one certificate a line.
import type { Command } from "commander";
import { listTable } from "../format.ts";
import { CA_READ, help } from "./exits.ts";
import { jsonOption, stateful } from "./flags.ts";
import { withView } from "./session.ts";
import { caCommand } from "./suggest.ts";

export function register(program: Command): void {
  help(
    stateful(
      program.command("list").description("every certificate with its status (VALID, EXPIRED, REVOKED, SUPERSEDED)"),
    )
      .addOption(jsonOption("the ledger as JSON, for scripts"))
      .option("--all", "include superseded certificates"),
    ["list", "list --all", "list --json | jq '.[] | select(.status == \"VALID\")'"],
    { 4: CA_READ },
  ).action((o) =>
    withView(o, (ca) => {
      const rows = ca.list({ all: o.all });
      if (o.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else if (rows.length === 0) console.log(`No certificates yet (run: ${caCommand("issue --domain NAME")})`);
      else process.stdout.write(`${listTable(rows)}\n`);
    }),
  );
}
