// ca prune: retention by hand (ca serve runs it with --retention): expired serials leave the
// CRLs, then certificates and tokens expired longer ago than --older-than leave the ledger.
import type { Command } from "commander";
import { CA_KEY, help } from "./exits.ts";
import { jsonOption, stateful } from "./flags.ts";
import { withCa } from "./session.ts";

export function register(program: Command): void {
  help(
    stateful(
      program
        .command("prune")
        .description(
          "delete certificates expired more than --older-than ago (and expired tokens); drop expired serials from the CRLs",
        ),
    )
      .option(
        "--older-than <duration>",
        "keep what expired less than this long ago (ca serve prunes with its --retention)",
        "7d",
      )
      .option("--dry-run", "say what would go, change nothing")
      .addOption(jsonOption()),
    ["prune", "prune --older-than 30d --dry-run", "prune --older-than 1d --json"],
    { 4: CA_KEY },
  ).action((o) =>
    withCa(o, async (ca) => {
      const { parseDuration } = await import("../duration.ts");
      const retention = await import("../retention.ts");
      const olderThanMs = parseDuration(o.olderThan, { flag: "--older-than", min: 0, max: 100 * 365 * 86_400_000 });
      const r = await retention.prune(ca, { olderThanMs, dryRun: !!o.dryRun });
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ ...r, cutoff: r.cutoff.toISOString() }, null, 2)}\n`);
        return;
      }
      const verb = r.dryRun ? "would delete" : "deleted";
      console.log(
        `${verb} ${r.certs} certificate(s) and ${r.tokens} enrolment token(s) expired before ${r.cutoff.toISOString()}`,
      );
      if (r.dryRun)
        console.log(`${r.crlExpiredBefore} expired serial(s) still on the CRLs (a run re-signs those CRLs)`);
      else if (r.crlsResigned.length > 0)
        console.log(
          `re-signed the CRL of ${r.crlsResigned.join(", ")}: ${r.crlExpiredBefore - r.crlExpiredAfter} expired serial(s) dropped, ${r.crlExpiredAfter} kept until a CRL signed after their expiry has listed them (RFC 5280 3.3)`,
        );
    }),
  );
}
